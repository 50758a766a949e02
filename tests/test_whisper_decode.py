"""The recipe's batched Whisper decoding against ESPnet's own ``Speech2Text`` (``espnet2.bin.asr_inference``) at beam
1, on the real tiny.en as the recipe makes it (``whisper_source_model``), with an adapter checkpoint, on Piper speech
in one fixed window; and the window padding, the written-sentence targets and the Whisper normaliser the recipe
scores with."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, List

import numpy as np
import pytest
import soundfile
import yaml

pytest.importorskip("whisper")
from espnet_peft.bin import make_written_text, s2t_batch_inference  # noqa: E402
from espnet_peft.recipe.whisper_source import make_whisper_source  # noqa: E402
from espnet_peft.utils.audio_window import pad_data_dir  # noqa: E402
from espnet_peft.utils.kaldi_data import read_table, write_table  # noqa: E402
from espnet_peft.utils.text_norm import whisper_english  # noqa: E402
from espnet_peft.whisper import offline  # noqa: E402
from helpers.whisper_fixtures import (  # noqa: E402,F401 (fixtures)
    PIPER_SENTENCES, adapter_checkpoint, padded_piper_set, piper_speech, source, tiny_en,
)

WINDOW_SEC = 4.0  # shorter than the recipe's 15 s, so the test is quick; tiny.en then loops on some inputs
CAP = 24          # --maxlenratio -24: a looping hypothesis stops here, in both decoders


@pytest.fixture(scope="module")
def padded_set(piper_speech: list, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return padded_piper_set(piper_speech, tmp_path_factory.mktemp("piper_set"), len(PIPER_SENTENCES), WINDOW_SEC,
                            written=False)


def speech2text_tokens(config: Path, model: Path, data: Path) -> Dict[str, List[int]]:
    from espnet_peft.bin.asr_inference import Speech2Text

    speech2text = Speech2Text(asr_train_config=str(config), asr_model_file=str(model), beam_size=1, ctc_weight=0.0,
                              maxlenratio=-float(CAP), device="cpu")
    primer = 2  # <|startoftranscript|> <|notimestamps|>
    tokens = {}
    for utt, path in read_table(data / "wav.scp").items():
        audio, _ = soundfile.read(path, dtype="float32")
        (_, _, _, hyp), *_ = speech2text(audio)
        # the whole hypothesis: its token_int drops id 0 as a "blank", which for Whisper is "!"
        tokens[utt] = hyp.yseq[primer:-1].tolist()  # the search always closes with <|endoftext|>
    return tokens


def batched_tokens(config: Path, model: Path, data: Path, out: Path, batch_size: int) -> Dict[str, List[int]]:
    from espnet_peft.inference.greedy import greedy_decode

    captured: Dict[str, List[int]] = {}
    original = greedy_decode

    def recording(model_, speech, prompt, *args, **kwargs):  # the token ids the CLI turns into text
        ids = original(model_, speech, prompt, *args, **kwargs)
        recording.batches.append(ids)
        return ids

    recording.batches = []
    s2t_batch_inference.greedy_decode = recording
    try:
        s2t_batch_inference.main(["--asr_train_config", str(config), "--asr_model_file", str(model),
                                  "--set", str(data), str(out), "--batch_size", str(batch_size),
                                  "--maxlenratio", str(-CAP), "--window_sec", str(WINDOW_SEC)])
    finally:
        s2t_batch_inference.greedy_decode = original
    keys = sorted(read_table(data / "wav.scp"))
    flat = [ids for batch in recording.batches for ids in batch]
    captured.update(zip(keys, flat))
    return captured


@pytest.mark.parametrize("adapted", [False, True], ids=["tiny.en", "tiny.en+lora"])
def test_batched_decoding_equals_espnet_speech2text_at_beam_1(source: Path, padded_set: Path, tmp_path: Path,
                                                               adapted: bool) -> None:
    config, model = (source / "config.yaml", source / "model.pth")
    if adapted:
        model = adapter_checkpoint(source, tmp_path / "lora", ["query", "value"])
        config = model.parent / "config.yaml"
    reference = speech2text_tokens(config, model, padded_set)
    ours = batched_tokens(config, model, padded_set, tmp_path / "decode", batch_size=3)  # rows leave mid-batch
    assert ours == reference
    lengths = sorted(len(t) for t in reference.values())
    assert lengths[0] < CAP - 1 and lengths[-1] >= CAP - 1, lengths  # both a natural end and the cap are covered
    info = json.loads((tmp_path / "decode" / "decode_info.json").read_text())
    assert info["settings"]["window_sec"] == WINDOW_SEC and info["utterances"] == len(PIPER_SENTENCES)


def test_a_batch_of_unequal_inputs_is_warned_about(source: Path, padded_set: Path, tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    wav_scp = {}
    for utt, path in read_table(padded_set / "wav.scp").items():
        audio, _ = soundfile.read(path, dtype="int16")
        n = int(read_table(padded_set / "utt2num_samples")[utt])
        soundfile.write(raw / f"{utt}.wav", audio[:n], 16000, subtype="PCM_16")
        wav_scp[utt] = str(raw / f"{utt}.wav")
    write_table(raw / "wav.scp", wav_scp)
    with pytest.warns(UserWarning, match="no --window_sec"):
        s2t_batch_inference.main(["--asr_train_config", str(source / "config.yaml"), "--asr_model_file",
                                  str(source / "model.pth"), "--set", str(raw), str(tmp_path / "out"),
                                  "--maxlenratio", "-4"])


def test_padding_keeps_the_speech_and_its_real_length(padded_set: Path, piper_speech: list) -> None:
    lengths = read_table(padded_set / "utt2num_samples")
    for i, (utt, path) in enumerate(sorted(read_table(padded_set / "wav.scp").items())):
        audio, rate = soundfile.read(path, dtype="int16")
        n = int(lengths[utt])
        assert rate == 16000 and len(audio) == int(WINDOW_SEC * 16000)
        original, _ = soundfile.read(padded_set / f"{utt}.wav", dtype="int16")  # what the set held before padding
        assert len(original) == len(piper_speech[i][0])
        assert n == len(original) and np.array_equal(audio[:n], original) and not audio[n:].any()
    assert set(read_table(padded_set / "speech_shape").values()) == {str(int(WINDOW_SEC * 16000))}
    before = {utt: soundfile.read(p, dtype="int16")[0] for utt, p in read_table(padded_set / "wav.scp").items()}
    pad_data_dir(padded_set, WINDOW_SEC)  # a padded dir pads to itself
    after = {utt: soundfile.read(p, dtype="int16")[0] for utt, p in read_table(padded_set / "wav.scp").items()}
    assert all(np.array_equal(before[u], after[u]) for u in before)
    assert read_table(padded_set / "utt2num_samples") == lengths


def test_an_utterance_longer_than_the_window_is_refused_by_name(padded_set: Path, tmp_path: Path) -> None:
    long = tmp_path / "long"
    long.mkdir()
    soundfile.write(long / "a.wav", np.zeros(16000 * 5, dtype=np.int16), 16000, subtype="PCM_16")
    write_table(long / "wav.scp", {"spk-a": str(long / "a.wav")})
    with pytest.raises(ValueError, match="utterance spk-a lasts 5.00 s, longer than the 4 s window"):
        pad_data_dir(long, WINDOW_SEC)


def test_written_targets_and_the_whisper_normaliser(tmp_path: Path) -> None:
    write_table(tmp_path / "text", {"a-1": "the cat sat", "a-2": "is it two"})
    for _ in range(2):  # a re-run changes nothing
        make_written_text.main(["--data_dir", str(tmp_path)])
        assert read_table(tmp_path / "text") == {"a-1": "The cat sat.", "a-2": "Is it two."}
        assert read_table(tmp_path / "text.plain") == {"a-1": "the cat sat", "a-2": "is it two"}
    write_table(tmp_path / "text", {"a-1": "a new line"})  # a refreshed dir: its text is the new plain words
    make_written_text.main(["--data_dir", str(tmp_path)])
    assert read_table(tmp_path / "text.plain") == {"a-1": "a new line"}
    # both sides go through it: casing, punctuation and spelled numbers do not count as errors
    assert whisper_english("Is it two?") == whisper_english("is it 2") == "is it 2"


def test_the_source_model_is_made_once_and_refuses_what_it_cannot_make(source: Path, tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from espnet_peft.recipe.whisper_source import SOURCE_INFO

    config = Path(__file__).resolve().parents[1] / "egs2/synthetic/whisper1/conf/whisper_source.yaml"
    stamp = (source / "model.pth").stat().st_mtime_ns
    make_whisper_source(config, source, source.parent / "tokens")  # the same inputs: nothing rewritten
    assert (source / "model.pth").stat().st_mtime_ns == stamp
    made_from = json.loads((source / SOURCE_INFO).read_text())["made_from"]
    assert made_from["source"] == "whisper:tiny.en" and len(made_from["checkpoint_sha256"]) == 64
    other = yaml.safe_load(config.read_text())
    other["decoder_conf"]["whisper_model"] = "base"
    (tmp_path / "mixed.yaml").write_text(yaml.safe_dump(other))
    with pytest.raises(ValueError, match="name different Whisper models"):
        make_whisper_source(tmp_path / "mixed.yaml", tmp_path / "out", tmp_path / "tokens")
    monkeypatch.delenv(offline.ENV_VARIABLE)
    with pytest.raises(ValueError, match=f"set {offline.ENV_VARIABLE}"):
        make_whisper_source(config, tmp_path / "out", tmp_path / "tokens")

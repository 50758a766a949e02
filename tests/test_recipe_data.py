"""Recipe data helpers: sentence grammar, three-domain espeak-ng corpus, Kaldi validation/filtering, OWSM text."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile

from espnet_peft.bin import make_s2t_text, synthesize_corpus as synthesize_cli, validate_data
from espnet_peft.recipe import synth
from espnet_peft.utils.kaldi_data import (
    DataDir, check_data_dir, read_data_dir, read_table, sort_inconsistent, validate_and_filter, write_data_dir,
)
from espnet_peft.recipe.s2t_text import write_s2t_text
from espnet_peft.recipe.sentences import (
    MAX_WORDS, MIN_WORDS, SentenceGenerator, article, gerund, number_words, past, plural, third_person,
    unique_sentences, vocabulary,
)
from espnet_peft.recipe.synth import DOMAINS, SPLITS, parse_sizes, plan_corpus, synthesize_corpus
from espnet_peft.recipe.voice_rules import read_variant, unordinary_reasons

TINY_UTTS = parse_sizes("train=3,dev=3,test=3")
TINY_SPEAKERS = parse_sizes("train=2,dev=2,test=2")


# ---------------------------------------------------------------- sentences


def test_sentences_are_deterministic_per_seed():
    assert SentenceGenerator(3).sentences(50) == SentenceGenerator(3).sentences(50)
    assert SentenceGenerator(3).sentences(50) != SentenceGenerator(4).sentences(50)
    assert unique_sentences(40, seed="a") == unique_sentences(40, seed="a")


def test_sentences_have_the_promised_shape_and_a_large_vocabulary():
    sentences = SentenceGenerator(0).sentences(2000)
    for s in sentences:
        assert re.fullmatch(r"[a-z']+( [a-z']+)*", s), s
        assert MIN_WORDS <= len(s.split()) <= MAX_WORDS, s
    used = {w for s in sentences for w in s.split()}
    assert used <= vocabulary(), used - vocabulary()  # vocabulary() is honest ...
    assert len(vocabulary()) >= 1000
    assert len(used) >= 800  # ... and 2,000 sentences already use most of it: WER is not a memorisation test
    assert len(set(sentences)) >= 0.99 * len(sentences)
    assert {"did", "please", "how", "don't", "let's"} <= used  # questions and commands, not only statements


def test_short_sentences_keep_a_large_vocabulary_and_reject_impossible_limits():
    sentences = unique_sentences(3000, seed=0, max_words=6)  # the embedded default's source train set
    assert all(MIN_WORDS <= len(s.split()) <= 6 for s in sentences)
    assert len({w for s in sentences for w in s.split()}) >= 800
    for bad in (MIN_WORDS - 1, MAX_WORDS + 1):
        with pytest.raises(ValueError, match="max_words"):
            SentenceGenerator(0, max_words=bad)


def test_unique_sentences_excludes_and_never_repeats():
    first = unique_sentences(300, seed=1)
    second = unique_sentences(300, seed=1, exclude=first[:150])
    assert len(set(first)) == 300
    assert not set(second) & set(first[:150])


@pytest.mark.parametrize("fn, word, expected", [
    (plural, "city", "cities"), (plural, "box", "boxes"), (plural, "valley", "valleys"), (plural, "knife:knives",
                                                                                       "knives"),
    (past, "stop", "stopped"), (past, "carry", "carried"), (past, "bake", "baked"), (past, "buy:bought", "bought"),
    (gerund, "make", "making"), (gerund, "swim:swam", "swimming"), (gerund, "see:saw", "seeing"),
    (third_person, "watch", "watches"), (third_person, "fly:flew", "flies"), (third_person, "go:went", "goes"),
    (article, "umbrella", "an"), (article, "honest", "an"), (article, "red", "a"),
])  # fmt: skip
def test_morphology(fn, word, expected):
    assert fn(word) == expected


def test_number_words():
    assert number_words(42) == ["forty", "two"]
    assert number_words(13) == ["thirteen"]
    assert number_words(70) == ["seventy"]
    with pytest.raises(ValueError, match="2..99"):
        number_words(100)


# ---------------------------------------------------------------- corpus plan (no audio)


def test_parse_sizes_defaults_and_overrides():
    sizes = parse_sizes("train=5,dev=2,test=2,source.train=9")
    assert sizes["source"] == {"train": 9, "dev": 2, "test": 2, "newtext": 0}  # newtext is optional
    assert parse_sizes("train=5,dev=2,test=2,source.newtext=3")["source"]["newtext"] == 3
    assert sizes["child"]["train"] == 5
    with pytest.raises(ValueError, match="leave .*test unset"):
        parse_sizes("train=5,dev=2")
    with pytest.raises(ValueError, match="bad size 'adult.train=3'"):
        parse_sizes("adult.train=3,train=1,dev=1,test=1")


def test_plan_has_disjoint_speakers_distinct_texts_and_prefixed_ids(tmp_path):
    plan = plan_corpus(tmp_path, 0, parse_sizes("train=24,dev=8,test=8"), parse_sizes("train=6,dev=2,test=2"))
    assert len(plan) == 3 * 40
    assert len({u.text for u in plan}) == len(plan)  # no sentence shared by any two utterances (train vs test)
    for domain in DOMAINS:
        speakers = {split: {u.speaker for u in plan if u.speaker.domain == domain and u.speaker.split == split}
                    for split in SPLITS}
        assert [len(speakers[s]) for s in SPLITS] == [6, 2, 2]
        combos = [(s.voice, s.speed, s.pitch, s.sox_effects) for group in speakers.values() for s in group]
        assert len(set(combos)) == len(combos)
    assert all(u.id.startswith(u.speaker.id + "-") for u in plan)
    child = [u.speaker for u in plan if u.speaker.domain == "child"]
    assert all(s.sox_effects[0] == "pitch" and 400 <= int(s.sox_effects[1]) <= 600 for s in child)
    accents = {u.speaker.voice.split("+")[0] for u in plan if u.speaker.domain == "accent"}
    assert len(accents) == len(synth.ACCENTS)  # the rotation reaches every accent with 10 speakers


def test_test_texts_do_not_depend_on_train_size_or_domains(tmp_path):
    small = plan_corpus(tmp_path, 0, parse_sizes("train=3,dev=3,test=3"), TINY_SPEAKERS)
    large = plan_corpus(tmp_path, 0, parse_sizes("train=30,dev=3,test=3"), TINY_SPEAKERS, domains=["child"])

    def child_test_texts(plan: list[synth.Utterance]) -> dict[str, str]:
        return {u.id: u.text for u in plan if u.speaker.domain == "child" and u.speaker.split == "test"}

    assert child_test_texts(small) == child_test_texts(large)


def test_missing_tools_name_the_install_command(tmp_path, monkeypatch):
    monkeypatch.setattr(synth.shutil, "which", lambda tool: None if tool == "sox" else "/usr/bin/" + tool)
    with pytest.raises(RuntimeError, match="sox not found.*apt-get install espeak-ng sox"):
        synthesize_corpus(tmp_path, utts=TINY_UTTS, speakers=TINY_SPEAKERS)


def test_unknown_voices_are_refused_before_synthesis(tmp_path, monkeypatch):
    # espeak-ng itself would silently fall back to its default voice.
    style = dataclasses.replace(synth.STYLES["source"], variants=("m1", "nosuch"))
    monkeypatch.setitem(synth.STYLES, "source", style)
    with pytest.raises(RuntimeError, match=r"espeak-ng lacks the voices \['en-us\+nosuch'\]"):
        synthesize_corpus(tmp_path, utts=TINY_UTTS, speakers=TINY_SPEAKERS, domains=["source"])
    assert not list(tmp_path.rglob("*.wav"))


def _variant_dir() -> Path:
    listing = subprocess.run(["espeak-ng", "--version"], capture_output=True, text=True, check=True).stdout
    return Path(re.search(r"Data at: (\S+)", listing).group(1)) / "voices" / "!v"


def test_the_source_voices_are_exactly_the_ordinary_adult_variants():
    # The rule, not a decoding result, picks the source population: every installed variant that passes is in it.
    variants = _variant_dir()
    passing = sorted((p.name for p in variants.iterdir() if not unordinary_reasons(p)), key=str.lower)
    assert sorted(synth.ADULT_VARIANTS, key=str.lower) == passing


@pytest.mark.parametrize("name, reason", [
    ("Lee", r"F3 at 9%"), ("travis", r"F1 at 50%"), ("Alicia", r"F2 at 150%"), ("whisper", r"voicing 17"),
    ("croak", r"flutter 20"), ("robosoft3", r"echo amplitude 10000"), ("announcer", r"pitch base 37 Hz"),
])
def test_unordinary_variants_are_named_with_the_setting_that_rules_them_out(name, reason):
    assert any(re.match(reason, r) for r in unordinary_reasons(_variant_dir() / name))


def test_variant_settings_are_read_past_comments(tmp_path):
    path = tmp_path / "v"
    path.write_text("name v\n// formant 1 10 10 10\nformant 1 110 80 150 // tail\npitch 82 118\n#voicing 0\n")
    settings = read_variant(path)
    assert settings.formant_frequency == {1: 110} and settings.pitch_base == 82 and settings.voicing == 100


def test_a_failing_synthesis_names_the_utterance(tmp_path):
    speaker = synth.Speaker("source-000", "source", "train", "en-us+m1", 170, 50, ("pitch", "not-a-number"))
    utt = synth.Utterance("source-000-0000", speaker, "hello there", tmp_path / "source-000-0000.wav", "train")
    with pytest.raises(RuntimeError, match="source-000-0000: sox .* failed"):
        synth.synthesize_utterance(utt)
    assert not list(tmp_path.iterdir())  # no half-written wav or temporary file left behind


# ---------------------------------------------------------------- synthesised corpus


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """27 utterances: 3 domains x 3 splits x 3 utterances, 2 speakers per split; through the CLI, 2 processes."""
    out = tmp_path_factory.mktemp("synth") / "corpus"
    synthesize_cli.main(["--out", str(out), "--seed", "0", "--nj", "2", "--sizes", "train=3,dev=3,test=3",
                         "--speakers_per_split", "train=2,dev=2,test=2"])
    return out


def median_f0(wav: Path, fmin: float = 60.0, fmax: float = 700.0) -> float:
    """Autocorrelation pitch over voiced frames (loud frames whose normalised autocorrelation peak exceeds 0.5)."""
    x, fs = soundfile.read(wav, dtype="float64")
    n, hop = int(0.04 * fs), int(0.01 * fs)
    frames = np.lib.stride_tricks.sliding_window_view(x, n)[::hop]
    frames = frames - frames.mean(axis=1, keepdims=True)
    rms = np.sqrt((frames**2).mean(axis=1))
    frames = frames[rms > 0.1 * rms.max()]
    ac = np.fft.irfft(np.abs(np.fft.rfft(frames, 2 * n)) ** 2)[:, :n]
    ac = ac / ac[:, :1]
    lo, hi = int(fs / fmax), int(fs / fmin)
    lag = lo + ac[:, lo:hi].argmax(axis=1)
    voiced = ac[np.arange(len(ac)), lag] > 0.5
    assert voiced.sum() >= 10, f"{wav}: too few voiced frames to measure pitch"
    return float(np.median(fs / lag[voiced]))


def test_corpus_dirs_are_valid_kaldi_dirs(corpus):
    for domain in DOMAINS:
        for split in SPLITS:
            data_dir = corpus / f"{domain}_{split}"
            assert check_data_dir(data_dir, fs=16000) == [], data_dir
            data = read_data_dir(data_dir)
            assert len(data.text) == 3 and len(set(data.utt2spk.values())) == 2
            info = soundfile.info(next(iter(data.wav_scp.values())))
            assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
    description = json.loads((corpus / "corpus.json").read_text())
    assert description["dirs"]["child_test"]["utterances"] == 3
    assert description["speakers"]["child-000"]["sox_effects"][0] == "pitch"


def test_corpus_speakers_are_disjoint_across_splits(corpus):
    description = json.loads((corpus / "corpus.json").read_text())
    for domain in DOMAINS:
        by_split = {split: set(read_table(corpus / f"{domain}_{split}" / "utt2spk").values()) for split in SPLITS}
        assert not (by_split["train"] & by_split["dev"] or by_split["train"] & by_split["test"]
                    or by_split["dev"] & by_split["test"])
        voices = [tuple(json.dumps(description["speakers"][s][k]) for k in ("voice", "speed", "pitch", "sox_effects"))
                  for group in by_split.values() for s in group]
        assert len(set(voices)) == len(voices)


def test_child_speech_has_a_higher_pitch_than_adult_speech(corpus):
    def domain_f0(domain: str) -> float:
        return float(np.median([median_f0(p) for p in sorted(corpus.glob(f"{domain}_*/wav/*.wav"))]))

    source, child = domain_f0("source"), domain_f0("child")
    assert child > 1.5 * source, (source, child)
    assert 200 < child < 600 and 70 < source < 250


def test_synthesis_is_deterministic_and_resumable(corpus, tmp_path):
    again = tmp_path / "again"
    synthesize_corpus(again, seed=0, utts=TINY_UTTS, speakers=TINY_SPEAKERS, domains=["child"], nj=1)
    for split in SPLITS:
        assert (again / f"child_{split}" / "text").read_text() == (corpus / f"child_{split}" / "text").read_text()
    for wav in sorted((corpus / "child_test" / "wav").glob("*.wav")):
        assert (again / "child_test" / "wav" / wav.name).read_bytes() == wav.read_bytes(), wav.name

    # A re-run keeps valid wavs and redoes a deleted and a truncated one.
    wavs = sorted((again / "child_train" / "wav").glob("*.wav"))
    wavs[0].unlink()
    wavs[1].write_bytes(wavs[1].read_bytes()[:1000])
    result = synthesize_corpus(again, seed=0, utts=TINY_UTTS, speakers=TINY_SPEAKERS, domains=["child"], nj=1)
    assert result["last_run"] == {"synthesized": 2, "kept_existing": 7}
    assert wavs[1].read_bytes() == (corpus / "child_train" / "wav" / wavs[1].name).read_bytes()
    assert not list(again.rglob(".*tmp*"))

    with pytest.raises(RuntimeError, match="already holds a different child corpus"):
        synthesize_corpus(again, seed=1, utts=TINY_UTTS, speakers=TINY_SPEAKERS, domains=["child"])
    other = plan_corpus(tmp_path, 1, TINY_UTTS, TINY_SPEAKERS, domains=["child"])
    assert {u.text for u in other}.isdisjoint(read_table(again / "child_test" / "text").values())


# ---------------------------------------------------------------- validation and filtering


@pytest.fixture
def damaged_dir(corpus, tmp_path) -> Path:
    """The 9 source utterances in one dir, then broken in every way the filter must catch."""
    src = tmp_path / "src"
    (src / "wav").mkdir(parents=True)
    merged = [read_data_dir(corpus / f"source_{split}") for split in SPLITS]
    data = DataDir({}, {}, {})
    for part in merged:
        for utt, path in part.wav_scp.items():
            copy = src / "wav" / Path(path).name
            shutil.copy(path, copy)
            data.wav_scp[utt], data.text[utt], data.utt2spk[utt] = str(copy), part.text[utt], part.utt2spk[utt]
    utts = sorted(data.wav_scp)

    def wav(i: int) -> Path:
        return Path(data.wav_scp[utts[i]])

    wav(0).write_bytes(wav(0).read_bytes()[:5000])  # truncated: header intact, data cut short
    wav(1).write_bytes(b"RIFF\x00\x00" + bytes(range(256)) * 8)  # corrupt
    wav(2).unlink()  # missing
    data.text[utts[3]] = ""  # empty transcript
    soundfile.write(wav(4), np.full(8000, 1000, dtype=np.int16), 8000)  # wrong sample rate
    soundfile.write(wav(5), np.full(800, 1000, dtype=np.int16), 16000)  # 0.05 s: too short
    write_data_dir(src, data)
    return src


def test_validate_and_filter_drops_bad_utterances_by_id(damaged_dir, tmp_path):
    utts = sorted(read_table(damaged_dir / "wav.scp"))
    dst = tmp_path / "dst"
    report = validate_and_filter(damaged_dir, dst, min_sec=0.3, max_sec=20, fs=16000)
    expected = {utts[0]: "truncated_audio", utts[1]: "unreadable_audio", utts[2]: "missing_audio",
                utts[3]: "empty_text", utts[4]: "wrong_sample_rate", utts[5]: "too_short"}
    assert {utt: reason for utt, (reason, _) in report.dropped.items()} == expected
    assert report.kept == 3
    rows = [line.split("\t") for line in (dst / "dropped.tsv").read_text().splitlines()]
    assert {r[0]: r[1] for r in rows} == expected
    assert "header declares" in report.dropped[utts[0]][1]
    assert check_data_dir(dst, fs=16000) == []
    assert sorted(read_table(dst / "utt2dur")) == utts[6:]
    for utt, n in read_table(dst / "utt2num_samples").items():
        assert int(n) == soundfile.info(read_table(dst / "wav.scp")[utt]).frames
    assert "truncated_audio: 1" in (dst / "filter_summary.txt").read_text()
    assert any(f"{utts[2]}: missing_audio" in p for p in check_data_dir(damaged_dir, fs=16000))


def test_validate_cli_reports_and_fails_only_when_nothing_is_left(damaged_dir, tmp_path, capsys):
    validate_data.main(["--src", str(damaged_dir), "--dst", str(tmp_path / "ok"), "--fs", "16000"])
    out = capsys.readouterr().out
    assert "kept 3 utterances" in out and "missing_audio" in out
    with pytest.raises(SystemExit, match="no usable utterance left"):
        validate_data.main(["--src", str(damaged_dir), "--dst", str(tmp_path / "none"), "--min_sec", "100"])


def test_sort_inconsistent_speaker_ids_are_refused(tmp_path):
    assert sort_inconsistent({"a-1": "a", "b-1": "b", "c-1": "a"}) == "c-1"
    write_data_dir(tmp_path / "d", DataDir({"u1": "x.wav", "u2": "y.wav", "u3": "z.wav"}, {"u1": "a", "u2": "b",
                                           "u3": "c"}, {"u1": "s1", "u2": "s2", "u3": "s1"}))
    with pytest.raises(ValueError, match="u3 breaks sort-consistency.*prefix"):
        validate_and_filter(tmp_path / "d", tmp_path / "e")


# ---------------------------------------------------------------- OWSM text


def test_s2t_text_files(corpus, tmp_path):
    data_dir = tmp_path / "child_train"
    shutil.copytree(corpus / "child_train", data_dir, ignore=shutil.ignore_patterns("wav"))
    plain = read_table(data_dir / "text")
    write_s2t_text(data_dir)
    text, prev, ctc = (read_table(data_dir / n) for n in ("text", "text.prev", "text.ctc"))
    assert text == {u: f"<eng><asr><notimestamps> {w}" for u, w in plain.items()}
    assert ctc == plain == read_table(data_dir / "text.plain")
    assert set(prev.values()) == {"<na>"}

    # Converting again (other tokens, previous-utterance prompts) starts from the plain words, not the S2T text.
    make_s2t_text.main(["--data_dir", str(data_dir), "--lang", "<fra>", "--use_prev", "true"])
    text, prev = read_table(data_dir / "text"), read_table(data_dir / "text.prev")
    assert text == {u: f"<fra><asr><notimestamps> {w}" for u, w in plain.items()}
    utt2spk = read_table(data_dir / "utt2spk")
    for speaker in set(utt2spk.values()):
        mine = sorted(u for u in utt2spk if utt2spk[u] == speaker)
        assert [prev[u] for u in mine] == ["<na>", *(plain[u] for u in mine[:-1])]

    out = write_s2t_text(data_dir, tmp_path / "copy")
    assert read_table(out / "wav.scp") == read_table(data_dir / "wav.scp")
    with pytest.raises(ValueError, match="must look like <xxx>"):
        write_s2t_text(data_dir, lang="eng")


def test_a_non_utf8_byte_is_named_with_file_and_line_and_a_bom_is_dropped(tmp_path: Path) -> None:
    from espnet_peft.utils.kaldi_data import read_table

    text = tmp_path / "text"
    text.write_bytes("\ufeffutt1 hello\nutt2 caf".encode("utf-8") + b"\xe9 au lait\n")
    with pytest.raises(ValueError, match=r"text, line 2: byte 0xe9 at column 9 is not UTF-8.*iconv"):
        read_table(text)
    text.write_bytes("\ufeffutt1 hello\nutt2 café\n".encode("utf-8"))
    assert read_table(text) == {"utt1": "hello", "utt2": "café"}

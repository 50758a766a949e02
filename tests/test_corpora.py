"""Real data preparation of the corpora (espnet_peft/recipe/corpora) over tiny fixture trees that mirror each
release's layout, file types and transcript quirks (tests/helpers/corpus_fixtures.py): the Python entry points, and every
recipe's local/data.sh through bash."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import soundfile

from helpers import corpus_fixtures as fx
from espnet_peft.recipe.corpora import (
    audio, cmu_kids, common_voice, cslu_kids, edacc, l2_arctic, librispeech, myst,
)
from espnet_peft.recipe.corpora.kaldi_writing import OutputOptions
from espnet_peft.recipe.corpora.records import CorpusError
from espnet_peft.recipe.corpora.splits import split_speakers
from espnet_peft.recipe.corpora.transcripts import finish_text, spell_numbers
from espnet_peft.utils.number_words import cardinal
from espnet_peft.utils.kaldi_data import check_data_dir, read_data_dir, read_table

REPO = Path(__file__).resolve().parents[1]
SPLITS = ("train", "dev", "test")


def speaker_disjoint_sets(out: Path, domain: str) -> dict[str, object]:
    """The domain's train/dev/test dirs, read back after checking that no speaker is in two of them."""
    data = {s: read_data_dir(out / f"{domain}_{s}") for s in SPLITS}
    assert_speaker_disjoint(data)
    return data


def all_texts(data: dict) -> dict[str, str]:
    return {utt: text for d in data.values() for utt, text in d.text.items()}


def assert_valid(out: Path, names, audio: bool = True) -> None:
    for name in names:
        problems = check_data_dir(out / name, fs=16000, audio=audio)
        assert not problems, problems


def assert_speaker_disjoint(data: dict) -> None:
    speakers = {name: set(d.utt2spk.values()) for name, d in data.items()}
    names = list(speakers)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            assert not speakers[a] & speakers[b], (a, b, speakers[a] & speakers[b])


def dropped(out: Path, corpus: str) -> dict[str, int]:
    report = json.loads((out / "local" / corpus / "prep_report.json").read_text())
    return {reason: info["count"] for reason, info in report["dropped"].items()}


# ---------------------------------------------------------------- fixture trees (built once)


@pytest.fixture(scope="module")
def trees(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("corpora")
    return {
        "myst": fx.make_myst(base / "myst"),
        "cslu_kids": fx.make_cslu_kids(base / "cslu"),
        "cmu_kids": fx.make_cmu_kids(base / "cmu"),
        "l2_arctic": fx.make_l2_arctic(base / "l2", L2_PROMPTS),
        "edacc": fx.make_edacc(base / "edacc"),
        "cv_old": fx.make_common_voice(base / "cv_old", new_release=False),
        "cv_new": fx.make_common_voice(base / "cv_new", new_release=True),
        "librispeech": fx.make_librispeech(base / "libri"),
    }


L2_PROMPTS = fx.l2_prompts(l2_arctic.prompt_split)


# ---------------------------------------------------------------- shared pieces


def test_speaker_split_is_deterministic_disjoint_and_close_to_the_shares():
    counts = {f"spk{i:03d}": 5 + (i * 7) % 13 for i in range(60)}
    shares = {"train": 0.8, "dev": 0.1, "test": 0.1}
    first = split_speakers(counts, shares, salt="x")
    assert first == split_speakers(dict(reversed(list(counts.items()))), shares, salt="x")  # order-independent
    assert first != split_speakers(counts, shares, salt="y")
    total = sum(counts.values())
    got = Counter()
    for spk, name in first.items():
        got[name] += counts[spk]
    for name, share in shares.items():
        assert abs(got[name] / total - share) < 0.05, (name, got)
    # few speakers: every set still gets one; too few is an error
    assert set(split_speakers({"a": 100, "b": 1, "c": 1}, shares, salt="x").values()) == set(SPLITS)
    with pytest.raises(ValueError, match="cannot fill"):
        split_speakers({"a": 1, "b": 1}, shares, salt="x")


def test_numbers_are_spelled_out_and_text_matches_the_scoring_normaliser():
    assert finish_text("It's 5 o'clock on the 3rd, 1,000 times 2.5!") == \
        "it's five o'clock on the third one thousand times two point five"
    assert finish_text("mp3 <noise> files, agent 007") == "mp3 files agent zero zero seven"
    # the words inflect (ESPnet's egs2/myst) writes, checked against it over 0..2100 and random 12-digit numbers
    assert cardinal(105) == "one hundred and five"
    assert cardinal(1005) == "one thousand and five"
    assert cardinal(1990) == "one thousand nine hundred and ninety"
    assert cardinal(2_000_021) == "two million and twenty-one"
    assert cardinal(40_100_000) == "forty million one hundred thousand"
    assert [spell_numbers(x).strip() for x in ("21st", "12th", "100th", "33rd")] == \
        ["twenty-first", "twelfth", "one hundredth", "thirty-third"]


# ---------------------------------------------------------------- MyST


@pytest.mark.parametrize("raw, expected", [(trn, exp) for _, _, _, trn, exp in fx.MYST_UTTS
                                           if trn is not None and "also in test" not in trn])
def test_myst_normalisation(raw: str, expected: str | None):
    got = myst.normalize_myst(raw)
    assert (got or None) == expected


def test_myst_prepare(trees, tmp_path):
    out = tmp_path / "data"
    summary = myst.prepare(trees["myst"], OutputOptions(out))
    assert set(summary) == {"child_train", "child_dev", "child_test"}
    data = speaker_disjoint_sets(out, "child")
    expected = {}
    for partition, student, turn, trn, text in fx.MYST_UTTS:
        if text is not None:
            expected[fx.myst_utt_id(student, turn)] = (myst.PARTITIONS[partition], text)
    got = {utt: (split, d.text[utt]) for split, d in data.items() for utt in d.text}
    assert got == expected
    assert data["train"].utt2spk[fx.myst_utt_id("002001", 1)] == "myst_002001"
    assert set(data["test"].utt2spk.values()) == {"myst_002004"}
    # FLAC at 16 kHz mono is listed as it is, by absolute path
    assert all(p.endswith(".flac") and Path(p).is_absolute() for d in data.values() for p in d.wav_scp.values())
    assert dropped(out, "myst") == {"noise_only": 2, "discard_tag": 1, "no_transcript": 1,
                                    "speaker_in_two_partitions": 1}
    assert_valid(out, [f"child_{s}" for s in SPLITS])


# ---------------------------------------------------------------- CSLU Kids


@pytest.mark.parametrize("speaker", sorted(fx.CSLU_SPONTANEOUS))
def test_cslu_spontaneous_normalisation(speaker: str):
    raw, expected = fx.CSLU_SPONTANEOUS[speaker]
    assert (cslu_kids.normalize_cslu_spontaneous(raw) or None) == expected


def test_cslu_kids_prepare(trees, tmp_path):
    out = tmp_path / "data"
    cslu_kids.prepare(trees["cslu_kids"], OutputOptions(out))
    data = speaker_disjoint_sets(out, "child")
    texts = all_texts(data)
    assert texts["ks0010a0"] == "hello how are you"
    assert texts["ks0011f0"] == "twenty five apples"
    assert texts["ks001xx0"] == "um my dog is wabbit nice"
    assert texts["ks201xx0"] == "i like school"
    assert "ks101xx0" not in texts and not any(u.startswith("ks0010b0") for u in texts)
    assert len(texts) == 6 * 3 + 2
    assert {utt: d.utt2spk[utt] for d in data.values() for utt in d.utt2spk}["ks0010a0"] == "ks001"
    categories = {utt: c for s in SPLITS for utt, c in read_table(out / f"child_{s}" / "utt2category").items()}
    assert categories["ks001xx0"] == "spontaneous" and categories["ks0010a0"] == "scripted"
    assert dropped(out, "cslu_kids") == {"verification_label_3": 6, "prompt_not_in_all_map": 6, "empty_text": 1}
    assert_valid(out, [f"child_{s}" for s in SPLITS])
    # the split depends on the speakers only: the same again, and scripted-only keeps the speakers where they were
    again = tmp_path / "again"
    cslu_kids.prepare(trees["cslu_kids"], OutputOptions(again), parts=("scripted",))
    for s in SPLITS:
        assert set(read_data_dir(again / f"child_{s}").utt2spk.values()) == set(data[s].utt2spk.values())


# ---------------------------------------------------------------- CMU Kids


def test_cmu_kids_prepare_decodes_sphere(trees, tmp_path):
    out = tmp_path / "data"
    cmu_kids.prepare(trees["cmu_kids"], OutputOptions(out))
    data = speaker_disjoint_sets(out, "child")
    texts = all_texts(data)
    assert len(texts) == len(fx.CMU_SPEAKERS) * len(fx.CMU_TRN)
    for spk in fx.CMU_SPEAKERS:
        for suffix, (_, expected) in fx.CMU_TRN.items():
            assert texts[f"{spk}{suffix}"] == expected
    for d in data.values():
        for utt, path in d.wav_scp.items():
            assert path == str(out / "local" / "cmu_kids" / "wav" / f"{utt}.wav")
            info = soundfile.info(path)
            assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
    assert_valid(out, [f"child_{s}" for s in SPLITS])
    prompts = tmp_path / "prompt"
    cmu_kids.prepare(trees["cmu_kids"], OutputOptions(prompts), text_source="prompt")
    texts = {utt: t for s in SPLITS for utt, t in read_data_dir(prompts / f"child_{s}").text.items()}
    assert texts["fabm2aa1"] == "the dog ran to the park" and texts["mfgh3ac1"] == "i see three birds"


def test_cmu_kids_shorten_sphere_fails_with_instructions(tmp_path, monkeypatch):
    root = fx.make_cmu_kids(tmp_path / "cmu", shorten=True)
    monkeypatch.setenv("PATH", "/usr/bin:/bin")  # no sph2pipe anywhere
    assert audio.sphere_is_shorten(root / "cmu_kids" / "kids" / "mfgh" / "signal" / "mfgh2aa2.sph")
    assert not audio.sphere_is_shorten(root / "cmu_kids" / "kids" / "mfgh" / "signal" / "mfgh2aa1.sph")
    with pytest.raises(CorpusError) as error:
        cmu_kids.prepare(root, OutputOptions(tmp_path / "data"))
    message = str(error.value)
    for needle in ("shorten-compressed", "pcm,embedded-shorten-v2.00", "mfgh2aa2.sph", "sph2pipe", "--sph2pipe"):
        assert needle in message, message
    assert not (tmp_path / "data" / "local" / "cmu_kids" / "wav").exists()  # checked before converting anything
    # the CLI says the same in one line and exits non-zero
    r = subprocess.run([sys.executable, "-m", "espnet_peft.recipe.corpora.cmu_kids", "--root", str(root), "--out",
                        str(tmp_path / "cli")], capture_output=True, text=True,
                       env={**os.environ, "PATH": "/usr/bin:/bin"})
    assert r.returncode == 1 and "shorten" in r.stderr and "Traceback" not in r.stderr


def test_cmu_kids_shorten_sphere_goes_through_sph2pipe(tmp_path):
    root = fx.make_cmu_kids(tmp_path / "cmu", shorten=True)
    fake = tmp_path / "bin" / "sph2pipe"  # stands in for LDC's decoder: same command line, writes a wav
    fx.write(fake, '#!/bin/sh\n[ "$1 $2 $3 $4 $5" = "-f wav -p -c 1" ] || exit 2\n'
                   'exec sox -n -r 16000 -c 1 -b 16 "$7" synth 0.4 sine 500\n')
    fake.chmod(0o755)
    cmu_kids.prepare(root, OutputOptions(tmp_path / "data"), sph2pipe=str(fake))
    texts = {u: t for s in SPLITS for u, t in read_data_dir(tmp_path / "data" / f"child_{s}").text.items()}
    assert texts["mfgh2aa2"] == "the dog"
    assert soundfile.info(tmp_path / "data" / "local" / "cmu_kids" / "wav" / "mfgh2aa2.wav").samplerate == 16000


# ---------------------------------------------------------------- L2-ARCTIC


def test_l2_arctic_speaker_table():
    assert len(l2_arctic.SPEAKERS) == 24
    assert Counter(l1 for l1, _ in l2_arctic.SPEAKERS.values()) == {l1: 4 for l1 in l2_arctic.L1S}
    assert sorted(s for spks in l2_arctic.SPLIT.values() for s in spks) == sorted(l2_arctic.SPEAKERS)
    for name, per_l1 in (("train", 2), ("dev", 1), ("test", 1)):
        assert Counter(l2_arctic.SPEAKERS[s][0] for s in l2_arctic.SPLIT[name]) == {l1: per_l1 for l1 in l2_arctic.L1S}
    for name in ("dev", "test"):
        assert Counter(l2_arctic.SPEAKERS[s][1] for s in l2_arctic.SPLIT[name]) == {"m": 3, "f": 3}
    assert all({l2_arctic.SPEAKERS[s][1] for s in l2_arctic.SPLIT["train"] if l2_arctic.SPEAKERS[s][0] == l1}
               == {"m", "f"} for l1 in l2_arctic.L1S)


def test_l2_arctic_prepare(trees, tmp_path):
    out = tmp_path / "data"
    l2_arctic.prepare(trees["l2_arctic"], OutputOptions(out), l1s=("arabic", "hindi"))
    data = speaker_disjoint_sets(out, "accent")
    for s in SPLITS:
        expected = {f"l2arctic_{spk}" for spk in l2_arctic.SPLIT[s] if spk in fx.L2_SPEAKERS}
        assert set(data[s].utt2spk.values()) == expected
        prompts = {utt.split("_", 2)[2] for utt in data[s].text}
        assert all(l2_arctic.prompt_split(p) == s for p in prompts)  # no sentence shared between sets
    texts = all_texts(data)
    assert texts["l2arctic_SKA_arctic_a0001"] == "author of the danger trail philip steels etc"  # SKA: train
    assert "l2arctic_ABA_arctic_a0001" not in texts  # no transcript
    assert "one thousand nine hundred and eight" in " ".join(texts.values())
    l1 = {u: v for s in SPLITS for u, v in read_table(out / f"accent_{s}" / "utt2l1").items()}
    assert set(l1.values()) == {"arabic", "hindi"}
    for d in data.values():
        for path in d.wav_scp.values():
            assert soundfile.info(path).samplerate == 16000  # 44.1 kHz converted
    assert_valid(out, [f"accent_{s}" for s in SPLITS])
    shared = tmp_path / "shared"
    l2_arctic.prepare(trees["l2_arctic"], OutputOptions(shared), l1s=("arabic", "hindi"), disjoint_prompts=False)
    n = sum(len(read_data_dir(shared / f"accent_{s}").text) for s in SPLITS)
    assert n == len(fx.L2_SPEAKERS) * len(L2_PROMPTS) - 1  # every reading but the one without a transcript
    assert dropped(shared, "l2_arctic") == {"no_transcript": 1}


# ---------------------------------------------------------------- EdAcc


def test_edacc_normalisation():
    assert edacc.normalize_edacc("<laugh> yeah (( )) I *went to Glas~ <breath> um the 2 shops") == \
        "yeah i went to glas um the two shops"


def test_edacc_prepare_builds_an_adaptation_split_from_dev(trees, tmp_path):
    out = tmp_path / "data"
    edacc.prepare(trees["edacc"], OutputOptions(out))
    data = speaker_disjoint_sets(out, "accent")
    conv = {s: {spk.rsplit("-", 1)[0] for spk in d.utt2spk.values()} for s, d in data.items()}
    assert conv["test"] == set(fx.EDACC_TEST)                          # the official test set, untouched
    assert conv["train"] | conv["dev"] == set(fx.EDACC_DEV)            # train + dev = the official dev set
    assert not conv["train"] & conv["dev"] and conv["train"] and conv["dev"]  # split by conversation
    report = json.loads((out / "local" / "edacc" / "prep_report.json").read_text())
    assert report["conversations"]["accent_test"] == sorted(fx.EDACC_TEST)
    texts = all_texts(data)
    assert texts["EDACC-C01-A-0000"] == "yeah i think so"
    assert texts["EDACC-C01-B-0001"] == "right okay"
    assert texts["EDACC-C02-A-0000"] == "we went to glasgow"
    assert texts["EDACC-C03-B-0001"] == "um the two shops"
    assert texts["EDACC-C06-A-0000"] == "c eleven dash p one"
    assert texts["EDACC-C06-B-0001"] == "that is fine"
    assert dropped(out, "edacc") == {"read_passage": 1, "overlap": 1, "no_speech": 1}
    accents = {u: a for s in SPLITS for u, a in read_table(out / f"accent_{s}" / "utt2accent").items()}
    assert accents["EDACC-C01-A-0000"] == "Scottish" and accents["EDACC-C01-B-0001"] == "Nigerian_English"
    for d in data.values():  # each segment cut from its 32 kHz conversation
        for utt, path in d.wav_scp.items():
            info = soundfile.info(path)
            assert info.samplerate == 16000 and abs(info.duration - 1.5) < 0.01, (utt, info.duration)
    assert_valid(out, [f"accent_{s}" for s in SPLITS])
    keep = tmp_path / "keep"
    edacc.prepare(trees["edacc"], OutputOptions(keep), keep_read=True, keep_overlap=True)
    assert dropped(keep, "edacc") == {"no_speech": 1}


# ---------------------------------------------------------------- Common Voice


def test_common_voice_accent_matching():
    m = common_voice.DEFAULT_ACCENT_MAP
    assert common_voice.accent_group(["indian"], m) == ("indian", False)
    assert common_voice.accent_group([fx.INDIA.lower()], m) == ("indian", False)
    assert common_voice.accent_group([fx.INDIA.lower(), "scottish english"], m) == (None, True)
    assert common_voice.accent_group(["indian english", fx.INDIA.lower()], m) == ("indian", False)
    assert common_voice.accent_group(["a lovely mix of everything"], m) == (None, False)
    row = {"accent": "", "accents": f" Scottish  English|{fx.INDIA}"}
    assert common_voice.accent_descriptions(row) == ["scottish english", fx.INDIA.lower()]


@pytest.mark.parametrize("release", ["cv_old", "cv_new"])
def test_common_voice_prepare_official_split(trees, tmp_path, release):
    out = tmp_path / "data"
    common_voice.prepare(trees[release], OutputOptions(out), accents=("indian", "scottish"))
    data = speaker_disjoint_sets(out, "accent")
    texts = all_texts(data)
    accents = {u: a for s in SPLITS for u, a in read_table(out / f"accent_{s}" / "utt2accent").items()}
    report = json.loads((out / "local" / "commonvoice" / "prep_report.json").read_text())
    if release == "cv_old":
        assert report["accent_columns"] == ["accent"]
        assert sorted(texts.values()) == sorted(["hello she said", "it's five o'clock", "aye it is", "good morning",
                                                 "see you soon"])
        assert dropped(out, "commonvoice") == {"accent_not_selected": 2}
    else:
        assert report["accent_columns"] == ["accents"]
        assert sorted(texts.values()) == sorted(["first clip here", "second clip too", "two descriptions one group",
                                                 "dev sentence", "lower case free text"])
        assert dropped(out, "commonvoice") == {"ambiguous_accent": 1, "accent_not_selected": 1}
    assert Counter(accents.values()) == {"indian": 3, "scottish": 2}
    speaker = "cv_" + "a1" * 6
    assert any(utt.startswith(f"{speaker}_common_voice_en_") for utt in data["train"].text)
    assert_valid(out, [f"accent_{s}" for s in SPLITS])


def test_common_voice_validated_split_and_mp3_without_sox_mp3(trees, tmp_path, monkeypatch):
    monkeypatch.setattr(audio, "sox_formats", lambda: frozenset({"wav", "flac"}))  # sox without libsox-fmt-mp3
    out = tmp_path / "data"
    common_voice.prepare(trees["cv_new"], OutputOptions(out), accents=("indian", "scottish"), split="validated")
    data = speaker_disjoint_sets(out, "accent")
    assert sum(len(d.text) for d in data.values()) == 5
    assert_valid(out, [f"accent_{s}" for s in SPLITS])  # decoded by libsndfile, resampled by sox


def test_common_voice_accent_map_file(trees, tmp_path):
    mapping = fx.write(tmp_path / "map.txt", "# group regex\nsouth_asian india and south asia .*\n"
                                             "south_asian indian( english)?\nscots scottish english\n")
    accent_map = common_voice.read_accent_map(mapping)
    assert accent_map == {"south_asian": ("india and south asia .*", "indian( english)?"),
                          "scots": ("scottish english",)}
    out = tmp_path / "data"
    common_voice.prepare(trees["cv_new"], OutputOptions(out), accents=("south_asian", "scots"), accent_map=accent_map)
    accents = {u: a for s in SPLITS for u, a in read_table(out / f"accent_{s}" / "utt2accent").items()}
    assert Counter(accents.values()) == {"south_asian": 3, "scots": 2}
    with pytest.raises(ValueError, match="not in the accent map"):
        common_voice.prepare(trees["cv_new"], OutputOptions(tmp_path / "x"), accents=("martian",),
                             accent_map=accent_map)


# ---------------------------------------------------------------- LibriSpeech


def test_librispeech_prepare(trees, tmp_path):
    out = tmp_path / "data"
    librispeech.prepare(trees["librispeech"], OutputOptions(out))
    clean = read_data_dir(out / "librispeech_test_clean")
    assert clean.text == {"1089-134686-0000": "he hoped there would be stew for dinner",
                          "1089-134686-0001": "stuff it into you his belly counselled him",
                          "121-121726-0000": "also a popular contrivance"}
    assert clean.utt2spk["121-121726-0000"] == "121"
    assert read_data_dir(out / "librispeech_test_other").text == {
        "1688-142285-0000": "there's iron they say in all our blood"}
    assert_valid(out, ["librispeech_test_clean", "librispeech_test_other"])
    with pytest.raises(CorpusError, match="no LibriSpeech parts"):
        librispeech.prepare(tmp_path / "nowhere", OutputOptions(out))


def test_undecodable_audio_is_dropped_and_convert_always_makes_wavs(tmp_path):
    root = fx.make_librispeech(tmp_path / "libri")
    broken = root / "LibriSpeech" / "test-clean" / "121" / "121726" / "121-121726-0000.flac"
    broken.write_bytes(b"fLaC" + b"\x00" * 50)  # a FLAC magic and nothing decodable
    out = tmp_path / "data"
    librispeech.prepare(root, OutputOptions(out, convert="always"), parts=("test-clean",))
    clean = read_data_dir(out / "librispeech_test_clean")
    assert set(clean.text) == {"1089-134686-0000", "1089-134686-0001"}
    assert all(p.startswith(str(out / "local" / "librispeech" / "wav")) for p in clean.wav_scp.values())
    assert dropped(out, "librispeech") == {"audio_conversion_failed": 1}
    broken.unlink()
    for flac in root.glob("LibriSpeech/test-clean/*/*/*.flac"):
        flac.write_bytes(b"not audio")
    with pytest.raises(CorpusError, match="every audio conversion"):
        librispeech.prepare(root, OutputOptions(tmp_path / "again"), parts=("test-clean",))


# ---------------------------------------------------------------- recipes: local/data.sh through bash

RECIPES = {  # recipe -> (db.sh variable, fixture tree, domain)
    "myst": ("MYST", "myst", "child"),
    "cslu_kids": ("CSLU_KIDS", "cslu_kids", "child"),
    "cmu_kids": ("CMU_KIDS", "cmu_kids", "child"),
    "l2_arctic": ("L2ARCTIC", "l2_arctic", "accent"),
    "edacc": ("EDACC", "edacc", "accent"),
    "commonvoice": ("COMMONVOICE", "cv_new", "accent"),
}


def recipe_sets(recipe: Path, tmp_path: Path) -> set[str]:
    """The data sets run.sh asks peft.sh for (source train/dev/test sets and DOMAIN_{train,dev,test}), through any
    wrapper (peft_librispeech_source.sh): run.sh runs in a copy of the recipe whose peft.sh prints its arguments."""
    work = tmp_path / "run_sh_args"
    work.mkdir()
    for entry in recipe.iterdir():
        if entry.name != "peft.sh":
            (work / entry.name).symlink_to(entry.resolve())
    (work / "peft.sh").write_text('#!/usr/bin/env bash\nprintf "%s\\n" "$@"\n')
    (work / "peft.sh").chmod(0o755)
    r = subprocess.run(["./run.sh"], cwd=work, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    args = r.stdout.splitlines()  # --name value pairs; the last value of an option wins, as in utils/parse_options.sh
    opts = dict(zip(args[::2], args[1::2]))
    return ({opts["--source_train_set"], opts["--source_dev_set"], *opts["--source_test_sets"].split()}
            | {f"{d}_{s}" for d in opts["--target_domains"].split() for s in SPLITS})


@pytest.mark.parametrize("recipe", list(RECIPES))
def test_recipe_local_data_sh(recipe, trees, tmp_path, monkeypatch):
    var, tree, domain = RECIPES[recipe]
    src = REPO / "egs2" / recipe / "peft1"
    for link in ("peft.sh", "peft_owsm.sh", "utils", "cmd.sh"):
        assert (src / link).is_symlink() and (src / link).exists(), link
    work = tmp_path / "peft1"  # the recipe's files, reached through symlinks, so data/ is written here
    work.mkdir()
    for entry in src.iterdir():
        (work / entry.name).symlink_to(entry.resolve())
    env = {**os.environ, var: str(trees[tree]), "LIBRISPEECH": str(trees["librispeech"]),
           "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    opts = ["--l1s", "arabic,hindi"] if recipe == "l2_arctic" else []
    if recipe == "commonvoice":
        opts = ["--accents", "indian,scottish"]
    r = subprocess.run(["bash", "local/data.sh", "--nj", "2", *opts], cwd=work, env=env, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    wanted = recipe_sets(src, tmp_path)
    assert wanted == {f"{domain}_{s}" for s in SPLITS} | {"librispeech_dev_clean", "librispeech_dev_other",
                                                          "librispeech_test_clean", "librispeech_test_other"}
    monkeypatch.chdir(work)  # converted audio is listed relative to the recipe directory, as Kaldi does
    for name in sorted(wanted):  # every set run.sh asks for is there and valid, audio included
        problems = check_data_dir(Path("data") / name, fs=16000, audio=True)
        assert not problems, (name, problems)


def test_recipe_local_data_sh_names_the_missing_corpus(tmp_path):
    work = tmp_path / "peft1"
    work.mkdir()
    for entry in (REPO / "egs2" / "edacc" / "peft1").iterdir():
        (work / entry.name).symlink_to(entry.resolve())
    env = {k: v for k, v in os.environ.items() if k not in ("EDACC", "LIBRISPEECH")}
    r = subprocess.run(["bash", "local/data.sh"], cwd=work, env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "set EDACC in db.sh" in r.stderr


def test_recipes_document_licence_and_source():
    for recipe in RECIPES:
        readme = (REPO / "egs2" / recipe / "peft1" / "README.md").read_text()
        assert "Licen" in readme and "http" in readme, recipe


def test_recipe_run_sh_stages_1_to_3_on_edacc(trees, tmp_path):
    """The real driver (peft.sh through run.sh) takes the prepared dirs through validation and S2T text files."""
    if not (shutil.which("sclite") or Path("/usr/lib/sctk/bin/sclite").exists()):
        pytest.skip("peft.sh needs sclite: apt-get install sctk")
    work = tmp_path / "peft1"
    work.mkdir()
    for entry in (REPO / "egs2" / "edacc" / "peft1").iterdir():
        (work / entry.name).symlink_to(entry.resolve())
    env = {**os.environ, "EDACC": str(trees["edacc"]), "LIBRISPEECH": str(trees["librispeech"]),
           "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    r = subprocess.run(["./run.sh", "--stage", "1", "--stop_stage", "3"], cwd=work, env=env, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    for name in ("accent_train", "accent_dev", "accent_test", "librispeech_test_clean", "librispeech_dev_clean"):
        dump = work / "dump" / "raw" / name
        assert (dump / "text.ctc").is_file() and (dump / "speech_shape").is_file(), name
        assert read_table(dump / "text.ctc") == read_table(work / "data" / name / "text")  # nothing dropped

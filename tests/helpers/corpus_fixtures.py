"""Tiny fixture trees that mirror the real corpus releases, for tests/test_corpora.py.

Each ``make_<corpus>(root)`` writes a few utterances in the corpus' own directory layout, file type (FLAC, WAV at
the corpus' sample rate, NIST SPHERE, MP3) and transcript format, including the quirks the preparers must handle,
and returns the directory to pass as ``--root``. Audio is a short tone (a different pitch per file), written with
libsndfile, or with sox for SPHERE (the header layout of real NIST files).
"""

from __future__ import annotations

import csv
import hashlib
import subprocess
from pathlib import Path

import numpy as np
import soundfile

# ---------------------------------------------------------------- audio


def tone(path: Path, fs: int = 16000, seconds: float = 0.6, channels: int = 1) -> Path:
    """A sine tone whose pitch depends on the file name; the format follows the suffix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    freq = 200 + int(hashlib.md5(path.name.encode()).hexdigest()[:4], 16) % 600
    t = np.arange(int(fs * seconds)) / fs
    x = 0.3 * np.sin(2 * np.pi * freq * t) * np.minimum(1, np.minimum(t, seconds - t) * 20)
    x = np.repeat(x[:, None], channels, axis=1).astype("float32")
    suffix = path.suffix.lower()
    if suffix == ".sph":
        tmp = path.with_suffix(".tmp.wav")
        soundfile.write(tmp, x, fs, subtype="PCM_16")
        subprocess.run(["sox", str(tmp), "-t", "sph", str(path)], check=True)
        tmp.unlink()
    elif suffix == ".mp3":
        soundfile.write(path, x, fs, format="MP3")
    else:
        soundfile.write(path, x, fs, subtype="PCM_16")
    return path


def shorten_sphere(path: Path) -> Path:
    """A SPHERE file whose header says shorten compression (the payload is not a real shorten stream)."""
    fields = [
        "sample_count -i 8000", "sample_n_bytes -i 2", "channel_count -i 1", "sample_byte_format -s2 01",
        "sample_rate -i 16000", "sample_coding -s26 pcm,embedded-shorten-v2.00", "sample_checksum -i 12345",
    ]
    head = ("NIST_1A\n   1024\n" + "\n".join(fields) + "\nend_head\n").encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(head + b" " * (1024 - len(head)) + b"ajkg\x02" + bytes(range(256)) * 8)
    return path


def write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding=encoding)
    return path


# ---------------------------------------------------------------- MyST

# (partition, student, turn, .trn content or None for an untranscribed file) -> what the normaliser must give
MYST_UTTS = [
    ("train", "002001", 1, "um so the magnets <side_speech> attract (( )) each other",
     "um so the magnets attract each other"),
    ("train", "002001", 2, "<no_signal>", None),                                   # noise only: dropped
    ("train", "002001", 3, "(()) <breath> (*)", None),                               # unintelligible only: dropped
    ("train", "002001", 4, "+um I 'M not sure [laughs] it's 2 volts", "i'm not sure it's two volts"),
    ("train", "002002", 1, "THE ((BATTERY)) IS WH- IT IS <NOISE> ON", "the is wh it is on"),
    ("train", "002002", 2, "<DISCARD> whatever", None),                              # discard tag: dropped
    ("train", "002002", 3, None, None),                                              # no .trn: skipped
    ("train", "002004", 9, "this student is also in test", None),                    # in two partitions
    ("development", "002003", 1, "it goes\nround and round", "it goes round and round"),
    ("development", "002003", 2, "{unclear} the bulb & the wire/switch", "the bulb and the wire slash switch"),
    ("test", "002004", 1, "\ufeffthe circuit is closed.", "the circuit is closed"),
    ("test", "002004", 2, "+uh+ because electricity flows", "because electricity flows"),
]  # fmt: skip


def myst_utt_id(student: str, turn: int) -> str:
    return f"myst_{student}_2014-03-1{student[-1]}_09-00-00_EE_2.1_{turn:03d}"


def make_myst(root: Path) -> Path:
    data = root / "myst_child_conv_speech" / "data"
    write(root / "myst_child_conv_speech" / "index.html", "<html></html>")
    for partition, student, turn, trn, _ in MYST_UTTS:
        utt = myst_utt_id(student, turn)
        session = data / partition / student / utt.rsplit("_", 1)[0]
        tone(session / f"{utt}.flac", 16000)
        if trn is not None:
            write(session / f"{utt}.trn", trn + "\n")
    return root


# ---------------------------------------------------------------- CSLU Kids

CSLU_PROMPTS = {"01": "one", "0A": "Hello, how are you?", "0B": "the cat sat", "1F": "twenty 5 apples"}
CSLU_SPEAKERS = [("00", "ks001"), ("00", "ks002"), ("01", "ks101"), ("02", "ks201"), ("03", "ks301"),
                 ("04", "ks401")]
CSLU_SPONTANEOUS = {  # speaker -> transcript file content, expected normalisation
    "ks001": ("\ufeff<bn> um my [dog] is (ah) *wabbit <bs>\n<sil> nice.", "um my dog is wabbit nice"),
    "ks101": ("<bn> <bs>", None),  # noise only: dropped
    "ks201": ("I like <ln> school", "i like school"),
}


def make_cslu_kids(root: Path) -> Path:
    base = root / "cslu_kids"
    write(base / "docs" / "all.map", "".join(f'{k} "{v}"\n' for k, v in CSLU_PROMPTS.items()))
    verified = []
    for grade, spk in CSLU_SPEAKERS:
        for prompt in ("01", "0a", "0b", "1f"):
            wav = tone(base / "speech" / "scripted" / grade / "0" / spk / f"{spk}{prompt}0.wav", 16000, 0.4)
            verified.append(f"speech/scripted/{grade}/0/{spk}/{wav.name} {3 if prompt == '0b' else 1}\n")
        tone(base / "speech" / "scripted" / grade / "0" / spk / f"{spk}zz0.wav", 16000, 0.4)  # prompt not in all.map
        if spk in CSLU_SPONTANEOUS:
            stem = f"{spk}xx0"
            tone(base / "speech" / "spontaneous" / grade / "0" / spk / f"{stem}.wav", 16000, 0.8)
            write(base / "trans" / "spontaneous" / grade / "0" / spk / f"{stem}.txt", CSLU_SPONTANEOUS[spk][0])
    write(base / "verify" / "scripted-verified.txt", "".join(verified))
    for name in ("labels", "misc"):
        (base / name).mkdir(parents=True, exist_ok=True)
    return root


# ---------------------------------------------------------------- CMU Kids

CMU_SENTENCES = {"2aa": "The dog ran to the park.", "2ab": "A big red ball.", "3ac": "I see 3 birds."}
CMU_SPEAKERS = ("fabm", "fbcd", "mcde", "mdef", "fefg", "mfgh")
CMU_TRN = {  # stem suffix -> (.trn content, expected)
    "2aa1": ("[noise] THE DOG RAN TO THE PARK", "the dog ran to the park"),
    "2ab2": ("A BIG /r eh d/ RED [breath] BALL", "a big red ball"),
    "3ac1": ("I SEE THREE *BIRDS <sil>", "i see three birds"),
}


def make_cmu_kids(root: Path, shorten: bool = False) -> Path:
    base = root / "cmu_kids"
    write(base / "0readme.1st", "CMU Kids\n")
    (base / "doc").mkdir(parents=True, exist_ok=True)
    write(base / "tables" / "sentence.tbl", "".join(f"{k}\t1\t{v}\n" for k, v in CMU_SENTENCES.items()))
    table = []
    for spk in CMU_SPEAKERS:
        for suffix, (trn, _) in CMU_TRN.items():
            utt = f"{spk}{suffix}"
            tone(base / "kids" / spk / "signal" / f"{utt}.sph", 16000, 0.5)
            table.append(f"{utt} {trn}\n")
            if not (spk == "fabm" and suffix == "3ac1"):  # one .trn missing: transcrp.tbl has it
                write(base / "kids" / spk / "trans" / f"{utt}.trn", trn + "\n")
    write(base / "tables" / "transcrp.tbl", "".join(table))
    if shorten:
        shorten_sphere(base / "kids" / "mfgh" / "signal" / "mfgh2aa2.sph")
        write(base / "kids" / "mfgh" / "trans" / "mfgh2aa2.trn", "THE DOG\n")
    return root


# ---------------------------------------------------------------- L2-ARCTIC

L2_SPEAKERS = ("ABA", "SKA", "YBAA", "ZHAA", "ASI", "RRBI", "SVBI", "TNI")  # Arabic and Hindi
L2_SENTENCES = (
    "Author of the danger trail, Philip Steels, etc.",
    "Not at this particular case, Tom, apologized Whittemore.",
    "For the twentieth time that evening the two men shook hands.",
    "Lord, but I'm glad to see you again, Phil.",
    "God bless 'em, I hope I'll go on seeing them forever.",
    "Gregson shoved back his chair and rose to his feet in 1908.",
)


def l2_prompts(split_of, per_split: int = 2) -> dict[str, str]:
    """prompt id -> text: the first ``per_split`` ARCTIC ids of each prompt split (``split_of(id)``), so that every
    speaker-disjoint set keeps some readings; texts cycle through L2_SENTENCES (a0001 gets the first)."""
    chosen: dict[str, list[str]] = {}
    for n in range(1, 594):
        prompt = f"arctic_a{n:04d}"
        bucket = chosen.setdefault(split_of(prompt), [])
        if len(bucket) < per_split:
            bucket.append(prompt)
        if len(chosen) == 3 and all(len(b) == per_split for b in chosen.values()):
            break
    ids = sorted(p for b in chosen.values() for p in b)
    return {p: L2_SENTENCES[i % len(L2_SENTENCES)] for i, p in enumerate(ids)}


def make_l2_arctic(root: Path, prompts: dict[str, str]) -> Path:
    base = root / "l2arctic_release_v5.0"
    write(base / "README.md", "L2-ARCTIC\n")
    for spk in L2_SPEAKERS:
        for prompt in prompts:
            tone(base / spk / "wav" / f"{prompt}.wav", 44100, 0.4)
            if not (spk == "ABA" and prompt == "arctic_a0001"):  # one wav without transcript
                write(base / spk / "transcript" / f"{prompt}.txt", prompts[prompt])  # no newline, as released
        (base / spk / "annotation").mkdir(parents=True, exist_ok=True)
    return root


# ---------------------------------------------------------------- EdAcc

# conversation -> [(speaker suffix, start, end, text, kind)]; kind: "ok", "read" (IGNORE in stm), "overlap", "noise"
EDACC_DEV = {
    "EDACC-C01": [("A", 0.5, 2.0, "<laugh> yeah I think so", "ok"), ("B", 2.5, 4.0, "Right (( )) <breath> okay", "ok"),
                  ("A", 4.5, 6.5, "The north wind and the sun were disputing", "read")],
    "EDACC-C02": [("A", 0.5, 2.0, "we went to Glasgow~", "ok"), ("B", 2.5, 4.0, "<no-speech>", "noise")],
    "EDACC-C03": [("A", 0.5, 2.0, "I was <overlap> saying that", "overlap"), ("B", 2.5, 4.0, "um the 2 shops", "ok")],
    "EDACC-C04": [("A", 0.5, 2.0, "hello there", "ok"), ("B", 2.5, 4.0, "hi how are you", "ok")],
    "EDACC-C05": [("A", 0.5, 2.0, "nice to meet you", "ok"), ("B", 2.5, 4.0, "likewise", "ok")],
}
EDACC_TEST = {
    "EDACC-C06": [("A", 0.5, 2.0, "C ELEVEN DASH P ONE", "ok"), ("B", 2.5, 4.0, "that is *fine", "ok")],
}
EDACC_ACCENTS = {"A": "Scottish", "B": "Nigerian English"}


def _edacc_split(base: Path, split: str, conversations: dict) -> None:
    segments, text, utt2spk, stm = [], [], [], [";; synthetic stm\n"]
    for conv, segs in conversations.items():
        tone(base / "data" / f"{conv}.wav", 32000, 7.0)
        for n, (side, start, end, words, kind) in enumerate(segs):
            spk = f"{conv}-{side}"
            utt = f"{spk}-{n:04d}"
            segments.append(f"{utt} {conv} {start:.2f} {end:.2f}\n")
            text.append(f"{utt} {words}\n")
            utt2spk.append(f"{utt} {spk}\n")
            ref = "IGNORE_TIME_SEGMENT_IN_SCORING" if kind == "read" else words
            stm.append(f"{conv} 1 {spk} {start:.2f} {end:.2f} <male,l2> {ref}\n")
    folder = base / split
    write(folder / "conv.list", "".join(f"{c}\n" for c in conversations))
    write(folder / "segments", "".join(segments))
    write(folder / "text", "".join(text))
    write(folder / "utt2spk", "".join(utt2spk))
    write(folder / "stm", "".join(stm))
    write(folder / "company.ctm", "")


def make_edacc(root: Path) -> Path:
    base = root / "edacc_v1.0"
    _edacc_split(base, "dev", EDACC_DEV)
    _edacc_split(base, "test", EDACC_TEST)
    write(base / "README.txt", "EdAcc v1.0\n")
    accent_column = "How would you describe your accent in English? (e.g. Italian, Glaswegian)"
    with open(base / "linguistic_background.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["Timestamp", "PARTICIPANT_ID", "What is your first language?", accent_column])
        for conv in [*EDACC_DEV, *EDACC_TEST]:
            for side, accent in EDACC_ACCENTS.items():
                writer.writerow(["2022", f"{conv}-{side}", "English" if side == "A" else "Yoruba", accent])
    return root


# ---------------------------------------------------------------- Common Voice

OLD_COLUMNS = ["client_id", "path", "sentence", "up_votes", "down_votes", "age", "gender", "accent", "locale",
               "segment"]
NEW_COLUMNS = ["client_id", "path", "sentence_id", "sentence", "sentence_domain", "up_votes", "down_votes", "age",
               "gender", "accents", "variant", "locale", "segment"]
INDIA = "India and South Asia (India, Pakistan, Sri Lanka)"
# split -> [(client, accent value, sentence)]; the old release uses CV's fixed labels, the new free text
CV_OLD = {
    "train": [("a1" * 32, "indian", '"Hello," she said.'), ("a1" * 32, "indian", "It's 5 o'clock."),
              ("b2" * 32, "scotland", "Aye, it is."), ("c3" * 32, "us", "Howdy partner."),
              ("d4" * 32, "", "No accent.")],
    "dev": [("e5" * 32, "scotland", "Good morning.")],
    "test": [("f6" * 32, "indian", "See you soon!")],
}
CV_NEW = {
    "train": [("a1" * 32, INDIA, "First clip here."), ("b2" * 32, "Scottish English", "Second clip, too."),
              ("c3" * 32, f"{INDIA}|Scottish English", "An ambiguous speaker."),
              ("d4" * 32, f"Indian English|{INDIA}", "Two descriptions, one group."),
              ("e5" * 32, "United States English", "Not selected.")],
    "dev": [("f6" * 32, "Scottish English", "Dev sentence.")],
    "test": [("a7" * 32, "indian english", "Lower-case free text.")],
}


def make_common_voice(root: Path, new_release: bool) -> Path:
    version = "cv-corpus-17.0-2024-03-15" if new_release else "cv-corpus-5.1-2020-06-22"
    base = root / version / "en"
    columns = NEW_COLUMNS if new_release else OLD_COLUMNS
    table = CV_NEW if new_release else CV_OLD
    counter = 0
    validated = []
    for split, rows in table.items():
        lines = []
        for client, accent, sentence in rows:
            counter += 1
            clip = f"common_voice_en_{1000 + counter}.mp3"
            tone(base / "clips" / clip, 48000, 0.5)
            values = {"client_id": client, "path": clip, "sentence": sentence, "up_votes": "2", "down_votes": "0",
                      "locale": "en", "accent": accent, "accents": accent, "sentence_id": f"s{counter}"}
            lines.append("\t".join(values.get(c, "") for c in columns) + "\n")
        validated += lines
        write(base / f"{split}.tsv", "\t".join(columns) + "\n" + "".join(lines))
    write(base / "validated.tsv", "\t".join(columns) + "\n" + "".join(validated))
    write(base / "invalidated.tsv", "\t".join(columns) + "\n")
    return root / version


# ---------------------------------------------------------------- LibriSpeech

LIBRI = {  # part -> speaker -> chapter -> [(utt, transcript)]
    "test-clean": {"1089": {"134686": [("0000", "HE HOPED THERE WOULD BE STEW FOR DINNER"),
                                       ("0001", "STUFF IT INTO YOU HIS BELLY COUNSELLED HIM")]},
                   "121": {"121726": [("0000", "ALSO A POPULAR CONTRIVANCE")]}},
    "test-other": {"1688": {"142285": [("0000", "THERE'S IRON THEY SAY IN ALL OUR BLOOD")]}},
    "dev-clean": {"84": {"121123": [("0000", "GO DO YOU HEAR")]}},
    "dev-other": {"116": {"288045": [("0000", "AS I APPROACHED THE CITY I HEARD BELLS RINGING")]}},
}


def make_librispeech(root: Path) -> Path:
    base = root / "LibriSpeech"
    write(base / "LICENSE.TXT", "CC BY 4.0\n")
    for part, speakers in LIBRI.items():
        for spk, chapters in speakers.items():
            for chapter, utts in chapters.items():
                folder = base / part / spk / chapter
                for utt, _ in utts:
                    tone(folder / f"{spk}-{chapter}-{utt}.flac", 16000, 0.5)
                write(folder / f"{spk}-{chapter}.trans.txt",
                      "".join(f"{spk}-{chapter}-{utt} {words}\n" for utt, words in utts))
    return root

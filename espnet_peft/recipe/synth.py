"""A three-domain synthetic speech corpus (source / child / accent) made offline with espeak-ng + sox.

Layout under ``out``::

    <domain>_<split>/{wav.scp,text,utt2spk,spk2utt}   Kaldi dirs, sorted; utterance ids start with the speaker id
    <domain>_<split>/wav/<utt>.wav                    16 kHz mono 16-bit
    corpus.json                                       every speaker's voice and the size of every dir
    synth_config.json                                 a fingerprint per domain, so a re-run cannot mix corpora

A speaker is a fixed espeak-ng voice + variant + speed + pitch (+ sox transform); speakers are disjoint across
train/dev/test. Everything (sentences, speakers, audio bytes) is a function of the seed and the sizes only, not of
``nj`` or of what already exists, so an interrupted run can simply be started again: valid wavs are kept.

    synthesize_corpus(Path("data/local/synth"), seed=0, nj=2,
                      utts=parse_sizes("train=200,dev=40,test=40"), speakers=parse_sizes("train=12,dev=6,test=6"))
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import random
import re
import shutil
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import soundfile
from tqdm import tqdm

from espnet_peft.atomic import atomic_write_text
from espnet_peft.utils.kaldi_data import DataDir, wav_truncation, write_data_dir
from espnet_peft.recipe.sentences import MAX_WORDS, unique_sentences

FS = 16000
DOMAINS = ("source", "child", "accent")
SPLITS = ("train", "dev", "test")
#: optional test split: new sentences read by the *training* speakers (in-domain generalisation to new text alone);
#: its speakers are the train split's, so it takes no speaker count and defaults to 0 utterances
NEWTEXT = "newtext"
DEFAULT_UTTS = "train=200,dev=40,test=40"
DEFAULT_SPEAKERS = "train=12,dev=6,test=6"  # 6 = one test speaker per accent
INSTALL_HINT = "apt-get install espeak-ng sox"

Sizes = dict[str, dict[str, int]]  # domain -> split -> count


# ---------------------------------------------------------------- voices

# Every espeak-ng 1.51 variant that voice_rules calls an ordinary adult voice (formants, pitch, echo, flutter and
# voicing within adult ranges), decided from the variant files alone; tests/test_recipe_data.py re-checks the list
# against the installed files. Train, dev and test speakers are all drawn from it, so the source test set holds new
# voices of the same population, not a second domain shift.
ADULT_VARIANTS = (
    "adam", "Alex", "Andrea", "anika", "Annie", "antonio", "aunty", "belinda", "benjamin", "Denis", "Diogo", "ed",
    "edward", "edward2", "f1", "f2", "f3", "f4", "f5", "fast", "Gene", "Gene2", "Henrique", "Hugo", "iven", "iven2",
    "iven3", "iven4", "john", "klatt", "klatt2", "klatt3", "klatt4", "klatt5", "klatt6", "linda", "m1", "m2", "m3",
    "m4", "m5", "m6", "m7", "m8", "Mario", "max", "michel", "miguel", "Mike", "Mr serious", "Nguyen", "pablo", "paul",
    "pedro", "quincy", "robert", "sandro", "steph", "steph2", "steph3", "Storm", "victor",
)  # fmt: skip
# Child speech: mostly female variants (closest in F0), a few male ones for boys; all get pitched up by sox.
CHILD_VARIANTS = (
    "f1", "f2", "f3", "f4", "f5", "Alicia", "Andrea", "Annie", "anika", "belinda", "linda", "shelby", "steph",
    "steph2", "steph3", "aunty", "m3", "m5", "Andy", "Jacky",
)  # fmt: skip
# Three regional native accents and three non-native ones: English text read with German, Spanish and French
# letter-to-sound rules and phonemes (as in L2-ARCTIC / EdACC). The regional voices alone were too close to the
# source domain for the default's small model to show a shift.
ACCENTS = ("en-gb-scotland", "en-029", "en-gb-x-gbcwmd", "de", "es", "fr-fr")
ACCENT_VARIANTS = (
    "m1", "m2", "m3", "m4", "m5", "m6", "m7", "f2", "f3", "f4", "f5", "Andy", "Annie", "adam", "linda", "robert",
    "steph", "paul", "Michael", "belinda",
)  # fmt: skip


@dataclass(frozen=True)
class VoiceStyle:
    """How one domain's speakers are drawn; each range is inclusive."""

    languages: tuple[str, ...]  # espeak-ng voices, rotated over speakers so every split mixes them
    variants: tuple[str, ...]  # espeak-ng variants, drawn without replacement (per language) before any repeats
    speed: tuple[int, int]  # espeak-ng -s, words per minute (espeak's default is 175)
    pitch: tuple[int, int]  # espeak-ng -p, 0-99 (default 50)
    # sox `pitch` resamples, so it raises F0 and formants together: the two cues of a shorter vocal tract.
    sox_pitch_cents: tuple[int, int] | None = None
    sox_tempo: tuple[float, float] | None = None  # < 1: slower, as children speak


STYLES: dict[str, VoiceStyle] = {
    "source": VoiceStyle(("en-us",), ADULT_VARIANTS, speed=(145, 190), pitch=(25, 75)),
    "child": VoiceStyle(("en-us",), CHILD_VARIANTS, speed=(125, 160), pitch=(55, 85),
                        sox_pitch_cents=(400, 600), sox_tempo=(0.85, 1.0)),
    "accent": VoiceStyle(ACCENTS, ACCENT_VARIANTS, speed=(140, 185), pitch=(25, 75)),
}


@dataclass(frozen=True)
class Speaker:
    id: str
    domain: str
    split: str
    voice: str  # espeak-ng -v argument, language+variant ("en-gb-scotland+m3")
    speed: int
    pitch: int
    sox_effects: tuple[str, ...] = ()

    def espeak_command(self, text: str) -> list[str]:
        return ["espeak-ng", "-v", self.voice, "-s", str(self.speed), "-p", str(self.pitch), "--stdout", text]

    def sox_command(self, output: Path) -> list[str]:
        # -R -D: repeatable bytes (fixed seeds, no dither); -G: scale down instead of clipping; -V1: errors only.
        return ["sox", "-R", "-D", "-G", "-V1", "-t", "wav", "-", "-r", str(FS), "-c", "1", "-b", "16", "-t", "wav",
                str(output), *self.sox_effects]

    def describe(self) -> dict:
        pipe = " ".join(self.espeak_command("TEXT")) + " | " + " ".join(self.sox_command(Path("OUT.wav")))
        return {**asdict(self), "sox_effects": list(self.sox_effects), "command": pipe}


@dataclass(frozen=True)
class Utterance:
    id: str
    speaker: Speaker
    text: str
    wav: Path
    split: str  # the speaker's split, or NEWTEXT for new sentences read by a training speaker

    @property
    def dir_name(self) -> str:
        return f"{self.speaker.domain}_{self.split}"


# ---------------------------------------------------------------- planning (pure, deterministic)


def parse_sizes(spec: str, base: Sizes | None = None) -> Sizes:
    """``"train=200,dev=40,test=40"``; a ``domain.split=N`` entry overrides one domain ("source.train=1000")."""
    sizes: Sizes = {d: dict(base[d]) if base else {} for d in DOMAINS}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        key, sep, value = item.partition("=")
        domain, _, split = key.rpartition(".")
        if not sep or split not in (*SPLITS, NEWTEXT) or (domain and domain not in DOMAINS) \
                or not value.strip().isdigit():
            raise ValueError(f"bad size {item!r}: expected SPLIT=N or DOMAIN.SPLIT=N with SPLIT in "
                             f"{(*SPLITS, NEWTEXT)}, "
                             f"DOMAIN in {DOMAINS}, e.g. 'train=200,dev=40,test=40,source.train=1000'")
        for d in [domain] if domain else DOMAINS:
            sizes[d][split] = int(value)
    for d in DOMAINS:
        sizes[d].setdefault(NEWTEXT, 0)
    missing = [f"{d}.{s}" for d in DOMAINS for s in SPLITS if s not in sizes[d]]
    if missing:
        raise ValueError(f"sizes {spec!r} leave {', '.join(missing)} unset; give every split (train, dev, test)")
    return sizes


def draw_speakers(domain: str, counts: Mapping[str, int], seed: int) -> dict[str, list[Speaker]]:
    """``counts[split]`` distinct speakers per split, numbered across splits so ids never repeat."""
    style = STYLES[domain]
    rng = random.Random(f"{seed}/speakers/{domain}")
    languages = list(style.languages)
    rng.shuffle(languages)
    pools: dict[str, list[str]] = {lang: [] for lang in languages}
    total = sum(counts[s] for s in SPLITS)
    width = max(3, len(str(total - 1)))
    seen: set[tuple] = set()
    out: dict[str, list[Speaker]] = {s: [] for s in SPLITS}
    k = 0
    for split in SPLITS:
        for _ in range(counts[split]):
            language = languages[k % len(languages)]
            if not pools[language]:  # every variant used once for this language: start another shuffled round
                pools[language] = list(style.variants)
                rng.shuffle(pools[language])
            voice = f"{language}+{pools[language].pop()}"
            while True:  # speed/pitch/effects make a re-used variant a different speaker
                effects: tuple[str, ...] = ()
                speed, pitch = rng.randint(*style.speed), rng.randint(*style.pitch)
                if style.sox_pitch_cents:
                    effects += ("pitch", str(rng.randint(*style.sox_pitch_cents)))
                if style.sox_tempo:
                    effects += ("tempo", f"{rng.uniform(*style.sox_tempo):.3f}")
                if (voice, speed, pitch, effects) not in seen:
                    seen.add((voice, speed, pitch, effects))
                    break
            out[split].append(Speaker(f"{domain}-{k:0{width}d}", domain, split, voice, speed, pitch, effects))
            k += 1
    return out


def draw_texts(seed: int, utts: Sizes, max_words: int = MAX_WORDS) -> dict[tuple[str, str], list[str]]:
    """Distinct sentences across the whole corpus, so no test sentence was seen in training. Tests are drawn first
    and every (domain, split) has its own stream, so enlarging train or dropping a domain keeps the test texts."""
    seen: set[str] = set()
    texts: dict[tuple[str, str], list[str]] = {}
    for split in ("test", "dev", "train", NEWTEXT):  # newtext last: adding it changes no other text
        for domain in DOMAINS:
            texts[domain, split] = unique_sentences(utts[domain].get(split, 0), seed=f"{seed}/{domain}/{split}",
                                                    exclude=seen, max_words=max_words)
            seen.update(texts[domain, split])
    return texts


def plan_corpus(out: Path, seed: int, utts: Sizes, speakers: Sizes,
                domains: Sequence[str] = DOMAINS, max_words: int = MAX_WORDS) -> list[Utterance]:
    """Every utterance to synthesise, in a fixed order; speakers take turns within a split."""
    for domain in domains:
        if domain not in DOMAINS:
            raise ValueError(f"unknown domain {domain!r}; choose from {DOMAINS}")
        for split in SPLITS:
            n, s = utts[domain][split], speakers[domain][split]
            if s < 1 or n < s:
                raise ValueError(f"{domain}_{split}: {n} utterances for {s} speakers; need 1 <= speakers <= "
                                 "utterances so every speaker says something")
    texts = draw_texts(seed, utts, max_words)
    plan: list[Utterance] = []
    for domain in domains:
        by_split = draw_speakers(domain, speakers[domain], seed)
        for split in (*SPLITS, NEWTEXT):
            group = by_split["train" if split == NEWTEXT else split]
            width = max(4, len(str(utts[domain][split])))
            tag = "nt" if split == NEWTEXT else ""  # a training speaker's new sentences get ids of their own
            for i, text in enumerate(texts[domain, split]):
                speaker = group[i % len(group)]
                utt_id = f"{speaker.id}-{tag}{i // len(group):0{width}d}"
                plan.append(Utterance(utt_id, speaker, text, out / f"{domain}_{split}" / "wav" / f"{utt_id}.wav",
                                      split))
    return plan


def fingerprint(plan: Iterable[Utterance]) -> str:
    """Changes with any text, voice or file name (including changes to the grammar or the voice tables)."""
    digest = hashlib.sha1()
    for utt in plan:
        digest.update(json.dumps([utt.id, utt.text, utt.speaker.describe(), utt.wav.name]).encode())
    return digest.hexdigest()


# ---------------------------------------------------------------- synthesis


def require_tools() -> None:
    missing = [tool for tool in ("espeak-ng", "sox") if shutil.which(tool) is None]
    if missing:
        raise RuntimeError(f"{' and '.join(missing)} not found on PATH; install with: {INSTALL_HINT}")


def installed_voices() -> tuple[set[str], set[str]]:
    """(languages, variants) that this espeak-ng knows; variants by file name, as ``-v lang+NAME`` takes them."""
    def listing(kind: str) -> list[str]:
        return subprocess.run(["espeak-ng", f"--voices{kind}"], capture_output=True, text=True,
                              check=True).stdout.splitlines()[1:]

    languages = {line.split()[1] for line in listing("") if len(line.split()) > 1}
    variants = {m.group(1) for line in listing("=variant") if (m := re.search(r"!v/(.+?)(?:\s{2,}|\s*$)", line))}
    return languages, variants


def require_voices(plan: Iterable[Utterance]) -> None:
    """espeak-ng silently falls back to its default voice for an unknown language or variant (exit code 0), which
    would turn distinct speakers into one: check the voice tables against the installed espeak-ng first."""
    languages, variants = installed_voices()
    unknown = sorted({u.speaker.voice for u in plan
                      if u.speaker.voice.partition("+")[0] not in languages
                      or u.speaker.voice.partition("+")[2] not in variants})
    if unknown:
        raise RuntimeError(f"espeak-ng lacks the voices {unknown}; see espeak-ng --voices and --voices=variant "
                           f"(Debian's espeak-ng 1.51 has them all: {INSTALL_HINT})")


def is_valid_wav(path: Path) -> bool:
    """A finished earlier output: 16 kHz mono 16-bit, non-empty, not truncated."""
    try:
        info = soundfile.info(str(path))
    except (OSError, RuntimeError):  # missing or not audio
        return False
    return (info.samplerate == FS and info.channels == 1 and info.frames > 0 and info.subtype == "PCM_16"
            and wav_truncation(path) is None)


def synthesize_utterance(utt: Utterance) -> tuple[str, float, bool]:
    """(utterance id, seconds, skipped). Writes a temporary file and renames it, so a wav that exists is whole."""
    if is_valid_wav(utt.wav):
        return utt.id, soundfile.info(str(utt.wav)).frames / FS, True
    utt.wav.parent.mkdir(parents=True, exist_ok=True)
    tmp = utt.wav.with_name(f".{utt.wav.stem}.tmp{os.getpid()}.wav")
    espeak = subprocess.run(utt.speaker.espeak_command(utt.text), capture_output=True)
    if espeak.returncode != 0 or len(espeak.stdout) <= 44:  # 44 = a bare wav header
        raise RuntimeError(f"{utt.id}: {' '.join(utt.speaker.espeak_command(utt.text))} produced no audio "
                           f"(rc {espeak.returncode}: {espeak.stderr.decode(errors='replace').strip()})")
    sox = subprocess.run(utt.speaker.sox_command(tmp), input=espeak.stdout, capture_output=True)
    if sox.returncode != 0:
        tmp.unlink(missing_ok=True)
        raise RuntimeError(f"{utt.id}: {' '.join(utt.speaker.sox_command(tmp))} failed: "
                           f"{sox.stderr.decode(errors='replace').strip()}")
    frames = soundfile.info(str(tmp)).frames
    if frames == 0:
        tmp.unlink()
        raise RuntimeError(f"{utt.id}: voice {utt.speaker.voice!r} produced 0 samples for {utt.text!r}")
    os.replace(tmp, utt.wav)
    return utt.id, frames / FS, False


def _check_fingerprints(out: Path, plan: Sequence[Utterance], domains: Sequence[str]) -> dict[str, str]:
    """Refuse to mix two different corpora in one directory; returns the updated per-domain fingerprints."""
    path = out / "synth_config.json"
    stored: dict[str, str] = json.loads(path.read_text())["fingerprints"] if path.is_file() else {}
    # newtext has a key of its own, so adding it to an existing corpus is not a clash
    current = {d: fingerprint(u for u in plan if u.speaker.domain == d and u.split != NEWTEXT) for d in domains}
    current.update({f"{d}.{NEWTEXT}": fingerprint(u for u in plan if u.speaker.domain == d and u.split == NEWTEXT)
                    for d in domains if any(u.speaker.domain == d and u.split == NEWTEXT for u in plan)})
    clashes = [d for d in current if d in stored and stored[d] != current[d]]
    if clashes:
        raise RuntimeError(f"{out} already holds a different {'/'.join(clashes)} corpus (other seed, sizes or "
                           f"generator version); use another --out or delete {out}")
    return {**stored, **current}


def synthesize_corpus(out: Path, seed: int = 0, utts: Sizes | None = None, speakers: Sizes | None = None,
                      domains: Sequence[str] = DOMAINS, nj: int = 1, max_words: int = MAX_WORDS,
                      skip: Sequence[str] = ()) -> dict:
    """Synthesise (or finish) the corpus under ``out`` and return what ``corpus.json`` holds.

    ``skip``: ``<domain>_<split>`` dirs planned but not synthesised (e.g. ``source_train`` for a recipe whose source
    model comes from elsewhere): every other dir gets the very texts and speakers of the full corpus."""
    require_tools()
    out = Path(out)
    utts = utts or parse_sizes(DEFAULT_UTTS)
    speakers = speakers or parse_sizes(DEFAULT_SPEAKERS)
    plan = plan_corpus(out, seed, utts, speakers, domains, max_words)
    unknown = set(skip) - {u.dir_name for u in plan}
    if unknown:
        raise ValueError(f"--skip {sorted(unknown)}: not a planned dir ({sorted({u.dir_name for u in plan})})")
    plan = [u for u in plan if u.dir_name not in skip]
    require_voices(plan)
    fingerprints = _check_fingerprints(out, plan, domains)
    atomic_write_text(out / "synth_config.json",
                      json.dumps({"seed": seed, "fingerprints": fingerprints}, indent=1, sort_keys=True) + "\n")

    seconds: dict[str, float] = {}
    skipped = 0
    progress = tqdm(total=len(plan), desc="synthesize", unit="utt")
    if nj <= 1:
        results: Iterable = map(synthesize_utterance, plan)
        pool = None
    else:  # spawn: a forked copy of a parent that has started torch's threads can deadlock
        pool = multiprocessing.get_context("spawn").Pool(nj)
        results = pool.imap_unordered(synthesize_utterance, plan, chunksize=4)
    try:
        for utt_id, sec, was_skipped in results:
            seconds[utt_id] = sec
            skipped += was_skipped
            progress.update()
    finally:
        progress.close()
        if pool is not None:
            pool.terminate()

    corpus_path = out / "corpus.json"
    corpus = json.loads(corpus_path.read_text()) if corpus_path.is_file() else {"dirs": {}, "speakers": {}}
    corpus.update({"seed": seed, "max_words": max_words, "sample_rate": FS, "generator": __name__})
    for domain in domains:
        for split in (*SPLITS, NEWTEXT):
            group = [u for u in plan if u.speaker.domain == domain and u.split == split]
            if not group:
                continue
            name = group[0].dir_name
            write_data_dir(out / name, DataDir(
                wav_scp={u.id: str(u.wav) for u in group},
                text={u.id: u.text for u in group},
                utt2spk={u.id: u.speaker.id for u in group}))
            spk = sorted({u.speaker.id for u in group})
            corpus["dirs"][name] = {"utterances": len(group), "speakers": spk,
                                    "hours": round(sum(seconds[u.id] for u in group) / 3600, 4)}
            corpus["speakers"].update({u.speaker.id: u.speaker.describe() for u in group})
    corpus["dirs"] = dict(sorted(corpus["dirs"].items()))
    corpus["speakers"] = dict(sorted(corpus["speakers"].items()))
    atomic_write_text(corpus_path, json.dumps(corpus, indent=1) + "\n")
    # What this run did is returned and logged, not stored: a re-run must leave corpus.json unchanged.
    return {**corpus, "last_run": {"synthesized": len(plan) - skipped, "kept_existing": skipped}}

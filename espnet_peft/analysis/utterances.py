"""The audio an analysis run reads: its utterances, and the batches a model makes of them.

``read_utterances``: a Kaldi data dir (``wav.scp`` with plain paths, and ``text.ctc`` or ``text`` for the analyses
that score transcripts), or a list file with one ``path`` or ``key path`` per line. A data dir padded to one fixed
window on disk (for Whisper, which has no padding mask: ``espnet_peft.utils.audio_window``) keeps each utterance's
real length in ``utt2num_samples``: the audio is read as given, padding and all, and only the frames that cover the
real samples count.

Each model turns utterances into a ``Batch`` the way its inference does (``LoadedModel.batch``, made by its family in
``espnet_peft.analysis.families``). ``Batch.real_frames`` says how many output frames of each utterance cover real
audio, so that fixed-length padding (silence) never enters the statistics.
"""

from __future__ import annotations

import dataclasses
import math
import re
from pathlib import Path
from typing import Mapping, Optional, Sequence

import numpy as np
import soundfile
import torch

from espnet_peft.analysis.errors import AnalysisInputError
from espnet_peft.utils.kaldi_data import check_audio, read_table
from espnet_peft.utils.text_norm import normalize_text


@dataclasses.dataclass(frozen=True)
class Utterance:
    """One utterance: its audio file and the raw transcripts the data has for it (``texts``: file name ("text",
    "text.prev", "text.ctc") -> line, empty for a wav list)."""

    key: str
    wav: Path
    texts: Mapping[str, str] = dataclasses.field(default_factory=dict)
    #: the real (unpadded) samples of a file padded on disk (``utt2num_samples``); None: all of it is real
    num_samples: Optional[int] = None

    def real_samples(self, audio_samples: int) -> int:
        """How many of the ``audio_samples`` read from the file are real audio."""
        return audio_samples if self.num_samples is None else min(audio_samples, self.num_samples)

    @property
    def ctc_text(self) -> Optional[str]:
        """The plain transcript (``text.ctc``, else ``text`` without leading ``<...>`` tags), None without one."""
        if "text.ctc" in self.texts:
            return self.texts["text.ctc"]
        if "text" in self.texts:
            return LEADING_TAGS.sub("", self.texts["text"])
        return None

    @property
    def ref(self) -> Optional[str]:
        """The normalised reference that CERs are computed against."""
        text = self.ctc_text
        return None if text is None else normalize_text(text)


#: OWSM-style prompts in front of an S2T transcript: <eng><asr><notimestamps> ...
LEADING_TAGS = re.compile(r"^(\s*<[^<>\s]*>)+\s*")
#: transcript files read from a Kaldi data dir (the S2T ones when present)
TEXT_FILES = ("text", "text.prev", "text.ctc")
#: the real lengths of a data dir padded on disk (``espnet_peft.utils.audio_window.pad_data_dir``)
NUM_SAMPLES = "utt2num_samples"


def _evenly_spaced(items: list, count: Optional[int]) -> list:
    """``count`` items spread over the whole (key-sorted) list, so a subset still covers every speaker."""
    if count is None or count >= len(items):
        return items
    return [items[(i * len(items)) // count] for i in range(count)]


def _read_table(path: Path) -> dict[str, str]:
    try:
        return read_table(path)
    except ValueError as error:  # duplicate ids, a non-UTF-8 byte: the message names the file
        raise AnalysisInputError(str(error)) from None


def _read_num_samples(source: Path) -> dict[str, int]:
    """``utt2num_samples`` of a data dir as ints (empty when it has none)."""
    path = source / NUM_SAMPLES
    if not path.is_file():
        return {}
    table = _read_table(path)
    bad = [(key, value) for key, value in table.items() if not value.isdigit()]
    if bad:
        raise AnalysisInputError(f"{path}: sample counts must be non-negative integers, got {bad[:3]}")
    return {key: int(value) for key, value in table.items()}


def read_utterances(data: str, max_utts: Optional[int] = None,
                    skipped: Optional[dict[str, tuple[str, str]]] = None) -> list[Utterance]:
    """Utterances of a Kaldi data dir or a wav list (see the module docstring), at most ``max_utts`` of them.

    Each picked utterance passes the recipe's checks (``check_audio``: missing, truncated, undecodable, multi-channel,
    empty or silent audio) and, where the data has transcripts, must have a non-empty one. Those that fail are left
    out and recorded in ``skipped`` (utterance id -> (reason code, detail)), with the recipe's reason codes.
    """
    skipped = {} if skipped is None else skipped
    source = Path(data)
    tables: dict[str, dict[str, str]] = {}
    num_samples: dict[str, int] = {}
    if source.is_dir():
        scp = source / "wav.scp"
        if not scp.is_file():
            raise AnalysisInputError(f"{scp} not found: --data needs a Kaldi data dir with wav.scp (+ text) or a "
                                     f"file listing one wav path (or 'key path') per line")
        wavs = _read_table(scp)
        tables = {name: _read_table(source / name) for name in TEXT_FILES if (source / name).is_file()}
        num_samples = _read_num_samples(source)
    elif source.is_file():
        wavs = {}
        for line in source.read_text(encoding="utf-8").splitlines():
            parts = line.split(None, 1)
            if parts:
                key, wav = (Path(parts[0]).stem, parts[0]) if len(parts) == 1 else (parts[0], parts[1].strip())
                wavs[key] = wav
    else:
        raise AnalysisInputError(f"--data {source} not found: give a Kaldi data dir (wav.scp + text) or a wav list")
    if not wavs:
        raise AnalysisInputError(f"{source}: no utterances")
    for key, wav in wavs.items():
        if wav.rstrip().endswith("|"):
            raise AnalysisInputError(f"{source}: {key} is a Kaldi pipe entry; only plain wav paths are supported")
    utts = []
    for key in _evenly_spaced(sorted(wavs), max_utts):
        utt = Utterance(key, Path(wavs[key]), {name: t[key] for name, t in tables.items() if key in t},
                        num_samples.get(key))
        audio = check_audio(wavs[key], None)
        if audio.reason:
            skipped[key] = (audio.reason, audio.detail)
        elif tables and utt.ctc_text is None:
            skipped[key] = ("not_in_text", f"no transcript in {source}/{' or '.join(sorted(tables))}")
        elif tables and not utt.ref:
            skipped[key] = ("empty_text", f"no words in its transcript in {source}")
        else:
            utts.append(utt)
    if not utts:
        raise AnalysisInputError(f"{source}: no usable utterance among the {len(skipped)} picked: "
                                 f"{dict(list(skipped.items())[:5])}")
    return utts


def load_audio(utt: Utterance, fs: int) -> np.ndarray:
    """Mono float32 samples at ``fs``; anything else is an error that names the file."""
    if not utt.wav.is_file():
        raise AnalysisInputError(f"{utt.key}: audio file {utt.wav} not found")
    samples, rate = soundfile.read(str(utt.wav), dtype="float32")
    if rate != fs:
        raise AnalysisInputError(f"{utt.wav}: {rate} Hz, the model expects {fs} Hz; resample it (e.g. sox in.wav "
                                 f"-r {fs} out.wav)")
    if samples.ndim != 1:
        raise AnalysisInputError(f"{utt.wav}: {samples.shape[1]} channels, expected mono")
    return samples


@dataclasses.dataclass
class Batch:
    """One forward pass worth of utterances, as one model wants them.

    ``args``/``kwargs``: what ``access.capture`` (and the model's encoder) takes; ``real_samples``/``told_samples`` per
    utterance: the audio it has and the length the model was told (larger when padded to a fixed length).
    ESPnet only: ``speech``/``lengths`` (raw audio), ``ctc_text``/``ctc_text_lengths`` (CTC targets, -1 padded) and
    ``refs`` (normalised transcripts) when every utterance has a transcript, and ``loss_inputs``, the collated
    training batch (``model(**loss_inputs)`` gives the training loss) when the data has every text the model's
    forward needs (S2T: ``text`` with its prompt tokens besides the CTC text).
    HF: ``refs`` with transcripts, and ``loss_inputs`` (the model's input plus ``labels``, the transcript through the
    model's tokenizer: ``model(**loss_inputs).loss`` is its ``LoadedModel.loss_name``) when the model has a loss.
    """

    utts: list[Utterance]
    args: tuple
    kwargs: dict
    real_samples: list[int]
    told_samples: list[int]
    speech: Optional[torch.Tensor] = None
    lengths: Optional[torch.Tensor] = None
    ctc_text: Optional[torch.Tensor] = None
    ctc_text_lengths: Optional[torch.Tensor] = None
    refs: Optional[list[str]] = None
    loss_inputs: Optional[dict[str, torch.Tensor]] = None

    def real_frames(self, mask_counts: Sequence[int]) -> list[int]:
        """Output frames of each utterance that cover real audio, given the frames the model counted as real."""
        return [max(1, min(n, math.ceil(n * real / told)))
                for n, real, told in zip(mask_counts, self.real_samples, self.told_samples)]

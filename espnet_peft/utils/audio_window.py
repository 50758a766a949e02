"""Zero-padding every utterance of a Kaldi data dir to one fixed window, for models without a padding mask.

Whisper's encoder attends over every frame it is given and has no mask: a batch padded to its longest input makes
each shorter utterance's frames depend on its batch-mates, so training, batched decoding and ESPnet's
one-at-a-time ``Speech2Text`` would each see other inputs. Padding the data itself to one window (as Whisper's own
30 s window, shorter to fit a CPU) gives every path the same input. The padded copies go to ``<data_dir>/window/``,
``wav.scp`` points at them, ``speech_shape`` (ESPnet's batch sampler) says the window, and ``utt2num_samples`` keeps
the real lengths. Re-running on a padded dir rewrites the same files (a padded file pads to itself).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile
from tqdm import tqdm

from espnet_peft.utils.kaldi_data import read_table, write_table

WINDOW_DIR = "window"


def pad_data_dir(data_dir: Path, seconds: float, fs: int = 16000) -> int:
    """Pad every utterance of ``data_dir`` to ``seconds``; returns the number of utterances. An utterance longer
    than the window is an error naming it (drop it first: ``validate_data --max_sec``)."""
    data_dir = Path(data_dir)
    window = int(round(seconds * fs))
    wav_scp = read_table(data_dir / "wav.scp")
    lengths = read_table(data_dir / "utt2num_samples") if (data_dir / "utt2num_samples").is_file() else {}
    out_dir = data_dir / WINDOW_DIR
    out_dir.mkdir(exist_ok=True)
    padded, real = {}, {}
    for utt, location in tqdm(sorted(wav_scp.items()), desc=f"pad {data_dir.name} to {seconds:g} s", unit="utt",
                              leave=False):
        audio, rate = soundfile.read(location, dtype="int16")
        if rate != fs or audio.ndim != 1:
            raise ValueError(f"{data_dir / 'wav.scp'}: utterance {utt}: {location} is {rate} Hz with shape "
                             f"{audio.shape}; expected mono {fs} Hz (run python -m espnet_peft.bin.validate_data)")
        # a padded copy keeps its real length in utt2num_samples: the trailing zeros may be part of the speech
        n = int(lengths[utt]) if len(audio) == window and utt in lengths else len(audio)
        if n > window:
            raise ValueError(f"{data_dir / 'wav.scp'}: utterance {utt} lasts {n / fs:.2f} s, longer than the "
                             f"{seconds:g} s window; drop it (validate_data --max_sec {seconds:g}) or widen the window")
        target = out_dir / f"{utt}.wav"
        soundfile.write(target, np.pad(audio[:n], (0, window - n)), fs, subtype="PCM_16")
        padded[utt], real[utt] = str(target), str(n)
    write_table(data_dir / "wav.scp", padded)
    write_table(data_dir / "utt2num_samples", real)
    write_table(data_dir / "speech_shape", {utt: str(window) for utt in padded})
    return len(padded)

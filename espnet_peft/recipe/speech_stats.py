"""Global mean/variance statistics of the speech features, for ESPnet's ``global_mvn`` normaliser.

ESPnet's ``collect_stats`` pass runs the task's preprocessor first, and the S2T preprocessor pads every utterance
with digital zeros to the fixed ``speech_length`` window. Statistics taken there describe a mixture of speech and
padding whose share changes with the corpus' duration spread. Here the statistics come from the unpadded audio,
through the frontend the model will use, so ``global_mvn`` maps the *speech* to zero mean and unit variance; the
padding is then a constant, far-negative input that the encoder learns to ignore. (On the embedded default, a
600-step CTC probe of its E-Branchformer stayed on the blank plateau with ``utterance_mvn`` over the padded window,
loss ~57 per utterance, and left it with these statistics, loss ~34; unpadded input reached ~29.)

The file has ESPnet's ``feats_stats.npz`` layout (``count``, ``sum``, ``sum_square``), so a model trained with it
loads in stock ESPnet.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import soundfile
import torch
from tqdm import tqdm

from espnet_peft.utils.kaldi_data import read_table


def build_frontend(config: dict) -> torch.nn.Module:
    """The frontend exactly as the ESPnet S2T/ASR task builds it from a training config."""
    from espnet2.tasks.s2t import frontend_choices

    if config.get("frontend") is None:
        raise ValueError("the config has no frontend: global_mvn statistics need one (e.g. 'frontend: default')")
    frontend_class = frontend_choices.get_class(config["frontend"])
    return frontend_class(**(config.get("frontend_conf") or {}))


@torch.no_grad()
def speech_feature_stats(wav_scp: Path, frontend: torch.nn.Module, max_utts: int | None = None) -> dict[str, np.ndarray]:
    """Sum, sum of squares and frame count of ``frontend`` features over the utterances of ``wav_scp``.

    Utterances are taken in sorted order (the first ``max_utts`` if given); a file that cannot be read stops with
    its utterance id.
    """
    entries = sorted(read_table(wav_scp).items())[:max_utts]
    if not entries:
        raise ValueError(f"{wav_scp} lists no utterances")
    frontend.eval()
    total, total_square, count = 0.0, 0.0, 0  # become float64 tensors at the first utterance
    for utt, path in tqdm(entries, desc=f"feature stats of {wav_scp.parent.name}", unit="utt"):
        try:
            audio, _ = soundfile.read(path, dtype="float32", always_2d=True)
        except (OSError, RuntimeError) as error:
            raise ValueError(f"utterance {utt}: cannot read {path} ({error}); fix or drop it in {wav_scp}") from None
        speech = torch.from_numpy(audio[:, 0])[None]
        feats, lengths = frontend(speech, torch.tensor([speech.shape[1]]))
        feats = feats[0, : int(lengths[0])].double()
        total = total + feats.sum(0)
        total_square = total_square + (feats**2).sum(0)
        count += feats.shape[0]
    return {"count": np.array(count), "sum": total.numpy(), "sum_square": total_square.numpy()}


def write_stats(stats: dict[str, np.ndarray], out: Path) -> None:
    """Write ``feats_stats.npz`` atomically (a killed run leaves no half-written file behind)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp.npz")
    np.savez(tmp, **stats)
    os.replace(tmp, out)

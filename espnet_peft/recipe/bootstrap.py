"""Utterance-level bootstrap confidence intervals on WER, for one system and for paired comparisons.

A resample draws ``n`` utterances with replacement from the ``n`` scored ones; its WER is the sum of their errors over
the sum of their reference words (a corpus-level WER, not a mean of per-utterance WERs). Paired statistics draw the
same utterances for both systems, so what the two share (hard utterances) cancels out of the difference. Intervals are
percentile intervals over ``n_resamples`` resamples with a fixed seed, so a report is reproducible. All WERs are in
percent.

Several seeds of one system are pooled by ``pooled_errors``: resampling utterances and summing every seed's errors on
them is resampling the per-utterance mean over seeds, so each function below takes that mean as one system's errors.
"""

from __future__ import annotations

import dataclasses
from typing import Dict, Iterator, Sequence

import numpy as np

N_RESAMPLES = 1000
SEED = 0
CONFIDENCE = 0.95
_CHUNK = 2 ** 20  # resampled indices held at once: bounds memory (~8 MiB per summed column) on big test sets


@dataclasses.dataclass(frozen=True)
class Interval:
    """A point estimate on all utterances and the bootstrap interval around it."""

    point: float
    low: float
    high: float

    def as_dict(self, digits: int = 4) -> Dict[str, float]:
        return {k: round(float(v), digits) for k, v in dataclasses.asdict(self).items()}

    def format(self, digits: int = 1, signed: bool = False) -> str:
        spec = f"{'+' if signed else ''}.{digits}f"
        return f"{self.point:{spec}} [{self.low:{spec}}, {self.high:{spec}}]"


def _resample_chunks(n_utts: int, n_resamples: int, seed: int) -> Iterator[np.ndarray]:
    """Index arrays of shape (chunk, n_utts), together ``n_resamples`` rows, the same for a given seed."""
    rng = np.random.default_rng(seed)
    per_chunk = max(1, _CHUNK // max(n_utts, 1))
    for start in range(0, n_resamples, per_chunk):
        yield rng.integers(0, n_utts, size=(min(per_chunk, n_resamples - start), n_utts))


def resampled_sums(columns: Sequence[np.ndarray], n_resamples: int = N_RESAMPLES, seed: int = SEED) -> np.ndarray:
    """Sums of each per-utterance column over the same bootstrap resamples: shape (n_resamples, len(columns))."""
    stacked = np.stack([np.asarray(c, dtype=np.float64) for c in columns], axis=1)
    if stacked.shape[0] == 0:
        raise ValueError("bootstrap needs at least one utterance")
    return np.concatenate([stacked[idx].sum(axis=1) for idx in _resample_chunks(len(stacked), n_resamples, seed)])


def pooled_errors(per_seed: Sequence[np.ndarray]) -> np.ndarray:
    """Per-utterance errors of several runs (seeds) of one system on the same utterances, as one system: their mean.

    A resample's WER from it equals the summed errors of all runs over the summed reference words of all runs, on
    the same resampled utterances for every run.
    """
    if not per_seed:
        raise ValueError("no runs to pool")
    return np.mean(np.stack([np.asarray(e, dtype=np.float64) for e in per_seed]), axis=0)


def _interval(point: float, samples: np.ndarray, confidence: float) -> Interval:
    tail = 100.0 * (1.0 - confidence) / 2.0
    low, high = np.nanpercentile(samples, [tail, 100.0 - tail])
    return Interval(float(point), float(low), float(high))


def _check(ref_words: np.ndarray, *errors: np.ndarray) -> None:
    for e in errors:
        if np.shape(e) != np.shape(ref_words):
            raise ValueError(f"per-utterance errors {np.shape(e)} and reference words {np.shape(ref_words)} differ "
                             "in length: align both systems on the same utterances first")
    if np.sum(ref_words) <= 0:
        raise ValueError("no reference words: WER is undefined")


def wer_ci(errors: np.ndarray, ref_words: np.ndarray, n_resamples: int = N_RESAMPLES, seed: int = SEED,
           confidence: float = CONFIDENCE) -> Interval:
    """WER (percent) of one system with its bootstrap interval."""
    _check(ref_words, errors)
    sums = resampled_sums([errors, ref_words], n_resamples, seed)
    return _interval(100.0 * np.sum(errors) / np.sum(ref_words), 100.0 * sums[:, 0] / sums[:, 1], confidence)


def paired_difference_ci(errors_a: np.ndarray, errors_b: np.ndarray, ref_words: np.ndarray,
                         n_resamples: int = N_RESAMPLES, seed: int = SEED, confidence: float = CONFIDENCE
                         ) -> Interval:
    """WER(a) - WER(b) in absolute percent points, both systems resampled on the same utterances."""
    _check(ref_words, errors_a, errors_b)
    sums = resampled_sums([errors_a, errors_b, ref_words], n_resamples, seed)
    point = 100.0 * (np.sum(errors_a) - np.sum(errors_b)) / np.sum(ref_words)
    return _interval(point, 100.0 * (sums[:, 0] - sums[:, 1]) / sums[:, 2], confidence)


def relative_reduction_ci(errors: np.ndarray, errors_base: np.ndarray, ref_words: np.ndarray,
                          n_resamples: int = N_RESAMPLES, seed: int = SEED, confidence: float = CONFIDENCE
                          ) -> Interval:
    """Relative WER reduction of a system over a baseline, (WER_base - WER) / WER_base in percent, paired.
    Resamples where the baseline makes no error are left out of the interval (the ratio is undefined there)."""
    _check(ref_words, errors, errors_base)
    if np.sum(errors_base) == 0:
        raise ValueError("the baseline makes no errors: relative WER reduction is undefined")
    sums = resampled_sums([errors, errors_base], n_resamples, seed)
    with np.errstate(divide="ignore", invalid="ignore"):
        samples = np.where(sums[:, 1] > 0, 100.0 * (sums[:, 1] - sums[:, 0]) / sums[:, 1], np.nan)
    return _interval(100.0 * (np.sum(errors_base) - np.sum(errors)) / np.sum(errors_base), samples, confidence)

"""The report's numbers: run records grouped into table rows, each compared with its domain's zero-shot run.

A row is a (domain, label) over its seeds. Per domain, every row is compared with that domain's zero_shot run on
the same utterances: target / source WER, forgetting = WER_source(run) - WER_source(zero_shot) (absolute points),
learning = relative WER reduction on the target, (WER_target(zero_shot) - WER_target(run)) / WER_target(zero_shot)
(percent). Each is given as mean ± sd over seeds and with a paired bootstrap interval over utterances, pooled over
seeds (``bootstrap.pooled_errors``; its point is the mean over seeds). ``comparisons`` says which differences to full
fine-tuning and to LoRA are significant. ``results.json`` holds exactly what the tables show (schema in
``summarise``).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from espnet_peft.recipe import bootstrap
from espnet_peft.recipe.comparisons import compare
from espnet_peft.recipe.decode_settings import MixedSettingsError, normalizer_of, one_setting
from espnet_peft.recipe.report.schema import ROLES, ZERO_SHOT, ReportError, RunRecord
from espnet_peft.recipe.scoring import UtteranceCounts
from espnet_peft.utils.environment import environment

FULL = "full"
#: a row's statistics: WERs (%), forgetting (absolute points) and learning (relative %)
STATS = ("target_wer", "source_wer", "forgetting", "learning")


def value_order(value: Any) -> tuple:
    """Numbers by size, then words."""
    return (0, value, "") if isinstance(value, (int, float)) and not isinstance(value, bool) else (1, 0, str(value))


def _row_order(record: RunRecord) -> tuple:
    """zero_shot, full, then the methods by name; a method's default row before its sweep points, by value."""
    rank = {ZERO_SHOT: 0, FULL: 1}.get(record.method, 2)
    settings = tuple((k, value_order(v)) for k, v in sorted(record.settings.items()))
    return rank, record.method, record.label != record.method, settings, record.label


def _set_info(counts: UtteranceCounts, score_dir: Optional[str]) -> Dict[str, Any]:
    return {"name": Path(score_dir).name if score_dir else None, "dir": score_dir, "n_utts": len(counts.utt_ids),
            "ref_words": int(counts.ref.sum())}


def _group(domain: str, runs: List[RunRecord]) -> List[List[RunRecord]]:
    """The runs of one domain grouped into rows (same label, one run per seed), each by seed, rows in table order."""
    groups: Dict[str, List[RunRecord]] = {}
    for run in runs:
        groups.setdefault(run.label, []).append(run)
    for label, group in groups.items():
        files = sorted(r.source_file for r in group)
        if len({r.method for r in group}) > 1:
            raise ReportError(f"domain {domain!r}: runs of several methods share the label {label!r}: {files}; "
                              "set 'label' in run_info.json")
        seeds = Counter(r.seed for r in group)
        if any(n > 1 for n in seeds.values()) or (None in seeds and len(group) > 1):
            raise ReportError(f"domain {domain!r}: several runs share a label and seed ({label!r}, seeds "
                              f"{[r.seed for r in group]}): {files}; give each run its own 'seed', or its own "
                              "'label' in run_info.json (an old run left under exp/?)")
        group.sort(key=lambda r: -1 if r.seed is None else r.seed)
    return sorted(groups.values(), key=lambda g: _row_order(g[0]))


def _spread(values: Sequence[float]) -> Optional[float]:
    """Sample standard deviation over seeds (None with one seed)."""
    return round(float(np.std(values, ddof=1)), 4) if len(values) > 1 else None


def _row(group: List[RunRecord], base: RunRecord, stats: Mapping[str, Any]
         ) -> Tuple[Dict[str, Any], Dict[str, np.ndarray]]:
    """One table row over the group's seeds, and its per-utterance errors pooled over the seeds (per role)."""
    first = group[0]
    times = [r.train_time_s for r in group if r.train_time_s is not None]
    memory = [r.peak_mem_mb for r in group if r.peak_mem_mb is not None]
    row: Dict[str, Any] = {
        "method": first.method, "label": first.label, "settings": first.settings, "seeds": [r.seed for r in group],
        "trainable_params": first.trainable_params, "train_time_s": float(np.mean(times)) if times else None,
        "peak_mem_mb": max(memory) if memory else None, "device": first.device, "run_info": first.source_file,
        "run_infos": [r.source_file for r in group]}
    counts = [{role: run.scores[role].aligned_to(base.scores[role].utt_ids,
                                                 f"{run.source_file} vs {base.source_file} ({role})")
               for role in ROLES} for run in group]
    pooled = {role: bootstrap.pooled_errors([c[role].errors for c in counts]) for role in ROLES}
    ref = {role: base.scores[role].ref for role in ROLES}
    for role in ROLES:
        row[f"{role}_wer"] = bootstrap.wer_ci(pooled[role], ref[role], **stats).as_dict()
    per_seed = {f"{role}_wer": [100.0 * float(np.sum(c[role].errors)) / float(np.sum(ref[role])) for c in counts]
                for role in ROLES}
    if first is base:
        row["forgetting"] = row["learning"] = None
    else:
        row["forgetting"] = bootstrap.paired_difference_ci(pooled["source"], base.scores["source"].errors,
                                                           ref["source"], **stats).as_dict()
        row["learning"] = bootstrap.relative_reduction_ci(pooled["target"], base.scores["target"].errors,
                                                          ref["target"], **stats).as_dict()  # raises on 0 errors
        base_source = 100.0 * float(np.sum(base.scores["source"].errors)) / float(np.sum(ref["source"]))
        base_target = float(np.sum(base.scores["target"].errors))
        per_seed["forgetting"] = [wer - base_source for wer in per_seed["source_wer"]]
        per_seed["learning"] = [100.0 * (base_target - float(np.sum(c["target"].errors))) / base_target
                                for c in counts]
    row["per_seed"] = {k: [round(v, 4) for v in values] for k, values in per_seed.items()}
    row["sd"] = {k: _spread(per_seed[k]) if k in per_seed else None for k in STATS}
    row["other_sources"] = {name: _other_source(group, base, name, stats) for name in sorted(base.other_scores)
                            if all(name in r.other_scores for r in group)}
    return row, pooled


def _other_source(group: List[RunRecord], base: RunRecord, name: str, stats: Mapping[str, Any]) -> Dict[str, Any]:
    """WER and forgetting (against the zero-shot model, paired) on one more source-domain set, pooled over seeds."""
    ref = base.other_scores[name].ref
    errors = [r.other_scores[name].aligned_to(base.other_scores[name].utt_ids, f"{r.source_file} vs "
                                              f"{base.source_file} ({name})").errors for r in group]
    pooled = bootstrap.pooled_errors(errors)
    per_seed = [100.0 * float(np.sum(e)) / float(np.sum(ref)) for e in errors]
    out = {"wer": bootstrap.wer_ci(pooled, ref, **stats).as_dict(), "per_seed": [round(v, 4) for v in per_seed],
           "sd": _spread(per_seed), "forgetting": None, "n_utts": len(ref), "ref_words": int(np.sum(ref))}
    if group[0] is not base:
        out["forgetting"] = bootstrap.paired_difference_ci(pooled, base.other_scores[name].errors, ref,
                                                           **stats).as_dict()
    return out


def summarise(records: List[RunRecord], n_resamples: int = bootstrap.N_RESAMPLES, seed: int = bootstrap.SEED,
              confidence: float = bootstrap.CONFIDENCE) -> Dict[str, Any]:
    """The report's data (written as results.json)::

        {"environment": {...}, "bootstrap": {"n_resamples", "seed", "confidence"},
         "domains": {domain: {"sets": {role: {"name", "dir", "n_utts", "ref_words"}},
                              "rows": [{"method", "label", "settings", "seeds", "trainable_params", "train_time_s",
                                        "peak_mem_mb", "device", "run_info", "run_infos",
                                        "target_wer", "source_wer", "forgetting", "learning", "sd", "per_seed"}],
                              "comparisons": [{"method", "reference", "aspect", "set", "difference",
                                               "significant", "statement"}]}}}

    A row is one label over its seeds (``seeds``, ``run_infos`` in seed order; ``run_info`` the first). Its WERs,
    forgetting (absolute points) and learning (relative %) are {"point", "low", "high"}: the mean over seeds and the
    bootstrap interval pooled over seeds; ``sd`` holds their standard deviations over seeds (null with one seed) and
    ``per_seed`` the values of each seed. Forgetting and learning are null on the zero_shot row, which they are
    measured against. ``train_time_s`` is the mean over seeds, ``peak_mem_mb`` the largest. ``comparisons``: see
    ``espnet_peft.recipe.comparisons`` (the rows whose label is their method's name, against full and LoRA).
    """
    stats = dict(n_resamples=n_resamples, seed=seed, confidence=confidence)
    domains: Dict[str, Any] = {}
    for domain in sorted({r.domain for r in records}):
        groups = _group(domain, [r for r in records if r.domain == domain])
        zero = [r for g in groups for r in g if r.method == ZERO_SHOT]
        if len(zero) != 1:
            raise ReportError(f"domain {domain!r} has {len(zero)} {ZERO_SHOT} runs ({[r.source_file for r in zero]}); "
                              f"it needs exactly one: decode the base model and write run_info.json with "
                              f"method={ZERO_SHOT!r}")
        base = zero[0]
        try:  # one table, one decoding and scoring setting
            setting = one_setting(f"domain {domain!r}", [
                (f"{r.label} seed {r.seed}", [*r.score_dirs.values(), *r.other_score_dirs.values()])
                for g in groups for r in g])
        except MixedSettingsError as err:
            raise ReportError(str(err)) from None
        rows, methods = [], {}
        for group in groups:
            row, pooled = _row(group, base, stats)
            rows.append(row)
            if row["method"] not in (ZERO_SHOT, *methods) and row["label"] == row["method"]:
                methods[row["method"]] = pooled
        ref = {role: base.scores[role].ref for role in ROLES}
        domains[domain] = {"sets": {role: _set_info(base.scores[role], base.score_dirs.get(role)) for role in ROLES},
                           "decode_setting": setting,
                           "rows": rows,
                           "comparisons": [c.as_dict() for c in compare(domain, methods, ref, **stats)]}
    devices = sorted({r.device for r in records if r.device})
    return {"environment": environment(devices), "bootstrap": stats, "domains": domains,
            "normalizers": sorted({normalizer_of(d) for r in records for d in r.score_dirs.values()})}

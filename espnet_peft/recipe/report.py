"""RESULTS.md, results.json and plots comparing adapters on learning a shifted domain vs forgetting the source one.

Input: one ``run_info.json`` per experiment anywhere under ``exp_root`` (the shell recipe writes it after decoding)::

    {
      "domain": "child",                  # required: the shifted domain this run adapts to
      "method": "ssvd_o",                 # required: "zero_shot" marks the untouched base model (one per domain)
      "seed": 0,                          # optional: the training seed; runs that differ only in it share a row
      "settings": {"outer_share": 0.25},  # optional: the swept adapter fields (espnet_peft.recipe.sweep); a field
                                          #   with two or more values over a method's rows gets a sweep plot
      "label": "ssvd_o outer_share=0.25", # optional: row name (default: method, plus the settings)
      "trainable_params": 1234567,        # required: 0 for zero_shot
      "train_time_s": 5400.0,             # optional: wall-clock training time
      "peak_mem_mb": 20480.0,             # optional: peak accelerator memory during training
      "device": "NVIDIA H100 80GB HBM3",  # optional: what it trained on (listed in the environment block)
      "scores": {                         # required: decode set dirs scored by espnet_peft.bin.score (--out),
        "target": "decode_asr/test_child",#   relative to this file's dir or absolute; each holds
        "source": "decode_asr/test_src"   #   score_wer/per_utt.tsv
      }
    }

A row is a (domain, label) over its seeds. Per domain, every row is compared with that domain's zero_shot run on
the same utterances: target / source WER, forgetting = WER_source(run) - WER_source(zero_shot) (absolute points),
learning = relative WER reduction on the target, (WER_target(zero_shot) - WER_target(run)) / WER_target(zero_shot)
(percent). Each is given as mean ± sd over seeds and with a paired bootstrap interval over utterances, pooled over
seeds (``bootstrap.pooled_errors``; its point is the mean over seeds). ``comparisons`` says which differences to full
fine-tuning and to LoRA are significant. ``results.json`` holds exactly what the tables show (schema in
``summarise``).
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import platform
import shutil
import subprocess
from collections import Counter
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from espnet_peft.utils.pyplot import pyplot
from espnet_peft.atomic import atomic_write_text
from espnet_peft.recipe import bootstrap
from espnet_peft.recipe.comparisons import compare
from espnet_peft.recipe.decode_settings import MixedSettingsError, normalizer_of, one_setting
from espnet_peft.recipe.decode_settings import describe as describe_setting
from espnet_peft.recipe.scoring import UtteranceCounts, read_score_dir
from espnet_peft.recipe.field_settings import describe, format_value
from espnet_peft.recipe.zero_shot_table import zero_shot_lines

RUN_INFO = "run_info.json"
ZERO_SHOT = "zero_shot"
#: zero-shot WER (%) on the source domain at or above which the source model has not learnt its own task, so the
#: table cannot say anything about learning or forgetting; RESULTS.md then says so above the table
UNTRAINED_SOURCE_WER = 80.0
FULL = "full"
ROLES = ("target", "source")
REQUIRED = ("domain", "method", "trainable_params", "scores")
OPTIONAL = ("seed", "settings", "label", "train_time_s", "peak_mem_mb", "device", "other_sources")
NUMERIC = {"trainable_params": int, "seed": int, "train_time_s": float, "peak_mem_mb": float}
#: a row's statistics: WERs (%), forgetting (absolute points) and learning (relative %)
STATS = ("target_wer", "source_wer", "forgetting", "learning")

#: renders RESULTS.md's Analysis section: (report results, analysis root, report dir, links from) -> markdown lines
AnalysisSection = Callable[[Mapping[str, Any], Path, Path, Path], List[str]]


class ReportError(ValueError):
    """Inconsistent experiment records (what is missing and where is in the message)."""


@dataclasses.dataclass
class RunRecord:
    """One experiment: a (domain, method, settings, seed) run and its per-utterance WER counts on both sets."""

    domain: str
    method: str
    trainable_params: int
    scores: Dict[str, UtteranceCounts]  # role ("target" / "source") -> counts
    score_dirs: Dict[str, str] = dataclasses.field(default_factory=dict)
    seed: Optional[int] = None
    settings: Dict[str, Any] = dataclasses.field(default_factory=dict)
    label: Optional[str] = None
    train_time_s: Optional[float] = None
    peak_mem_mb: Optional[float] = None
    device: Optional[str] = None
    source_file: str = "<memory>"
    #: more source-domain test sets (name -> counts): their WER and forgetting get a table of their own
    other_scores: Dict[str, UtteranceCounts] = dataclasses.field(default_factory=dict)
    other_score_dirs: Dict[str, str] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.label is None:
            self.label = describe(self.method, self.settings)
        missing = [r for r in ROLES if r not in self.scores]
        if missing:
            raise ReportError(f"{self.source_file}: 'scores' lacks {missing}; give a decode set dir per role {ROLES}")


# ---------------------------------------------------------------- reading


def load_run_info(path: Path) -> RunRecord:
    """Read one run_info.json (schema in the module docstring) and the score dirs it points to."""
    path = Path(path)
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ReportError(f"{path}: not valid JSON ({error})") from None
    if not isinstance(info, dict):
        raise ReportError(f"{path}: expected a JSON object; see the schema in espnet_peft/recipe/report.py")
    missing = [k for k in REQUIRED if info.get(k) is None]
    unknown = sorted(set(info) - set(REQUIRED) - set(OPTIONAL))
    if missing or unknown:
        raise ReportError(f"{path}: missing keys {missing}, unknown keys {unknown}; see espnet_peft/recipe/report.py")
    if not isinstance(info["scores"], dict):
        raise ReportError(f"{path}: 'scores' must map each role {ROLES} to a decode set dir")
    settings = info.get("settings") or {}
    if not isinstance(settings, dict) or not all(isinstance(v, (bool, int, float, str)) for v in settings.values()):
        raise ReportError(f"{path}: 'settings' must map adapter fields to numbers, booleans or words")
    dirs = {role: str(path.parent / d) for role, d in info["scores"].items()}  # absolute d stays absolute
    scores = {role: read_score_dir(Path(d)) for role, d in dirs.items()}
    other = info.get("other_sources") or {}
    if not isinstance(other, dict):
        raise ReportError(f"{path}: 'other_sources' must map set names to decode set dirs")
    other_dirs = {name: str(path.parent / d) for name, d in other.items()}
    other_scores = {name: read_score_dir(Path(d)) for name, d in other_dirs.items()}
    fields = {k: info[k] for k in (*REQUIRED, *OPTIONAL)
              if k not in ("scores", "other_sources") and info.get(k) is not None}
    for key, cast in NUMERIC.items():
        if key in fields:
            try:
                fields[key] = cast(fields[key])
            except (TypeError, ValueError):
                raise ReportError(f"{path}: {key}={fields[key]!r} is not a number") from None
    return RunRecord(**fields, scores=scores, score_dirs=dirs, source_file=str(path), other_scores=other_scores,
                     other_score_dirs=other_dirs)


def collect_results(exp_root: Path) -> List[RunRecord]:
    """Every ``run_info.json`` under ``exp_root``, in path order."""
    paths = sorted(Path(exp_root).rglob(RUN_INFO))
    if not paths:
        raise ReportError(f"no {RUN_INFO} under {exp_root}: the recipe writes one per experiment after scoring")
    return [load_run_info(p) for p in paths]


# ---------------------------------------------------------------- statistics


def _value_order(value: Any) -> tuple:
    """Numbers by size, then words."""
    return (0, value, "") if isinstance(value, (int, float)) and not isinstance(value, bool) else (1, 0, str(value))


def _row_order(record: RunRecord) -> tuple:
    """zero_shot, full, then the methods by name; a method's default row before its sweep points, by value."""
    rank = {ZERO_SHOT: 0, FULL: 1}.get(record.method, 2)
    settings = tuple((k, _value_order(v)) for k, v in sorted(record.settings.items()))
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


NORMALIZER_NAMES = {"default": "`espnet_peft.utils.text_norm`",
                    "whisper_english": "openai-whisper's `EnglishTextNormalizer`, then `espnet_peft.utils.text_norm`"}


# ---------------------------------------------------------------- environment


def _run(cmd: List[str], cwd: Optional[Path] = None) -> str:
    try:
        return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=20).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment(training_devices: Optional[List[str]] = None) -> Dict[str, Any]:
    """Where the report was made (versions read from package metadata: importing torch here would cost seconds)."""
    repo = Path(__file__).resolve().parents[2]
    commit = _run(["git", "rev-parse", "--short", "HEAD"], cwd=repo)
    # the recipes' RESULTS.md are tracked outputs of this very report: their change is not a change of the code
    if commit and _run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".",
                        ":(exclude)egs2/*/peft1/RESULTS.md"], cwd=repo):
        commit += " (with uncommitted changes)"
    gpu = _run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"]) if shutil.which("nvidia-smi") else ""
    return {
        "date": datetime.datetime.now().astimezone().strftime("%a %b %d %H:%M:%S %Z %Y"),
        "python": platform.python_version(),
        "espnet": _version("espnet"), "torch": _version("torch"), "espnet_peft": _version("espnet-peft"),
        "git_commit": commit or "unknown",
        "host": platform.node(), "cpu": f"{_cpu_model()} ({os.cpu_count()} cores)",
        "gpu": ", ".join(gpu.splitlines()) or "none",
        "training_devices": training_devices or [],
    }


# ---------------------------------------------------------------- RESULTS.md


def _params(n: int) -> str:
    return f"{n / 1e6:.2f}M" if n >= 1e6 else f"{n / 1e3:.1f}k" if n >= 1e3 else str(n)


def _duration(seconds: Optional[float]) -> str:
    if seconds is None:
        return "-"
    return f"{seconds / 3600:.2f} h" if seconds >= 3600 else f"{seconds / 60:.1f} min"


def _memory(mb: Optional[float]) -> str:
    return "-" if mb is None else f"{mb / 1024:.1f} GiB"


def _fmt_stat(row: Mapping[str, Any], key: str, digits: int, signed: bool = False) -> str:
    """``mean ± sd [low, high]`` over seeds (``point [low, high]`` with one seed); ``-`` where undefined."""
    if row[key] is None:
        return "-"
    interval = bootstrap.Interval(**row[key])
    sd = row["sd"][key]
    if sd is None:
        return interval.format(digits, signed)
    spec = f"{'+' if signed else ''}.{digits}f"
    return f"{interval.point:{spec}} ± {sd:.{digits}f} [{interval.low:{spec}}, {interval.high:{spec}}]"


def untrained_source_warning(rows: List[Mapping[str, Any]]) -> List[str]:
    """A warning (as markdown lines) when the zero-shot model fails its own source domain, else nothing."""
    base = next((r for r in rows if r["method"] == ZERO_SHOT), None)
    if base is None or base["source_wer"]["point"] < UNTRAINED_SOURCE_WER:
        return []
    return [f"> **Warning:** the source model's zero-shot WER on its own source set is {base['source_wer']['point']:.1f}%"
            f" (>= {UNTRAINED_SOURCE_WER:.0f}%): it has not learnt the source task, so the learning and forgetting "
            "columns say nothing about the methods. Train it longer (`max_epoch` in the source config) or start from "
            "a real pretrained model (`--source_model`).", ""]


def comparison_lines(block: Mapping[str, Any], confidence: float) -> List[str]:
    """The domain's significance statements as a markdown list (none without a reference row)."""
    if not block["comparisons"]:
        return []
    return ["", "Differences to full fine-tuning and to LoRA, and of SSVD-O to SSVD (WER of the method minus the "
                f"reference's, absolute points, {confidence:.0%} paired bootstrap interval over utterances pooled "
                "over seeds; significant when it excludes 0):", "",
            *(f"- {c['statement']}" for c in block["comparisons"])]


def render_markdown(results: Mapping[str, Any], command: str = "python -m espnet_peft.bin.make_report") -> str:
    env, stats = results["environment"], results["bootstrap"]
    lines = [f"<!-- Generated by {command} -->", "# RESULTS", "## Environments",
             f"- date: `{env['date']}`", f"- python version: `{env['python']}`",
             f"- espnet version: `espnet {env['espnet']}`", f"- pytorch version: `pytorch {env['torch']}`",
             f"- espnet-peft version: `{env['espnet_peft']}`", f"- Git hash: `{env['git_commit']}`",
             f"- host: `{env['host']}`, CPU: `{env['cpu']}`, GPU: `{env['gpu']}`"]
    if env["training_devices"]:
        lines.append(f"- trained on: `{', '.join(env['training_devices'])}`")
    normalizers = " / ".join(NORMALIZER_NAMES.get(n, n) for n in results.get("normalizers") or ["default"])
    lines += ["", f"WER in %, text normalised by {normalizers}, scored with sclite. Cells: mean ± sd "
              "over the row's seeds (the sd only with several), then in brackets the "
              f"{stats['confidence']:.0%} utterance-level bootstrap interval ({stats['n_resamples']} resamples, "
              f"seed {stats['seed']}), pooled over seeds: the same resampled utterances for every seed. Forgetting = "
              "WER on the source set minus the zero-shot model's (absolute points, lower is better); learning = "
              "relative WER reduction on the target set over the zero-shot model (%, higher is better); both "
              "intervals are paired on the same utterances."]
    header = ("method", "seeds", "trainable params", "target WER [95% CI]", "source WER [95% CI]",
              "forgetting ΔWER src [95% CI]", "learning rel. WERR tgt [95% CI]", "train time", "peak memory")
    for domain, block in results["domains"].items():
        sets = block["sets"]
        lines += ["", f"## {domain}",
                  *(f"- {role} set: `{s['name']}` ({s['n_utts']} utterances, {s['ref_words']} words)"
                    for role, s in sets.items()),
                  f"- decoding and scoring, the same for every row: {describe_setting(block.get('decode_setting'))}",
                  ""]
        lines += untrained_source_warning(block["rows"])
        lines += ["|" + "|".join(header) + "|", "|---|" + "---:|" * (len(header) - 1)]
        for row in block["rows"]:
            cells = (row["label"], str(len(row["seeds"])), _params(row["trainable_params"]),
                     _fmt_stat(row, "target_wer", 1), _fmt_stat(row, "source_wer", 1),
                     _fmt_stat(row, "forgetting", 2, signed=True), _fmt_stat(row, "learning", 1, signed=True),
                     _duration(row["train_time_s"]), _memory(row["peak_mem_mb"]))
            lines.append("|" + "|".join(cells) + "|")
        lines += other_source_lines(block)
        lines += comparison_lines(block, stats["confidence"])
    return "\n".join(lines) + "\n"


def other_source_lines(block: Mapping[str, Any]) -> List[str]:
    """A table of WER and forgetting on the domain's other source-domain sets (when the runs have any)."""
    names = sorted({name for row in block["rows"] for name in row.get("other_sources", {})})
    if not names:
        return []
    first = block["rows"][0]["other_sources"]
    lines = ["", "Other source-domain sets: " + "; ".join(
        f"`{n}` ({first[n]['n_utts']} utterances, {first[n]['ref_words']} words)" for n in names if n in first) +
        ". WER and forgetting as above, on each set:", "",
        "|method|" + "|".join(f"{n} WER [95% CI]|{n} forgetting [95% CI]" for n in names) + "|",
        "|---|" + "---:|" * (2 * len(names))]
    for row in block["rows"]:
        cells = [row["label"]]
        for name in names:
            stat = row.get("other_sources", {}).get(name)
            if stat is None:
                cells += ["-", "-"]
                continue
            # the zero-shot WER is one number, so forgetting varies over seeds as the WER does
            view = {"wer": stat["wer"], "forgetting": stat["forgetting"],
                    "sd": {"wer": stat["sd"], "forgetting": stat["sd"] if stat["forgetting"] else None}}
            cells += [_fmt_stat(view, "wer", 1), _fmt_stat(view, "forgetting", 2, signed=True)]
        lines.append("|" + "|".join(cells) + "|")
    return lines


# ---------------------------------------------------------------- plots


def _errorbars(ax: Any, rows: Sequence[Mapping[str, Any]], **kwargs: Any) -> None:
    """Rows at (forgetting, learning), with both intervals as asymmetric error bars."""
    x = [r["forgetting"] for r in rows]
    y = [r["learning"] for r in rows]

    def bars(values: List[Mapping[str, float]]) -> List[List[float]]:
        return [[v["point"] - v["low"] for v in values], [v["high"] - v["point"] for v in values]]

    ax.errorbar([v["point"] for v in x], [v["point"] for v in y], xerr=bars(x), yerr=bars(y), capsize=3, **kwargs)


def _learning_forgetting_axes(ax: Any, title: str) -> None:
    ax.axhline(0, color="grey", lw=0.8, ls="--")
    ax.axvline(0, color="grey", lw=0.8, ls="--")
    ax.set_title(f"{title} (better: up and left)")
    ax.set_xlabel("forgetting: ΔWER on source vs zero-shot (abs. points)")
    ax.set_ylabel("learning: relative WER reduction on target (%)")
    ax.grid(alpha=0.3)


def plot_learning_vs_forgetting(results: Mapping[str, Any], path: Path) -> Path:
    """One panel per domain; a point per adapted row at (forgetting, learning) with both intervals as error bars."""
    plt = pyplot()
    domains = results["domains"]
    fig, axes = plt.subplots(1, len(domains), figsize=(5.5 * len(domains), 4.5), squeeze=False)
    methods = sorted({row["method"] for block in domains.values() for row in block["rows"]})
    colours = {m: plt.get_cmap("tab10")(i % 10) for i, m in enumerate(methods)}
    for ax, (domain, block) in zip(axes[0], domains.items()):
        for row in block["rows"]:
            if row["forgetting"] is None:
                continue
            _errorbars(ax, [row], fmt="o", color=colours[row["method"]])
            ax.annotate(row["label"], (row["forgetting"]["point"], row["learning"]["point"]),
                        textcoords="offset points", xytext=(5, 5), fontsize=8)
        _learning_forgetting_axes(ax, domain)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)


def sweeps(results: Mapping[str, Any]) -> Dict[Tuple[str, str], Dict[str, List[Tuple[Any, Mapping[str, Any]]]]]:
    """{(method, field): {domain: [(value, row)] by value}} for every swept field with two or more values.

    A row is on the sweep of a field when its settings give that field: the sweep points, and the method's default
    row, whose settings list the default value of every swept field.
    """
    found: Dict[Tuple[str, str], Dict[str, List[Tuple[Any, Mapping[str, Any]]]]] = {}
    for domain, block in results["domains"].items():
        for row in block["rows"]:
            if row["forgetting"] is None:
                continue
            for field, value in row["settings"].items():
                found.setdefault((row["method"], field), {}).setdefault(domain, []).append((value, row))
    return {key: {d: sorted(points, key=lambda p: _value_order(p[0])) for d, points in per_domain.items()}
            for key, per_domain in found.items()
            if any(len({format_value(v) for v, _ in points}) >= 2 for points in per_domain.values())}


def plot_sweep(method: str, field: str, points: Mapping[str, List[Tuple[Any, Mapping[str, Any]]]],
               path: Path) -> Path:
    """Learning against forgetting along one swept field: a line per domain, points labelled with their values."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4.8))
    for i, (domain, domain_points) in enumerate(points.items()):
        colour = plt.get_cmap("tab10")(i % 10)
        rows = [row for _, row in domain_points]
        _errorbars(ax, rows, fmt="-o", color=colour, label=domain, alpha=0.8)
        for value, row in domain_points:
            seeds = f" ({len(row['seeds'])} seeds)" if len(row["seeds"]) > 1 else ""
            ax.annotate(format_value(value) + seeds, (row["forgetting"]["point"], row["learning"]["point"]),
                        textcoords="offset points", xytext=(5, 5), fontsize=8, color=colour)
    _learning_forgetting_axes(ax, f"{method}, points labelled by {field}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)


# ---------------------------------------------------------------- all together


def build_report(records: List[RunRecord], out_dir: Path, n_resamples: int = bootstrap.N_RESAMPLES,
                 seed: int = bootstrap.SEED, figures_only: bool = False, analysis_root: Optional[Path] = None,
                 links_from: Optional[Path] = None, analysis_section: Optional[AnalysisSection] = None,
                 zero_shot_dir: Optional[Path] = None) -> Dict[str, Path]:
    """Write RESULTS.md, results.json, learning_vs_forgetting.png and a sweep_<method>_<field>.png per sweep.

    ``figures_only`` writes just the plots (the recipe's figure stage; the report stage writes everything).
    ``analysis_root``: where ``python -m espnet_peft.bin.analyze`` wrote its runs (the recipe's stage 13); when it
    holds any, ``analysis_section`` (``espnet_peft.analysis.summary.report_section``, passed in by the CLI so that the
    recipe package does not import the analysis one) renders RESULTS.md's "Analysis" section and one drift figure per
    domain into the report dir. Its figure links are relative to ``links_from`` (default: ``out_dir``).
    ``zero_shot_dir``: the source model's decodes (the recipe's ``exp/source/decode_zeroshot``), for the zero-shot
    table of every set (:mod:`.zero_shot_table`).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    results = summarise(records, n_resamples=n_resamples, seed=seed)
    written = {"learning_vs_forgetting": plot_learning_vs_forgetting(results, out_dir / "learning_vs_forgetting.png")}
    for (method, field), points in sweeps(results).items():
        name = f"sweep_{method}_{field}"
        written[name] = plot_sweep(method, field, points, out_dir / f"{name}.png")
    analysis: List[str] = []
    if analysis_root is not None and Path(analysis_root).is_dir() and analysis_section is not None:
        analysis = analysis_section(results, Path(analysis_root), out_dir, Path(links_from or out_dir))
    if not figures_only:
        written["results_md"] = out_dir / "RESULTS.md"
        written["results_json"] = out_dir / "results.json"
        zero_shot = zero_shot_lines(zero_shot_dir) if zero_shot_dir is not None else []
        markdown = render_markdown(results) + "".join(line + "\n" for line in [*zero_shot, *analysis])
        atomic_write_text(written["results_json"], json.dumps(results, indent=2, ensure_ascii=False) + "\n")
        atomic_write_text(written["results_md"], markdown)
    return written

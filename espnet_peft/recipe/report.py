"""RESULTS.md, results.json and plots comparing adapters on learning a shifted domain vs forgetting the source one.

Input: one ``run_info.json`` per experiment anywhere under ``exp_root`` (the shell recipe writes it after decoding)::

    {
      "domain": "child",                  # required: the shifted domain this run adapts to
      "method": "ssvd_o",                 # required: "zero_shot" marks the untouched base model (one per domain)
      "outer_share": 0.5,                 # optional: SSVD-O's outer_share; several values make a sweep plot
      "label": "ssvd_o r=8",              # optional: row name (default: method, plus outer_share if set)
      "trainable_params": 1234567,        # required: 0 for zero_shot
      "train_time_s": 5400.0,             # optional: wall-clock training time
      "peak_mem_mb": 20480.0,             # optional: peak accelerator memory during training
      "device": "NVIDIA H100 80GB HBM3",  # optional: what it trained on (listed in the environment block)
      "scores": {                         # required: decode set dirs scored by espnet_peft.bin.score (--out),
        "target": "decode_asr/test_child",#   relative to this file's dir or absolute; each holds
        "source": "decode_asr/test_src"   #   score_wer/per_utt.tsv
      }
    }

Per domain, every run is compared with that domain's zero_shot run on the same utterances:
target / source WER with bootstrap intervals, forgetting = WER_source(run) - WER_source(zero_shot) (absolute points,
paired interval), learning = relative WER reduction on the target, (WER_target(zero_shot) - WER_target(run)) /
WER_target(zero_shot) (percent, paired interval). ``results.json`` holds exactly what the tables show (schema in
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
from typing import Any, Dict, List, Mapping, Optional

from espnet_peft.analysis.plots import pyplot
from espnet_peft.recipe import bootstrap
from espnet_peft.recipe.scoring import UtteranceCounts, read_score_dir

RUN_INFO = "run_info.json"
ZERO_SHOT = "zero_shot"
#: zero-shot WER (%) on the source domain at or above which the source model has not learnt its own task, so the
#: table cannot say anything about learning or forgetting; RESULTS.md then says so above the table
UNTRAINED_SOURCE_WER = 80.0
FULL = "full"
ROLES = ("target", "source")
REQUIRED = ("domain", "method", "trainable_params", "scores")
OPTIONAL = ("outer_share", "label", "train_time_s", "peak_mem_mb", "device")
NUMERIC = {"trainable_params": int, "outer_share": float, "train_time_s": float, "peak_mem_mb": float}


class ReportError(ValueError):
    """Inconsistent experiment records (what is missing and where is in the message)."""


@dataclasses.dataclass
class RunRecord:
    """One experiment: a (domain, method) run and its per-utterance WER counts on the target and source sets."""

    domain: str
    method: str
    trainable_params: int
    scores: Dict[str, UtteranceCounts]  # role ("target" / "source") -> counts
    score_dirs: Dict[str, str] = dataclasses.field(default_factory=dict)
    outer_share: Optional[float] = None
    label: Optional[str] = None
    train_time_s: Optional[float] = None
    peak_mem_mb: Optional[float] = None
    device: Optional[str] = None
    source_file: str = "<memory>"

    def __post_init__(self) -> None:
        if self.label is None:
            share = "" if self.outer_share is None else f" (outer_share={self.outer_share:g})"
            self.label = self.method + share
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
    dirs = {role: str(path.parent / d) for role, d in info["scores"].items()}  # absolute d stays absolute
    scores = {role: read_score_dir(Path(d)) for role, d in dirs.items()}
    fields = {k: info[k] for k in (*REQUIRED, *OPTIONAL) if k != "scores" and info.get(k) is not None}
    for key, cast in NUMERIC.items():
        if key in fields:
            try:
                fields[key] = cast(fields[key])
            except (TypeError, ValueError):
                raise ReportError(f"{path}: {key}={fields[key]!r} is not a number") from None
    return RunRecord(**fields, scores=scores, score_dirs=dirs, source_file=str(path))


def collect_results(exp_root: Path) -> List[RunRecord]:
    """Every ``run_info.json`` under ``exp_root``, in path order."""
    paths = sorted(Path(exp_root).rglob(RUN_INFO))
    if not paths:
        raise ReportError(f"no {RUN_INFO} under {exp_root}: the recipe writes one per experiment after scoring")
    return [load_run_info(p) for p in paths]


# ---------------------------------------------------------------- statistics


def _row_order(record: RunRecord) -> tuple:
    rank = {ZERO_SHOT: 0, FULL: 1}.get(record.method, 2)
    return rank, record.method, record.outer_share if record.outer_share is not None else -1.0, record.label


def _set_info(counts: UtteranceCounts, score_dir: Optional[str]) -> Dict[str, Any]:
    return {"name": Path(score_dir).name if score_dir else None, "dir": score_dir, "n_utts": len(counts.utt_ids),
            "ref_words": int(counts.ref.sum())}


def summarise(records: List[RunRecord], n_resamples: int = bootstrap.N_RESAMPLES, seed: int = bootstrap.SEED,
              confidence: float = bootstrap.CONFIDENCE) -> Dict[str, Any]:
    """The report's data (written as results.json)::

        {"environment": {...}, "bootstrap": {"n_resamples", "seed", "confidence"},
         "domains": {domain: {"sets": {role: {"name", "dir", "n_utts", "ref_words"}},
                              "rows": [{"method", "label", "outer_share", "trainable_params", "train_time_s",
                                        "peak_mem_mb", "device", "run_info",
                                        "target_wer", "source_wer", "forgetting", "learning"}]}}}

    WERs, forgetting (absolute points) and learning (relative %) are {"point", "low", "high"};
    forgetting and learning are null on the zero_shot row, which they are measured against.
    """
    stats = dict(n_resamples=n_resamples, seed=seed, confidence=confidence)
    domains: Dict[str, Any] = {}
    for domain in sorted({r.domain for r in records}):
        runs = sorted((r for r in records if r.domain == domain), key=_row_order)
        zero = [r for r in runs if r.method == ZERO_SHOT]
        if len(zero) != 1:
            raise ReportError(f"domain {domain!r} has {len(zero)} {ZERO_SHOT} runs ({[r.source_file for r in zero]}); "
                              f"it needs exactly one: decode the base model and write run_info.json with "
                              f"method={ZERO_SHOT!r}")
        labels = Counter(r.label for r in runs)
        clash = sorted((r.label, r.source_file) for r in runs if labels[r.label] > 1)
        if clash:
            raise ReportError(f"domain {domain!r}: several runs share a label: {clash}; set 'label' in run_info.json")
        base = zero[0]
        rows = []
        for run in runs:
            row: Dict[str, Any] = {"method": run.method, "label": run.label, "outer_share": run.outer_share,
                                   "trainable_params": run.trainable_params, "train_time_s": run.train_time_s,
                                   "peak_mem_mb": run.peak_mem_mb, "device": run.device, "run_info": run.source_file}
            counts = {role: run.scores[role].aligned_to(base.scores[role].utt_ids,
                                                        f"{run.source_file} vs {base.source_file} ({role})")
                      for role in ROLES}
            for role in ROLES:
                row[f"{role}_wer"] = bootstrap.wer_ci(counts[role].errors, counts[role].ref, **stats).as_dict()
            is_base = run is base
            src, tgt = base.scores["source"], base.scores["target"]
            row["forgetting"] = None if is_base else bootstrap.paired_difference_ci(
                counts["source"].errors, src.errors, src.ref, **stats).as_dict()
            row["learning"] = None if is_base else bootstrap.relative_reduction_ci(
                counts["target"].errors, tgt.errors, tgt.ref, **stats).as_dict()
            rows.append(row)
        domains[domain] = {"sets": {role: _set_info(base.scores[role], base.score_dirs.get(role)) for role in ROLES},
                           "rows": rows}
    devices = sorted({r.device for r in records if r.device})
    return {"environment": environment(devices), "bootstrap": stats, "domains": domains}


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
    if commit and _run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo):
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


def _fmt_interval(value: Optional[Mapping[str, float]], digits: int, signed: bool = False) -> str:
    return "-" if value is None else bootstrap.Interval(**value).format(digits, signed)


def untrained_source_warning(rows: List[Mapping[str, Any]]) -> List[str]:
    """A warning (as markdown lines) when the zero-shot model fails its own source domain, else nothing."""
    base = next((r for r in rows if r["method"] == ZERO_SHOT), None)
    if base is None or base["source_wer"]["point"] < UNTRAINED_SOURCE_WER:
        return []
    return [f"> **Warning:** the source model's zero-shot WER on its own source set is {base['source_wer']['point']:.1f}%"
            f" (>= {UNTRAINED_SOURCE_WER:.0f}%): it has not learnt the source task, so the learning and forgetting "
            "columns say nothing about the methods. Train it longer (`max_epoch` in the source config) or start from "
            "a real pretrained model (`--source_model`).", ""]


def render_markdown(results: Mapping[str, Any], command: str = "python -m espnet_peft.bin.make_report") -> str:
    env, stats = results["environment"], results["bootstrap"]
    lines = [f"<!-- Generated by {command} -->", "# RESULTS", "## Environments",
             f"- date: `{env['date']}`", f"- python version: `{env['python']}`",
             f"- espnet version: `espnet {env['espnet']}`", f"- pytorch version: `pytorch {env['torch']}`",
             f"- espnet-peft version: `{env['espnet_peft']}`", f"- Git hash: `{env['git_commit']}`",
             f"- host: `{env['host']}`, CPU: `{env['cpu']}`, GPU: `{env['gpu']}`"]
    if env["training_devices"]:
        lines.append(f"- trained on: `{', '.join(env['training_devices'])}`")
    lines += ["", f"WER in %, text normalised by `espnet_peft.recipe.text_norm`, scored with sclite. Brackets: "
              f"{stats['confidence']:.0%} utterance-level bootstrap interval ({stats['n_resamples']} resamples, "
              f"seed {stats['seed']}). Forgetting = WER on the source set minus the zero-shot model's (absolute "
              "points, lower is better); learning = relative WER reduction on the target set over the zero-shot "
              "model (%, higher is better); both intervals are paired on the same utterances."]
    header = ("method", "trainable params", "target WER [95% CI]", "source WER [95% CI]",
              "forgetting ΔWER src [95% CI]", "learning rel. WERR tgt [95% CI]", "train time", "peak memory")
    for domain, block in results["domains"].items():
        sets = block["sets"]
        lines += ["", f"## {domain}",
                  *(f"- {role} set: `{s['name']}` ({s['n_utts']} utterances, {s['ref_words']} words)"
                    for role, s in sets.items()),
                  ""]
        lines += untrained_source_warning(block["rows"])
        lines += ["|" + "|".join(header) + "|", "|---|" + "---:|" * (len(header) - 1)]
        for row in block["rows"]:
            cells = (row["label"], _params(row["trainable_params"]), _fmt_interval(row["target_wer"], 1),
                     _fmt_interval(row["source_wer"], 1), _fmt_interval(row["forgetting"], 2, signed=True),
                     _fmt_interval(row["learning"], 1, signed=True), _duration(row["train_time_s"]),
                     _memory(row["peak_mem_mb"]))
            lines.append("|" + "|".join(cells) + "|")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- plots




def _errorbar(ax: Any, x: Any, values: List[Mapping[str, float]], **kwargs: Any) -> str:
    """Points with asymmetric interval bars along y; returns the colour used."""
    points = [v["point"] for v in values]
    bars = [[p - v["low"] for p, v in zip(points, values)], [v["high"] - p for p, v in zip(points, values)]]
    return ax.errorbar(x, points, yerr=bars, capsize=3, **kwargs)[0].get_color()


def plot_learning_vs_forgetting(results: Mapping[str, Any], path: Path) -> Path:
    """One panel per domain; a point per adapted run at (forgetting, learning) with both intervals as error bars."""
    plt = pyplot()
    domains = results["domains"]
    fig, axes = plt.subplots(1, len(domains), figsize=(5.5 * len(domains), 4.5), squeeze=False)
    methods = sorted({row["method"] for block in domains.values() for row in block["rows"]})
    colours = {m: plt.get_cmap("tab10")(i % 10) for i, m in enumerate(methods)}
    for ax, (domain, block) in zip(axes[0], domains.items()):
        for row in block["rows"]:
            if row["forgetting"] is None:
                continue
            x, y = row["forgetting"], row["learning"]
            _errorbar(ax, [x["point"]], [y], xerr=[[x["point"] - x["low"]], [x["high"] - x["point"]]], fmt="o",
                      color=colours[row["method"]])
            ax.annotate(row["label"], (x["point"], y["point"]), textcoords="offset points", xytext=(5, 5),
                        fontsize=8)
        ax.axhline(0, color="grey", lw=0.8, ls="--")
        ax.axvline(0, color="grey", lw=0.8, ls="--")
        ax.set_title(f"{domain} (better: up and left)")
        ax.set_xlabel("forgetting: ΔWER on source vs zero-shot (abs. points)")
        ax.set_ylabel("learning: relative WER reduction on target (%)")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)


def sweep_rows(results: Mapping[str, Any]) -> Dict[str, List[Dict[str, Any]]]:
    """{domain: rows with an outer_share, sorted by it} for the domains that have two or more values."""
    sweeps = {}
    for domain, block in results["domains"].items():
        rows = sorted((r for r in block["rows"] if r["outer_share"] is not None), key=lambda r: r["outer_share"])
        if len({r["outer_share"] for r in rows}) >= 2:
            sweeps[domain] = rows
    return sweeps


def plot_outer_share_sweep(results: Mapping[str, Any], path: Path) -> Optional[Path]:
    """Target WER and source forgetting against SSVD-O's outer_share; None (no file) when there is no sweep."""
    sweeps = sweep_rows(results)
    if not sweeps:
        return None
    plt = pyplot()
    fig, (ax_wer, ax_forget) = plt.subplots(1, 2, figsize=(11, 4.5))
    for domain, rows in sweeps.items():
        shares = [r["outer_share"] for r in rows]
        colour = _errorbar(ax_wer, shares, [r["target_wer"] for r in rows], marker="o", label=domain)
        _errorbar(ax_forget, shares, [r["forgetting"] for r in rows], marker="o", label=domain, color=colour)
        zero = next(r for r in results["domains"][domain]["rows"] if r["method"] == ZERO_SHOT)
        ax_wer.axhline(zero["target_wer"]["point"], ls=":", lw=1, color=colour, label=f"{domain} zero-shot")
    ax_wer.set_title("target WER vs outer_share")
    ax_forget.set_title("source forgetting vs outer_share")
    ax_wer.set_ylabel("target WER (%)")
    ax_forget.set_ylabel("forgetting: ΔWER on source vs zero-shot (abs. points)")
    ax_forget.axhline(0, color="grey", lw=0.8, ls="--")
    for ax in (ax_wer, ax_forget):
        ax.set_xlabel("SSVD-O outer_share")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)


# ---------------------------------------------------------------- all together


def build_report(records: List[RunRecord], out_dir: Path, n_resamples: int = bootstrap.N_RESAMPLES,
                 seed: int = bootstrap.SEED, figures_only: bool = False, analysis_root: Optional[Path] = None,
                 links_from: Optional[Path] = None) -> Dict[str, Path]:
    """Write RESULTS.md, results.json, learning_vs_forgetting.png and (with a sweep) outer_share_sweep.png.

    ``figures_only`` writes just the plots (the recipe's figure stage; the report stage writes everything).
    ``analysis_root``: where ``python -m espnet_peft.bin.analyze`` wrote its runs (the recipe's stage 13); when it
    holds any, RESULTS.md gets an "Analysis" section (``espnet_peft.analysis.summary.report_section``) and the
    report dir one drift figure per domain. Its figure links are relative to ``links_from`` (default: ``out_dir``).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    results = summarise(records, n_resamples=n_resamples, seed=seed)
    written = {"learning_vs_forgetting": plot_learning_vs_forgetting(results, out_dir / "learning_vs_forgetting.png")}
    sweep = plot_outer_share_sweep(results, out_dir / "outer_share_sweep.png")
    if sweep is not None:
        written["outer_share_sweep"] = sweep
    analysis: List[str] = []
    if analysis_root is not None and Path(analysis_root).is_dir():
        from espnet_peft.analysis.summary import report_section  # matplotlib only, no torch

        analysis = report_section(results, Path(analysis_root), out_dir, Path(links_from or out_dir))
    if not figures_only:
        written["results_md"] = out_dir / "RESULTS.md"
        written["results_json"] = out_dir / "results.json"
        markdown = render_markdown(results) + "".join(line + "\n" for line in analysis)
        written["results_md"].write_text(markdown, encoding="utf-8")
        written["results_json"].write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return written

"""The model card of a source model that a recipe ships: how it was made and how well it does, from its files.

Everything in the card is read from what the recipe wrote: the exp dir's ``config.yaml`` and ``train*.log``, the corpus generator's ``corpus.json`` and the zero-shot scores
(``score_wer/summary.json`` per decoded set). Nothing is typed in by hand except the command that reproduces it.
"""

from __future__ import annotations

import datetime
import json
import re
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence

import yaml

#: an ESPnet trainer line with the validation results of one epoch
_VALID_LINE = re.compile(r"(\d+)epoch results: .*\[valid\] (.*?)(?:, time=|$)")
#: where stage 5 trains on from the first part's averaged model (peft.sh --source_continue_config)
CONTINUED_DIR = "continued"
#: the timestamp that starts an ESPnet log line ("[host] 2026-12-03 21:29:26,170 (trainer:...")
_LOG_TIME = re.compile(r"^\[[^\]]*\] (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)")


def training_wall_time(exp_dir: Path) -> float:
    """Seconds between the first and last timestamped line of every ``train*.log`` (ESPnet keeps one per (re)start
    as train.log, train.1.log, ...), summed: the time spent training, however often it was killed and resumed."""
    total = 0.0
    for log in exp_dir.glob("train*.log"):
        stamps = [m.group(1) for m in map(_LOG_TIME.match, log.read_text(errors="replace").splitlines()) if m]
        if len(stamps) > 1:
            first, last = (datetime.datetime.strptime(t, "%Y-%m-%d %H:%M:%S") for t in (stamps[0], stamps[-1]))
            total += (last - first).total_seconds()
    return total


def last_valid_results(exp_dir: Path) -> Dict[str, Any]:
    """The last epoch's ``[valid]`` numbers in the exp dir's ``train*.log`` files ({} when there are none)."""
    found: Dict[str, Any] = {}
    for log in exp_dir.glob("train*.log"):
        for line in log.read_text(encoding="utf-8", errors="replace").splitlines():
            match = _VALID_LINE.search(line)
            if match and int(match.group(1)) >= found.get("epoch", 0):
                pairs = (item.split("=", 1) for item in match.group(2).split(", ") if "=" in item)
                found = {"epoch": int(match.group(1)), **{k: float(v) for k, v in pairs if _is_number(v)}}
    return found


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def set_scores(decode_dir: Path, sets: Sequence[str]) -> Dict[str, Dict[str, Any]]:
    """WER and the length checks of every decoded set (``<decode_dir>/<set>/score_wer/summary.json``)."""
    scores = {}
    for name in sets:
        path = decode_dir / name / "score_wer" / "summary.json"
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found: decode and score {name} first (recipe stages 6 and 9)")
        scores[name] = json.loads(path.read_text(encoding="utf-8"))
    return scores


def search_description(decode_dir: Path, set_name: str) -> str:
    """How the zero-shot hypotheses were searched, from ``decode_info.json`` (``s2t_batch_inference``)."""
    path = decode_dir / set_name / "decode_info.json"
    if not path.is_file():
        return "ESPnet s2t_inference"
    settings = json.loads(path.read_text(encoding="utf-8"))["settings"]
    if settings.get("ctc_weight"):
        prefix = ("the prompt counted as labels (ESPnet 202511's)" if settings.get("ctc_prefix") == "prompt"
                  else "the transcript after the prompt")
        penalty = f", word insertion penalty {settings['word_penalty']}" if settings.get("word_penalty") else ""
        return (f"batched joint CTC/attention greedy: CTC weight {settings['ctc_weight']}, the decoder's "
                f"{settings['ctc_candidates']} best tokens rescored per step, CTC prefix: {prefix}{penalty}")
    return "batched greedy, attention decoder alone"


def training_summary(exp_dir: Path) -> Dict[str, Any]:
    """The training of the model in ``exp_dir``, with ``continued``: the same for its second part when stage 5
    trained on from the first part's averaged model (``<exp_dir>/continued``, peft.sh ``--source_continue_config``)."""
    config = yaml.safe_load((exp_dir / "config.yaml").read_text(encoding="utf-8"))
    summary = {**_schedule(config, exp_dir), "encoder": config["encoder"], "encoder_conf": config["encoder_conf"],
               "decoder": config["decoder"], "decoder_conf": config["decoder_conf"],
               "ctc_weight": config["model_conf"].get("ctc_weight"),
               "speech_length": config["preprocessor_conf"]["speech_length"], "tokens": len(config["token_list"])}
    continued = exp_dir / CONTINUED_DIR
    if (continued / "config.yaml").is_file():
        summary["continued"] = _schedule(yaml.safe_load((continued / "config.yaml").read_text(encoding="utf-8")),
                                         continued)
    return summary


def _schedule(config: Mapping[str, Any], exp_dir: Path) -> Dict[str, Any]:
    """How one training run went: steps, optimiser, augmentation, wall time, its last validation."""
    steps = int(config["max_epoch"]) * int(config["num_iters_per_epoch"])
    return {"steps": steps, "epochs": config["max_epoch"], "batch_size": config["batch_size"],
            "optim": config["optim"], "optim_conf": config.get("optim_conf"), "scheduler": config.get("scheduler"),
            "scheduler_conf": config.get("scheduler_conf"), "seed": config.get("seed"),
            "specaug": config.get("specaug"), "specaug_conf": config.get("specaug_conf"),
            "wall_time_s": training_wall_time(exp_dir), "runs": len(list(exp_dir.glob("train*.log"))),
            "valid": last_valid_results(exp_dir)}


def _schedule_line(run: Mapping[str, Any]) -> str:
    augment = f", {run['specaug']} {run['specaug_conf']}" if run.get("specaug") else ", no SpecAugment"
    return (f"{run['steps']:,} steps ({run['epochs']} epochs x {run['steps'] // int(run['epochs'])} steps) of batch "
            f"{run['batch_size']}, {run['optim']} {run['optim_conf']}, {run['scheduler']} {run['scheduler_conf']}"
            f"{augment}, seed {run['seed']}")


def render(name: str, sha256: str, size_bytes: int, n_params: int, training: Mapping[str, Any],
           corpus: Mapping[str, Any], scores: Mapping[str, Mapping[str, Any]], reference_set: str, command: str,
           hardware: str, notes: Optional[List[str]] = None, search: str = "greedy decoding, batched") -> str:
    """The card as Markdown."""
    continued = training.get("continued")
    parts = [training, *([continued] if continued else [])]
    wall = sum(part.get("wall_time_s") or 0.0 for part in parts)
    runs = sum(part.get("runs") or 0 for part in parts)
    valid = (continued or training).get("valid") or {}
    lines = [
        f"# {name}: the embedded source model", "",
        "A small OWSM-v3.1-style speech-to-text model (S2T task, E-Branchformer encoder, Transformer decoder, "
        "OWSM text format `<eng><asr><notimestamps>`), trained from scratch on the synthetic source domain "
        "(espeak-ng US-English voices). Fine-tuning it runs the code path of real OWSM fine-tuning.", "",
        f"- file: `{name}` ({size_bytes / 1e6:.1f} MB, `espnet2.bin.pack` layout), sha256 `{sha256}`",
        f"- parameters: {n_params:,}",
        f"- encoder: {training['encoder']} {training['encoder_conf'].get('num_blocks')} blocks x "
        f"{training['encoder_conf'].get('output_size')}, input layer {training['encoder_conf'].get('input_layer')}; "
        f"decoder: {training['decoder']} {training['decoder_conf'].get('num_blocks')} blocks; "
        f"{training['tokens']} tokens; {training['speech_length']} s input window; CTC weight {training['ctc_weight']}",
        "", "## How it was made", "",
        f"Command (from `egs2/synthetic/peft1`): `{command}`", "",
        f"- training: {_schedule_line(training)}",
        *([f"- then, from that part's averaged model (`{CONTINUED_DIR}/`): {_schedule_line(continued)}"]
          if continued else []),
        f"- hardware: {hardware}; {wall / 3600:.2f} h of training in {runs} piece{'s' * (runs != 1)} (resumed from "
        "checkpoint.pth), from the timestamps of its train*.log" if wall else f"- hardware: {hardware}",
        f"- last validation epoch ({'second part, ' if continued else ''}{valid.get('epoch', '?')}): attention accuracy "
        f"{valid.get('acc', float('nan')):.3f}, CTC CER {valid.get('cer_ctc', float('nan')):.3f}",
        f"- corpus generator: seed {corpus.get('seed')}, sentences of at most {corpus.get('max_words')} words, "
        f"{corpus.get('sample_rate')} Hz",
        "", "| set | utterances | speakers | hours |", "| --- | ---: | ---: | ---: |"]
    for set_name, info in sorted(corpus.get("dirs", {}).items()):
        lines.append(f"| {set_name} | {info['utterances']} | {len(info['speakers'])} | {info['hours']:.2f} |")
    reference = scores[reference_set]["error_rate"]
    lines += ["", f"## Zero-shot results ({search})", "",
              "| set | WER % | x source WER | insertions % | longest hyp / ref | hyps >= 2x ref |",
              "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for set_name, score in scores.items():
        ratio = score["error_rate"] / reference if reference else float("inf")
        lines.append(f"| {set_name} | {score['error_rate']:.2f} | {ratio:.2f} | {score['insertion_rate']:.2f} | "
                     f"{score['max_hyp_ref_ratio']:.2f} | {score['hyp_at_least_twice_ref']} |")
    lines += ["", *(notes or [])]
    return "\n".join(lines).rstrip() + "\n"

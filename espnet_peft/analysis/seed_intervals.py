"""Two findings of the "Behind the Scenes" (BTS) study of LoRA in Whisper, per method, with intervals over seeds.

* *Delayed specialisation*: early layers keep their representations and late layers change. Measured per seed as the
  **specialisation gap** of the CKA drift against the source model (``analysis.json``'s ``cka.drift``, one value per
  layer): the mean CKA of the first half of the layers minus that of the second half (the middle layer of an odd count
  is left out). Positive: the late layers moved more.
* *Forward alignment, backward differentiation*: LoRA's ``A`` turns towards the principal directions of the layer
  input and ``B`` towards those of the output gradient. Measured per seed from the training-dynamics probe's last
  record (``adapter_dynamics.json``, ``espnet_peft.train.dynamics_probe``): the share of the update of each side's
  map in the top-``r`` directions, minus its chance level ``r / d``, averaged over the adapter layers (the *update*,
  because LoRA's random ``A0`` dominates ``A`` itself for long).

Each is summarised by the mean over seeds and a two-sided Student-t interval (seeds as the unit: no utterance
resampling). A finding is *supported* when its interval excludes 0 on the side that the finding predicts.
No torch import: the report imports this module.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from statistics import mean, stdev
from typing import Any, Mapping, Optional, Sequence

from scipy import stats

DYNAMICS_JSON = "adapter_dynamics.json"
CONFIDENCE = 0.95


def t_interval(values: Sequence[float], confidence: float = CONFIDENCE) -> Optional[dict[str, float]]:
    """Mean and Student-t interval of ``values`` (one per seed); None with fewer than 2 values."""
    values = [float(v) for v in values]
    if len(values) < 2:
        return None
    centre = mean(values)
    half = stats.t.ppf(0.5 + confidence / 2, len(values) - 1) * stdev(values) / math.sqrt(len(values))
    return {"mean": centre, "low": centre - half, "high": centre + half, "n": len(values)}


def specialisation_gap(drift: Sequence[Optional[float]]) -> Optional[float]:
    """Mean CKA of the first half of the layers minus that of the second half; None below 2 layers or dead halves."""
    half = len(drift) // 2
    early = [v for v in drift[:half] if v is not None]
    late = [v for v in drift[len(drift) - half:] if v is not None]
    if half == 0 or not early or not late:
        return None
    return mean(early) - mean(late)


def _layer_mean(layers: Mapping[str, Mapping[str, Any]], key: str) -> Optional[float]:
    excess = [layer[key] - layer[f"{key.replace('_update', '')}_chance"] for layer in layers.values()
              if layer.get(key) is not None]
    return mean(excess) if excess else None


def dynamics_excess(path: Path) -> Optional[dict[str, Any]]:
    """Layer means of (update share in the top-r directions - chance) at the probe's last step, for both sides.

    None when ``path`` does not exist (the probe was off) or its last record saw no update yet.
    """
    if not Path(path).is_file():
        return None
    try:
        probes = json.loads(Path(path).read_text(encoding="utf-8"))["probes"]
    except (ValueError, KeyError) as err:
        raise ValueError(f"{path}: not a training-dynamics record ({err}); delete it and re-train with the probe "
                         "on, or turn dynamics_probe off") from err
    last = max(probes, key=lambda record: record["step"]) if probes else None
    if last is None or last["step"] == 0:
        return None
    forward = _layer_mean(last["layers"], "forward_alignment_update")
    backward = _layer_mean(last["layers"], "backward_alignment_update")
    if forward is None or backward is None:
        return None
    return {"step": last["step"], "forward": forward, "backward": backward}


def _verdict(interval: Optional[Mapping[str, float]], predicted_sign: int = 1) -> str:
    if interval is None:
        return "one seed: no interval"
    if predicted_sign * interval["low"] > 0 and predicted_sign * interval["high"] > 0:
        return "supported"
    if predicted_sign * interval["low"] < 0 and predicted_sign * interval["high"] < 0:
        return "contradicted"
    return "not resolved (interval spans 0)"


def _cell(interval: Optional[Mapping[str, float]], values: Sequence[float], digits: int) -> str:
    if interval is None:
        return f"{values[0]:+.{digits}f} (1 seed)" if values else "-"
    return (f"{interval['mean']:+.{digits}f} [{interval['low']:+.{digits}f}, {interval['high']:+.{digits}f}], "
            f"{_verdict(interval)}")


def method_findings(run_dirs: Sequence[Path], analyses: Mapping[Path, Mapping[str, Any]]) -> dict[str, Any]:
    """Per-seed values and intervals of one report row (its experiment dirs, one per seed)."""
    encoder, decoder, forward, backward, steps = [], [], [], [], set()
    for run_dir in run_dirs:
        res = analyses.get(Path(run_dir).resolve())
        if res is not None:
            gap = specialisation_gap((res.get("cka") or {}).get("drift") or [])
            if gap is not None:
                encoder.append(gap)
            gap = specialisation_gap((res.get("decoder_drift") or {}).get("drift") or [])
            if gap is not None:
                decoder.append(gap)
        dynamics = dynamics_excess(Path(run_dir) / DYNAMICS_JSON)
        if dynamics is not None:
            forward.append(dynamics["forward"])
            backward.append(dynamics["backward"])
            steps.add(dynamics["step"])
    return {"encoder_gap": encoder, "decoder_gap": decoder, "forward": forward, "backward": backward,
            "probe_steps": sorted(steps),
            **{f"{key}_ci": t_interval(values) for key, values in
               (("encoder_gap", encoder), ("decoder_gap", decoder), ("forward", forward), ("backward", backward))}}


def report_lines(rows: Sequence[Mapping[str, Any]], analyses: Mapping[Path, Mapping[str, Any]]) -> list[str]:
    """Markdown lines of one domain's "BTS's findings over seeds" table; no lines when no row has two analysed seeds
    or a dynamics record."""
    table = []
    for row in rows:
        found = method_findings([Path(p).parent for p in row["run_infos"]], analyses)
        if len(found["encoder_gap"]) < 2 and not found["forward"]:
            continue
        table.append([row["label"], str(len(found["encoder_gap"])),
                      _cell(found["encoder_gap_ci"], found["encoder_gap"], 3),
                      _cell(found["decoder_gap_ci"], found["decoder_gap"], 3),
                      _cell(found["forward_ci"], found["forward"], 3) if found["forward"] else "probe off",
                      _cell(found["backward_ci"], found["backward"], 3) if found["backward"] else "probe off"])
    if not table:
        return []
    header = ["method", "seeds analysed", "encoder: early − late CKA", "decoder: early − late CKA",
              "A's update in input's top-r − chance", "B's update in gradient's top-r − chance"]
    return ["", f"BTS's findings over seeds (mean [{CONFIDENCE:.0%} Student-t interval over seeds]; `espnet_peft."
            "analysis.seed_intervals`). Delayed specialisation: early − late CKA > 0. Forward alignment / backward "
            "differentiation: the share of the update of LoRA's A (B) in the top-r principal directions of the layer "
            "input (output gradient) exceeds chance, at the probe's last step.", "",
            "|" + "|".join(header) + "|", "|" + "---|" * len(header), *("|" + "|".join(r) + "|" for r in table)]

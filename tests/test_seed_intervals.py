"""BTS's findings over seeds (espnet_peft.analysis.seed_intervals): the Student-t interval, the specialisation gap,
the dynamics excess over chance, and the report table's verdicts, against values worked out by hand."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from espnet_peft.analysis.seed_intervals import (dynamics_excess, method_findings, report_lines, specialisation_gap,
                                                 t_interval)


def test_t_interval_is_students_with_n_minus_1_degrees() -> None:
    interval = t_interval([1.0, 2.0, 3.0])
    half = 4.302652729911275 / math.sqrt(3)  # t_{0.975, 2}, sd = 1
    assert interval["mean"] == pytest.approx(2.0)
    assert (interval["low"], interval["high"]) == pytest.approx((2.0 - half, 2.0 + half))
    assert t_interval([1.0]) is None


def test_specialisation_gap_is_first_half_minus_second_half() -> None:
    assert specialisation_gap([0.99, 0.97, 0.90, 0.80]) == pytest.approx(0.98 - 0.85)
    assert specialisation_gap([0.9, 0.5, 0.7]) == pytest.approx(0.9 - 0.7)  # the middle layer is left out
    assert specialisation_gap([0.9, None, None, 0.7]) == pytest.approx(0.2)  # dead layers are skipped
    assert specialisation_gap([0.9]) is None


def _dynamics(path: Path, last_step: int, forward: list, backward: list) -> Path:
    layers = {f"l{i}": {"forward_alignment_update": f, "forward_alignment_chance": 0.1,
                        "backward_alignment_update": b, "backward_alignment_chance": 0.2}
              for i, (f, b) in enumerate(zip(forward, backward))}
    start = {name: {**layer, "forward_alignment_update": None, "backward_alignment_update": None}
             for name, layer in layers.items()}
    path.mkdir(parents=True, exist_ok=True)
    (path / "adapter_dynamics.json").write_text(json.dumps(
        {"every_n_steps": 12, "probes": [{"step": 0, "layers": start}, {"step": last_step, "layers": layers}]}))
    return path


def test_dynamics_excess_reads_the_last_probe_against_chance(tmp_path: Path) -> None:
    run = _dynamics(tmp_path / "run", 48, [0.3, 0.5], [0.2, 0.6])
    assert dynamics_excess(run / "adapter_dynamics.json") == pytest.approx(
        {"step": 48, "forward": 0.4 - 0.1, "backward": 0.4 - 0.2})
    assert dynamics_excess(tmp_path / "missing.json") is None
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(ValueError, match="bad.json"):
        dynamics_excess(tmp_path / "bad.json")


def test_report_lines_give_a_verdict_only_the_interval_supports(tmp_path: Path) -> None:
    runs = [_dynamics(tmp_path / f"lora_s{seed}", 48, [0.3 + 0.01 * seed], [0.15 - 0.01 * seed]) for seed in range(3)]
    # encoder: late layers always moved more (supported); decoder: no consistent sign (unresolved)
    analyses = {run.resolve(): {"cka": {"drift": [0.99, 0.98, 0.90, 0.85 + 0.01 * i]},
                                "decoder_drift": {"drift": [0.9, 0.9 + (0.1 if i == 1 else -0.1)]}}
                for i, run in enumerate(runs)}
    found = method_findings(runs, analyses)
    assert found["encoder_gap"] == pytest.approx([0.985 - 0.875, 0.985 - 0.88, 0.985 - 0.885])
    rows = [{"label": "lora", "run_infos": [str(run / "run_info.json") for run in runs]},
            {"label": "full", "run_infos": [str(tmp_path / "full_s0" / "run_info.json")]}]
    lines = report_lines(rows, analyses)
    lora = next(line for line in lines if line.startswith("|lora|"))
    cells = lora.split("|")[1:-1]
    assert cells[1] == "3"
    assert cells[2].startswith("+0.105 [") and cells[2].endswith("supported")
    assert cells[3].endswith("not resolved (interval spans 0)")
    assert cells[4].startswith("+0.210 [") and cells[4].endswith("supported")  # 0.31 - 0.1 on average
    assert cells[5].startswith("-0.060 [") and cells[5].endswith("contradicted")  # 0.14 - 0.2 on average
    assert not any(line.startswith("|full|") for line in lines)  # one seed, no probe: nothing to say

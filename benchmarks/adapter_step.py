#!/usr/bin/env python
"""Speed and memory of one training step with each adapter, on an OWSM-v3.1-base-shaped E-Branchformer encoder.

Every configuration gets its own fresh model, built from the same seed, and the same inputs:

* ``inference``: forward only, ``model.eval()`` under ``torch.inference_mode()``;
* ``frozen_floor``: no trainable parameter; forward + backward from the loss down to the output of the conv2d input
  layer ``embed`` (made a leaf that requires grad), i.e. down to the input of the first adapted block, with no weight
  gradient anywhere (see ``docs/adapter-math.md``, "Frozen step for benchmarks");
* ``full_finetune``: every parameter trainable (the backward then also runs through ``embed``);
* ``lora``, ``dora``, ``pissa``, ``ssvd``, ``ssvd_o``: our adapters on the attention q/k/v/out and feed-forward
  w_1/w_2 linears of every block, at a budget matched with ``espnet_peft.budget.match_budget`` (by default the size of
  LoRA r=16 there), SSVD / SSVD-O with ``compute_path: auto``;
* ``ssvd_matched_compute``, ``ssvd_o_matched_compute``: SSVD / SSVD-O (both sides rotated) at matched *compute*: the
  largest ``k`` whose rank-k correction does no more extra work per token than LoRA r=16, i.e.
  ``k (d_in + k + d_out) <= r (d_in + d_out)`` on every target (k = 15 here);
* ``peft_lora``, ``peft_dora``: HF peft LoRA / DoRA r=16 on the same modules;
* ``dora_same_rank``: our DoRA at r=16 on every layer, exactly peft_dora's setting (the matched-budget ``dora`` uses
  r=15 on the 1536-output layers to pay for the magnitude vector); the ours / peft DoRA ratio uses it;
* ``merged_lora_inference``: our LoRA (with B != 0) merged by ``merge_adapters``, forward only as ``inference``.

A training step is ``zero grads -> forward -> loss -> backward`` (no optimiser step), in ``model.train()`` (dropout on).
The loss is the mean square of the encoder output: it keeps the benchmark about the encoder (a CTC head over OWSM's
50k-token vocabulary would add a 384 x 50k projection that dwarfs the adapters).

Timing (``--timing paired``, the default): every configuration's fresh model lives in one process and each timed
round runs one step of each configuration (rotating the order), so the slow drifts of a shared machine hit all alike;
ratios are medians of per-round ratios. ``--timing isolated`` times inside the per-configuration subprocesses instead
(ratios of medians; ``--rounds`` repeats the sweep). On the shared 2-core VM this was written on, the isolated medians
of one configuration moved by up to 14% between two rounds, which is as large as the effects being measured.

Peak memory comes from a separate pass that runs each configuration on a fresh model in a fresh subprocess: on CUDA,
``torch.cuda.max_memory_allocated`` minus the allocation before the first step; on CPU, the peak resident set size
(``VmHWM``, reset through ``/proc/self/clear_refs``) minus the RSS before the first step. Both cover everything the
steps add on top of the built model and inputs: activations saved for backward, gradients, temporaries, and on CPU
whatever the C allocator keeps mapped.

Other processes' CPU use is measured during every run / round (``/proc/stat``); contaminated ones are repeated
(``--retries``) after waiting for a quiet machine (``--wait-quiet``) and the load is reported next to each result.

Usage::

    python benchmarks/adapter_step.py --output benchmarks/results/adapter_step_cpu.json
    python benchmarks/adapter_step.py --quick --output /tmp/x.json      # smoke run, < 30 s on 2 CPU cores
    python benchmarks/adapter_step.py --device cuda                      # writes adapter_step_cuda.json
    python benchmarks/adapter_step.py --device cuda --autocast bfloat16  # writes adapter_step_cuda_amp_bfloat16.json
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import gc
import json
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from harness.environment import torch_machine
from harness.load import ForeignLoad
from harness.memory import PeakMemory
from harness.output import utc_timestamp, write_record
from harness.paths import RESULTS_DIR
from harness.subprocess_runs import run_worker, write_result
from harness.timing import isolated_runs, paired_rounds, ratio, step_statistics, time_steps

#: the attention q/k/v/out and (macaron and second) feed-forward linears of every E-Branchformer block
TARGET_MODULES = ["linear_q", "linear_k", "linear_v", "linear_out", "w_1", "w_2"]
OUR_METHODS = ("lora", "dora", "pissa", "ssvd", "ssvd_o")
CONFIGS = (
    "inference",
    "frozen_floor",
    "full_finetune",
    *OUR_METHODS,
    "ssvd_matched_compute",
    "ssvd_o_matched_compute",
    "peft_lora",
    "peft_dora",
    "dora_same_rank",
    "merged_lora_inference",
)
INFERENCE_CONFIGS = ("inference", "merged_lora_inference")
FEATURE_DIM = 80
FRAMES_PER_SECOND = 100
LOSS = "mean square of the encoder output (after the final LayerNorm): out.square().mean()"

#: OWSM v3.1 base (espnet/owsm_v3.1_ebf_base, "ebf_conv2d_size384_e6_d6_..._flashattn_lessreg") encoder options, as in
#: the v3.1 recipe's E-Branchformer config with the base sizes; see ASSUMPTIONS for what could not be checked here.
OWSM_V31_BASE: Dict[str, Any] = {
    "input_size": FEATURE_DIM,
    "output_size": 384,
    "attention_heads": 6,
    "attention_layer_type": "selfattn",
    "pos_enc_layer_type": "abs_pos",
    "rel_pos_type": "latest",
    "cgmlp_linear_units": 1536,
    "cgmlp_conv_kernel": 31,
    "use_linear_after_conv": False,
    "gate_activation": "identity",
    "num_blocks": 6,
    "dropout_rate": 0.05,
    "positional_dropout_rate": 0.05,
    "attention_dropout_rate": 0.05,
    "input_layer": "conv2d",
    "layer_drop_rate": 0.0,
    "linear_units": 1536,
    "positionwise_layer_type": "linear",
    "use_ffn": True,
    "macaron_ffn": True,
    "merge_conv_kernel": 31,
    "use_flash_attn": True,
}
ASSUMPTIONS = [
    "Encoder options follow egs2/owsm_v3.1/s2t1/conf/train_s2t_ebf_conv2d_size1024_e18_d18_..._flashattn.yaml "
    "(selfattn + abs_pos, use_ffn + macaron_ffn, cgmlp/merge kernels 31, gate identity, conv2d) with the base sizes "
    "from the checkpoint name (size384, e6) and the requested 6 heads / 1536 units; the base config.yaml itself was "
    "not available offline.",
    "Dropout 0.05 (dropout, positional, attention) is a guess for the base model's 'lessreg' setting; the medium model "
    "uses 0.1. Dropout is active in every training configuration (model.train()), off for inference.",
    "use_flash_attn=True as in OWSM; ESPnet falls back to its own attention when the flash_attn package is missing "
    "(see model.flash_attention_effective).",
    "Random weights (PyTorch/ESPnet default init): speed does not depend on the values; the SVD-based methods "
    "(PiSSA, SSVD, SSVD-O) are initialised from these random weights.",
    "Inputs: standard-normal 80-dim features, as after OWSM's global mean-variance normalisation; no padding.",
    "The encoder alone (no frontend / SpecAugment / normalisation / decoder / CTC head); the loss is a stand-in.",
    "HF peft uses lora_alpha=16 and lora_dropout=0, as our LoRA/DoRA defaults; alpha does not affect speed.",
]


# ------------------------------------------------------------------------------------------------ settings


@dataclasses.dataclass
class Settings:
    """Everything a worker needs to rebuild the exact same model and inputs."""

    device: str = "cpu"
    dtype: str = "float32"
    autocast: Optional[str] = None  # "bfloat16" / "float16": the step runs under torch.autocast, as use_amp trains
    threads: int = 2
    batch: int = 4
    seconds: float = 6.0
    blocks: int = 6
    steps: int = 20
    warmup: int = 3
    seed: int = 0
    lora_rank: int = 16
    budget: Optional[int] = None
    outer_share: float = 0.5

    @property
    def frames(self) -> int:
        return int(round(self.seconds * FRAMES_PER_SECOND))

    @property
    def torch_dtype(self) -> torch.dtype:
        return getattr(torch, self.dtype)

    def encoder_options(self) -> Dict[str, Any]:
        return {**OWSM_V31_BASE, "num_blocks": self.blocks}


# ------------------------------------------------------------------------------------------------ model and inputs


def build_encoder(settings: Settings) -> nn.Module:
    """ESPnet's real E-Branchformer encoder with the OWSM v3.1 base shape and seeded random weights."""
    from espnet2.asr.encoder.e_branchformer_encoder import EBranchformerEncoder

    torch.manual_seed(settings.seed)
    with contextlib.redirect_stdout(sys.stderr):  # ESPnet prints a flash-attention fallback notice
        encoder = EBranchformerEncoder(**settings.encoder_options())
    return encoder.to(device=settings.device, dtype=settings.torch_dtype)


def make_inputs(settings: Settings) -> Tuple[torch.Tensor, torch.Tensor]:
    """``batch x frames x 80`` fbank-like features (standard normal, as after global MVN) and their lengths."""
    generator = torch.Generator().manual_seed(settings.seed + 1)
    features = torch.randn(settings.batch, settings.frames, FEATURE_DIM, generator=generator)
    lengths = torch.full((settings.batch,), settings.frames, dtype=torch.long)
    return features.to(settings.device, settings.torch_dtype), lengths.to(settings.device)


def target_shapes(encoder: nn.Module) -> Dict[str, Tuple[int, int]]:
    from espnet_peft.injection import find_targets

    return {n: (m.out_features, m.in_features) for n, m in find_targets(encoder, TARGET_MODULES).items()}


def lora_budget(shapes: Mapping[str, Tuple[int, int]], rank: int) -> int:
    """Trainable parameters of LoRA rank ``rank`` on every target: ``r (d_in + d_out)`` per layer."""
    return sum(rank * (d_out + d_in) for d_out, d_in in shapes.values())


def budget_plans(settings: Settings, shapes: Mapping[str, Tuple[int, int]]) -> Dict[str, Any]:
    from espnet_peft.budget import match_budget

    total = settings.budget or lora_budget(shapes, settings.lora_rank)
    return match_budget(shapes, total, OUR_METHODS, fields={"ssvd_o": {"outer_share": settings.outer_share}})


def compute_matched_k(shapes: Mapping[str, Tuple[int, int]], rank: int) -> int:
    """The largest ``k`` whose rank-k correction costs at most LoRA rank ``rank``'s extra work per token on every
    target: ``k (d_in + k + d_out) <= rank (d_in + d_out)``."""
    def largest(d_out: int, d_in: int) -> int:
        k = 0
        while (k + 1) * (d_in + k + 1 + d_out) <= rank * (d_in + d_out):
            k += 1
        return k

    return min(largest(d_out, d_in) for d_out, d_in in shapes.values())


def adapter_conf(settings: Settings, method: str, plan: Any) -> Dict[str, Any]:
    shared: Dict[str, Any] = {"target_modules": TARGET_MODULES}
    if method in ("ssvd", "ssvd_o"):
        shared["compute_path"] = "auto"
    if method == "ssvd_o":
        shared["outer_share"] = settings.outer_share
    return plan.adapter_conf(**shared)


def freeze(model: nn.Module) -> None:
    for parameter in model.parameters():
        parameter.requires_grad_(False)


def make_embed_output_a_leaf(encoder: nn.Module) -> None:
    """Detach the output of ``encoder.embed`` and make it require grad: backward stops at the first block's input."""

    def hook(_module: nn.Module, _inputs: Any, output: Any) -> Any:
        hidden, mask = output
        if isinstance(hidden, tuple):  # relative positional encodings return (x, pos_emb)
            return (hidden[0].detach().requires_grad_(True), hidden[1]), mask
        return hidden.detach().requires_grad_(True), mask

    encoder.embed.register_forward_hook(hook)


def inject_ours(encoder: nn.Module, conf: Mapping[str, Any]) -> None:
    from espnet_peft.injection import initialise_adapters, inject_adapters

    inject_adapters(encoder, dict(conf))
    initialise_adapters(encoder)


def inject_peft(encoder: nn.Module, rank: int, use_dora: bool) -> nn.Module:
    import peft

    config = peft.LoraConfig(r=rank, lora_alpha=16, lora_dropout=0.0, target_modules=TARGET_MODULES,
                             use_dora=use_dora)
    encoder = peft.inject_adapter_in_model(config, encoder)
    for name, parameter in encoder.named_parameters():  # only the adapter tensors train, as with our injection
        parameter.requires_grad_("lora_" in name)
    return encoder


@dataclasses.dataclass
class Prepared:
    model: nn.Module
    train: bool
    notes: Dict[str, Any] = dataclasses.field(default_factory=dict)


def prepare(name: str, settings: Settings) -> Prepared:
    """A fresh model set up for configuration ``name``."""
    encoder = build_encoder(settings)
    if name == "inference":
        freeze(encoder)
        return Prepared(encoder.eval(), train=False)
    if name == "frozen_floor":
        freeze(encoder)
        make_embed_output_a_leaf(encoder)
        return Prepared(encoder.train(), train=True)
    if name == "full_finetune":
        return Prepared(encoder.train(), train=True)
    if name in OUR_METHODS:
        plan = budget_plans(settings, target_shapes(encoder))[name]
        conf = adapter_conf(settings, name, plan)
        inject_ours(encoder, conf)
        notes = {"adapter_conf": conf, "budget_target": plan.target, "budget_achieved": plan.achieved}
        return Prepared(encoder.train(), train=True, notes=notes)
    if name in ("ssvd_matched_compute", "ssvd_o_matched_compute"):
        k = compute_matched_k(target_shapes(encoder), settings.lora_rank)
        sides = {"k": k} if name.startswith("ssvd_matched") else {"k_inner": k, "k_outer": k}
        conf = {"method": name.rsplit("_matched", 1)[0], "target_modules": TARGET_MODULES, "compute_path": "auto",
                **sides}
        inject_ours(encoder, conf)
        return Prepared(encoder.train(), train=True, notes={"adapter_conf": conf, "matched": "extra work per token"})
    if name == "dora_same_rank":  # peft_dora's setting (r on every layer), for a like-for-like ours / peft ratio
        conf = {"method": "dora", "target_modules": TARGET_MODULES, "r": settings.lora_rank}
        inject_ours(encoder, conf)
        return Prepared(encoder.train(), train=True, notes={"adapter_conf": conf})
    if name in ("peft_lora", "peft_dora"):
        encoder = inject_peft(encoder, settings.lora_rank, use_dora=name == "peft_dora")
        return Prepared(encoder.train(), train=True, notes={"peft_r": settings.lora_rank})
    if name == "merged_lora_inference":
        from espnet_peft.injection import adapter_layers, merge_adapters

        inject_ours(encoder, {"method": "lora", "target_modules": TARGET_MODULES, "r": settings.lora_rank})
        generator = torch.Generator().manual_seed(settings.seed + 2)
        with torch.no_grad():  # a trained-looking state, so that the merge actually changes the weights
            for layer in adapter_layers(encoder).values():
                layer.lora_B.copy_(0.01 * torch.randn(layer.lora_B.shape, generator=generator))
        merge_adapters(encoder)
        freeze(encoder)
        return Prepared(encoder.eval(), train=False, notes={"merged": f"lora r={settings.lora_rank}"})
    raise ValueError(f"unknown configuration {name!r}; choose from {list(CONFIGS)}")


# ------------------------------------------------------------------------------------------------ measurement


def make_step(prepared: Prepared, features: torch.Tensor, lengths: torch.Tensor,
              settings: Settings) -> Callable[[], None]:
    model = prepared.model
    trainable = [p for p in model.parameters() if p.requires_grad]

    def precision() -> contextlib.AbstractContextManager:
        if settings.autocast is None:
            return contextlib.nullcontext()
        return torch.autocast(settings.device.split(":")[0], dtype=getattr(torch, settings.autocast))

    def train_step() -> None:
        for parameter in trainable:
            parameter.grad = None
        with precision():
            output, _, _ = model(features, lengths)
            loss = output.float().square().mean()
        loss.backward()

    def inference_step() -> None:
        with torch.inference_mode(), precision():
            model(features, lengths)

    return train_step if prepared.train else inference_step


def warm_step_on_path(name: str, settings: Settings, path: Optional[str] = None) -> Callable[[], None]:
    """Configuration ``name``'s training step, run once (lazy set-up and ``auto`` choices happen there); with
    ``path`` every SSVD / SSVD-O layer is held on that compute path. For counting, not timing."""
    from espnet_peft.injection import adapter_layers

    prepared = prepare(name, settings)
    if path is not None:
        for layer in adapter_layers(prepared.model).values():
            layer.config = layer.config.replace(compute_path=path)
    features, lengths = make_inputs(settings)
    step = make_step(prepared, features, lengths, settings)
    step()
    return step


def compute_path_decisions() -> Dict[str, str]:
    """The cached ``auto`` choices, keyed readably: ``d_out x d_in, k range, tokens < 2^bucket, grad``."""
    from espnet_peft.tuners import compute_path

    readable = {}
    for (d_out, d_in, k_bucket, bucket, grad, device, dtype), choice in compute_path._DECISIONS.items():
        k_range = compute_path.rank_bucket_range(k_bucket)
        readable[f"{d_out}x{d_in} k={k_range} tokens<2^{bucket} grad={grad} {device} {dtype}"] = choice
    return readable


def check_gradients(prepared: Prepared, name: str) -> None:
    """Fail loudly when a configuration does not train what it claims to (after at least one step)."""
    model = prepared.model
    with_grad = [n for n, p in model.named_parameters() if p.grad is not None]
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    if name == "frozen_floor" and (with_grad or trainable):
        raise AssertionError(f"frozen_floor produced weight gradients: {with_grad[:5]}")
    if prepared.train and name != "frozen_floor" and sorted(with_grad) != sorted(trainable):
        missing = sorted(set(trainable) - set(with_grad))
        raise AssertionError(f"{name}: trainable parameters without a gradient: {missing[:5]}")


def run_config(name: str, settings: Settings, show_steps: bool = False) -> Dict[str, Any]:
    """Build, warm up, time and measure one configuration in this process."""
    torch.set_num_threads(settings.threads)
    from espnet_peft.tuners import compute_path

    compute_path.clear_decisions()
    prepared = prepare(name, settings)
    features, lengths = make_inputs(settings)
    step = make_step(prepared, features, lengths, settings)
    memory = PeakMemory(settings.device)
    memory.start()
    times = time_steps(step, settings.warmup, settings.steps, settings.device, name, show_steps)
    peak = memory.stop()
    check_gradients(prepared, name)
    decisions = compute_path_decisions()
    result = {
        "mode": "train" if prepared.train else "inference",
        "step_times_s": times,
        "trainable_params": sum(p.numel() for p in prepared.model.parameters() if p.requires_grad),
        "total_params": sum(p.numel() for p in prepared.model.parameters()),
        "memory": peak,
        **prepared.notes,
    }
    if decisions:
        result["compute_path_decisions"] = decisions
    del prepared, step
    gc.collect()
    return result


# ------------------------------------------------------------------------------------------------ orchestration


def run_in_subprocess(name: str, settings: Settings) -> Dict[str, Any]:
    """``run_config`` in a fresh interpreter (this script's ``--worker``): its own model, allocator and peak RSS."""
    return run_worker(Path(__file__), ["--worker", name, "--settings", json.dumps(dataclasses.asdict(settings))],
                      f"configuration {name}")


def isolated_pass(configs: Sequence[str], settings: Settings, rounds: int, isolate: bool, load: ForeignLoad,
                  desc: str) -> Dict[str, List[Dict[str, Any]]]:
    """Every configuration on a fresh model, each in a fresh subprocess unless ``isolate`` is False; ``rounds`` times,
    interleaved (round-robin). Gives peak memory, trainable counts and (with enough steps) step times."""

    def run_one(name: str) -> Dict[str, Any]:
        return run_in_subprocess(name, settings) if isolate else run_config(name, settings, show_steps=True)

    return isolated_runs(configs, rounds, run_one, load, desc)


def paired_pass(configs: Sequence[str], settings: Settings, load: ForeignLoad) -> Dict[str, Any]:
    """Step times with every configuration's model alive in this process, one step of each per round.

    Each configuration still has its own fresh model (same seed, same inputs). Interleaving step by step makes slow
    drifts of a shared machine hit all configurations alike, so per-round ratios (e.g. adapter / frozen floor in the
    same round) are far steadier than ratios of medians taken minutes apart. The order rotates every round.
    """
    torch.set_num_threads(settings.threads)
    from espnet_peft.tuners import compute_path

    compute_path.clear_decisions()
    features, lengths = make_inputs(settings)
    prepared = {}
    steps = {}
    for name in tqdm(configs, desc="paired: build + warm-up", unit="config"):
        prepared[name] = prepare(name, settings)
        steps[name] = make_step(prepared[name], features, lengths, settings)
        for _ in range(settings.warmup):
            steps[name]()
    timed = paired_rounds(steps, settings.steps, settings.device, load)
    for name in configs:
        check_gradients(prepared[name], name)
    return {"times": timed.times, "foreign_cpu_cores_per_round": timed.foreign_cpu_cores_per_round,
            "attempts_per_round": timed.attempts_per_round, "compute_path_decisions": compute_path_decisions()}


def summarise(runs: Mapping[str, List[Dict[str, Any]]], paired: Optional[Mapping[str, Any]] = None
              ) -> Dict[str, Dict[str, Any]]:
    """Per configuration: step-time statistics (paired pass if given, else the isolated runs), memory, metadata."""
    summary = {}
    for name, results in runs.items():
        isolated_times = [t for result in results for t in result["step_times_s"]]
        first = {k: v for k, v in results[0].items()
                 if k not in ("step_times_s", "memory", "foreign_cpu_cores", "attempts")}
        row: Dict[str, Any] = dict(first)
        if paired is not None:
            row.update(step_statistics(paired["times"][name]))
            row["timing"] = "paired"
            row["step_times_s"] = paired["times"][name]
            row["foreign_cpu_cores_max"] = _max_or_none(paired["foreign_cpu_cores_per_round"])
            row["isolated_check_median_s"] = float(np.median(isolated_times))
        else:
            row.update(step_statistics(isolated_times))
            row["timing"] = "isolated"
            row["step_times_s"] = isolated_times
            row["round_medians_s"] = [float(np.median(result["step_times_s"])) for result in results]
            row["foreign_cpu_cores_max"] = _max_or_none([result.get("foreign_cpu_cores") for result in results])
        peaks = [result["memory"]["peak_mib"] for result in results]
        row.update({
            "peak_memory_mib": max(peaks),
            "peak_memory_mib_per_run": peaks,
            "memory_baseline_mib": results[0]["memory"]["baseline_mib"],
            "memory_method": results[0]["memory"]["method"],
            "memory_runs_foreign_cpu_cores": [result.get("foreign_cpu_cores") for result in results],
        })
        summary[name] = row
    return summary


def ratios(summary: Mapping[str, Mapping[str, Any]]) -> Dict[str, Any]:
    trained = [n for n in summary if summary[n]["mode"] == "train"]
    dora_for_peft = "dora_same_rank" if "dora_same_rank" in summary else "dora"
    return {
        "vs_frozen_floor": {n: ratio(summary, n, "frozen_floor") for n in trained},
        "vs_full_finetune": {n: ratio(summary, n, "full_finetune") for n in trained},
        "frozen_floor_over_inference": ratio(summary, "frozen_floor", "inference"),
        "full_finetune_over_inference": ratio(summary, "full_finetune", "inference"),
        "ours_over_peft": {"lora": ratio(summary, "lora", "peft_lora"),
                           "dora": ratio(summary, dora_for_peft, "peft_dora")},
        "ours_over_peft_uses": {"lora": "lora / peft_lora", "dora": f"{dora_for_peft} / peft_dora"},
        "merged_inference_over_base_inference": ratio(summary, "merged_lora_inference", "inference"),
    }


def describe_model(settings: Settings) -> Dict[str, Any]:
    encoder = build_encoder(settings)
    shapes = target_shapes(encoder)
    plans = budget_plans(settings, shapes)
    with torch.no_grad():
        probe = torch.zeros(1, settings.frames, FEATURE_DIM, device=settings.device, dtype=settings.torch_dtype)
        subsampled = encoder.embed(probe, None)[0]
    subsampled = subsampled[0] if isinstance(subsampled, tuple) else subsampled
    return {
        "class": "espnet2.asr.encoder.e_branchformer_encoder.EBranchformerEncoder",
        "options": settings.encoder_options(),
        "flash_attention_effective": bool(getattr(encoder.encoders[0].attn, "use_flash_attn", False)),
        "total_params": sum(p.numel() for p in encoder.parameters()),
        "target_modules": TARGET_MODULES,
        "adapted_layers": len(shapes),
        "adapted_shapes": sorted({f"{d_out}x{d_in}" for d_out, d_in in shapes.values()}),
        "assumptions": ASSUMPTIONS,
        "frames_after_subsampling": int(subsampled.shape[1]),
        "budget": {
            "rule": (f"LoRA r={settings.lora_rank} on the targets" if settings.budget is None
                     else "--budget"),
            "target": next(iter(plans.values())).target,
            "plans": {m: {"achieved": p.achieved, "relative_error": p.relative_error,
                          "settings": _plan_settings(p)} for m, p in plans.items()},
        },
    }


def _plan_settings(plan: Any) -> Dict[str, int]:
    """How many layers get each setting, e.g. ``{"r=16": 36}``."""
    counts: Dict[str, int] = {}
    for fields in plan.layer_fields.values():
        key = ", ".join(f"{k}={v}" for k, v in sorted(fields.items()) if v is not None)
        counts[key] = counts.get(key, 0) + 1
    return counts


def format_table(summary: Mapping[str, Mapping[str, Any]], all_ratios: Mapping[str, Any], isolated: bool = True
                 ) -> str:
    """The per-configuration table (ratios to the floor, inference and full fine-tuning) and the headline ratios."""
    lines = [f"{'configuration':<22} {'median s':>9} {'p25 s':>8} {'p75 s':>8} {'/floor':>7} {'/infer':>7} "
             f"{'/fullFT':>7} {'peak MiB':>9} {'trainable':>11} {'other CPU':>9}"]
    for name, row in summary.items():
        lines.append(
            f"{name:<22} {row['median_s']:>9.4f} {row['p25_s']:>8.4f} {row['p75_s']:>8.4f} "
            f"{_fmt(all_ratios['vs_frozen_floor'].get(name)):>7} {_fmt(ratio(summary, name, 'inference')):>7} "
            f"{_fmt(all_ratios['vs_full_finetune'].get(name)):>7} {row['peak_memory_mib']:>9.1f} "
            f"{row['trainable_params']:>11,} {_fmt(row['foreign_cpu_cores_max']):>9}"
        )
    timing = next(iter(summary.values()))["timing"] if summary else "isolated"
    lines.append(f"(ratios: {'medians of per-round paired ratios' if timing == 'paired' else 'ratios of medians'}; "
                 "peak MiB: what the steps add on top of model + inputs; other CPU: cores used by other processes)")
    if not isolated:
        lines.append("(in-process memory runs: the C allocator reuses memory freed by earlier configurations, so later "
                     "peak MiB figures read too low)")
    ours_over_peft, uses = all_ratios["ours_over_peft"], all_ratios["ours_over_peft_uses"]
    headline = [
        ("frozen_floor / inference", all_ratios["frozen_floor_over_inference"]),
        ("full_finetune / inference", all_ratios["full_finetune_over_inference"]),
        (f"ours / peft, LoRA ({uses['lora']})", ours_over_peft["lora"]),
        (f"ours / peft, DoRA ({uses['dora']})", ours_over_peft["dora"]),
        ("merged LoRA inference / inference", all_ratios["merged_inference_over_base_inference"]),
    ]
    width = max(len(label) for label, _ in headline)
    lines.append("")
    lines += [f"{label:<{width}}  {_fmt(value)}" for label, value in headline]
    return "\n".join(lines)


def _max_or_none(values: Sequence[Optional[float]]) -> Optional[float]:
    known = [v for v in values if v is not None]
    return max(known) if known else None


def _fmt(value: Optional[float]) -> str:
    return "-" if value is None else f"{value:.3f}"


# ------------------------------------------------------------------------------------------------ CLI


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--autocast", default=None, choices=["bfloat16", "float16"],
                        help="run every step under torch.autocast with this dtype (mixed precision, as use_amp)")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads in every configuration")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=6.0, help="utterance length (100 frames/s)")
    parser.add_argument("--blocks", type=int, default=6, help="E-Branchformer blocks")
    parser.add_argument("--timing", choices=["paired", "isolated"], default="paired",
                        help="paired: all configurations in one process, one step of each per round (robust ratios), "
                             "memory from a separate isolated pass; isolated: time inside the isolated runs")
    parser.add_argument("--steps", type=int, default=20,
                        help="timed steps per configuration (paired: rounds; isolated: per run)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first (auto compute paths decide here)")
    parser.add_argument("--memory-steps", type=int, default=2,
                        help="paired timing: timed steps of each isolated memory run (after one warm-up step)")
    parser.add_argument("--rounds", type=int, default=1,
                        help="isolated timing: repeat the whole sweep, interleaved; steps are pooled")
    parser.add_argument("--wait-quiet", type=float, default=60.0, metavar="SECONDS",
                        help="before each run / paired round, wait up to this long for other processes to stop using "
                             "CPU")
    parser.add_argument("--retries", type=int, default=2,
                        help="repeat a run / paired round during which other processes used > 0.2 cores, keeping the "
                             "least contaminated attempt")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--lora-rank", type=int, default=16, help="rank of LoRA, of peft, and of the default budget")
    parser.add_argument("--budget", type=int, default=None,
                        help="total trainable parameters for our methods (default: LoRA --lora-rank's count)")
    parser.add_argument("--outer-share", type=float, default=0.5, help="SSVD-O outer_share")
    parser.add_argument("--configs", default=",".join(CONFIGS), help="comma-separated subset of " + ",".join(CONFIGS))
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 2 blocks, 1 s, 2 steps, 1 warm-up, all in one process, no waiting or retries")
    parser.add_argument("--in-process", action="store_true",
                        help="run the memory / isolated runs in this process (faster start; memory figures less "
                             "isolated)")
    parser.add_argument("--output", type=Path, default=None,
                        help="JSON path (default benchmarks/results/adapter_step_<device>.json)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--result-file", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--settings", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.blocks, args.seconds, args.steps, args.warmup, args.memory_steps = 2, 1.0, 2, 1, 1
        args.in_process, args.wait_quiet, args.retries = True, 0.0, 0
    return args


def settings_from_args(args: argparse.Namespace) -> Settings:
    return Settings(device=args.device, dtype=args.dtype, autocast=args.autocast, threads=args.threads, batch=args.batch, seconds=args.seconds,
                    blocks=args.blocks, steps=args.steps, warmup=args.warmup, seed=args.seed,
                    lora_rank=args.lora_rank, budget=args.budget, outer_share=args.outer_share)


def worker_main(args: argparse.Namespace) -> None:
    settings = Settings(**json.loads(args.settings))
    write_result(args.result_file, run_config(args.worker, settings))


def main(argv: Optional[Sequence[str]] = None) -> None:
    args = parse_args(argv)
    if args.worker:
        worker_main(args)
        return
    settings = settings_from_args(args)
    torch.set_num_threads(settings.threads)
    configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    unknown = sorted(set(configs) - set(CONFIGS))
    if unknown:
        raise SystemExit(f"unknown configuration(s) {unknown}; choose from {list(CONFIGS)}")
    amp = f"_amp_{settings.autocast}" if settings.autocast else ""
    output = args.output or RESULTS_DIR / f"adapter_step_{settings.device.split(':')[0]}{amp}.json"
    load = ForeignLoad(threshold=0.2, wait_quiet_s=args.wait_quiet, retries=args.retries)

    started = time.time()
    model = describe_model(settings)
    paired = None
    if args.timing == "paired":
        memory_settings = dataclasses.replace(settings, steps=args.memory_steps, warmup=1)
        runs = isolated_pass(configs, memory_settings, 1, not args.in_process, load, "memory (isolated runs)")
        paired = paired_pass(configs, settings, load)
    else:
        runs = isolated_pass(configs, settings, args.rounds, not args.in_process, load, "isolated runs")
    summary = summarise(runs, paired)
    all_ratios = ratios(summary)
    isolation = "in-process, one after another" if args.in_process else "one fresh subprocess per configuration"
    report = {
        "benchmark": "adapter_step",
        "created": utc_timestamp(),
        "command": [Path(sys.executable).name, *sys.argv],
        "wall_seconds": round(time.time() - started, 1),
        "environment": torch_machine(settings.device, settings.dtype, settings.threads),
        "settings": dataclasses.asdict(settings),
        "inputs": {"batch": settings.batch, "seconds": settings.seconds, "frames": settings.frames,
                   "feature_dim": FEATURE_DIM, "frames_per_second": FRAMES_PER_SECOND,
                   "frames_after_subsampling": model["frames_after_subsampling"],
                   "tokens_per_step": settings.batch * model["frames_after_subsampling"]},
        "model": model,
        "loss": LOSS,
        "step": "zero grads -> forward -> loss -> backward (no optimiser step); inference: forward in inference_mode",
        "frozen_floor": ("all parameters frozen; the output of encoder.embed (conv2d subsampling + positional "
                         "encoding) is detached and made to require grad, so backward runs from the loss down to the "
                         "first block's input and computes no weight gradient"),
        "timing": {
            "mode": args.timing,
            "warmup_steps": settings.warmup,
            "timed_steps": settings.steps,
            "rounds": args.rounds if args.timing == "isolated" else None,
            "wait_quiet_s": args.wait_quiet,
            "retries": args.retries,
            "memory_runs": f"{isolation}; 1 warm-up + {args.memory_steps if paired else settings.steps} steps",
            "statistic": ("paired: median / p25 / p75 over rounds; ratios are medians of per-round ratios"
                          if paired else "median / p25 / p75 over the pooled steps; ratios are ratios of medians"),
        },
        "contention": {
            "max_foreign_cpu_cores": _max_or_none([r["foreign_cpu_cores_max"] for r in summary.values()]),
            "paired_rounds_foreign_cpu_cores": paired["foreign_cpu_cores_per_round"] if paired else None,
            "paired_rounds_attempts": paired["attempts_per_round"] if paired else None,
            "what": "CPU cores used by other processes during the timed work (/proc/stat busy time minus ours); "
                    "above ~0.2 on a 2-core machine the timings are contaminated",
        },
        "configs": summary,
        "ratios": all_ratios,
    }
    if paired:
        report["paired_compute_path_decisions"] = paired["compute_path_decisions"]
    write_record(output, report)
    print(format_table(summary, all_ratios, isolated=not args.in_process))
    print(f"\nwrote {output}")


if __name__ == "__main__":
    main()

#!/usr/bin/env python
"""Speed and memory of one training step with each adapter, on an OWSM-v3.1-base-shaped E-Branchformer encoder.

Every configuration runs on a fresh model built from the same seed, on the same inputs, in its own subprocess (so
neither the allocator, the compute-path cache nor peak-memory counters carry over from one configuration to the next):

* ``inference``: forward only, ``model.eval()`` under ``torch.inference_mode()``;
* ``frozen_floor``: no trainable parameter; forward + backward from the loss down to the output of the conv2d input
  layer ``embed`` (made a leaf that requires grad), i.e. down to the input of the first adapted block, with no weight
  gradient anywhere (see ``/work/shared/notes/adapter-math.md``, "Frozen step for benchmarks");
* ``full_finetune``: every parameter trainable (the backward then also runs through ``embed``);
* ``lora``, ``dora``, ``pissa``, ``ssvd``, ``ssvd_o``: our adapters on the attention q/k/v/out and feed-forward
  w_1/w_2 linears of every block, at a budget matched with ``espnet_peft.budget.match_budget`` (by default the size of
  LoRA r=16 there), SSVD / SSVD-O with ``compute_path: auto``;
* ``peft_lora``, ``peft_dora``: HF peft LoRA / DoRA r=16 on the same modules;
* ``merged_lora_inference``: our LoRA (with B != 0) merged by ``merge_adapters``, forward only as ``inference``.

A training step is ``zero grads -> forward -> loss -> backward`` (no optimiser step). The loss is the mean square of
the encoder output: it keeps the benchmark about the encoder (a CTC head over OWSM's 50k-token vocabulary would add a
384 x 50k projection that dwarfs the adapters). Times are per step, median / p25 / p75 over ``--steps`` after
``--warmup`` steps (``--rounds`` repeats the whole sweep, interleaving configurations, and pools the steps).

Peak memory: on CUDA, ``torch.cuda.max_memory_allocated`` minus the allocation before the first step; on CPU, the
peak resident set size (``VmHWM``, reset through ``/proc/self/clear_refs``) minus the RSS before the first step, in a
fresh process. Both cover everything the steps add on top of the built model and inputs: activations saved for
backward, gradients, temporaries, and on CPU whatever the C allocator keeps mapped.

Usage::

    python benchmarks/adapter_step.py --output benchmarks/results/adapter_step_cpu.json
    python benchmarks/adapter_step.py --quick --output /tmp/x.json      # smoke run, < 30 s on 2 CPU cores
    python benchmarks/adapter_step.py --device cuda                      # writes adapter_step_cuda.json
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import gc
import json
import os
import platform
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

RESULTS_DIR = Path(__file__).resolve().parent / "results"
#: the attention q/k/v/out and (macaron and second) feed-forward linears of every E-Branchformer block
TARGET_MODULES = ["linear_q", "linear_k", "linear_v", "linear_out", "w_1", "w_2"]
OUR_METHODS = ("lora", "dora", "pissa", "ssvd", "ssvd_o")
CONFIGS = (
    "inference",
    "frozen_floor",
    "full_finetune",
    *OUR_METHODS,
    "peft_lora",
    "peft_dora",
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
        return Prepared(encoder.eval(), train=False, notes={"merged": f"lora r={settings.lora_rank}"})
    raise ValueError(f"unknown configuration {name!r}; choose from {list(CONFIGS)}")


# ------------------------------------------------------------------------------------------------ measurement


def synchronise(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def make_step(prepared: Prepared, features: torch.Tensor, lengths: torch.Tensor) -> Callable[[], None]:
    model = prepared.model
    trainable = [p for p in model.parameters() if p.requires_grad]

    def train_step() -> None:
        for parameter in trainable:
            parameter.grad = None
        output, _, _ = model(features, lengths)
        output.square().mean().backward()

    def inference_step() -> None:
        with torch.inference_mode():
            model(features, lengths)

    return train_step if prepared.train else inference_step


def _proc_status_kib(field: str) -> int:
    match = re.search(rf"^{field}:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.MULTILINE)
    if match is None:
        raise RuntimeError(f"{field} missing from /proc/self/status")
    return int(match.group(1))


class PeakMemory:
    """Peak memory the measured steps add on top of the built model and inputs (see the module docstring)."""

    def __init__(self, device: str) -> None:
        self.device = device
        self.baseline = 0
        self.method = ""

    def start(self) -> None:
        gc.collect()
        if self.device.startswith("cuda"):
            torch.cuda.synchronize()
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
            self.baseline = torch.cuda.memory_allocated()
            self.method = "torch.cuda.max_memory_allocated() - memory_allocated() before the first step"
            return
        self.baseline = _proc_status_kib("VmRSS") * 1024
        try:
            Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM (peak RSS) to the current RSS
            self.method = "peak RSS (VmHWM, reset via /proc/self/clear_refs) - RSS before the first step"
        except OSError:
            self.method = "ru_maxrss (process-lifetime peak, not reset) - RSS before the first step"

    def stop(self) -> Dict[str, float]:
        if self.device.startswith("cuda"):
            torch.cuda.synchronize()
            peak = torch.cuda.max_memory_allocated()
        elif self.method.startswith("peak RSS"):
            peak = _proc_status_kib("VmHWM") * 1024
        else:
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        mib = 1024.0 * 1024.0
        return {"peak_mib": (peak - self.baseline) / mib, "baseline_mib": self.baseline / mib,
                "peak_absolute_mib": peak / mib, "method": self.method}


def time_steps(step: Callable[[], None], settings: Settings, label: str, show: bool) -> List[float]:
    """Seconds per step for ``--steps`` steps after ``--warmup`` untimed ones."""
    times = []
    total = settings.warmup + settings.steps
    for index in tqdm(range(total), desc=label, leave=False, disable=not show):
        synchronise(settings.device)
        start = time.perf_counter()
        step()
        synchronise(settings.device)
        if index >= settings.warmup:
            times.append(time.perf_counter() - start)
    return times


def compute_path_decisions() -> Dict[str, str]:
    """The cached ``auto`` choices, keyed readably: ``d_out x d_in, k, tokens < 2^bucket, grad``."""
    from espnet_peft.tuners import compute_path

    readable = {}
    for (d_out, d_in, k, bucket, grad, device, dtype), choice in compute_path._DECISIONS.items():
        readable[f"{d_out}x{d_in} k={k} tokens<2^{bucket} grad={grad} {device} {dtype}"] = choice
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
    step = make_step(prepared, features, lengths)
    memory = PeakMemory(settings.device)
    memory.start()
    times = time_steps(step, settings, name, show_steps)
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
    with tempfile.TemporaryDirectory() as scratch:
        result_file = Path(scratch) / "result.json"
        command = [sys.executable, str(Path(__file__).resolve()), "--worker", name, "--result-file", str(result_file),
                   "--settings", json.dumps(dataclasses.asdict(settings))]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"configuration {name} failed (exit {done.returncode}):\n{done.stderr[-4000:]}")
        return json.loads(result_file.read_text())


class ForeignLoad:
    """CPU time that processes other than this benchmark used while it ran, in cores (0 = a quiet machine).

    Busy time of the whole machine from ``/proc/stat`` minus this process's and its children's CPU time. Other jobs on
    a 2-core machine slow a 2-thread benchmark far more than their share (threads wait on each other), so every
    configuration reports it.
    """

    def __init__(self) -> None:
        self.available = Path("/proc/stat").exists()
        self.ticks = os.sysconf("SC_CLK_TCK") if self.available else 100

    def _busy_seconds(self) -> float:
        fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
        return (sum(fields[:8]) - idle) / self.ticks

    @staticmethod
    def _own_seconds() -> float:
        own = resource.getrusage(resource.RUSAGE_SELF)
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime

    def wait_until_quiet(self, patience_s: float, threshold: float = 0.2, sample_s: float = 2.0) -> float:
        """Wait (at most ``patience_s``) until other processes use less than ``threshold`` cores; returns the last load."""
        deadline, foreign = time.monotonic() + patience_s, 0.0
        while self.available:
            sample: Dict[str, Any] = {}
            with self.measure(sample):
                time.sleep(sample_s)
            foreign = sample["foreign_cpu_cores"]
            if foreign < threshold or time.monotonic() >= deadline:
                break
        return foreign

    @contextlib.contextmanager
    def measure(self, into: Dict[str, Any]) -> Iterator[None]:
        if not self.available:
            yield
            return
        busy, own, start = self._busy_seconds(), self._own_seconds(), time.perf_counter()
        yield
        wall = time.perf_counter() - start
        foreign = (self._busy_seconds() - busy) - (self._own_seconds() - own)
        into["foreign_cpu_cores"] = round(max(foreign, 0.0) / wall, 3)


def sweep(configs: Sequence[str], settings: Settings, rounds: int, isolate: bool, wait_quiet_s: float = 0.0
          ) -> Dict[str, List[Dict[str, Any]]]:
    """Every configuration ``rounds`` times, interleaved (round-robin) so that slow drifts hit all alike.

    With ``wait_quiet_s > 0`` each configuration first waits up to that long for other processes to go quiet.
    """
    runs: Dict[str, List[Dict[str, Any]]] = {name: [] for name in configs}
    load = ForeignLoad()
    progress = tqdm(total=rounds * len(configs), desc="configurations", unit="config")
    for round_index in range(rounds):
        for name in configs:
            progress.set_postfix_str(f"round {round_index + 1}/{rounds}: {name}")
            if wait_quiet_s > 0:
                load.wait_until_quiet(wait_quiet_s)
            contention: Dict[str, Any] = {}
            with load.measure(contention):
                result = run_in_subprocess(name, settings) if isolate else run_config(name, settings, True)
            result.update(contention)
            runs[name].append(result)
            if contention.get("foreign_cpu_cores", 0.0) > 0.2:
                tqdm.write(f"warning: other processes used {contention['foreign_cpu_cores']:.2f} CPU cores while "
                           f"{name} ran; its timings are contaminated")
            progress.update()
    progress.close()
    return runs


def summarise(runs: Mapping[str, List[Dict[str, Any]]]) -> Dict[str, Dict[str, Any]]:
    summary = {}
    for name, results in runs.items():
        times = [t for result in results for t in result["step_times_s"]]
        first = {k: v for k, v in results[0].items() if k not in ("step_times_s", "memory", "foreign_cpu_cores")}
        peaks = [result["memory"]["peak_mib"] for result in results]
        summary[name] = {
            **first,
            "median_s": float(np.median(times)),
            "p25_s": float(np.percentile(times, 25)),
            "p75_s": float(np.percentile(times, 75)),
            "n_steps": len(times),
            "round_medians_s": [float(np.median(result["step_times_s"])) for result in results],
            "peak_memory_mib": max(peaks),
            "peak_memory_mib_per_round": peaks,
            "memory_baseline_mib": results[0]["memory"]["baseline_mib"],
            "memory_method": results[0]["memory"]["method"],
            "foreign_cpu_cores_per_round": [result.get("foreign_cpu_cores") for result in results],
            "step_times_s": times,
        }
    return summary


def ratio(summary: Mapping[str, Mapping[str, Any]], numerator: str, denominator: str) -> Optional[float]:
    if numerator not in summary or denominator not in summary:
        return None
    return summary[numerator]["median_s"] / summary[denominator]["median_s"]


def ratios(summary: Mapping[str, Mapping[str, Any]]) -> Dict[str, Any]:
    trained = [n for n in summary if summary[n]["mode"] == "train"]
    return {
        "vs_frozen_floor": {n: ratio(summary, n, "frozen_floor") for n in trained},
        "frozen_floor_over_inference": ratio(summary, "frozen_floor", "inference"),
        "full_finetune_over_inference": ratio(summary, "full_finetune", "inference"),
        "ours_over_peft": {"lora": ratio(summary, "lora", "peft_lora"), "dora": ratio(summary, "dora", "peft_dora")},
        "merged_inference_over_base_inference": ratio(summary, "merged_lora_inference", "inference"),
    }


def environment(settings: Settings) -> Dict[str, Any]:
    def version(module: str) -> Optional[str]:
        try:
            return __import__(module).__version__
        except Exception:  # noqa: BLE001 - a missing optional package is just reported as None
            return None

    cpu_model = platform.processor()
    with contextlib.suppress(OSError):
        names = re.findall(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.MULTILINE)
        cpu_model = names[0] if names else cpu_model
    env: Dict[str, Any] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "espnet": version("espnet"),
        "peft": version("peft"),
        "platform": platform.platform(),
        "device": settings.device,
        "dtype": settings.dtype,
        "torch_threads": settings.threads,
        "cpu_model": cpu_model,
        "cpu_count": os.cpu_count(),
        "mkldnn": torch.backends.mkldnn.is_available(),
    }
    if settings.device.startswith("cuda"):
        env["gpu"] = torch.cuda.get_device_name()
        env["cuda"] = torch.version.cuda
    return env


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


def format_table(summary: Mapping[str, Mapping[str, Any]], all_ratios: Mapping[str, Any]) -> str:
    floor = all_ratios["vs_frozen_floor"]
    lines = [f"{'configuration':<22} {'median s':>9} {'p25 s':>8} {'p75 s':>8} {'/floor':>7} {'/infer':>7} "
             f"{'peak MiB':>9} {'trainable':>11} {'other CPU':>9}"]
    for name, row in summary.items():
        vs_floor = floor.get(name)
        vs_inference = ratio(summary, name, "inference")
        lines.append(
            f"{name:<22} {row['median_s']:>9.4f} {row['p25_s']:>8.4f} {row['p75_s']:>8.4f} "
            f"{_fmt(vs_floor):>7} {_fmt(vs_inference):>7} {row['peak_memory_mib']:>9.1f} "
            f"{row['trainable_params']:>11,} {_fmt(_max_or_none(row['foreign_cpu_cores_per_round'])):>9}"
        )
    lines.append("")
    lines.append(f"frozen_floor / inference          {_fmt(all_ratios['frozen_floor_over_inference'])}")
    lines.append(f"ours / peft, LoRA                 {_fmt(all_ratios['ours_over_peft']['lora'])}")
    lines.append(f"ours / peft, DoRA                 {_fmt(all_ratios['ours_over_peft']['dora'])}")
    lines.append(f"merged LoRA inference / inference {_fmt(all_ratios['merged_inference_over_base_inference'])}")
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
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads in every configuration")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=6.0, help="utterance length (100 frames/s)")
    parser.add_argument("--blocks", type=int, default=6, help="E-Branchformer blocks")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per configuration and round")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first (auto compute paths decide here)")
    parser.add_argument("--rounds", type=int, default=1, help="repeat the whole sweep, interleaved; steps are pooled")
    parser.add_argument("--wait-quiet", type=float, default=0.0, metavar="SECONDS",
                        help="before each configuration, wait up to this long for other processes to stop using CPU")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--lora-rank", type=int, default=16, help="rank of LoRA, of peft, and of the default budget")
    parser.add_argument("--budget", type=int, default=None,
                        help="total trainable parameters for our methods (default: LoRA --lora-rank's count)")
    parser.add_argument("--outer-share", type=float, default=0.5, help="SSVD-O outer_share")
    parser.add_argument("--configs", default=",".join(CONFIGS), help="comma-separated subset of " + ",".join(CONFIGS))
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 2 blocks, 1 s, 2 steps, 1 warm-up, all in one process")
    parser.add_argument("--in-process", action="store_true",
                        help="run configurations in this process (faster start; memory figures less isolated)")
    parser.add_argument("--output", type=Path, default=None,
                        help="JSON path (default benchmarks/results/adapter_step_<device>.json)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--result-file", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--settings", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.blocks, args.seconds, args.steps, args.warmup, args.in_process = 2, 1.0, 2, 1, True
    return args


def settings_from_args(args: argparse.Namespace) -> Settings:
    return Settings(device=args.device, dtype=args.dtype, threads=args.threads, batch=args.batch, seconds=args.seconds,
                    blocks=args.blocks, steps=args.steps, warmup=args.warmup, seed=args.seed,
                    lora_rank=args.lora_rank, budget=args.budget, outer_share=args.outer_share)


def worker_main(args: argparse.Namespace) -> None:
    settings = Settings(**json.loads(args.settings))
    result = run_config(args.worker, settings)
    args.result_file.write_text(json.dumps(result))


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
    output = args.output or RESULTS_DIR / f"adapter_step_{settings.device.split(':')[0]}.json"

    started = time.time()
    model = describe_model(settings)
    runs = sweep(configs, settings, args.rounds, isolate=not args.in_process, wait_quiet_s=args.wait_quiet)
    summary = summarise(runs)
    all_ratios = ratios(summary)
    report = {
        "benchmark": "adapter_step",
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": [Path(sys.executable).name, *sys.argv],
        "wall_seconds": round(time.time() - started, 1),
        "environment": environment(settings),
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
        "timing": {"warmup_steps": settings.warmup, "timed_steps_per_round": settings.steps, "rounds": args.rounds,
                   "isolation": "in-process" if args.in_process else "one fresh subprocess per configuration and round",
                   "statistic": "median / p25 / p75 over the pooled timed steps"},
        "contention": {
            "max_foreign_cpu_cores": _max_or_none([_max_or_none(r["foreign_cpu_cores_per_round"])
                                                   for r in summary.values()]),
            "what": "CPU cores used by other processes while a configuration ran (/proc/stat busy time minus ours); "
                    "above ~0.2 on a 2-core machine the timings of that configuration are contaminated",
        },
        "configs": summary,
        "ratios": all_ratios,
    }
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2) + "\n")
    print(format_table(summary, all_ratios))
    print(f"\nwrote {output}")


if __name__ == "__main__":
    main()

"""Fingerprints of a model's base weights, so that adapters are never applied to a base they were not trained on.

A fingerprint holds, per base parameter, its shape and a few order-sensitive statistics (sums, norm, sampled
values). Adapted layers are reported by their *pretrained* weight, so the fingerprint of a fine-tuned model equals
that of the base it started from. Adapter packages and adapter-only training runs both store one.
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping

import torch
from torch import nn

from espnet_peft.injection import adapter_layers
from espnet_peft.trainable_extras import EXTRAS_ATTRIBUTE

FINGERPRINT_RTOL = 1e-4


def _summary(tensor: torch.Tensor) -> List[float]:
    flat = tensor.detach().double().flatten().cpu()
    n = flat.numel()
    picks = [flat[i].item() for i in sorted({0, n // 3, (2 * n) // 3, n - 1})] if n else []
    return [flat.sum().item(), flat.abs().sum().item(), flat.norm().item(), *picks]


def base_fingerprint(model: nn.Module) -> Dict[str, Dict[str, Any]]:
    """Shape and statistics of every base parameter, with adapted layers reported by their *pretrained* weight."""
    layers = adapter_layers(model)
    adapter_tensors = {f"{n}.{k}" for n, layer in layers.items() for k in layer.adapter_parameters()}
    adapter_tensors |= set(getattr(model, EXTRAS_ATTRIBUTE, ()))  # modules_to_save / biases: trained, not base
    pretrained = {f"{n}.weight": layer.pretrained_weight() for n, layer in layers.items()}
    fingerprint = {}
    for name, parameter in model.named_parameters():
        if name in adapter_tensors:
            continue
        tensor = pretrained.get(name, parameter)
        fingerprint[name] = {"shape": list(tensor.shape), "stats": _summary(tensor)}
    return fingerprint


def fingerprint_mismatches(expected: Mapping[str, Any], actual: Mapping[str, Any]) -> List[str]:
    problems = [f"missing tensor {n}" for n in expected if n not in actual]
    problems += [f"extra tensor {n}" for n in actual if n not in expected]
    for name in expected.keys() & actual.keys():
        want, got = expected[name], actual[name]
        if want["shape"] != got["shape"]:
            problems.append(f"{name}: shape {got['shape']} != {want['shape']}")
            continue
        scale = max(abs(want["stats"][2]), 1e-12)  # relative to the tensor's norm
        if any(abs(a - b) > FINGERPRINT_RTOL * scale for a, b in zip(want["stats"], got["stats"])):
            problems.append(f"{name}: values differ")
    return sorted(problems)

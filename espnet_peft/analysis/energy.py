"""SVD energy of adapter activations and of their gradients: how many directions does an adapter really use?

Every adapter layer passes its low-dimensional intermediate through an ``nn.Identity`` probe, ``bottleneck``
(``espnet_peft.tuners.base.AdapterLayer``): LoRA / DoRA / PiSSA ``A drop(x)`` (``r`` dims), SSVD / SSVD-O
``core V_k^T x`` (``k`` dims, see ``tuners/subspace_rotation.py``). Over all batches, the rows (one per token the
layer sees) of the activation matrix ``Z [N, r]`` and of the gradient matrix ``dL/dZ [N, r]`` are stacked, and per
matrix

    E_k = sum_{i<=k} sigma_i^2 / sum_i sigma_i^2,    k90 = min{k : E_k >= 0.9}

(``docs/analysis-definitions.md``, "Adapter SVD energy"). ``r`` is small, so ``Z^T Z`` is accumulated in float64 (its
eigenvalues are the ``sigma_i^2``) instead of keeping ``Z``. Uncentred, as an SVD of the stacked rows.

The seed's finding is a comparison: trained activations collapse onto a few directions while their gradients spread
out. Run ``adapter_energy`` on the trained model and on the same model with freshly initialised adapters (same
injection, no training) and put them side by side with ``compare_energy``. Note that at initialisation LoRA's and
DoRA's ``B`` is zero, so the gradient at their bottleneck is exactly zero (``grad_k90`` is 0), and the SSVD / SSVD-O
core is zero, so their bottleneck activation is exactly zero (``act_k90`` is 0; the gradient is not); see
``EnergyStats``. Perturb or briefly train the untrained adapters when the zero side matters.

Hugging Face ``peft`` LoRA layers have no such probe: their bottleneck is the output of ``lora_A``
(``hf_peft.lora_bottlenecks``), passed to ``adapter_energy`` as ``bottlenecks``.

Gradients are taken with ``torch.autograd.grad`` with respect to the probed activations only, so no parameter's
``.grad`` is created or changed. Every token the layer sees counts, padding included: batches without padding
(batch size 1, or equal lengths) give exact statistics; padded frames carry zero gradient but non-zero activations.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, ContextManager

import torch
from torch import nn
from tqdm import tqdm

from espnet_peft.injection import adapter_layers, set_submodule

#: share of the energy that ``k90`` must reach
ENERGY_SHARE = 0.9


def cumulative_energy(gram: torch.Tensor) -> list[float]:
    """``E_1..E_r`` of a matrix ``Z`` from its Gram matrix ``Z^T Z`` (``[r, r]``); all zeros when ``Z`` is zero."""
    squared = torch.linalg.eigvalsh(gram.double()).flip(0).clamp_min(0)  # sigma_i^2, largest first
    total = squared.sum()
    if total == 0:
        return [0.0] * squared.numel()
    return (squared.cumsum(0) / total).tolist()


def k_at(energy: list[float], share: float = ENERGY_SHARE) -> int:
    """Fewest leading directions holding ``share`` of the energy; 0 for an all-zero matrix."""
    if not energy or energy[-1] == 0:
        return 0
    # a share within rounding of the threshold counts as reaching it
    return next(k for k, e in enumerate(energy, start=1) if e >= share - 1e-12)


@dataclasses.dataclass
class EnergyStats:
    """One adapter layer: ``rank`` (bottleneck width), ``rows`` (tokens seen), cumulative energies and ``k90`` of the
    activations and of their gradients. ``*_k90 == 0`` means the matrix was exactly zero."""

    rank: int
    rows: int
    act_energy: list[float]
    act_k90: int
    grad_energy: list[float]
    grad_k90: int

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class _GramAccumulator:
    """Streaming ``Z^T Z`` and ``G^T G`` (float64) of one probe."""

    def __init__(self) -> None:
        self.act: torch.Tensor | None = None
        self.grad: torch.Tensor | None = None
        self.rows = 0

    def add(self, activation: torch.Tensor, gradient: torch.Tensor) -> None:
        z = activation.detach().reshape(-1, activation.shape[-1]).double()
        g = gradient.detach().reshape(-1, gradient.shape[-1]).double()
        self.act = z.T @ z if self.act is None else self.act + z.T @ z
        self.grad = g.T @ g if self.grad is None else self.grad + g.T @ g
        self.rows += z.shape[0]

    def stats(self) -> EnergyStats:
        act, grad = cumulative_energy(self.act), cumulative_energy(self.grad)
        return EnergyStats(self.act.shape[0], self.rows, act, k_at(act), grad, k_at(grad))


@dataclasses.dataclass(frozen=True)
class Bottleneck:
    """Where an adapter layer forms its low-dimensional intermediate: the module whose output it is, and a context
    manager factory under which every forward of the layer forms it (a compute path that skips it is forced off)."""

    module: nn.Module
    forced: Callable[[], ContextManager[None]] = contextlib.nullcontext


def adapter_bottlenecks(model: nn.Module) -> dict[str, Bottleneck]:
    """The ``bottleneck`` probe of every espnet_peft adapter layer of ``model``, keyed by the layer's module name."""
    return adapter_bottlenecks_of(adapter_layers(model))


def adapter_bottlenecks_of(layers: Mapping[str, nn.Module]) -> dict[str, Bottleneck]:
    """The ``bottleneck`` probe of each of these espnet_peft adapter layers, under the same keys."""
    return {name: Bottleneck(layer.bottleneck, layer.bottleneck_probe) for name, layer in layers.items()}


@contextlib.contextmanager
def recording_bottlenecks(layers: Mapping[str, Bottleneck], outputs: dict[str, list[torch.Tensor]]
                          ) -> Iterator[None]:
    """Record every bottleneck output (made differentiable when nothing before it was) while forcing probe paths."""

    def make_hook(name: str) -> Callable:
        def hook(module: nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor | None:
            replaced = None
            if not output.requires_grad:
                # frozen-only inputs (e.g. no grad upstream): a graph-free tensor can become a leaf, cutting nothing
                replaced = output = output.detach().requires_grad_(True)
            outputs[name].append(output)
            return replaced

        return hook

    with contextlib.ExitStack() as stack:
        for name, bottleneck in layers.items():
            stack.enter_context(bottleneck.forced())
            handle = bottleneck.module.register_forward_hook(make_hook(name))
            stack.callback(handle.remove)
        yield


def adapter_energy(
    model: nn.Module,
    run_loss: Callable[[nn.Module, Any], torch.Tensor],
    batches: Iterable[Any],
    bottlenecks: Mapping[str, Bottleneck] | None = None,
) -> dict[str, EnergyStats]:
    """SVD energy of every adapter layer's bottleneck activations and gradients, keyed by the layer's module name.

    ``bottlenecks``: the layers to probe (default: every espnet_peft adapter layer, ``adapter_bottlenecks``).

    ``run_loss(model, batch)`` runs a forward pass and returns a scalar loss (e.g. ``lambda m, b: m(**b)[0]`` for an
    ESPnet model and a collated batch); it is called once per item of ``batches`` with gradients enabled. The model's
    train/eval mode is left as it is (use ``eval()`` for dropout-free statistics); hooks and forced compute paths are
    undone also on exceptions, and no parameter ``.grad`` is touched.
    """
    layers = adapter_bottlenecks(model) if bottlenecks is None else bottlenecks
    if not layers:
        raise ValueError("the model has no adapter layers")
    accumulators = {name: _GramAccumulator() for name in layers}
    for batch in tqdm(batches, desc="adapter energy", unit="batch"):
        outputs: dict[str, list[torch.Tensor]] = {name: [] for name in layers}
        with torch.enable_grad(), recording_bottlenecks(layers, outputs):
            loss = run_loss(model, batch)
        if loss.dim() != 0 or not loss.requires_grad:
            raise ValueError(
                f"run_loss must return a differentiable scalar, got shape {tuple(loss.shape)} "
                f"(requires_grad={loss.requires_grad}): no torch.no_grad() inside it"
            )
        flat = [(name, out) for name, outs in outputs.items() for out in outs]
        grads = torch.autograd.grad(loss, [out for _, out in flat], allow_unused=True)
        for (name, out), grad in zip(flat, grads):
            # an activation the loss does not depend on (e.g. decoder adapters under a CTC-only loss) has zero gradient
            accumulators[name].add(out, torch.zeros_like(out) if grad is None else grad)
    unseen = [name for name, acc in accumulators.items() if acc.rows == 0]
    if unseen:
        raise RuntimeError(f"adapter layers never ran during run_loss: {unseen}")
    return {name: acc.stats() for name, acc in accumulators.items()}


def compare_energy(
    trained: dict[str, EnergyStats], untrained: dict[str, EnergyStats]
) -> dict[str, dict[str, int]]:
    """Per layer present in both, ``k90`` of activations and gradients side by side (JSON-serialisable)."""
    return {
        name: {
            "rank": trained[name].rank,
            "trained_act_k90": trained[name].act_k90,
            "untrained_act_k90": untrained[name].act_k90,
            "trained_grad_k90": trained[name].grad_k90,
            "untrained_grad_k90": untrained[name].grad_k90,
        }
        for name in trained
        if name in untrained
    }


def _fresh_layer(layer: nn.Module) -> nn.Module:
    """A new adapter layer of ``layer``'s type and config around its pretrained weight (``pretrained_weight``: PiSSA's
    ``weight`` holds a residual), initialised as at the start of training."""
    weight = layer.weight
    base = nn.Linear(layer.in_features, layer.out_features, bias=layer.bias is not None,
                     device=weight.device, dtype=weight.dtype)
    with torch.no_grad():
        base.weight.copy_(layer.pretrained_weight())
        if layer.bias is not None:
            base.bias.copy_(layer.bias)
    fresh = type(layer)(base, layer.config)
    fresh.initialise_from_weight()
    return fresh


@contextlib.contextmanager
def seeded_draws(seed: int = 0) -> Iterator[None]:
    """Random draws inside are the same in every run (an analysis must not change when re-run), and the caller's
    random state is left as it was."""
    with torch.random.fork_rng(devices=range(torch.cuda.device_count())):
        torch.manual_seed(seed)
        yield


@contextlib.contextmanager
def untrained_adapters(model: nn.Module) -> Iterator[nn.Module]:
    """Inside the block every adapter of ``model`` is swapped for a freshly initialised one: where training started.

    Random factors (LoRA's ``A``) are new draws, the same in every run (``seeded_draws``); zero-initialised ones
    (LoRA's ``B``, SSVD's core) are zero again.
    The trained layers are put back on exit, also after an error. (Swapping rather than ``deepcopy``: ESPnet models
    can hold non-leaf tensors that cannot be deep-copied.)
    """
    trained = adapter_layers(model)
    try:
        with seeded_draws():
            for name, layer in trained.items():
                set_submodule(model, name, _fresh_layer(layer))
        yield model
    finally:
        for name, layer in trained.items():
            set_submodule(model, name, layer)

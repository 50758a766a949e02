"""Adapter training dynamics on one fixed probe batch: what each side of every adapter does at one point of training.

The "Behind the Scenes" study of LoRA in Whisper found *forward alignment* (``A`` turns towards the principal
directions of the layer input) and *backward differentiation* (``B`` turns towards those of the output gradient).
``probe_dynamics`` measures both, for every adapter method, from one forward and one backward pass:

* the SVD energy (``k90``, ``docs/analysis-definitions.md``) of the A-side activations (the ``bottleneck``: LoRA's
  ``A x``, SSVD's ``core V_k^T x``), of the B-side outputs ``dW x``, and of the gradients at both;
* forward alignment: the share of the input-side map's energy (LoRA's ``A``, SSVD's ``R_i V_k^T``) that lies in the
  top-``r`` principal directions of the layer input, ``||M P_x||_F^2 / ||M||_F^2``; ``r / d_in`` by chance;
* backward differentiation: the share of the output-side map's energy (LoRA's ``s B``, SSVD's ``U_k R_o``) in the
  top-``r`` principal directions of the gradient at the layer output; ``r / d_out`` by chance;
* both alignments again for the *updates* of the maps since the start of training (what training added: LoRA's
  random ``A0`` dominates ``A`` itself for a long time), and the uncentred CKA of the two updates over the ``r`` rank
  components (``dA dA^T`` against ``dB^T dB``): 1 when the same components carry the update on both sides;
* the Frobenius norm of every trained tensor's change (LoRA's ``lora_A``/``lora_B``, SSVD's generators and
  ``sigma_delta``, DoRA's ``magnitude``).

Principal directions are uncentred (an SVD of the stacked rows, as for the energy). Gradients come from
``torch.autograd.grad`` with respect to the captured activations only, so no parameter ``.grad`` changes.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Optional

import torch
from torch import nn

from espnet_peft.analysis.energy import adapter_bottlenecks_of, cumulative_energy, k_at, recording_bottlenecks
from espnet_peft.dynamics_probe_config import DEFAULT_MAX_ROWS as MAX_ROWS
from espnet_peft.injection import adapter_layers


def _rows(tensor: torch.Tensor, limit: int) -> torch.Tensor:
    flat = tensor.detach().reshape(-1, tensor.shape[-1]).double()
    if flat.shape[0] <= limit:
        return flat
    return flat[torch.linspace(0, flat.shape[0] - 1, limit).round().long().to(flat.device)]


def energy(rows: torch.Tensor) -> dict[str, Any]:
    """``k90`` and the cumulative energies ``E_1..`` of a ``[N, d]`` matrix (through its smaller Gram matrix)."""
    gram = rows.T @ rows if rows.shape[1] <= rows.shape[0] else rows @ rows.T
    cumulative = cumulative_energy(gram)
    return {"k90": k_at(cumulative), "energy": cumulative[: min(len(cumulative), 32)]}


def principal_directions(rows: torch.Tensor, count: int) -> torch.Tensor:
    """The top ``count`` right singular vectors of ``rows`` (``[d, count]``, orthonormal)."""
    if rows.shape[1] <= rows.shape[0]:  # the eigenvectors of the float64 Gram: about 4x faster than an SVD of rows
        _, vectors = torch.linalg.eigh(rows.T @ rows)
        return vectors.flip(1)[:, :count]
    _, _, vh = torch.linalg.svd(rows, full_matrices=False)
    return vh[:count].T


def energy_share(matrix: torch.Tensor, basis: torch.Tensor) -> Optional[float]:
    """``||matrix basis||_F^2 / ||matrix||_F^2``: the share of the rows' energy inside ``span(basis)``; None for 0."""
    total = matrix.square().sum()
    if total == 0:
        return None
    return float((matrix @ basis).square().sum() / total)


def gram_cosine(a: torch.Tensor, b: torch.Tensor) -> Optional[float]:
    """Uncentred linear CKA of two ``[r, *]`` matrices over their ``r`` rows; None when either is zero."""
    ka, kb = a @ a.T, b @ b.T
    norm = ka.norm() * kb.norm()
    return None if norm == 0 else float((ka * kb).sum() / norm)


def trained_tensors(layer: nn.Module) -> dict[str, torch.Tensor]:
    """A detached float64 copy of a layer's trained tensors, to measure their change against."""
    return {name: p.detach().double().clone() for name, p in layer.adapter_parameters().items()}


def initial_state(model: nn.Module) -> dict[str, dict[str, torch.Tensor]]:
    """What ``probe_dynamics`` measures changes against: each layer's side maps and trained tensors, now."""
    state = {}
    for name, layer in adapter_layers(model).items():
        first, second = layer.side_maps()
        state[name] = {"input_map": first.double().clone(), "output_map": second.double().clone(),
                       **{f"param.{k}": v for k, v in trained_tensors(layer).items()}}
    return state


@contextlib.contextmanager
def _capture(layers: Mapping[str, nn.Module], seen: dict[str, dict[str, torch.Tensor]],
             bottlenecks: dict[str, list[torch.Tensor]]) -> Iterator[None]:
    """Each layer's input and output (the last call of each), and its bottleneck activations (``bottlenecks``)."""

    def on_layer(name: str) -> Callable:
        def hook(module: nn.Module, args: tuple, output: torch.Tensor) -> None:
            seen[name] = {"input": args[0].detach(), "output": output}

        return hook

    with contextlib.ExitStack() as stack:
        stack.enter_context(recording_bottlenecks(adapter_bottlenecks_of(layers), bottlenecks))
        for name, layer in layers.items():
            stack.callback(layer.register_forward_hook(on_layer(name)).remove)
        yield


def _layer_dynamics(layer: nn.Module, seen: Mapping[str, torch.Tensor], grads: Mapping[str, torch.Tensor],
                    start: Mapping[str, torch.Tensor], max_rows: int) -> dict[str, Any]:
    x, output_grad = _rows(seen["input"], max_rows), _rows(grads["output"], max_rows)
    bottleneck, bottleneck_grad = _rows(seen["bottleneck"], max_rows), _rows(grads["bottleneck"], max_rows)
    with torch.no_grad():
        delta_w = layer.delta_weight().detach().double()
        input_map, output_map = (m.double() for m in layer.side_maps())
    rank = input_map.shape[0]
    input_basis = principal_directions(x, rank)
    grad_basis = principal_directions(output_grad, rank)
    input_update = input_map - start["input_map"]
    output_update = output_map - start["output_map"]
    params = trained_tensors(layer)
    return {
        "rank": rank,
        "act_a": energy(bottleneck),
        "act_b": energy(x @ delta_w.T),
        "grad_a": energy(bottleneck_grad),
        "grad_b": energy(output_grad),
        "forward_alignment": energy_share(input_map, input_basis),
        "forward_alignment_update": energy_share(input_update, input_basis),
        "forward_alignment_chance": rank / input_map.shape[1],
        "backward_alignment": energy_share(output_map.T, grad_basis),
        "backward_alignment_update": energy_share(output_update.T, grad_basis),
        "backward_alignment_chance": rank / output_map.shape[0],
        "update_cka": gram_cosine(input_update, output_update.T),
        "change_norm": {name: float((value - start[f"param.{name}"]).norm()) for name, value in params.items()},
    }


def probe_dynamics(model: nn.Module, batch: Any, run_loss: Callable[[nn.Module, Any], torch.Tensor],
                   start: Mapping[str, Mapping[str, torch.Tensor]], max_rows: int = MAX_ROWS
                   ) -> dict[str, dict[str, Any]]:
    """One probe of every adapter layer on ``batch``: ``{layer name: its statistics}`` (see the module docstring).

    ``run_loss(model, batch)`` returns the scalar training loss; ``start`` is ``initial_state(model)`` from the start
    of training; ``max_rows``: tokens per layer used at most, spread evenly. The model's mode is left as it is (the
    trainer's probe runs it in eval mode).
    """
    layers = adapter_layers(model)
    seen: dict[str, dict[str, torch.Tensor]] = {}
    bottlenecks: dict[str, list[torch.Tensor]] = {name: [] for name in layers}
    with torch.enable_grad(), _capture(layers, seen, bottlenecks):
        loss = run_loss(model, batch)
    unseen = sorted(name for name in layers if name not in seen or not bottlenecks[name])
    if unseen:
        raise RuntimeError(f"adapter layers never ran on the probe batch: {unseen[:5]}")
    for name in layers:
        seen[name]["bottleneck"] = bottlenecks[name][-1]
    targets = [(name, key) for name in layers for key in ("output", "bottleneck")]
    tensors = [seen[name][key] for name, key in targets]
    found = torch.autograd.grad(loss, tensors, allow_unused=True)
    grads: dict[str, dict[str, torch.Tensor]] = {name: {} for name in layers}
    for (name, key), tensor, grad in zip(targets, tensors, found):
        # a layer the loss does not reach (decoder adapters under a CTC-only loss) has zero gradient
        grads[name][key] = torch.zeros_like(tensor) if grad is None else grad
    return {name: _layer_dynamics(layer, seen[name], grads[name], start[name], max_rows) for name, layer in layers.items()}

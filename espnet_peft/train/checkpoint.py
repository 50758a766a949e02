"""Loading checkpoints of adapted models, including adapter-only ones, onto the right base weights."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Dict, Mapping, Sequence, Union

import torch
from torch import nn

from espnet_peft.injection import adapter_layers

StateDict = Mapping[str, torch.Tensor]


def is_full_state(model: nn.Module, state: StateDict) -> bool:
    """True when ``state`` holds every tensor of ``model`` (``save_strategy: all``)."""
    return set(model.state_dict()) <= set(state)


def load_adapter_only_state(model: nn.Module, state: StateDict, source: Union[str, Path] = "checkpoint") -> None:
    """Apply an adapter-only state (adapter tensors + other buffers) to a freshly injected model on its base weights.

    Each adapter layer gets its own tensors through ``load_adapter_state``, which also rebuilds derived frozen
    weights (PiSSA's residual); the remaining entries (e.g. BatchNorm statistics) are loaded non-strictly.
    """
    remaining: Dict[str, torch.Tensor] = dict(state)
    for name, layer in adapter_layers(model).items():
        own = {key: remaining.pop(f"{name}.{key}") for key in layer.adapter_state_dict() if f"{name}.{key}" in remaining}
        try:
            layer.load_adapter_state(own)
        except (KeyError, ValueError) as error:
            raise ValueError(f"{source}: adapter layer '{name}': {error}") from None
    model_keys = set(model.state_dict())
    unknown = sorted(k for k in remaining if k not in model_keys)
    if unknown:
        raise ValueError(f"{source} has tensors this model does not: {unknown[:8]}; was it trained on another model?")
    model.load_state_dict(remaining, strict=False)


def load_adapted_checkpoint(model: nn.Module, model_file: Union[str, Path], init_param: Sequence[str] = (),
                            map_location: Union[str, torch.device] = "cpu") -> None:
    """Load ``model_file`` into an injected model: whole if it is complete, else on top of the ``init_param`` base."""
    state = torch.load(model_file, map_location=map_location, weights_only=False)
    if "model" in state and isinstance(state["model"], dict) and "reporter" in state:
        state = state["model"]  # a trainer checkpoint.pth
    if is_full_state(model, state):
        model.load_state_dict(state, strict=True)
        return
    if not init_param:
        raise ValueError(
            f"{model_file} is an adapter-only checkpoint, but the training config names no init_param to take the "
            "base weights from; pass the base model with --init_param or use a save_strategy 'all' checkpoint"
        )
    from espnet2.torch_utils.load_pretrained_model import load_pretrained_model

    for path in init_param:
        logging.info("espnet_peft: base weights from %s for adapter-only %s", path, model_file)
        load_pretrained_model(init_param=path, model=model, ignore_init_mismatch=False, map_location=str(map_location))
    load_adapter_only_state(model, state, source=model_file)

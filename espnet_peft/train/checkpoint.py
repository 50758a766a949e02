"""Loading checkpoints of adapted models, including adapter-only ones, onto the right base weights."""

from __future__ import annotations

import json
import logging
import zipfile
from pathlib import Path
from typing import Any, Dict, Mapping, Sequence, Union

import torch
from torch import nn

from espnet_peft.atomic import atomic_write_text
from espnet_peft.base_fingerprint import base_fingerprint, fingerprint_mismatches
from espnet_peft.injection import adapter_layers
from espnet_peft.utils.structured_files import read_json

StateDict = Mapping[str, torch.Tensor]
#: written into the output dir when an adapter run starts: the base its adapter-only checkpoints belong to
BASE_RECORD = "base_fingerprint.json"


def _unreadable(path: Path, error: Exception) -> ValueError:
    return ValueError(
        f"{path} ({path.stat().st_size} bytes) cannot be read: {error}. It was probably cut short by a kill while "
        f"it was written. Delete it and re-run: training restarts from scratch if it was checkpoint.pth, and a "
        f"model file is rebuilt by re-running the stage that wrote it."
    )


def read_checkpoint(path: Union[str, Path], map_location: Union[str, torch.device] = "cpu",
                    weights_only: bool = False) -> Any:
    """``torch.load`` that names the file and the fix when it is cut short or corrupt (a kill during its write)."""
    path = Path(path)
    try:
        return torch.load(path, map_location=map_location, weights_only=weights_only)
    except (RuntimeError, EOFError, OSError, ValueError) as error:
        if not path.is_file():
            raise
        raise _unreadable(path, error) from None


def check_checkpoint_complete(path: Union[str, Path]) -> None:
    """A cheap check that a torch zip checkpoint is complete (its central directory, at the end, is intact)."""
    path = Path(path)
    try:
        with zipfile.ZipFile(path):
            pass
    except (zipfile.BadZipFile, OSError) as error:
        raise _unreadable(path, error) from None


def write_base_record(model: nn.Module, output_dir: Union[str, Path], init_param: Sequence[str]) -> None:
    """Record the base weights an adapter run starts from (call before the adapters change ``weight``)."""
    record = {"init_param": list(init_param), "fingerprint": base_fingerprint(model)}
    atomic_write_text(Path(output_dir) / BASE_RECORD, json.dumps(record))


def check_base(model: nn.Module, record_dir: Union[str, Path], source: Union[str, Path],
               init_param: Sequence[str]) -> None:
    """Refuse to put ``source``'s adapters on base weights other than the ones its run was trained on."""
    path = Path(record_dir) / BASE_RECORD
    if not path.is_file():
        logging.warning("espnet_peft: %s has no %s (an older run); its base weights cannot be checked", source, path)
        return
    record = read_json(path)
    problems = fingerprint_mismatches(record["fingerprint"], base_fingerprint(model))
    if problems:
        expected = " ".join(record["init_param"]) or "(none)"
        given = " ".join(init_param) or "none"
        raise ValueError(
            f"{source} holds adapters trained on the base weights from init_param {expected}, but the base weights "
            f"loaded now (init_param: {given}) differ in {len(problems)} tensors, e.g. {problems[:5]}. Pass "
            f"--init_param {expected} (the base of {path}), or retrain on the new base."
        )


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
    state = read_checkpoint(model_file, map_location)
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
    check_base(model, Path(model_file).parent, model_file, init_param)
    load_adapter_only_state(model, state, source=model_file)

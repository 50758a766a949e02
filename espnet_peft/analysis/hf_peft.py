"""Hugging Face ``peft`` adapters over a Hugging Face model: the analyses read the base with peft's LoRA layers in it.

An adapter dir is what ``PeftModel.save_pretrained`` writes: ``adapter_config.json`` (whose
``base_model_name_or_path`` names the base model) and the adapter weights. ``adapter_base`` finds the base: the one
given as ``ADAPTER_DIR@BASE_DIR`` (``split_adapter_spec``), else the config's, when that is a local dir (a relative
path is taken from the current dir, as peft took it when training). ``load_adapter`` loads the adapter with peft
itself (``PeftModel.from_pretrained``), unmerged and in eval mode, so that the LoRA layers run exactly as peft runs
them and can be probed. Every weight of the adapter file must land in the model and every LoRA layer must get its
weights: an adapter trained on another architecture is an error, not a silently half-loaded model.

For the adapter SVD energy (``adapter_energy``): a LoRA layer's bottleneck is the output of its ``lora_A``
(``A drop(x)``, ``r`` values per token; peft's ``Linear`` layers, the ones that forward through ``lora_A`` as a
module), and ``untrained_lora`` puts every layer back where peft starts training (``A`` drawn anew, ``B = 0``).
``peft`` is imported inside the functions: ESPnet-only runs never import it.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Optional

import torch
from torch import nn

from espnet_peft.analysis.energy import Bottleneck, seeded_draws
from espnet_peft.analysis.errors import AnalysisInputError

#: the file that makes a dir a peft adapter dir
ADAPTER_CONFIG = "adapter_config.json"
#: joins an adapter dir and its base model dir in one model argument
BASE_SEPARATOR = "@"


def is_adapter_dir(path: Path) -> bool:
    return (path / ADAPTER_CONFIG).is_file()


def split_adapter_spec(spec: str) -> tuple[str, Optional[str]]:
    """``ADAPTER_DIR@BASE_DIR`` as (adapter dir, base dir); anything else (an existing path with an ``@`` in it
    included) as (spec, None)."""
    if BASE_SEPARATOR not in spec or Path(spec).exists():
        return spec, None
    adapter, _, base = spec.rpartition(BASE_SEPARATOR)
    return adapter, base


def adapter_base(label: str, adapter: Path, base: Optional[str] = None) -> Path:
    """The base model dir of the peft adapter dir ``adapter``: ``base`` when given, else its config's."""
    config_file = adapter / ADAPTER_CONFIG
    if not config_file.is_file():
        raise AnalysisInputError(f"model {label}: {config_file} not found: ADAPTER_DIR{BASE_SEPARATOR}BASE_DIR takes "
                                 f"a peft adapter dir (PeftModel.save_pretrained writes {ADAPTER_CONFIG} into it) "
                                 f"and its base model dir")
    if base is not None:
        if not Path(base).is_dir():
            raise AnalysisInputError(f"model {label}: base model dir {base} (after '{BASE_SEPARATOR}') not found")
        return Path(base)
    try:
        named = json.loads(config_file.read_text(encoding="utf-8")).get("base_model_name_or_path")
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError) as error:
        raise AnalysisInputError(f"model {label}: {config_file} is not a peft adapter config ({error}); rewrite it "
                                 f"with PeftModel.save_pretrained") from None
    if not named or not Path(named).is_dir():
        raise AnalysisInputError(f"model {label}: {config_file} names its base model {named!r}, which is not a local "
                                 f"dir (the analysis downloads nothing); give the base dir as "
                                 f"{adapter}{BASE_SEPARATOR}BASE_DIR")
    return Path(named)


def load_adapter(label: str, base: nn.Module, adapter: Path) -> nn.Module:
    """``base`` with the peft adapter of dir ``adapter`` loaded into it by peft (unmerged, eval mode): the base model
    itself, now holding peft's LoRA layers, whose forward is the ``PeftModel``'s."""
    from peft import PeftModel, get_peft_model_state_dict
    from peft.mapping import PEFT_TYPE_TO_PREFIX_MAPPING
    from peft.utils import load_peft_weights

    fix = f"give the base model it was trained on as {adapter}{BASE_SEPARATOR}BASE_DIR"
    try:
        wrapped = PeftModel.from_pretrained(base, str(adapter))
    except (ValueError, RuntimeError, KeyError) as error:  # target modules not in the base, shape mismatches
        raise AnalysisInputError(f"model {label}: the adapter in {adapter / ADAPTER_CONFIG} does not fit its base "
                                 f"{type(base).__name__} ({error}); {fix}") from None
    # the adapter layers' own weights (keys with the tuner's prefix, e.g. "lora_"): peft only warns when they do not
    # match, and the model would then run with some of them at their initial values
    prefix = PEFT_TYPE_TO_PREFIX_MAPPING.get(wrapped.active_peft_config.peft_type, "")
    saved = {key for key in load_peft_weights(str(adapter), device="cpu") if prefix in key}
    expected = {key for key in get_peft_model_state_dict(wrapped, save_embedding_layers=False) if prefix in key}
    if saved != expected:
        unmatched = sorted(saved ^ expected)
        raise AnalysisInputError(f"model {label}: the weights in {adapter} do not match the LoRA layers peft built "
                                 f"on {type(base).__name__} ({len(unmatched)} unmatched, e.g. {unmatched[:3]}); "
                                 f"{fix}")
    wrapped.eval()
    return wrapped.get_base_model()


def lora_layers(model: nn.Module) -> dict[str, nn.Module]:
    """peft's LoRA layers inside ``model``, keyed by module name."""
    from peft.tuners.lora import LoraLayer

    return {name: module for name, module in model.named_modules() if isinstance(module, LoraLayer)}


def _linear_lora(model: nn.Module) -> dict[str, nn.Module]:
    from peft.tuners.lora import Linear

    return {name: layer for name, layer in lora_layers(model).items() if isinstance(layer, Linear)}


def lora_bottlenecks(model: nn.Module) -> dict[str, Bottleneck]:
    """The ``lora_A`` output of every active adapter of every linear LoRA layer, keyed by that ``lora_A``'s module
    name (``<layer>.lora_A.<adapter>``)."""
    return {f"{name}.lora_A.{adapter}": Bottleneck(layer.lora_A[adapter])
            for name, layer in _linear_lora(model).items() for adapter in layer.active_adapters
            if adapter in layer.lora_A}


@contextlib.contextmanager
def untrained_lora(model: nn.Module) -> Iterator[nn.Module]:
    """Inside the block every linear LoRA layer of ``model`` is as peft initialises it (``A`` Kaiming-uniform, a new
    draw, the same in every run; ``B`` and its bias zero); the trained weights are put back on exit, also after an
    error."""
    saved: list[tuple[torch.Tensor, torch.Tensor]] = []
    try:
        with torch.no_grad(), seeded_draws():
            for layer in _linear_lora(model).values():
                for adapter in layer.lora_A:
                    saved += [(p, p.detach().clone()) for p in (*layer.lora_A[adapter].parameters(),
                                                                   *layer.lora_B[adapter].parameters())]
                    layer.reset_lora_parameters(adapter, True)
        yield model
    finally:
        with torch.no_grad():
            for parameter, trained in saved:
                parameter.copy_(trained)


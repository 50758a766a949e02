"""What trains besides the adapters: HF peft's ``modules_to_save`` and ``bias`` options of an adapter config.

* ``modules_to_save``: modules (a list of names or name suffixes, or a regex on the whole name, as ``target_modules``)
  whose every parameter trains in full, e.g. the CTC head ``ctc.ctc_lo`` or the encoder's final LayerNorm. HF peft
  trains a copy and keeps the original beside it; here the module itself trains, since the base weights stay in
  their own file (``init_param``) anyway. A module that holds an adapted layer is refused: its base weight would then
  train twice over.
* ``bias``: ``none`` (the default), ``all`` (every bias of the model) or ``adapter_only`` (the biases of the adapted
  layers; HF peft's ``lora_only``).

These tensors are counted in the injection report, saved in adapter-only checkpoints (ESPnet's
``required_grad_only`` keeps every trainable tensor) and in adapter packages, left out of the base fingerprint (they
are meant to change), and kept as trained by merging.
"""

from __future__ import annotations

from typing import Any, Iterable, List, Optional

from torch import nn

from espnet_peft.targets import TargetSpec, name_matches
from espnet_peft.tuners import AdapterConfigError

BIAS_MODES = ("none", "all", "adapter_only")
#: attribute of an injected model that lists its trainable extras (read by the base fingerprint)
EXTRAS_ATTRIBUTE = "espnet_peft_trainable_extras"


def check_extras_options(modules_to_save: Any, bias: Any) -> None:
    if bias not in BIAS_MODES:
        raise AdapterConfigError(f"bias must be one of {BIAS_MODES}, got {bias!r}")
    if modules_to_save is None:
        return
    valid = isinstance(modules_to_save, str) or (
        isinstance(modules_to_save, (list, tuple)) and all(isinstance(n, str) for n in modules_to_save))
    if not valid or not modules_to_save:
        raise AdapterConfigError(
            f"modules_to_save must be a regex string or a non-empty list of module names, got {modules_to_save!r}")


def extra_parameter_names(model: nn.Module, adapted: Iterable[str], modules_to_save: Optional[TargetSpec],
                          bias: str) -> List[str]:
    """The parameters ``modules_to_save`` and ``bias`` make trainable, given the names of the adapted layers.

    Works on the model before or after injection: an adapted layer keeps its ``bias`` under the same name.
    """
    check_extras_options(modules_to_save, bias)
    adapted = set(adapted)
    names: List[str] = []
    if modules_to_save is not None:
        matched = [n for n, _ in model.named_modules() if n and name_matches(n, modules_to_save)]
        matched = [n for n in matched if not any(n.startswith(m + ".") for m in matched)]  # outermost only
        if not matched:
            raise AdapterConfigError(f"modules_to_save {modules_to_save!r} matched no module of this model")
        for module_name in matched:
            inside = sorted(a for a in adapted if a == module_name or a.startswith(module_name + "."))
            if inside:
                raise AdapterConfigError(
                    f"modules_to_save '{module_name}' holds adapted layers {inside[:3]}: leave them out of "
                    "target_modules (exclude_modules) or save a smaller module")
            names += [f"{module_name}.{p}" for p, _ in model.get_submodule(module_name).named_parameters()]
    if bias == "all":
        names += [n for n, _ in model.named_parameters() if n == "bias" or n.endswith(".bias")]
    elif bias == "adapter_only":
        names += [f"{a}.bias" for a in sorted(adapted) if getattr(model.get_submodule(a), "bias", None) is not None]
    return sorted(set(names))

"""Naming models: which model an analysis run reads, as a ``ModelSource``, from the way users have it on disk.

``resolve_model`` takes

* an ESPnet experiment dir (``config.yaml`` + a checkpoint: ``valid.acc.best.pth``, ``valid.loss.best.pth``,
  ``model.pth`` or ``latest.pth``, first found), or an explicit config + model file; adapted experiments load through
  the plugin's tasks, so adapter-only checkpoints find their base through the config's ``init_param``;
* a Hugging Face dir (``config.json``): Whisper, Wav2Vec2 or HuBERT, loaded with the class its config names (a
  ``*ForCTC`` model keeps its CTC head);
* a Hugging Face ``peft`` adapter dir (``adapter_config.json``) over such a model: its base is the one the adapter
  config names, or the one given as ``ADAPTER_DIR@BASE_DIR``; loaded with peft itself (``hf_peft``).

A source's ``kind`` names its model family (``espnet_peft.analysis.families``), which loads it.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Optional

from espnet_peft.analysis.errors import AnalysisInputError
from espnet_peft.analysis.hf_peft import adapter_base, is_adapter_dir, split_adapter_spec

#: checkpoints looked for in an ESPnet experiment dir, in this order (the recipe decodes the first)
CHECKPOINTS = ("valid.acc.best.pth", "valid.loss.best.pth", "model.pth", "latest.pth")
#: ESPnet tasks whose models encode raw audio with ``model.encode(speech, speech_lengths)``
ESPNET_TASKS = ("asr", "s2t")

_FIX = ("pass an ESPnet experiment dir (config.yaml + a .pth checkpoint), a config + model file pair, or a Hugging "
        "Face model dir (config.json) or a peft adapter dir (adapter_config.json; ADAPTER_DIR@BASE_DIR names its "
        "base)")


@dataclasses.dataclass(frozen=True)
class ModelSource:
    """Where a model comes from. ``kind`` is ``"espnet"`` (``config`` + ``model_file``, ``task``) or ``"hf"``
    (``path`` is the HF dir; ``adapter``, when set, a peft adapter dir over it): the model family that loads it."""

    kind: str
    path: Path
    config: Optional[Path] = None
    model_file: Optional[Path] = None
    task: Optional[str] = None
    adapter: Optional[Path] = None

    def describe(self) -> dict:
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in dataclasses.asdict(self).items()}


def _require_file(path: Path, what: str, label: str) -> Path:
    if not path.is_file():
        raise AnalysisInputError(f"model {label}: {what} {path} not found; {_FIX}")
    return path


def detect_task(config: Path) -> str:
    """The ESPnet task of a training config: OWSM-style S2T configs use the ``s2t`` preprocessor, the rest is ASR.

    OWSM-CTC (``s2t_ctc``) models encode with a text prompt and are not supported: their config is refused here.
    """
    from espnet_peft.export import config_task

    task = config_task(config)
    if task == "s2t_ctc":
        raise AnalysisInputError(f"{config}: OWSM-CTC (s2t_ctc) models need a text prompt to encode and are not "
                                 f"supported; use an ASR or S2T model")
    return task


def _espnet_source(label: str, config: Path, model_file: Optional[Path], task: str) -> ModelSource:
    _require_file(config, "config", label)
    if model_file is None:
        found = [config.parent / name for name in CHECKPOINTS if (config.parent / name).exists()]
        if not found:
            raise AnalysisInputError(f"model {label}: no checkpoint ({', '.join(CHECKPOINTS)}) next to {config}; "
                                     f"pass the model file explicitly (--model_{label.lower()}_file)")
        model_file = found[0]
    _require_file(model_file, "model file", label)
    if task == "auto":
        task = detect_task(config)
    if task not in ESPNET_TASKS:
        raise AnalysisInputError(f"model {label}: task {task!r} is not supported; choose one of {ESPNET_TASKS}")
    return ModelSource("espnet", config.parent, config, model_file, task)


def _hf_source(label: str, spec: str) -> ModelSource:
    """An HF model dir, or a peft adapter dir over its base (``ADAPTER_DIR`` or ``ADAPTER_DIR@BASE_DIR``)."""
    named, base = split_adapter_spec(spec)
    path = Path(named)
    if base is None and not is_adapter_dir(path):
        _require_file(path / "config.json", "Hugging Face config", label)
        return ModelSource("hf", path)
    base_dir = adapter_base(label, path, base)
    _require_file(base_dir / "config.json", f"Hugging Face config of the base of adapter {path}", label)
    return ModelSource("hf", base_dir, adapter=path)


def resolve_model(label: str, path: Optional[str] = None, config: Optional[str] = None,
                  model_file: Optional[str] = None, hf_dir: Optional[str] = None, task: str = "auto") -> ModelSource:
    """One model from whichever way it was named; ``label`` ("A", "B") only appears in error messages."""
    given = [x for x in (path, hf_dir) if x] + ([config or model_file] if (config or model_file) else [])
    if len(given) != 1:
        raise AnalysisInputError(f"model {label}: give exactly one of a path, a config/model file pair or an HF dir; "
                                 f"got {len(given)}")
    if hf_dir:
        return _hf_source(label, hf_dir)
    if config or model_file:
        model = Path(model_file) if model_file else None
        conf = Path(config) if config else (model.parent / "config.yaml")
        return _espnet_source(label, conf, model, task)
    if split_adapter_spec(path)[1] is not None:
        return _hf_source(label, path)
    p = Path(path)
    if p.is_dir():
        if (p / "config.yaml").is_file():
            return _espnet_source(label, p / "config.yaml", None, task)
        if (p / "config.json").is_file() or is_adapter_dir(p):
            return _hf_source(label, path)
        raise AnalysisInputError(f"model {label}: {p} holds neither config.yaml (ESPnet) nor config.json (Hugging "
                                 f"Face); {_FIX}")
    if p.suffix == ".pth":
        return _espnet_source(label, p.parent / "config.yaml", _require_file(p, "model file", label), task)
    if p.suffix in (".yaml", ".yml"):
        return _espnet_source(label, p, None, task)
    raise AnalysisInputError(f"model {label}: {p} not found (or not a dir, .yaml or .pth); {_FIX}")

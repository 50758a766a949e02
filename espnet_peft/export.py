"""Merging an adapted experiment into a plain ESPnet model, and exporting / applying adapter-only packages.

An adapter package is a directory with:
  * ``adapter_config.yaml``: the task, the injection spec (``adapter_conf``) and the trainable-parameter count;
  * ``adapter_model.pth``: every adapter layer's tensors (trainable ones plus frozen SVD factors / initial factors);
  * ``base_fingerprint.json``: per base tensor, its shape and a few order-sensitive statistics of the *pretrained*
    values, so that applying the package to another base model is refused before anything is written;
  * ``SHA256SUMS``: the sha256 of the three files (``sha256sum -c SHA256SUMS`` checks them by hand), so that an edited
    or cut-short file is refused by name before anything is loaded.
"""

from __future__ import annotations

import functools
import importlib
import json
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Dict, Iterator, Mapping, Tuple

import torch
import yaml
from torch import nn

from espnet_peft import fault_points
from espnet_peft.base_fingerprint import base_fingerprint, fingerprint_mismatches
from espnet_peft.injection import SPEC_ATTRIBUTE, adapter_layers, inject_adapters, merge_adapters
from espnet_peft.layers.create_adapter import ADAPTER_NAME
from espnet_peft.train.checkpoint import load_adapter_only_state, read_checkpoint
from espnet_peft.trainable_extras import EXTRAS_ATTRIBUTE
from espnet_peft.tuners import LAYER_CLASSES, make_config
from espnet_peft.utils.file_hash import file_sha256
from espnet_peft.utils.structured_files import read_json, read_yaml

TASKS = {"asr": "espnet_peft.tasks.asr:ASRTask", "s2t": "espnet_peft.tasks.s2t:S2TTask",
         "s2t_ctc": "espnet_peft.tasks.s2t_ctc:S2TTask"}
PACKAGE_FORMAT = 2  # 2: SHA256SUMS
PACKAGE_FILES = ("adapter_config.yaml", "adapter_model.pth", "base_fingerprint.json")
CHECKSUMS = "SHA256SUMS"
#: the smallest config of each method that builds a layer (to list the tensors its checkpoints hold)
_SMALLEST = {"ssvd": {"k": 2}, "ssvd_o": {"k_inner": 2, "k_outer": 2}}


def config_task(config: Path) -> str:
    """The ESPnet task a training config belongs to, from its preprocessor: ``s2t_ctc`` (OWSM-CTC), ``s2t`` (OWSM)
    or ``asr``."""
    conf = read_yaml(config) or {}
    preprocessor = conf.get("preprocessor")
    if preprocessor == "s2t_ctc" or "promptencoder" in conf:
        return "s2t_ctc"
    return "s2t" if preprocessor == "s2t" else "asr"


def task_class(task: str) -> Any:
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; choose one of {sorted(TASKS)}")
    module, name = TASKS[task].split(":")
    return getattr(importlib.import_module(module), name)


@contextmanager
def atomic_directory(output_dir: Path) -> Iterator[Path]:
    """Write into a temporary sibling and rename at the end: a failure never leaves a half-written output."""
    output_dir = Path(output_dir)
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{output_dir.name}.", dir=output_dir.parent))
    try:
        yield staging
        fault_points.reach(f"rename_dir:{output_dir.name}")
        if output_dir.exists():
            shutil.rmtree(output_dir)
        staging.rename(output_dir)
    finally:
        if staging.exists():
            shutil.rmtree(staging)


# ----- merge -------------------------------------------------------------------------------------------------------
def _plain_config(config: Dict[str, Any], output_dir: Path, staging: Path) -> Dict[str, Any]:
    """The training config without the adapter, with the files it needs copied next to the model."""
    config = dict(config)
    config.update(use_adapter=False, adapter="lora", adapter_conf={}, init_param=[], save_strategy="all")
    for holder, key in ((config, "bpemodel"), (config.get("normalize_conf") or {}, "stats_file")):
        path = holder.get(key)
        if path and Path(path).is_file():
            shutil.copy(path, staging / Path(path).name)
            holder[key] = str((output_dir / Path(path).name).resolve())
    return config


@functools.lru_cache(maxsize=None)
def _tensor_names(method: str) -> frozenset:
    layer = LAYER_CLASSES[method](nn.Linear(8, 8), make_config(method, **_SMALLEST.get(method, {})))
    return frozenset(layer.adapter_state_dict())


def methods_of_checkpoint(state: Mapping[str, Any]) -> list:
    """The adapter methods whose layers hold exactly the tensors of ``state``'s first adapted module."""
    known = frozenset().union(*(_tensor_names(m) for m in LAYER_CLASSES))
    by_module: Dict[str, set] = {}
    for key in state:
        module, _, name = key.rpartition(".")
        if name in known:
            by_module.setdefault(module, set()).add(name)
    if not by_module:
        return []
    names = next(iter(by_module.values()))
    return [m for m in LAYER_CLASSES if _tensor_names(m) == names]


def build_experiment(task: str, config_file: Path, model_file: Path) -> nn.Module:
    """The experiment's model with its checkpoint loaded; a checkpoint of another adapter method than the config's
    is refused naming both."""
    configured = ((read_yaml(config_file) or {}).get("adapter_conf") or {}).get("method")
    try:
        model, _ = task_class(task).build_model_from_file(config_file, model_file, "cpu")
    except (RuntimeError, ValueError) as error:
        state = read_checkpoint(model_file)
        found = methods_of_checkpoint(state.get("model", state) if isinstance(state, dict) else {})
        if configured and found and configured not in found:
            raise ValueError(f"{model_file} holds {' or '.join(found)} adapters, but {config_file} configures "
                             f"{configured}: pass the checkpoint of that experiment, or its own config.yaml") from None
        raise ValueError(f"{model_file} does not load with {config_file}: {str(error).splitlines()[0]}") from None
    return model


def merge_experiment(task: str, config_file: Path, model_file: Path, output_dir: Path) -> Path:
    """Write ``output_dir/{config.yaml, model.pth}``: a plain ESPnet model with the adapters merged in.

    Stock ``espnet2.bin.*_inference`` loads it with no plugin imported.
    """
    model = build_experiment(task, config_file, model_file)
    if not adapter_layers(model):
        raise ValueError(f"{model_file} with {config_file} has no espnet_peft adapters to merge")
    merge_adapters(model)
    config = read_yaml(config_file)
    output_dir = Path(output_dir)
    with atomic_directory(output_dir) as staging:
        plain = _plain_config(config, output_dir, staging)
        torch.save(model.state_dict(), staging / "model.pth")
        with open(staging / "config.yaml", "w", encoding="utf-8") as f:
            yaml.safe_dump(plain, f, sort_keys=False)
    return output_dir


# ----- adapter packages --------------------------------------------------------------------------------------------
def export_adapter(task: str, config_file: Path, model_file: Path, output_dir: Path) -> Path:
    model = build_experiment(task, config_file, model_file)
    if not adapter_layers(model):
        raise ValueError(f"{model_file} has no espnet_peft adapters to export")
    return write_adapter_package(model, output_dir, task, {"config": str(config_file), "model_file": str(model_file)})


def write_adapter_package(model: nn.Module, output_dir: Path, task: str, source: Dict[str, str]) -> Path:
    """The adapters of an injected ``model`` (and its ``modules_to_save`` / trained biases) as a package."""
    layers = adapter_layers(model)
    state = {f"{n}.{k}": v for n, layer in layers.items() for k, v in layer.adapter_state_dict().items()}
    extras = list(getattr(model, EXTRAS_ATTRIBUTE, ()))
    state.update({name: model.get_parameter(name).detach() for name in extras})
    meta = {
        "format": PACKAGE_FORMAT,
        "task": task,
        "adapter_conf": getattr(model, SPEC_ATTRIBUTE),
        "trainable_parameters": sum(layer.num_trainable_parameters() for layer in layers.values())
        + sum(model.get_parameter(name).numel() for name in extras),
        "trainable_extras": extras,  # modules_to_save / biases: in the package, not in the base fingerprint
        "source": source,
    }
    with atomic_directory(Path(output_dir)) as staging:
        torch.save(state, staging / "adapter_model.pth")
        (staging / "base_fingerprint.json").write_text(json.dumps(base_fingerprint(model)))
        with open(staging / "adapter_config.yaml", "w", encoding="utf-8") as f:
            yaml.safe_dump(meta, f, sort_keys=False)
        (staging / CHECKSUMS).write_text("".join(f"{file_sha256(staging / n)}  {n}\n" for n in PACKAGE_FILES))
    return Path(output_dir)


def check_package(package_dir: Path) -> None:
    """Refuse, naming the file, a package with a file missing or whose content is not what was exported."""
    package_dir = Path(package_dir)
    missing = [n for n in (*PACKAGE_FILES, CHECKSUMS) if not (package_dir / n).is_file()]
    if missing:
        raise FileNotFoundError(f"{package_dir} is not an adapter package (format {PACKAGE_FORMAT}): missing "
                                f"{missing}; export it again (python -m espnet_peft.bin.export_adapter)")
    recorded = {}
    for line in (package_dir / CHECKSUMS).read_text(encoding="utf-8").splitlines():
        sha, _, name = line.partition("  ")
        recorded[name] = sha
    for name in PACKAGE_FILES:
        if recorded.get(name) != file_sha256(package_dir / name):
            raise ValueError(f"{package_dir / name} does not match its sha256 in {package_dir / CHECKSUMS}: it was "
                             "edited or cut short after export; restore it, or export the package again")


def read_package(package_dir: Path) -> Tuple[Dict[str, Any], Dict[str, torch.Tensor], Dict[str, Any]]:
    """The package's config, tensors and base fingerprint, once its checksums match."""
    package_dir = Path(package_dir)
    check_package(package_dir)
    meta = read_yaml(package_dir / "adapter_config.yaml")
    state = read_checkpoint(package_dir / "adapter_model.pth", weights_only=True)
    fingerprint = read_json(package_dir / "base_fingerprint.json")
    return meta, state, fingerprint


def apply_adapter(model: nn.Module, package_dir: Path) -> Dict[str, Any]:
    """Inject the package's adapters into a plain base ``model`` (in place), refusing a different base model.

    Returns the package's ``adapter_config.yaml`` contents.
    """
    meta, state, fingerprint = read_package(package_dir)
    base = {k: v for k, v in base_fingerprint(model).items() if k not in set(meta.get("trainable_extras", ()))}
    problems = fingerprint_mismatches(fingerprint, base)
    if problems:
        shown = "; ".join(problems[:5]) + (f"; ... ({len(problems)} in all)" if len(problems) > 5 else "")
        raise ValueError(
            f"adapter package {package_dir} was trained on another base model: {shown}. Apply it to the base model "
            f"it was exported from ({meta.get('source', {}).get('config')})"
        )
    inject_adapters(model, meta["adapter_conf"])
    load_adapter_only_state(model, state, source=package_dir)
    return meta


def apply_adapter_to_experiment(task: str, base_config: Path, base_model_file: Path, package_dir: Path,
                                output_dir: Path, merge: bool = False) -> Path:
    """Build the base model with the stock task, apply the package, and write a model dir.

    ``merge=False`` writes an adapter experiment (``use_adapter: true``, loadable by ``espnet_peft.bin.*_inference``);
    ``merge=True`` writes a plain ESPnet model dir.
    """
    stock = importlib.import_module(TASKS[task].split(":")[0].replace("espnet_peft.", "espnet2.", 1))
    stock_task = getattr(stock, TASKS[task].split(":")[1])
    model, _ = stock_task.build_model_from_file(base_config, base_model_file, "cpu")
    meta = apply_adapter(model, package_dir)
    config = read_yaml(base_config)
    output_dir = Path(output_dir)
    with atomic_directory(output_dir) as staging:
        if merge:
            merge_adapters(model)
            config = _plain_config(config, output_dir, staging)
        else:
            config.update(use_adapter=True, adapter=ADAPTER_NAME, adapter_conf=meta["adapter_conf"],
                          init_param=[str(Path(base_model_file).resolve())])
        torch.save(model.state_dict(), staging / "model.pth")
        with open(staging / "config.yaml", "w", encoding="utf-8") as f:
            yaml.safe_dump(config, f, sort_keys=False)
    return output_dir

"""Obtaining the source model of a recipe: a local model dir, a packed model archive, or a hub tag.

Sources (``fetch_source_model(source, ...)``):

* a directory holding ``config.yaml`` and a model file (an ESPnet exp dir), or a model repository as the hub
  distributes it (``meta.yaml`` at the top names ``exp/.../config.yaml`` and the model file; paths inside the
  config are relative to the repository root), e.g. a ``git clone`` of ``https://huggingface.co/espnet/<name>``;
* an archive made by ``python -m espnet2.bin.pack`` (``.zip``, ``.tar.gz``, ...; ``meta.yaml`` inside);
* a hub tag such as ``espnet/owsm_v3.1_ebf_base`` (``owner/name[@revision]``), through espnet_model_zoo's
  ``ModelDownloader`` (huggingface_hub ``snapshot_download``). The download goes to the Hugging Face cache
  (``$HF_HUB_CACHE``, else ``$HF_HOME/hub``, else ``~/.cache/huggingface/hub``) rather than ModelDownloader's
  default, its own package directory inside the venv, which a rebuilt venv would lose; ``HF_HUB_OFFLINE=1`` uses
  the cache only.

The result is ``<out>/config.yaml`` + ``<out>/model.pth`` (+ ``feats_stats.npz`` for global MVN), with the model's
BPE model and token list copied to ``<token_dir>/{bpe.model,tokens.txt}`` and the config pointing there, so later
stages reuse the model's own tokens. On the way:

* the checkpoint is compared, key by key and shape by shape, with the model that the installed ESPnet builds from
  the config; known key differences between ESPnet versions are renamed (``key_remap``), anything else fails with
  the list of keys (a strict load, as ``--init_param`` does later);
* config options that the installed ESPnet does not know are dropped (its config parser rejects them at training);
* for OWSM encoder-decoder models ``preprocessor_conf.time_apply_prob`` becomes 1.0: the recipe's ``text`` already
  holds ``<notimestamps>``, and the S2T preprocessor inserts another one with probability ``1 - time_apply_prob``;
* ``<out>/source.json`` records the source, the files used and every change, and the archive's sha256;
* ``expected_sha256`` (the recipe's shipped model) refuses an archive whose bytes differ;
* ``expected_task`` (the recipe's ``--task``) refuses a model of another kind, e.g. an OWSM-CTC model for a recipe
  that decodes with an attention decoder;
* a token list or BPE model already in ``token_dir`` (from an earlier stage 4) must equal the model's: text
  tokenised with other pieces would train and score against the wrong ids, so a difference is refused.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import logging
import os
import re
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import torch
import yaml

from espnet_peft.recipe.provenance import file_sha256
from espnet_peft.recipe.key_remap import remap_state_dict
from espnet_peft.recipe.owsm_tokens import NOTIME, check_s2t_tokens

MODEL_FILE_NAMES = ("model.pth", "valid.acc.best.pth", "valid.acc.ave.pth", "valid.loss.best.pth")
#: owner/name, optionally @revision (a branch, tag or commit of the hub repository)
HUB_TAG = re.compile(r"[\w.-]+/[\w.-]+(@[\w./-]+)?")
#: stock ESPnet task of each kind of source model (the plugin's tasks share their parsers and build_model)
TASKS = {"asr": "espnet2.tasks.asr:ASRTask", "s2t": "espnet2.tasks.s2t:S2TTask",
         "s2t_ctc": "espnet2.tasks.s2t_ctc:S2TTask"}


@dataclasses.dataclass(frozen=True)
class SourceFiles:
    config: Path
    model: Path
    root: Path  # where relative paths inside the config start (a hub repository's root)


# ----------------------------------------------------------------------------------------------- locating the files


def hub_cache_dir() -> Path:
    """The Hugging Face hub cache, read from the environment now (huggingface_hub reads it once, at import)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def _from_meta(meta: Dict[str, Any], root: Path, origin: str) -> SourceFiles:
    """Files named by a packed model's ``meta.yaml`` (keys ``<task>_train_config`` and ``<task>_model_file``)."""
    named = {**meta.get("yaml_files", {}), **meta.get("files", {})}
    config = next((v for k, v in named.items() if k.endswith("_train_config")), None)
    model = next((v for k, v in named.items() if k.endswith("_model_file")), None)
    if config is None or model is None:
        raise FileNotFoundError(f"{origin}: meta.yaml names no *_train_config / *_model_file (it has {sorted(named)})")
    return SourceFiles(root / config, root / model, root)


def _from_dir(source: Path) -> SourceFiles:
    if (source / "config.yaml").is_file():
        candidates = [source / n for n in MODEL_FILE_NAMES] + sorted(
            p for p in source.glob("*.pth") if p.name != "checkpoint.pth")  # checkpoint.pth: trainer state
        model = next((c for c in candidates if c.is_file()), None)
        if model is not None:
            return SourceFiles(source / "config.yaml", model, source)
    if (source / "meta.yaml").is_file():  # a hub repository checked out as it is
        return _from_meta(yaml.safe_load((source / "meta.yaml").read_text(encoding="utf-8")), source, str(source))
    raise FileNotFoundError(f"{source} must hold config.yaml and a model file ({', '.join(MODEL_FILE_NAMES)}), "
                            "or meta.yaml as a hub model repository does")


def _from_archive(archive: Path, workdir: Path) -> SourceFiles:
    from espnet2.main_funcs.pack_funcs import unpack

    unpack(archive, workdir)  # extracts, and rewrites the config's paths to the extracted files
    meta = next(workdir.rglob("meta.yaml"))
    return _from_meta(yaml.safe_load(meta.read_text(encoding="utf-8")), workdir, str(archive))


def _download(tag: str, cache_dir: Path) -> Path:
    """The hub repository of ``tag`` (a snapshot dir in ``cache_dir``), or the archive of an older zoo entry."""
    try:
        from espnet_model_zoo.downloader import ModelDownloader
    except ImportError as error:
        raise RuntimeError(f"source model '{tag}' is a hub tag: pip install espnet_model_zoo") from error
    try:
        # huggingface_hub snapshot_download into cache_dir, then the config's relative paths made absolute
        return Path(ModelDownloader(cache_dir).download(tag))
    except Exception as error:  # offline, unknown repository, incomplete cache: say which tag and cache
        raise RuntimeError(f"could not get hub model '{tag}' (cache {cache_dir}; a local path would have to "
                           f"exist): {type(error).__name__}: {error}") from error


@contextmanager
def locate_source(source: str, cache_dir: Optional[Path] = None) -> Iterator[SourceFiles]:
    """The config and model file of ``source``; an archive is unpacked into a temporary dir for the duration."""
    path = Path(source)
    if not path.exists() and HUB_TAG.fullmatch(source) and not source.startswith("."):
        path = _download(source, Path(cache_dir) if cache_dir is not None else hub_cache_dir())
    if path.is_dir():
        yield _from_dir(path)
    elif path.is_file():
        with tempfile.TemporaryDirectory(prefix="espnet_peft_unpack_") as workdir:
            yield _from_archive(path, Path(workdir))
    else:
        raise FileNotFoundError(f"source model '{source}' is neither a directory, an archive, nor a hub tag "
                                "(owner/name, e.g. espnet/owsm_v3.1_ebf_base)")


# ------------------------------------------------------------------------------------- the model the config builds


def task_of(config: Dict[str, Any]) -> str:
    """``s2t_ctc`` (OWSM-CTC: it has a prompt encoder), ``s2t`` (OWSM: S2T preprocessor) or ``asr``."""
    if "promptencoder" in config:
        return "s2t_ctc"
    return "s2t" if config.get("preprocessor") == "s2t" else "asr"


def task_class(task: str) -> Any:
    module, name = TASKS[task].split(":")
    return getattr(importlib.import_module(module), name)


def known_options(task: str) -> set:
    return {action.dest for action in task_class(task).get_parser()._actions}


def expected_shapes(config: Dict[str, Any], task: str) -> Dict[str, Tuple[int, ...]]:
    """Every ``state_dict`` key of the model that ``config`` builds, with its shape.

    Built on the meta device (no memory for a 1B model), or on the CPU if a module cannot be built there.
    """
    build = task_class(task).build_model
    try:
        with torch.device("meta"):
            model = build(argparse.Namespace(**config))
    except Exception as error:  # noqa: BLE001  (any module that computes on real tensors in __init__)
        logging.info("building on the meta device failed (%s); building on the CPU", error)
        model = build(argparse.Namespace(**config))
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def _load_state(model_file: Path) -> Dict[str, torch.Tensor]:
    try:  # memory-mapped: a 1B checkpoint is not read into memory just to check its keys
        return torch.load(model_file, map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError:  # a legacy (non-zip) checkpoint cannot be memory-mapped
        return torch.load(model_file, map_location="cpu", weights_only=True)


# ------------------------------------------------------------------------------------------------------- fetching


def _resolve(path: str, files: SourceFiles) -> Path:
    """Paths in a config are absolute (unpacked), relative to the repository root (hub layout) or to the config."""
    for candidate in (Path(path), files.root / path, files.config.parent / path):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"{files.config} refers to {path}, which is not there")


def _read_tokens(config: Dict[str, Any], files: SourceFiles) -> List[str]:
    token_list = config.get("token_list")
    if isinstance(token_list, list):  # ESPnet dumps the list itself into config.yaml
        return list(token_list)
    if token_list:
        return _resolve(token_list, files).read_text(encoding="utf-8").splitlines()
    raise ValueError(f"{files.config} has no token_list")


def _for_this_espnet(config: Dict[str, Any], task: str) -> Tuple[Dict[str, Any], List[str], Dict[str, list]]:
    """``config`` without the options the installed ESPnet does not know (its parser would reject them when
    training), and with the recipe's text format settings; returns it, the dropped keys and the changed values."""
    known = known_options(task)
    dropped = sorted(k for k in config if k not in known)
    config = {k: v for k, v in config.items() if k in known}
    changed: Dict[str, list] = {}
    preprocessor_conf = config.get("preprocessor_conf") or {}
    if task == "s2t" and preprocessor_conf.get("time_apply_prob", 0.5) != 1.0:  # 0.5: S2TPreprocessor's default
        changed["preprocessor_conf.time_apply_prob"] = [preprocessor_conf.get("time_apply_prob"), 1.0]
        config["preprocessor_conf"] = {**preprocessor_conf, "time_apply_prob": 1.0}
    return config, dropped, changed


def check_sha256(source: str, expected: str) -> str:
    """The sha256 of the file ``source``; an error naming both digests unless it is ``expected``."""
    path = Path(source)
    if not path.is_file():
        raise FileNotFoundError(f"{source}: a sha256 was given, so the source must be a file (a packed model)")
    actual = file_sha256(path)
    if actual != expected.strip().lower():
        raise ValueError(f"{source} has sha256 {actual}, expected {expected.strip()}: it is not the model the recipe "
                         "ships (changed, truncated or a Git LFS pointer). Restore it (git checkout -- "
                         f"{source}) or retrain it (--retrain_source true)")
    return actual


def check_token_dir(token_dir: Path, tokens: Sequence[str], bpemodel: Optional[Path]) -> None:
    """Refuse a ``token_dir`` whose existing token list or BPE model differs from the model's."""
    existing = token_dir / "tokens.txt"
    if existing.is_file():
        have = existing.read_text(encoding="utf-8").split("\n")
        have = have[:-1] if have and have[-1] == "" else have
        if have != list(tokens):
            line = next((i for i, (a, b) in enumerate(zip(have, tokens), 1) if a != b),
                        min(len(have), len(tokens)) + 1)
            raise ValueError(f"{existing} ({len(have)} tokens) differs from the source model's token list "
                             f"({len(tokens)} tokens), first at line {line}: it was made by another BPE run. Remove "
                             f"{token_dir} (and experiments fine-tuned with it) to use this model, or retrain the "
                             "source model with these tokens (--retrain_source true)")
    existing_bpe = token_dir / "bpe.model"
    if bpemodel is not None and existing_bpe.is_file() and file_sha256(existing_bpe) != file_sha256(bpemodel):
        raise ValueError(f"{existing_bpe} differs from the source model's BPE model: it was made by another BPE "
                         f"run. Remove {token_dir} to use this model, or retrain it (--retrain_source true)")


def _already_fetched(out: Path, token_dir: Path, sha256: str) -> bool:
    """``out`` holds the package with this sha256, and ``token_dir`` still holds its token list."""
    info_path, tokens = out / "source.json", token_dir / "tokens.txt"
    if not (info_path.is_file() and tokens.is_file() and (out / "model.pth").is_file()):
        return False
    info = json.loads(info_path.read_text(encoding="utf-8"))
    return info.get("sha256") == sha256 and info.get("tokens_sha256") == file_sha256(tokens)


def check_task(source: str, task: str, expected_task: Optional[str]) -> None:
    if expected_task is not None and task != expected_task:
        raise ValueError(f"{source} is an {task} model (its config{' has a promptencoder' if task == 's2t_ctc' else ''})"
                         f", but the recipe runs --task {expected_task}: run it with --task {task}, or give an "
                         f"{expected_task} model")


def fetch_source_model(source: str, out: Path, token_dir: Path, cache_dir: Optional[Path] = None,
                       special_tokens: Sequence[str] = (), expected_sha256: Optional[str] = None,
                       expected_task: Optional[str] = None) -> Path:
    """Copy ``source`` to ``out`` (see the module docstring); ``special_tokens`` (e.g. ``<eng>``, ``<asr>``) must
    be in an S2T model's token list. Every check runs before anything is written. Returns ``out``."""
    out, token_dir = Path(out), Path(token_dir)
    sha256 = check_sha256(source, expected_sha256) if expected_sha256 else None
    if sha256 and _already_fetched(out, token_dir, sha256):
        check_task(source, json.loads((out / "source.json").read_text(encoding="utf-8"))["task"], expected_task)
        logging.info("fetch_source_model: %s already holds %s (sha256 %s)", out, source, sha256)
        return out
    with locate_source(source, cache_dir) as files:
        config = yaml.safe_load(files.config.read_text(encoding="utf-8"))
        task = task_of(config)
        check_task(source, task, expected_task)
        tokens = _read_tokens(config, files)
        if task in ("s2t", "s2t_ctc"):  # the recipe's text files must be in the model's vocabulary
            check_s2t_tokens(tokens, [*special_tokens, *([NOTIME] if task == "s2t" else [])])
        bpemodel = _resolve(config["bpemodel"], files) if config.get("bpemodel") else None
        normalize_conf = dict(config.get("normalize_conf") or {})
        stats = _resolve(normalize_conf["stats_file"], files) if normalize_conf.get("stats_file") else None
        if stats is not None:  # global MVN reads its statistics when the model is built
            config["normalize_conf"] = {**normalize_conf, "stats_file": str(stats)}
        check_token_dir(token_dir, tokens, bpemodel)
        config, dropped, changed = _for_this_espnet(config, task)
        state, report = remap_state_dict(_load_state(files.model), expected_shapes(config, task))
        if not report.ok:
            raise ValueError(f"{files.model} does not fit the {task} model that {files.config} builds with the "
                             f"installed ESPnet: {report.describe()}")

        token_dir.mkdir(parents=True, exist_ok=True)
        out.mkdir(parents=True, exist_ok=True)
        (token_dir / "tokens.txt").write_text("\n".join(tokens) + "\n", encoding="utf-8")
        if isinstance(config.get("token_list"), str):
            config["token_list"] = str((token_dir / "tokens.txt").resolve())
        if bpemodel is not None:
            shutil.copy(bpemodel, token_dir / "bpe.model")
            config["bpemodel"] = str((token_dir / "bpe.model").resolve())
        if stats is not None:
            shutil.copy(stats, out / "feats_stats.npz")
            config["normalize_conf"]["stats_file"] = str((out / "feats_stats.npz").resolve())
        if report.renamed:
            torch.save(state, out / "model.pth")
        else:
            shutil.copy(files.model, out / "model.pth")
        (out / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
        info = {"source": source, "sha256": sha256, "tokens_sha256": file_sha256(token_dir / "tokens.txt"),
                "task": task, "config": str(files.config),
                "model_file": str(files.model),
                "renamed_keys": report.renamed, "dropped_options": dropped, "changed_options": changed}
        (out / "source.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    for what, value in (("renamed checkpoint keys", report.renamed), ("dropped unknown options", dropped),
                        ("changed options", changed)):
        if value:
            logging.warning("fetch_source_model: %s: %s", what, value)
    return out

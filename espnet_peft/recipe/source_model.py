"""Obtaining the source model of a recipe: a local model dir or a hub tag (through espnet_model_zoo).

The result is always ``<out>/config.yaml`` + ``<out>/model.pth`` with the model's BPE model and token list copied to
``<token_dir>/{bpe.model,tokens.txt}`` and the config pointing there, so later stages reuse the model's own tokens.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Dict, Tuple

import yaml

MODEL_FILE_NAMES = ("model.pth", "valid.acc.best.pth", "valid.acc.ave.pth", "valid.loss.best.pth")


def _from_dir(source: Path) -> Tuple[Path, Path]:
    config = source / "config.yaml"
    candidates = [source / n for n in MODEL_FILE_NAMES] + sorted(source.glob("*.pth"))
    model = next((c for c in candidates if c.is_file()), None)
    if not config.is_file() or model is None:
        raise FileNotFoundError(f"{source} must hold config.yaml and a model file ({', '.join(MODEL_FILE_NAMES)})")
    return config, model


def _from_hub(tag: str) -> Tuple[Path, Path]:
    try:
        from espnet_model_zoo.downloader import ModelDownloader
    except ImportError as error:
        raise RuntimeError(f"source model '{tag}' is a hub tag: pip install espnet_model_zoo") from error
    files: Dict[str, str] = ModelDownloader().download_and_unpack(tag)
    config = next(v for k, v in files.items() if k.endswith("_train_config"))
    model = next(v for k, v in files.items() if k.endswith("_model_file"))
    return Path(config), Path(model)


def fetch_source_model(source: str, out: Path, token_dir: Path) -> Path:
    config_file, model_file = _from_dir(Path(source)) if Path(source).is_dir() else _from_hub(source)
    config = yaml.safe_load(config_file.read_text(encoding="utf-8"))
    token_dir.mkdir(parents=True, exist_ok=True)
    token_list = config.get("token_list")
    if isinstance(token_list, list):  # ESPnet dumps the list itself into config.yaml
        (token_dir / "tokens.txt").write_text("\n".join(token_list) + "\n", encoding="utf-8")
    elif token_list:
        shutil.copy(_resolve(token_list, config_file), token_dir / "tokens.txt")
    if config.get("bpemodel"):
        shutil.copy(_resolve(config["bpemodel"], config_file), token_dir / "bpe.model")
        config["bpemodel"] = str((token_dir / "bpe.model").resolve())
    out.mkdir(parents=True, exist_ok=True)
    if config.get("normalize_conf", {}) and config["normalize_conf"].get("stats_file"):
        stats = _resolve(config["normalize_conf"]["stats_file"], config_file)
        shutil.copy(stats, out / "feats_stats.npz")
        config["normalize_conf"]["stats_file"] = str((out / "feats_stats.npz").resolve())
    shutil.copy(model_file, out / "model.pth")
    (out / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return out


def _resolve(path: str, config_file: Path) -> Path:
    """Hub packages store paths relative to the unpack root or the config's dir; try both, then as given."""
    for candidate in (Path(path), config_file.parent / path, config_file.parent.parent / path):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"{config_file} refers to {path}, which is not there")

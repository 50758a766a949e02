"""Tiny OWSM-architecture models, packed and cached the way the Hugging Face hub distributes OWSM.

* ``build_model(task, ...)``: an ESPnet S2T (OWSM: E-Branchformer encoder + Transformer decoder) or S2T-CTC
  (OWSM-CTC: ``e_branchformer_ctc`` encoder with cross-attention + Transformer prompt encoder) model of any size,
  by the stock task's ``build_model``; on the meta device a 1B model costs no memory.
* ``make_tiny_owsm(workdir, flavour, ...)``: a tiny OWSM-style S2T model with OWSM's token conventions (the BPE and
  token list of ``espnet_peft.recipe.owsm_tokens``; ``<eng> <asr> <notimestamps> <na>``, time tokens), global MVN
  with a statistics file, and random weights; ``config.yaml`` is the one ESPnet itself writes (a ``--dry_run``).
  Flavours: ``v3.1`` (4x conv2d subsampling) and ``v4`` (8x, as the OWSM v4 model cards say).
* ``pack_hub_repo``: the model as a hub repository: ``meta.yaml`` + ``README.md`` at the top,
  ``exp/<exp>/config.yaml`` with paths relative to the repository root, the model file, ``data/token_list/...``
  and ``exp/s2t_stats_.../feats_stats.npz``, as in ``espnet/owsm_v3.1_ebf_base``.
* ``populate_hub_cache``: that repository in huggingface_hub's cache layout (``models--<org>--<name>/blobs``,
  ``snapshots/<commit>/`` symlinks into the blobs, ``refs/main``), so that ``snapshot_download`` finds it offline.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Sequence

import numpy as np
import torch
import yaml

from helpers.espnet_fixtures import TASKS as FIXTURE_TASKS, make_experiment, run_task
from espnet_peft.recipe.owsm_tokens import time_tokens

STOCK_TASKS = {"s2t": "espnet2.tasks.s2t:S2TTask", "s2t_ctc": "espnet2.tasks.s2t_ctc:S2TTask"}
FLAVOURS = {"v3.1": "conv2d", "v4": "conv2d8"}  # encoder input_layer (subsampling) of each OWSM version
FEATURE_DIM = 80


def task_class(task: str) -> Any:
    module, name = STOCK_TASKS[task].split(":")
    return getattr(importlib.import_module(module), name)


def owsm_token_list(n_pieces: int = 8) -> list[str]:
    """A token list with OWSM's special tokens (enough to build a model; no BPE model behind it)."""
    pieces = [f"p{i}" for i in range(n_pieces)]
    return ["<blank>", "<unk>", "<na>", "<nolang>", "<eng>", "<asr>", "<notimestamps>", *time_tokens(0.1),
            "\u2581", *pieces, "<sos>", "<eos>", "<sop>"]


# --------------------------------------------------------------------------------------- models of any size


def _encoder_conf(arch: Dict[str, Any]) -> Dict[str, Any]:
    conf = {
        "output_size": arch["output_size"], "attention_heads": arch["attention_heads"],
        "attention_layer_type": "selfattn", "pos_enc_layer_type": "abs_pos", "rel_pos_type": "latest",
        "cgmlp_linear_units": arch["cgmlp_linear_units"], "cgmlp_conv_kernel": 31, "use_linear_after_conv": False,
        "gate_activation": "identity", "num_blocks": arch["encoder_blocks"], "input_layer": arch["input_layer"],
        "linear_units": arch["linear_units"], "positionwise_layer_type": "linear", "use_ffn": True,
        "macaron_ffn": True, "merge_conv_kernel": 31,
    }
    if arch["encoder"] == "e_branchformer_ctc":
        conf.update(interctc_layer_idx=list(arch["interctc_layer_idx"]), interctc_use_conditioning=True,
                    use_cross_attention=True)
    return conf


def arch_task(arch: Dict[str, Any]) -> str:
    return "s2t_ctc" if arch["encoder"] == "e_branchformer_ctc" else "s2t"


def build_model(arch: Dict[str, Any], token_list: Sequence[str], device: str = "meta") -> torch.nn.Module:
    """The model an OWSM (``encoder: e_branchformer``) or OWSM-CTC (``e_branchformer_ctc``) config of this
    ``arch`` (conf/owsm/models.yaml's ``architecture`` keys) builds, by the stock task's ``build_model``."""
    cls = task_class(arch_task(arch))
    with torch.device(device):
        return cls.build_model(model_args(cls, arch, token_list))


def model_args(cls: Any, arch: Dict[str, Any], token_list: Sequence[str], output_dir: str = "unused"
               ) -> argparse.Namespace:
    """``cls``'s training arguments for a model of this ``arch`` (the parts of its config that shape the model)."""
    task = arch_task(arch)
    args = cls.get_parser().parse_args(["--output_dir", output_dir])
    args.token_list = list(token_list)
    args.frontend_conf = {"n_fft": 512, "win_length": 400, "hop_length": 160, "n_mels": FEATURE_DIM}
    args.normalize = None
    args.encoder, args.encoder_conf = arch["encoder"], _encoder_conf(arch)
    if task == "s2t":
        args.decoder = "transformer"
        args.decoder_conf = {"attention_heads": arch["attention_heads"], "linear_units": arch["linear_units"],
                             "num_blocks": arch["decoder_blocks"]}
    else:
        args.promptencoder = "transformer"
        args.promptencoder_conf = {"output_size": arch["prompt_output_size"], "attention_heads": arch["prompt_heads"],
                                   "linear_units": arch["prompt_linear_units"], "num_blocks": arch["prompt_blocks"]}
        args.model_conf = {"interctc_weight": 0.5}
    return args


TINY_ARCH = {"encoder": "e_branchformer", "output_size": 32, "encoder_blocks": 2, "decoder_blocks": 2,
             "attention_heads": 2, "linear_units": 64, "cgmlp_linear_units": 64, "input_layer": "conv2d"}
TINY_CTC_ARCH = {**TINY_ARCH, "encoder": "e_branchformer_ctc", "encoder_blocks": 3, "interctc_layer_idx": [1],
                 "prompt_output_size": 16, "prompt_blocks": 1, "prompt_heads": 2, "prompt_linear_units": 32}


# ------------------------------------------------------------------------------- a tiny model as OWSM ships it


@dataclass(frozen=True)
class TinyOwsm:
    flavour: str
    config: Path  # config.yaml written by ESPnet (absolute paths)
    model_file: Path  # random-initialised weights
    bpemodel: Path
    token_list: Path
    stats_file: Path
    train_dir: Path  # S2T data dirs (wav.scp, text, text.prev, text.ctc, speech_shape)
    valid_dir: Path
    data_args: tuple  # --{train,valid}_data_path_and_name_and_type / _shape_file for those dirs


def _identity_stats(path: Path) -> Path:
    """Global-MVN statistics of mean 0 and variance 1 (the layout ESPnet's collect_stats writes)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, count=np.array(1.0), sum=np.zeros(FEATURE_DIM), sum_square=np.ones(FEATURE_DIM))
    return path


def make_tiny_owsm(workdir: Path, flavour: str, train_dir: Path, valid_dir: Path) -> TinyOwsm:
    workdir = Path(workdir)
    stats = _identity_stats(workdir / "stats" / "feats_stats.npz")
    arch = FIXTURE_TASKS["s2t"].model_config()
    arch["encoder_conf"]["input_layer"] = FLAVOURS[flavour]
    overrides = {**arch, "normalize": "global_mvn", "normalize_conf": {"stats_file": str(stats)},
                 "max_epoch": 1, "num_iters_per_epoch": 2, "batch_size": 2}
    exp = make_experiment("s2t", workdir, train_dir, valid_dir, config_overrides=overrides)
    output_dir = workdir / "exp"
    run_task("s2t", [*exp.cmd(output_dir), "--dry_run", "true"])  # ESPnet writes config.yaml and stops
    torch.manual_seed(0)
    model, _ = task_class("s2t").build_model_from_file(output_dir / "config.yaml", None)
    model_file = output_dir / "valid.acc.ave.pth"
    torch.save(model.state_dict(), model_file)
    return TinyOwsm(flavour, output_dir / "config.yaml", model_file, exp.bpemodel, exp.token_list, stats,
                    exp.train_dir, exp.valid_dir, _data_options(exp.args))


def _data_options(args: Sequence[str]) -> tuple:
    """The ``--{train,valid}_{data_path_and_name_and_type,shape_file} value`` pairs of a training command."""
    out = []
    for option, value in zip(args, args[1:]):
        if option.startswith(("--train_", "--valid_")) and option.endswith(("_data_path_and_name_and_type",
                                                                            "_shape_file")):
            out += [option, value]
    return tuple(out)


def pack_hub_repo(model: TinyOwsm, repo: Path, exp_name: str = "s2t_train_s2t_ebf_tiny_raw_bpe") -> Path:
    """``model`` laid out as an OWSM hub repository at ``repo`` (relative paths inside the config)."""
    repo = Path(repo)
    token_dir = Path("data/token_list/bpe_unigram60")
    stats = Path("exp/s2t_stats_raw_bpe60/train/feats_stats.npz")
    exp = Path("exp") / exp_name
    for rel, src in ((token_dir / "bpe.model", model.bpemodel), (token_dir / "tokens.txt", model.token_list),
                     (stats, model.stats_file), (exp / "valid.acc.ave.pth", model.model_file)):
        (repo / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(src, repo / rel)
    config = yaml.safe_load(model.config.read_text(encoding="utf-8"))
    config.update(bpemodel=str(token_dir / "bpe.model"), output_dir=str(exp))
    config["normalize_conf"]["stats_file"] = str(stats)
    config["train_data_path_and_name_and_type"] = [["dump/raw/train/wav.scp", "speech", "sound"]]
    (repo / exp / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    meta = {"espnet": "202511", "files": {"s2t_model_file": str(exp / "valid.acc.ave.pth")},
            "python": "3.11", "timestamp": 0.0, "torch": str(torch.__version__),
            "yaml_files": {"s2t_train_config": str(exp / "config.yaml")}}
    (repo / "meta.yaml").write_text(yaml.safe_dump(meta), encoding="utf-8")
    (repo / "README.md").write_text(
        "---\ntags:\n- espnet\n- audio\n- automatic-speech-recognition\nlanguage: multilingual\nlicense: cc-by-4.0\n"
        f"---\n\n## A tiny OWSM-style ({model.flavour}) test model\n", encoding="utf-8")
    return repo


def _blob_name(path: Path) -> str:
    data = path.read_bytes()
    if path.suffix in (".pth", ".model", ".npz"):  # LFS files: blobs are named by their sha256
        return hashlib.sha256(data).hexdigest()
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()  # git blob id


def populate_hub_cache(cache_dir: Path, repo_id: str, repo: Path, revision: str = "main") -> Path:
    """Put ``repo`` into a huggingface_hub cache as ``repo_id`` at ``revision``; returns the snapshot dir."""
    storage = Path(cache_dir) / f"models--{repo_id.replace('/', '--')}"
    commit = hashlib.sha1(f"{repo_id}@{revision}".encode()).hexdigest()
    snapshot = storage / "snapshots" / commit
    for path in sorted(p for p in Path(repo).rglob("*") if p.is_file()):
        blob = storage / "blobs" / _blob_name(path)
        blob.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, blob)
        link = snapshot / path.relative_to(repo)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    (storage / "refs").mkdir(parents=True, exist_ok=True)
    (storage / "refs" / revision).write_text(commit)
    return snapshot


def train_args(model: TinyOwsm) -> list[str]:
    """The data / token options of a training run on ``model``'s data (what peft.sh passes besides --config)."""
    return ["--use_preprocessor", "true", "--token_type", "bpe", "--ngpu", "0", *model.data_args]


"""The embedded default recipe, stages 1 to 12, in a reduced configuration (tiny model, few utterances).

It runs the real ``egs2/synthetic/peft1/run.sh`` (espeak-ng + sox corpus, ESPnet training through
``espnet2.bin.launch`` and ``run.pl``, decoding, sclite + jiwer scoring, report), in a copy of ``egs2/``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
METHODS = ("lora", "ssvd_o", "full")
DOMAINS = ("child", "accent")

TINY_MODEL = {
    "encoder_conf": {"output_size": 64, "attention_heads": 2, "linear_units": 128, "cgmlp_linear_units": 128,
                     "num_blocks": 2, "cgmlp_conv_kernel": 15, "merge_conv_kernel": 15},
    "decoder_conf": {"attention_heads": 2, "linear_units": 128, "num_blocks": 1},
}
TINY_TRAINING = {"batch_size": 4, "max_epoch": 2, "num_iters_per_epoch": 3, "num_workers": 0}


def shrink(config_file: Path, changes: dict) -> None:
    config = yaml.safe_load(config_file.read_text())
    for key, value in changes.items():
        if isinstance(value, dict):
            config[key].update(value)
        else:
            config[key] = value
    config_file.write_text(yaml.safe_dump(config, sort_keys=False))


@pytest.fixture(scope="module")
def recipe(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("egs")
    shutil.copytree(REPO / "egs2", root / "egs2", symlinks=True)
    recipe_dir = root / "egs2" / "synthetic" / "peft1"
    shrink(recipe_dir / "conf" / "train_source.yaml", {**TINY_MODEL, **TINY_TRAINING})
    for name in ("finetune.yaml", "finetune_full.yaml"):
        shrink(recipe_dir / "conf" / name, TINY_TRAINING)
    return recipe_dir


def run_recipe(recipe_dir: Path, *options: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", "PYTHONPATH": str(REPO)}
    command = ["./run.sh", "--python", sys.executable, "--nj", "1", "--methods", " ".join(METHODS),
               "--budget", "8000", "--bpe_vocab_size", "60", "--local_data_opts", "--sizes train=12,dev=4,test=6 --speakers train=3,dev=2,test=2",
               *options]
    result = subprocess.run(command, cwd=recipe_dir, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-5000:]
    return result


@pytest.fixture(scope="module")
def finished(recipe: Path) -> Path:
    run_recipe(recipe, "--stage", "1", "--stop_stage", "12")
    return recipe


def test_every_stage_leaves_its_outputs(finished: Path) -> None:
    for domain in DOMAINS:
        for split in ("train", "dev", "test"):
            assert (finished / "data" / f"{domain}_{split}" / "wav.scp").is_file()
            for name in ("wav.scp", "text", "text.prev", "text.ctc", "utt2spk", "speech_shape"):
                assert (finished / "dump" / "raw" / f"{domain}_{split}" / name).is_file(), name
    assert (finished / "data" / "token_list" / "bpe.model").is_file()
    assert (finished / "exp" / "source" / "model.pth").exists()
    for domain in DOMAINS:
        for method in METHODS:
            name = f"{domain}_{method}" if method != "ssvd_o" else f"{domain}_ssvd_o_os0.5"
            exp = finished / "exp" / name
            assert (exp / "run_info.json").is_file()
            for test_set in (f"{domain}_test", "source_test"):
                score = exp / "decode" / test_set / "score_wer"
                assert (score / "result.txt").is_file() and "Sum" in (score / "result.txt").read_text()
                assert (score / "jiwer_crosscheck.json").is_file()
            if method != "full":
                assert (exp / "merged" / "model.pth").is_file()
                assert (exp / "adapter" / "adapter_model.pth").is_file()
    assert (finished / "exp" / "report" / "learning_vs_forgetting.png").stat().st_size > 1000


def test_report_has_one_row_per_method_and_domain(finished: Path) -> None:
    results = json.loads((finished / "exp" / "report" / "results.json").read_text())
    for domain in DOMAINS:
        methods = [row["method"] for row in results["domains"][domain]["rows"]]
        assert sorted(methods) == sorted(["zero_shot", *METHODS])
        for row in results["domains"][domain]["rows"]:
            assert row["target_wer"]["low"] <= row["target_wer"]["point"] <= row["target_wer"]["high"]
    text = (finished / "RESULTS.md").read_text()
    for domain in DOMAINS:
        assert domain in text
    budgets = {row["method"]: row["trainable_params"] for row in results["domains"]["child"]["rows"]}
    assert abs(budgets["ssvd_o"] - budgets["lora"]) <= 0.05 * 8000 + abs(budgets["lora"] - 8000)


def test_stages_can_be_rerun(finished: Path) -> None:
    result = run_recipe(finished, "--stage", "2", "--stop_stage", "12")
    assert re.search(r"skip exp/source: already trained", result.stderr)
    assert "skip decoding" in result.stderr

"""The embedded recipe with an OWSM-CTC model (``run.sh --quick --task s2t_ctc``), stages 1 to 12.

A tiny E-Branchformer-CTC model with a prompt encoder is trained from scratch (stage 5), fine-tuned with LoRA and in
full (stage 7) through ``espnet_peft.bin.s2t_ctc_train``, decoded by greedy CTC (stages 6, 8), scored, packaged and
reported. The recipe's batched greedy CTC is checked against ESPnet's own ``s2t_inference_ctc --beam_size 1``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from helpers.recipe_runs import copy_recipe, recipe_env, run_quick

from espnet_peft.bin import s2t_batch_inference, s2t_ctc_inference
from espnet_peft.compat import stock_ctc_cli_reads_mono_audio
from espnet_peft.utils.kaldi_data import read_table

METHODS = ("lora", "full")
OPTIONS = ("--task", "s2t_ctc", "--methods", " ".join(METHODS), "--target_domains", "child", "--sweep", "")


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    recipe = copy_recipe(tmp_path_factory.mktemp("egs_ctc"))
    run_quick(recipe, [*OPTIONS, "--stage", "1", "--stop_stage", "13"])
    return recipe


def test_every_stage_runs_with_an_owsm_ctc_model(finished: Path) -> None:
    source = yaml.safe_load((finished / "exp" / "source" / "config.yaml").read_text())
    assert source["encoder"] == "e_branchformer_ctc" and "promptencoder" in source
    # OWSM-CTC's text leads with <lang><task> only
    line = (finished / "dump" / "raw" / "child_train" / "text").read_text().splitlines()[0]
    assert line.split(maxsplit=1)[1].startswith("<eng><asr> ")
    for method in METHODS:
        exp = finished / "exp" / f"child_{method}_s0"
        assert (exp / "valid.loss.best.pth").is_file()  # no decoder accuracy: the lowest validation loss
        for test_set in ("child_test", "source_test"):
            decoded = exp / "decode" / test_set
            assert json.loads((decoded / "decode_info.json").read_text())["settings"]["search"] == "ctc_greedy"
            assert "Sum" in (decoded / "score_wer" / "result.txt").read_text()
        if method != "full":
            assert (exp / "merged" / "model.pth").is_file() and (exp / "adapter" / "adapter_model.pth").is_file()
    results = json.loads((finished / "exp" / "report" / "results.json").read_text())
    assert sorted(row["label"] for row in results["domains"]["child"]["rows"]) == ["full", "lora", "zero_shot"]
    assert "## child" in (finished / "RESULTS.md").read_text()
    assert not (finished / "exp" / "analysis").exists()  # stage 13 says it skips OWSM-CTC models


@pytest.mark.xfail(not stock_ctc_cli_reads_mono_audio(), raises=ValueError, strict=True,
                   reason="espnet 202611's s2t_inference_ctc rejects mono audio lists (upstream)")
def test_recipe_ctc_decoding_equals_espnet_greedy_ctc(finished: Path, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(finished)  # the config's paths are relative to the recipe dir, as in the recipe's own jobs
    exp = finished / "exp" / "child_lora_s0"
    # The quick model's best path holds special tokens only (which the text leaves out); with those held down (all
    # but <blank>) it is a long path, with repeats to merge.
    tokens = (finished / "data" / "token_list" / "tokens.txt").read_text().split()
    special = [i for i, t in enumerate(tokens) if t.startswith("<") and t.endswith(">") and t != "<blank>"]
    state = torch.load(exp / "valid.loss.best.pth", map_location="cpu")
    state["ctc.ctc_lo.bias"][special] -= 100.0
    model_file = tmp_path / "no_blank.pth"
    torch.save(state, model_file)
    data = finished / "dump" / "raw" / "child_test"
    common = ["--s2t_train_config", str(exp / "config.yaml"), "--s2t_model_file", str(model_file)]
    s2t_batch_inference.main([*common, "--set", str(data), str(tmp_path / "ours"), "--batch_size", "4"])
    ours = read_table(tmp_path / "ours" / "text")
    # ESPnet's CLI (through the adapter-aware drop-in), one utterance at a time, beam 1 = Speech2TextGreedySearch
    s2t_ctc_inference.main([*common, "--data_path_and_name_and_type", f"{data / 'wav.scp'},speech,sound",
                            "--output_dir", str(tmp_path / "stock"), "--beam_size", "1", "--lang_sym", "<eng>",
                            "--task_sym", "<asr>"])
    stock = read_table(tmp_path / "stock" / "1best_recog" / "text_nospecial")
    assert set(ours) == set(stock) == set(read_table(data / "wav.scp"))
    assert all(len(text.split()) >= 3 for text in stock.values()), stock
    assert ours == {key: text.strip() for key, text in stock.items()}


def test_espnet_decoder_option_decodes_owsm_ctc_like_the_batched_one(finished: Path) -> None:
    decoded = finished / "exp" / "source" / "decode_zeroshot" / "source_test"
    batched = read_table(decoded / "text")
    command = ["./run.sh", "--quick", "--python", sys.executable, "--nj", "1", *OPTIONS, "--stage", "6",
               "--stop_stage", "6", "--decoder", "espnet"]
    result = subprocess.run(command, cwd=finished, env=recipe_env(), capture_output=True, text=True)
    if not stock_ctc_cli_reads_mono_audio():  # refused before any job starts, with the way out
        assert result.returncode != 0 and "--decoder batch_greedy" in result.stderr, result.stderr[-2000:]
        assert read_table(decoded / "text") == batched
        return
    assert result.returncode == 0, result.stderr[-5000:]
    assert (decoded / "made_from.json").is_file()
    assert read_table(decoded / "text") == batched

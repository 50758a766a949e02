"""The shipped source model's card is read from the recipe's files: training logs of every (re)start, config, scores."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from espnet_peft.recipe import model_card

CONFIG = {"max_epoch": 4, "num_iters_per_epoch": 250, "batch_size": 32, "optim": "adam", "optim_conf": {"lr": 0.003},
          "scheduler": "warmuplr", "scheduler_conf": {"warmup_steps": 300}, "seed": 0, "encoder": "e_branchformer",
          "encoder_conf": {"num_blocks": 3, "output_size": 96, "input_layer": "conv2d6"}, "decoder": "transformer",
          "decoder_conf": {"num_blocks": 2}, "model_conf": {"ctc_weight": 0.5},
          "preprocessor_conf": {"speech_length": 3.5}, "token_list": ["<blank>", "a", "b"]}


def _epoch_line(time: str, epoch: int, acc: float) -> str:
    return (f"[vm] 2026-12-04 {time},100 (trainer:394) INFO: {epoch}epoch results: [train] loss=3.0, "
            f"time=4 minutes and 42.04 seconds, total_count={epoch * 250}, [valid] loss_ctc=5.066, cer_ctc=0.064, "
            f"acc={acc}, time=10.2 seconds, total_count=40")


@pytest.fixture
def exp_dir(tmp_path: Path) -> Path:
    """Two runs of one training: epochs 1-2, killed, then resumed for epochs 3-4 (ESPnet renames the first log)."""
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(CONFIG), encoding="utf-8")
    (tmp_path / "train.1.log").write_text("\n".join([
        "# python -m espnet2.bin.launch ...",
        "[vm] 2026-12-04 01:00:00,000 (launch:348) INFO: start",
        _epoch_line("01:05:00", 1, 0.5), _epoch_line("01:10:00", 2, 0.8)]) + "\n", encoding="utf-8")
    (tmp_path / "train.log").write_text("\n".join([
        "[vm] 2026-12-04 03:00:00,000 (launch:348) INFO: resumed",
        _epoch_line("03:05:00", 3, 0.9), _epoch_line("03:30:00", 4, 0.95), "# Accounting: time=1800"]) + "\n",
        encoding="utf-8")
    return tmp_path


def test_wall_time_sums_every_restart_and_validation_is_the_last_epoch(exp_dir: Path) -> None:
    assert model_card.training_wall_time(exp_dir) == 10 * 60 + 30 * 60  # not 2.5 h from first to last stamp
    valid = model_card.last_valid_results(exp_dir)
    assert valid["epoch"] == 4 and valid["acc"] == 0.95 and valid["cer_ctc"] == 0.064
    summary = model_card.training_summary(exp_dir)
    assert (summary["steps"], summary["runs"], summary["tokens"]) == (1000, 2, 3)


def _score(root: Path, name: str, wer: float, twice: int) -> None:
    (root / name / "score_wer").mkdir(parents=True)
    summary = {"error_rate": wer, "insertion_rate": 1.0, "max_hyp_ref_ratio": 1.5, "hyp_at_least_twice_ref": twice}
    (root / name / "score_wer" / "summary.json").write_text(json.dumps(summary), encoding="utf-8")


def test_card_has_the_checksum_the_command_and_ratios_to_the_reference_set(exp_dir: Path, tmp_path: Path) -> None:
    decode = tmp_path / "decode"
    _score(decode, "source_test", 8.0, 0)
    _score(decode, "child_test", 40.0, 2)
    (decode / "source_test" / "decode_info.json").write_text(
        json.dumps({"settings": {"ctc_weight": 0.3, "ctc_candidates": 10, "ctc_prefix": "text"}}), encoding="utf-8")
    scores = model_card.set_scores(decode, ["source_test", "child_test"])
    corpus = {"seed": 1, "max_words": 6, "sample_rate": 16000,
              "dirs": {"source_train": {"utterances": 100, "speakers": ["a", "b"], "hours": 0.1}}}
    card = model_card.render("m.zip", "ab" * 32, 2_000_000, 1234, model_card.training_summary(exp_dir), corpus, scores,
                             "source_test", "./run.sh --retrain_source true", "2 CPU cores",
                             search=model_card.search_description(decode, "source_test"))
    assert f"sha256 `{'ab' * 32}`" in card and "`./run.sh --retrain_source true`" in card
    assert "| child_test | 40.00 | 5.00 | 1.00 | 1.50 | 2 |" in card  # 5x the source WER
    assert "CTC weight 0.3" in card and "CTC prefix: the transcript after the prompt" in card
    assert "0.67 h of training in 2 pieces" in card
    assert "| source_train | 100 | 2 | 0.10 |" in card


def test_a_set_without_scores_is_named_before_anything_is_written(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="accent_test/score_wer/summary.json"):
        model_card.set_scores(tmp_path, ["accent_test"])


def test_a_continued_second_part_is_its_own_line_and_adds_its_time_and_validation(exp_dir: Path,
                                                                                   tmp_path: Path) -> None:
    continued = exp_dir / model_card.CONTINUED_DIR
    continued.mkdir()
    second = {**CONFIG, "max_epoch": 2, "optim_conf": {"lr": 0.001}, "specaug": "specaug",
              "specaug_conf": {"num_freq_mask": 2}}
    (continued / "config.yaml").write_text(yaml.safe_dump(second), encoding="utf-8")
    (continued / "train.log").write_text("\n".join([
        "[vm] 2026-12-04 05:00:00,000 (launch:348) INFO: start",
        _epoch_line("05:10:00", 1, 0.96), _epoch_line("05:12:00", 2, 0.97)]) + "\n", encoding="utf-8")
    decode = tmp_path / "decode"
    _score(decode, "source_test", 8.0, 0)
    summary = model_card.training_summary(exp_dir)
    assert summary["steps"] == 1000 and summary["continued"]["steps"] == 500
    card = model_card.render("m.zip", "ab" * 32, 2_000_000, 1234, summary, {}, model_card.set_scores(
        decode, ["source_test"]), "source_test", "./run.sh --retrain_source true", "2 CPU cores")
    first, second_line = (line for line in card.splitlines() if line.startswith(("- training:", "- then,")))
    assert "{'lr': 0.003}" in first and "no SpecAugment" in first
    assert "`continued/`" in second_line and "500 steps (2 epochs x 250 steps)" in second_line
    assert "specaug {'num_freq_mask': 2}" in second_line and "{'lr': 0.001}" in second_line
    assert "0.87 h of training in 3 pieces" in card  # 40 min of the first part + 12 min of the second
    assert "last validation epoch (second part, 2): attention accuracy 0.970" in card

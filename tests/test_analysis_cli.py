"""``python -m espnet_peft.bin.analyze`` on tiny randomly initialised ESPnet S2T models and a tiny Kaldi dir.

The models have the recipe's layout (OWSM-style E-Branchformer S2T, BPE with OWSM special tokens, inputs padded to a
fixed length), written as an ESPnet experiment dir would be (``config.yaml`` + ``model.pth``): A is the "pretrained"
model, B is A with LoRA adapters moved off their identity initialisation, C has one more encoder block than A.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from espnet_peft.bin.analyze import main as analyze
from espnet_peft.recipe.owsm_tokens import time_tokens, train_owsm_bpe
from espnet_peft.analysis.methods import REGISTRY

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from analysis_runtime import FS, synthetic_data_dir, write_experiment  # noqa: E402  (the benchmark's builders)

SPEECH_LENGTH = 2.0  # seconds: S2T inputs are padded to this
WORDS = ["the cat runs", "a big dog", "the red bird sees a fish", "one small tree", "two old books"]
LORA = {"method": "lora", "target_modules": ["linear_q", "linear_v", "w_1", "w_2"], "r": 4}


def _s2t_config(tokens: Path, bpe: Path, blocks: int) -> dict:
    """A tiny version of the recipe's source model (same layout and preprocessing)."""
    return {
        "token_list": str(tokens), "bpemodel": str(bpe), "token_type": "bpe", "use_preprocessor": True,
        "frontend": "default", "frontend_conf": {"n_fft": 512, "hop_length": 160, "n_mels": 40},
        "normalize": "utterance_mvn",
        "encoder": "e_branchformer",
        "encoder_conf": {"output_size": 32, "attention_heads": 2, "linear_units": 64, "num_blocks": blocks,
                         "cgmlp_linear_units": 64, "cgmlp_conv_kernel": 7, "merge_conv_kernel": 7,
                         "attention_layer_type": "rel_selfattn", "pos_enc_layer_type": "rel_pos",
                         "rel_pos_type": "latest", "use_linear_after_conv": False, "gate_activation": "identity",
                         "input_layer": "conv2d", "macaron_ffn": True, "use_ffn": True},
        "decoder": "transformer", "decoder_conf": {"attention_heads": 2, "linear_units": 32, "num_blocks": 1},
        "model_conf": {"ctc_weight": 0.3, "sym_na": "<na>"},
        "preprocessor": "s2t",
        "preprocessor_conf": {"text_prev_name": "text_prev", "text_ctc_name": "text_ctc", "fs": FS,
                              "na_symbol": "<na>", "speech_length": SPEECH_LENGTH, "speech_resolution": 0.02,
                              "speech_init_silence": 0.5, "text_prev_apply_prob": 0.0, "time_apply_prob": 1.0,
                              "notime_symbol": "<notimestamps>", "first_time_symbol": time_tokens(SPEECH_LENGTH)[0],
                              "last_time_symbol": time_tokens(SPEECH_LENGTH)[-1]},
    }


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("analysis_cli")
    data = synthetic_data_dir(root / "data", WORDS[:4], [0.6, 0.9, 1.2, 1.5])
    bpe, tokens = train_owsm_bpe(WORDS * 4, root / "tokens", vocab_size=30, speech_length=SPEECH_LENGTH)
    config = _s2t_config(tokens, bpe, blocks=2)
    a = write_experiment(root / "exp_a", config, seed=0)
    adapted = {**config, "use_adapter": True, "adapter": "espnet_peft", "adapter_conf": LORA}
    b = write_experiment(root / "exp_b", adapted, seed=1, adapted_from=a)
    c = write_experiment(root / "exp_c", _s2t_config(tokens, bpe, blocks=3), seed=2)
    return {"root": root, "data": data, "a": a, "b": b, "c": c}


def test_every_analysis_writes_json_figures_and_summary(setup: dict[str, Path]) -> None:
    out = setup["root"] / "out_ab"
    analyze(["--model_a", str(setup["a"]), "--model_b", str(setup["b"]), "--data", str(setup["data"]),
             "--analyses", "all", "--batch_size", "3", "--out", str(out), "--no_progress"])
    results = json.loads((out / "analysis.json").read_text())
    for key in ("models", "data", "settings", "skipped", "timing_s"):
        assert key in results, key
    for name in REGISTRY:  # every registered analysis is reachable from the CLI: it ran, or says why not per model
        assert name in results or name in results["skipped"], name
    assert results["data"]["utterances"] == 4 and results["models"]["B"]["adapter_layers"] > 0
    cka = results["cka"]
    for label in ("A", "B"):
        assert np.allclose(np.diag(cka["intra"][label]), 1.0)  # a model with itself
        assert len(results["lens"][label]["cer"]) == len(results["lens"][label]["kl"]) == 2
        assert results["lens"][label]["kl"][-1] == pytest.approx(0.0, abs=1e-6)
        assert set(results["branches"][label]["branches"]) >= {"merge", "attn", "cgmlp"}
        assert set(results["ablation"][label]) == {"single", "cumulative"}
    assert len(cka["drift"]) == 2 and all(0.0 <= v <= 1.0 + 1e-9 for v in cka["drift"])
    # the decoder (1 block), teacher-forced on the prompted text: B's LoRA targets adapt its linears too
    assert len(results["decoder_drift"]["drift"]) == 1 and results["decoder_drift"]["drift"][0] < 0.999
    for label in ("A", "B"):
        assert len(results["decoder_contribution"][label]["update_ratio"]) == 1
        assert list(results["decoder_branches"][label]["branches"]) == ["self_attn", "src_attn", "feed_forward"]
    assert "A" not in results["energy"] and results["skipped"]["energy"]["A"]  # no adapters in A
    assert results["energy_loss"]["B"] == "training loss"  # prompted text + text.prev + text.ctc in the data
    energy = next(iter(results["energy"]["B"].values()))
    assert energy["rank"] == 4 and 1 <= energy["act_k90"] <= 4
    fresh = results["energy_vs_untrained"]["B"]
    assert set(fresh) == set(results["energy"]["B"])
    assert all(row["untrained_grad_k90"] == 0 for row in fresh.values())  # LoRA's B = 0 where training starts
    for name in ("cka_A", "cka_B", "cka_AB", "drift", "lens", "contribution", "branches", "ablation", "energy_B",
                 "attention_A", "attention_AB", "cka_rbf_AB", "cka_debiased_drift", "cka_minibatch_drift", "svcca",
                 "pwcca", "neurons", "decoder_drift", "decoder_contribution", "decoder_branches"):
        assert (out / f"{name}.png").stat().st_size > 1000, name
    summary = (out / "summary.md").read_text()
    assert "Drift" in summary and "![drift](drift.png)" in summary and "- decoder drift" in summary


def test_a_model_against_itself_has_no_drift(setup: dict[str, Path]) -> None:
    out = setup["root"] / "out_aa"
    analyze(["--model_a_config", str(setup["a"] / "config.yaml"), "--model_a_file", str(setup["a"] / "model.pth"),
             "--model_b", str(setup["a"] / "model.pth"), "--data", str(setup["data"]), "--analyses",
             "cka,decoder_drift", "--out", str(out), "--no_progress"])
    results = json.loads((out / "analysis.json").read_text())
    cka = results["cka"]
    assert cka["drift"] == pytest.approx([1.0, 1.0], abs=1e-9)
    assert results["decoder_drift"]["drift"] == pytest.approx([1.0], abs=1e-9)
    assert np.allclose(cka["inter"], cka["intra"]["A"], atol=1e-9)


SIMILARITIES = ("cka", "cka_debiased", "cka_rbf", "cka_minibatch", "svcca", "pwcca", "neurons")


def test_every_similarity_of_a_model_with_itself_is_one_and_with_another_model_less(setup: dict[str, Path]) -> None:
    scores = {}
    for other in ("a", "b"):
        out = setup["root"] / f"out_similarity_{other}"
        analyze(["--model_a", str(setup["a"]), "--model_b", str(setup[other]), "--data", str(setup["data"]),
                 "--analyses", ",".join(SIMILARITIES), "--out", str(out), "--no_progress"])
        results = json.loads((out / "analysis.json").read_text())
        scores[other] = {name: results[name]["drift"] for name in SIMILARITIES if name.startswith("cka")}
        scores[other].update({name: results[name]["similarity"] for name in ("svcca", "pwcca")})
        scores[other].update({f"neurons.{key}": results["neurons"][key] for key in
                              ("maxcorr_A_in_B", "maxcorr_B_in_A", "linreg_B_from_A", "linreg_A_from_B")})
        assert "More similarity measures" in (out / "summary.md").read_text()
    for name, values in scores["a"].items():
        assert values == pytest.approx([1.0, 1.0], abs=1e-6), name
    # B is A with its LoRA adapters moved off their identity initialisation: the last layer has moved
    for name, values in scores["b"].items():
        assert values[-1] < 0.999, name


def test_a_pairwise_analysis_of_one_model_is_skipped_with_the_reason(setup: dict[str, Path]) -> None:
    out = setup["root"] / "out_single"
    analyze(["--model_a", str(setup["a"]), "--data", str(setup["data"]), "--analyses", "svcca,neurons,cka",
             "--out", str(out), "--no_progress"])
    results = json.loads((out / "analysis.json").read_text())
    assert "svcca" not in results and "give two models" in results["skipped"]["svcca"]["AB"]
    assert "neurons" in results["skipped"] and results["cka"]["inter"] is None


def test_different_layer_counts_give_a_rectangular_matrix(setup: dict[str, Path]) -> None:
    out = setup["root"] / "out_ac"
    wavs = setup["root"] / "wavs.txt"  # the wav-list input: no transcripts, so no CER
    wavs.write_text("".join(line.split()[1] + "\n" for line in (setup["data"] / "wav.scp").read_text().splitlines()))
    analyze(["--model_a", str(setup["a"]), "--model_b", str(setup["c"]), "--data", str(wavs), "--analyses",
             "cka,lens", "--out", str(out), "--no_progress"])
    results = json.loads((out / "analysis.json").read_text())
    assert np.array(results["cka"]["inter"]).shape == (2, 3)
    assert results["cka"]["drift"] is None and "cka.drift" in results["skipped"]
    assert results["lens"]["B"]["cer"] is None and len(results["lens"]["B"]["kl"]) == 3
    assert (out / "cka_AB.png").is_file() and not (out / "drift.png").exists()


def test_missing_files_are_named_with_the_fix(setup: dict[str, Path]) -> None:
    missing = setup["root"] / "nowhere"
    with pytest.raises(SystemExit, match=r"model B: .*nowhere.* not found.*ESPnet experiment dir"):
        analyze(["--model_a", str(setup["a"]), "--model_b", str(missing), "--data", str(setup["data"]),
                 "--out", str(setup["root"] / "x")])
    with pytest.raises(SystemExit, match=r"model A: model file .*none\.pth not found"):
        analyze(["--model_a_config", str(setup["a"] / "config.yaml"), "--model_a_file", str(missing / "none.pth"),
                 "--data", str(setup["data"]), "--out", str(setup["root"] / "x")])
    with pytest.raises(SystemExit, match=r"--data .*nowhere not found"):
        analyze(["--model_a", str(setup["a"]), "--data", str(missing), "--out", str(setup["root"] / "x")])
    assert not (setup["root"] / "x").exists()


def test_hugging_face_model_against_an_espnet_one(setup: dict[str, Path]) -> None:
    """A tiny Wav2Vec2 (12.5 ms frames, three layers) vs the ESPnet model (40 ms): frames are paired by position."""
    import transformers

    config = transformers.Wav2Vec2Config(
        hidden_size=32, num_hidden_layers=3, num_attention_heads=2, intermediate_size=64, vocab_size=8,
        conv_dim=(16, 16), conv_stride=(10, 8), conv_kernel=(10, 8), num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=2)
    hf_dir = setup["root"] / "hf_w2v"
    transformers.Wav2Vec2Model(config).save_pretrained(hf_dir)
    out = setup["root"] / "out_hf"
    analyze(["--hf_model_a", str(hf_dir), "--model_b", str(setup["a"]), "--data", str(setup["data"]),
             "--analyses", "cka,contribution,attention,lens", "--out", str(out), "--no_progress"])
    results = json.loads((out / "analysis.json").read_text())
    assert results["models"]["A"]["kind"] == "hf" and np.array(results["cka"]["inter"]).shape == (3, 2)
    assert np.allclose(np.diag(results["attention"]["intra"]["A"]), 1.0)
    assert "A" in results["skipped"]["lens"] and "B" in results["lens"]  # the CTC lens is ESPnet-only
    assert "AB" in results["skipped"]["attention"]  # other frame rates: no query-by-query comparison


def test_bad_utterances_are_skipped_with_the_recipes_reasons(setup: dict[str, Path], tmp_path: Path) -> None:
    import shutil

    import numpy as np
    import soundfile

    from espnet_peft.analysis.errors import AnalysisInputError
    from espnet_peft.analysis.utterances import read_utterances
    from espnet_peft.utils.kaldi_data import read_table, write_table

    data = tmp_path / "data"
    shutil.copytree(setup["data"], data)
    wavs = read_table(data / "wav.scp")
    good = sorted(wavs)
    truncated, silent = tmp_path / "truncated.wav", tmp_path / "zero.wav"
    payload = Path(wavs[good[0]]).read_bytes()
    truncated.write_bytes(payload[: len(payload) // 2])
    soundfile.write(silent, np.zeros(0, dtype=np.int16), FS)
    wavs.update({"z1_truncated": str(truncated), "z2_empty_audio": str(silent), "z3_empty_text": wavs[good[0]]})
    write_table(data / "wav.scp", wavs)
    for name in ("text", "text.ctc"):
        if (data / name).is_file():
            table = read_table(data / name)
            table.update({k: table[good[0]] for k in ("z1_truncated", "z2_empty_audio")})
            table["z3_empty_text"] = "<eng><asr><notimestamps>" if name == "text" else ""
            write_table(data / name, table)

    skipped: dict = {}
    utts = read_utterances(str(data), skipped=skipped)
    assert [u.key for u in utts] == good
    assert {k: reason for k, (reason, _) in skipped.items()} == {
        "z1_truncated": "truncated_audio", "z2_empty_audio": "empty_audio", "z3_empty_text": "empty_text"}

    (data / "text").write_bytes((data / "text").read_bytes() + b"z4 caf\xe9\n")
    with pytest.raises(AnalysisInputError, match=r"text, line \d+: byte 0xe9"):
        read_utterances(str(data))


def test_an_analysis_registered_from_outside_runs_from_the_cli(setup: dict[str, Path]) -> None:
    """The README's ten-line example: one class, registered, is an ``--analyses`` name of the CLI."""
    from espnet_peft.analysis.methods.base import Analysis, WeightedMeans
    from espnet_peft.analysis.methods.registry import register

    @register
    class MeanNorm(Analysis):
        name, description = "mean_norm", "mean L2 norm of each layer's output over the real-audio frames"

        def __init__(self):
            self.means = WeightedMeans()

        def add(self, model, batch, forward):
            norms = [h.norm(dim=-1)[forward.mask].mean().item() for h in forward.capture.hidden_states]
            self.means.add(model.label, norms, weight=sum(forward.frames))

        def finish(self, run):
            return {self.name: {label: self.means.mean(label) for label in run.models}}

    try:
        out = setup["root"] / "out_mean_norm"
        analyze(["--model_a", str(setup["a"]), "--data", str(setup["data"]), "--analyses", "mean_norm",
                 "--out", str(out), "--no_progress"])
        norms = json.loads((out / "analysis.json").read_text())["mean_norm"]["A"]
        assert len(norms) == 2 and all(v > 0 for v in norms)
    finally:
        del REGISTRY["mean_norm"]


def test_many_models_cka_is_symmetric_with_a_unit_diagonal_and_a_model_against_itself_is_one(
        setup: dict[str, Path]) -> None:
    out = setup["root"] / "out_models"
    analyze(["--models", f"source={setup['a']}", f"again={setup['a'] / 'model.pth'}", f"lora={setup['b']}",
             "--data", str(setup["data"]), "--out", str(out), "--no_progress"])
    result = json.loads((out / "models.json").read_text())
    assert result["labels"] == ["source", "again", "lora"]
    for matrix in [*result["per_layer"], *result["groups"].values(), result["mean"]]:
        m = np.array(matrix)
        assert np.allclose(m, m.T, atol=1e-12) and np.allclose(np.diag(m), 1.0, atol=1e-9)
    assert all(np.isclose(layer[0][1], 1.0, atol=1e-9) for layer in result["per_layer"])  # the same model twice
    assert result["per_layer"][-1][0][2] < 0.999  # the adapted one has moved
    points = np.array(result["mds"])
    assert np.linalg.norm(points[0] - points[1]) < 1e-4 < np.linalg.norm(points[0] - points[2])
    summary = (out / "summary.md").read_text()
    assert "Closest to **source** first: again (1.0000), lora" in summary
    for name in ("models_cka_group0.png", "models_cka_group1.png", "models_map.png"):
        assert (out / name).stat().st_size > 1000, name


def test_many_models_need_labels_and_the_same_layer_count(setup: dict[str, Path]) -> None:
    with pytest.raises(SystemExit, match="LABEL=MODEL"):
        analyze(["--models", str(setup["a"]), "--data", str(setup["data"]), "--out", str(setup["root"] / "x")])
    with pytest.raises(SystemExit, match="different layer counts"):
        analyze(["--models", f"a={setup['a']}", f"c={setup['c']}", "--data", str(setup["data"]),
                 "--out", str(setup["root"] / "y"), "--no_progress"])


def test_the_lens_read_off_the_shared_pass_equals_its_own_forward(setup: dict[str, Path]) -> None:
    """The run's lens reads the shared pass (with the branch hooks of ``branches`` on it); it must equal
    ``logit_lens``'s own forward on the same batch."""
    from espnet_peft.analysis.families import load_model
    from espnet_peft.analysis.lens import logit_lens
    from espnet_peft.analysis.resolve import resolve_model
    from espnet_peft.analysis.utterances import load_audio, read_utterances

    out = setup["root"] / "out_lens"
    analyze(["--model_a", str(setup["b"]), "--data", str(setup["data"]), "--analyses", "lens,branches",
             "--batch_size", "4", "--out", str(out), "--no_progress"])
    run = json.loads((out / "analysis.json").read_text())["lens"]["A"]
    model = load_model("A", resolve_model("A", str(setup["b"])), "cpu")
    utts = read_utterances(str(setup["data"]))
    batch = model.batch(utts, [load_audio(u, model.fs) for u in utts])
    own = logit_lens(model.model, batch.speech, batch.lengths, blank=model.blank, decode=model.decode,
                     refs=batch.refs)
    assert run["kl"] == pytest.approx(own.kl, abs=1e-6)
    assert run["cer"] == pytest.approx([100 * c for c in own.cer], abs=1e-9)


def test_a_model_that_comes_back_in_the_same_process_is_not_run_again(setup: dict[str, Path]) -> None:
    """Stage 13 analyses every model against the same source in one process: from the third run on, the source's
    passes come from the cache, and the results are those of a fresh run."""
    from espnet_peft.analysis.reuse import PASSES

    def run(name: str, b: Path) -> dict:
        analyze(["--model_a", str(setup["a"]), "--model_b", str(b), "--data", str(setup["data"]), "--batch_size", "2",
                 "--out", str(setup["root"] / name), "--no_progress"])
        results = json.loads((setup["root"] / name / "analysis.json").read_text())
        return {k: v for k, v in results.items() if k != "timing_s"}

    first = run("reuse_1", setup["b"])
    run("reuse_2", setup["a"])
    hits = PASSES.hits
    third = run("reuse_3", setup["b"])
    assert PASSES.hits - hits == 2  # both batches of A; B was last seen two runs ago and is not kept
    assert third == first

"""Real ESPnet training, resuming, decoding, merging and export with every adapter, on tiny pretrained models.

Each fine-tuning run goes through the plugin's task class (what ``python -m espnet_peft.bin.{asr,s2t}_train`` runs),
in-process, from the session's tiny pretrained ASR / OWSM-style S2T model via ``--init_param``.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Dict

import pytest
import torch
from espnet2.train.reporter import Reporter

from helpers.espnet_fixtures import PretrainedModel, decode, finetune_cmd, read_wav_scp
from espnet_peft.bin.merge import main as merge_main
from espnet_peft.export import apply_adapter_to_experiment, export_adapter, merge_experiment, task_class
from espnet_peft.injection import adapter_layers
from espnet_peft.tuners import METHODS

ADAPTER_CONF = {
    "lora": {"r": 4, "alpha": 8},
    "dora": {"r": 4, "alpha": 8},
    "pissa": {"r": 4, "alpha": 8},
    "ssvd": {"k": 16},
    "ssvd_o": {"budget": 150, "outer_share": 0.5},
}
TARGETS = ["linear_q", "linear_v", "linear_out", "w_1", "w_2"]


def adapter_args(method: str, **extra: object) -> list:
    conf = {"method": method, "target_modules": TARGETS, **ADAPTER_CONF[method], **extra}
    return ["--use_adapter", "true", "--adapter", "espnet_peft", "--adapter_conf", json.dumps(conf)]


def finetune(pretrained: PretrainedModel, out: Path, method: str, *extra: str, max_epoch: int = 3) -> Path:
    cmd = finetune_cmd(pretrained, out, [*adapter_args(method), "--max_epoch", str(max_epoch),
                                         "--optim_conf", "lr=0.01", "--scheduler", "none", "--seed", "1", *extra])
    importlib.import_module(f"espnet_peft.bin.{pretrained.task}_train").main(cmd)  # the drop-in entry module
    return out


def train_losses(out: Path) -> list:
    reporter = Reporter()
    reporter.load_state_dict(torch.load(out / "checkpoint.pth", weights_only=False)["reporter"])
    return [reporter.get_value("train", "loss", epoch) for epoch in range(1, reporter.get_epoch() + 1)]


def load_state(path: Path) -> Dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=False)


@pytest.fixture(scope="module")
def finetuned(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest):
    """One fine-tuned experiment per (task, method), trained once for the module."""
    cache: Dict[tuple, Path] = {}

    def get(pretrained: PretrainedModel, method: str) -> Path:
        key = (pretrained.task, method)
        if key not in cache:
            cache[key] = finetune(pretrained, tmp_path_factory.mktemp(f"{pretrained.task}_{method}"), method)
        return cache[key]

    return get


@pytest.mark.parametrize("method", METHODS)
def test_finetuning_learns_and_touches_only_adapters(pretrained_model: PretrainedModel, method: str, finetuned
                                                     ) -> None:
    out = finetuned(pretrained_model, method)
    losses = train_losses(out)
    assert losses[-1] < losses[0], f"train loss did not go down: {losses}"

    base = load_state(pretrained_model.model_file)
    tuned = load_state(out / "checkpoint.pth")["model"]
    model, _ = task_class(pretrained_model.task).build_model_from_file(out / "config.yaml", out / "checkpoint.pth")
    layers = adapter_layers(model)
    assert layers, "no adapter layer in the fine-tuned model"
    pretrained_of = {f"{n}.weight": layer.pretrained_weight().detach() for n, layer in layers.items()}
    for key, value in base.items():
        if method == "pissa" and key in pretrained_of:  # weight holds the residual; W = residual + s B0 A0
            torch.testing.assert_close(pretrained_of[key], value, rtol=1e-5, atol=1e-6)
        else:
            assert torch.equal(tuned[key], value), f"base tensor {key} changed"
    changed = {k for k in tuned if k not in base and not torch.equal(tuned[k], load_initial_adapter_value(k, tuned))}
    trainable = {f"{n}.{p}" for n, layer in layers.items() for p in layer.adapter_parameters()}
    assert changed and changed <= trainable


def load_initial_adapter_value(key: str, state: Dict[str, torch.Tensor]) -> torch.Tensor:
    """Initial values of adapter tensors that start at zero (B, generators, deltas); others compare to themselves."""
    leaf = key.rsplit(".", 1)[-1]
    if leaf in ("lora_B", "inner_generator", "outer_generator", "sigma_delta"):
        return torch.zeros_like(state[key])
    if leaf == "lora_A" and f"{key}0" in state:  # PiSSA starts A at A0
        return state[f"{key}0"]
    return state[key]


@pytest.mark.parametrize("method", METHODS)
def test_decode_then_merge_gives_the_same_hypotheses_with_stock_espnet(
        pretrained_model: PretrainedModel, method: str, finetuned, tmp_path: Path) -> None:
    out = finetuned(pretrained_model, method)
    wavs = dict(list(read_wav_scp(pretrained_model.valid_dir).items())[:3])
    task = pretrained_model.task
    # Inference through the plugin's drop-in module (its Speech2Text uses the plugin task).
    module = {"asr": "espnet_peft.bin.asr_inference", "s2t": "espnet_peft.bin.s2t_inference"}[task]
    adapted = decode(task, out / "config.yaml", out / "checkpoint.pth", wavs, inference_module=module)
    merged_dir = tmp_path / "merged"
    merge_main(["--task", task, "--exp_dir", str(out), "--model_file", str(out / "checkpoint.pth"),
                "--output_dir", str(merged_dir)])
    merged_state = load_state(merged_dir / "model.pth")
    assert set(merged_state) == set(load_state(pretrained_model.model_file)), "merged model must have plain keys"
    assert decode(task, merged_dir / "config.yaml", merged_dir / "model.pth", wavs) == adapted


def test_merged_model_loads_in_a_process_without_the_plugin(pretrained_asr: PretrainedModel, finetuned,
                                                            tmp_path: Path) -> None:
    out = finetuned(pretrained_asr, "ssvd_o")
    merged_dir = merge_experiment("asr", out / "config.yaml", out / "checkpoint.pth", tmp_path / "merged")
    wav = next(iter(read_wav_scp(pretrained_asr.valid_dir).values()))
    expected = decode("asr", merged_dir / "config.yaml", merged_dir / "model.pth", [wav])
    script = (
        "import sys, json, soundfile\n"
        "from espnet2.bin.asr_inference import Speech2Text\n"
        f"s2t = Speech2Text(asr_train_config={str(merged_dir / 'config.yaml')!r}, "
        f"asr_model_file={str(merged_dir / 'model.pth')!r}, device='cpu', beam_size=1, nbest=1, ctc_weight=0.3)\n"
        f"speech, _ = soundfile.read({str(wav)!r}, dtype='float32')\n"
        "hyp = s2t(speech)[0][0]\n"
        "from espnet2.layers.create_adapter import create_adapter_fn_table\n"
        "from espnet2.tasks.asr import ASRTask\n"
        "inert = {'espnet_peft', 'espnet_peft.env_hook'}  # the .pth start-up hook, inactive without ESPNET_PEFT\n"
        "assert not [m for m in sys.modules if m.startswith('espnet_peft') and m not in inert], 'plugin imported'\n"
        "assert 'espnet_peft' not in create_adapter_fn_table and ASRTask.__module__ == 'espnet2.tasks.asr'\n"
        "print(json.dumps(hyp))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "ESPNET_PEFT"}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout.strip().splitlines()[-1]) == next(iter(expected.values()))


@pytest.mark.parametrize("method", ["pissa", "ssvd_o"])
def test_adapter_only_checkpoints_resume_and_decode(pretrained_asr: PretrainedModel, method: str,
                                                    tmp_path: Path) -> None:
    out = finetune(pretrained_asr, tmp_path / "exp", method, "--save_strategy", "adapter_only", max_epoch=1)
    small = load_state(out / "1epoch.pth")
    assert "encoder.encoders.0.self_attn.linear_q.weight" not in small  # adapter-only: no frozen base tensor
    assert any(k.endswith("lora_A0") or k.endswith("svd_u") for k in small)
    # "Killed" after epoch 1: a second run resumes at epoch 2 from the adapter-only checkpoint.
    finetune(pretrained_asr, out, method, "--save_strategy", "adapter_only", "--resume", "true", max_epoch=2)
    assert len(train_losses(out)) == 2
    full_model, _ = task_class("asr").build_model_from_file(out / "config.yaml", out / "2epoch.pth")
    ref_model, _ = task_class("asr").build_model_from_file(out / "config.yaml", out / "checkpoint.pth")
    for (name, a), (_, b) in zip(full_model.state_dict().items(), ref_model.state_dict().items()):
        assert torch.equal(a, b), name
    base = load_state(pretrained_asr.model_file)
    for name, layer in adapter_layers(full_model).items():
        torch.testing.assert_close(layer.pretrained_weight(), base[f"{name}.weight"], rtol=1e-5, atol=1e-6)


def test_adapter_package_applies_to_its_base_and_refuses_another(pretrained_asr: PretrainedModel, finetuned,
                                                                  tmp_path: Path) -> None:
    out = finetuned(pretrained_asr, "dora")
    package = export_adapter("asr", out / "config.yaml", out / "checkpoint.pth", tmp_path / "package")
    applied = apply_adapter_to_experiment("asr", pretrained_asr.config, pretrained_asr.model_file, package,
                                          tmp_path / "applied")
    wavs = dict(list(read_wav_scp(pretrained_asr.valid_dir).items())[:2])
    module = "espnet_peft.bin.asr_inference"
    assert decode("asr", applied / "config.yaml", applied / "model.pth", wavs, inference_module=module) == \
        decode("asr", out / "config.yaml", out / "checkpoint.pth", wavs, inference_module=module)

    other = tmp_path / "other_base.pth"
    state = load_state(pretrained_asr.model_file)
    state["encoder.encoders.0.self_attn.linear_q.weight"] = state["encoder.encoders.0.self_attn.linear_q.weight"] + 0.1
    torch.save(state, other)
    with pytest.raises(ValueError, match="trained on another base model.*linear_q.weight: values differ"):
        apply_adapter_to_experiment("asr", pretrained_asr.config, other, package, tmp_path / "refused")
    assert not (tmp_path / "refused").exists(), "nothing may be written for a refused package"


def test_plugin_task_survives_spawn(pretrained_asr: PretrainedModel) -> None:
    """ESPnet's multi-GPU training pickles ``Task.main_worker`` into spawned children, which must re-register."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    with context.Pool(1) as pool:
        name, registered, choices = pool.apply(_child_view, (task_class("asr"),))
    assert name == "espnet_peft.tasks.asr.ASRTask"
    assert registered and "espnet_peft" in choices


def _child_view(task: type) -> tuple:
    from espnet2.layers.create_adapter import create_adapter_fn_table

    parser = task.get_parser()
    choices = next(a.choices for a in parser._actions if "--adapter" in a.option_strings)
    return f"{task.__module__}.{task.__qualname__}", "espnet_peft" in create_adapter_fn_table, list(choices)


def test_env_hook_lets_stock_espnet_entry_points_use_the_plugin(pretrained_asr: PretrainedModel, tmp_path: Path
                                                                ) -> None:
    """What ESPnet's asr.sh runs: stock ``python -m espnet2.bin.asr_train`` with ESPNET_PEFT=1 in the environment."""
    out = tmp_path / "exp"
    cmd = finetune_cmd(pretrained_asr, out, [*adapter_args("ssvd_o"), "--max_epoch", "1"])
    env = {**os.environ, "ESPNET_PEFT": "1"}
    result = subprocess.run([sys.executable, "-m", "espnet2.bin.asr_train", *cmd], capture_output=True, text=True,
                            env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "espnet_peft: initialised" in result.stderr
    state = load_state(out / "1epoch.pth")
    assert any(k.endswith("sigma_delta") for k in state)
    without = subprocess.run([sys.executable, "-m", "espnet2.bin.asr_train", *cmd], capture_output=True, text=True,
                             env={k: v for k, v in os.environ.items() if k != "ESPNET_PEFT"}, cwd=tmp_path)
    assert without.returncode != 0 and "invalid choice: 'espnet_peft'" in without.stderr


def test_adapter_only_checkpoint_refuses_a_changed_base_and_a_resume_without_its_base(
        pretrained_asr: PretrainedModel, tmp_path: Path) -> None:
    import yaml

    out = finetune(pretrained_asr, tmp_path / "exp", "ssvd_o", "--save_strategy", "adapter_only", max_epoch=1)
    record = json.loads((out / "base_fingerprint.json").read_text())
    assert record["init_param"] == [str(pretrained_asr.model_file)]

    changed = tmp_path / "changed_base.pth"
    state = load_state(pretrained_asr.model_file)
    state["encoder.encoders.1.feed_forward.w_1.weight"] += 0.05
    torch.save(state, changed)
    config = yaml.safe_load((out / "config.yaml").read_text())
    config["init_param"] = [str(changed)]
    (tmp_path / "changed.yaml").write_text(yaml.safe_dump(config))
    with pytest.raises(ValueError, match=r"1epoch.pth holds adapters trained on the base weights from init_param "
                                         r".*encoders.1.feed_forward.w_1.weight: values differ"):
        task_class("asr").build_model_from_file(tmp_path / "changed.yaml", out / "1epoch.pth")
    task_class("asr").build_model_from_file(out / "config.yaml", out / "1epoch.pth")  # its own base still loads

    # A resume that forgets --init_param would train epoch 2 on random base weights: refused, naming the base.
    with pytest.raises(ValueError, match=f"Pass --init_param {pretrained_asr.model_file}"):
        finetune(pretrained_asr, out, "ssvd_o", "--save_strategy", "adapter_only", "--resume", "true",
                 "--init_param", max_epoch=2)


def test_a_truncated_checkpoint_is_named_instead_of_a_zip_traceback(pretrained_asr: PretrainedModel,
                                                                      tmp_path: Path) -> None:
    out = finetune(pretrained_asr, tmp_path / "exp", "lora", max_epoch=1)
    checkpoint = out / "checkpoint.pth"
    checkpoint.write_bytes(checkpoint.read_bytes()[: checkpoint.stat().st_size // 2])  # a kill mid-write
    with pytest.raises(ValueError, match=r"checkpoint.pth \(\d+ bytes\) cannot be read.*Delete it and re-run"):
        finetune(pretrained_asr, out, "lora", "--resume", "true", max_epoch=2)
    with pytest.raises(ValueError, match=r"checkpoint.pth \(\d+ bytes\) cannot be read"):
        task_class("asr").build_model_from_file(out / "config.yaml", checkpoint)


def test_packages_are_redone_when_their_checkpoint_changed(pretrained_asr: PretrainedModel, tmp_path: Path) -> None:
    from espnet_peft.bin.package_experiments import package_experiment

    out = finetune(pretrained_asr, tmp_path / "exp", "lora", max_epoch=1)
    package_experiment("asr", out, "latest.pth")
    merged = out / "merged" / "model.pth"
    first = load_state(merged)
    stamp = merged.stat().st_mtime_ns
    package_experiment("asr", out, "latest.pth")
    assert merged.stat().st_mtime_ns == stamp, "an up-to-date package must not be redone"
    finetune(pretrained_asr, out, "lora", "--resume", "true", max_epoch=2)  # latest.pth -> 2epoch.pth now
    package_experiment("asr", out, "latest.pth")
    second = load_state(merged)
    assert any(not torch.equal(first[k], second[k]) for k in first), "the merged model is still epoch 1's"
    made_from = json.loads((out / "adapter" / "made_from.json").read_text())
    merged_from = json.loads((out / "merged" / "made_from.json").read_text())
    assert {k: made_from[k] for k in ("inputs", "settings")} == {k: merged_from[k] for k in ("inputs", "settings")}
    assert set(merged_from["outputs"]) == {"config.yaml", "model.pth"}  # what it wrote, checked on every re-run

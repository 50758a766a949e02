"""Fault injection: SIGKILL at named points of training, merging, packaging and decoding, then a plain re-run.

Every fault must be survived with results identical to an uninterrupted run, and every bad input must be refused
with a message that names the file or utterance. Faults are placed deterministically with
``ESPNET_PEFT_FAULT=<point>:<n>`` (``espnet_peft.fault_points``): the n-th time a process reaches the point it kills
itself, e.g. between writing ``checkpoint.pth`` completely and renaming it into place.

Every test here is a case of the fault suite (marker ``fault_case``, ``tests/helpers/fault_ledger.py``), as are the marked
cases in other files; ``python benchmarks/faults.py`` runs them all and writes the tally to
``benchmarks/results/faults.json``. A plain pytest run only asserts.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Callable, List

import pytest
import torch

from helpers.espnet_fixtures import PretrainedModel, finetune_cmd
from helpers.fault_ledger import LEDGER, record_bad_input, record_fault, refuse
from espnet_peft.fault_points import ENV

REPO = Path(__file__).resolve().parents[1]
TARGETS = ["linear_q", "linear_v", "linear_out", "w_1", "w_2"]
pytestmark = pytest.mark.fault_case


def run(module: str, args: List[str], fault: str = "", cwd: Path = REPO) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    env.pop(ENV, None)
    if fault:
        env[ENV] = fault
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, env=env, capture_output=True, text=True)


def same_tensors(a: Path, b: Path) -> bool:
    sa, sb = (torch.load(p, map_location="cpu", weights_only=False) for p in (a, b))
    sa, sb = (s["model"] if "reporter" in s else s for s in (sa, sb))
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def inject(what: str, fault: str, interrupted: Callable[[], subprocess.CompletedProcess],
           rerun: Callable[[], subprocess.CompletedProcess], identical: Callable[[], bool]) -> None:
    """Run with the fault (it must die by SIGKILL), re-run plainly, compare with the uninterrupted result."""
    killed = interrupted()
    survived = killed.returncode == -signal.SIGKILL
    again = rerun()
    survived = survived and again.returncode == 0
    same = survived and identical()
    record_fault(what, fault, killed.returncode == -signal.SIGKILL, survived, same)
    assert killed.returncode == -signal.SIGKILL, f"{fault} was not reached: {killed.stderr[-2000:]}"
    assert again.returncode == 0, again.stderr[-3000:]
    assert same, f"{what}: the re-run after {fault} differs from the uninterrupted run"


# ----------------------------------------------------------------------------------------------- training


def training_args(pretrained: PretrainedModel, out: Path) -> List[str]:
    # The default compute path (`auto`): it must pick the same path in the resumed run as in the uninterrupted one.
    conf = {"method": "ssvd_o", "target_modules": TARGETS, "budget": 150, "outer_share": 0.5}
    return finetune_cmd(pretrained, out, ["--use_adapter", "true", "--adapter", "espnet_peft", "--adapter_conf",
                                          json.dumps(conf), "--max_epoch", "3", "--optim_conf", "lr=0.01",
                                          "--scheduler", "none", "--seed", "1", "--resume", "true"])


@pytest.fixture(scope="module")
def uninterrupted(pretrained_asr: PretrainedModel, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("faults") / "uninterrupted"
    result = run("espnet_peft.bin.asr_train", training_args(pretrained_asr, out))
    assert result.returncode == 0, result.stderr[-3000:]
    return out


@pytest.mark.parametrize("fault", [
    "train_forward:5",            # mid-epoch 1
    "train_forward:7",            # mid-epoch 2 (4 batches an epoch), after a checkpoint exists
    "write:checkpoint.pth:1",     # checkpoint.pth complete on disk, not yet renamed into place
    "write:checkpoint.pth:2",     # the same at the end of epoch 2, over the epoch-1 checkpoint
])
def test_training_survives_a_kill(pretrained_asr: PretrainedModel, uninterrupted: Path, tmp_path: Path,
                                  fault: str) -> None:
    out = tmp_path / "exp"
    args = training_args(pretrained_asr, out)
    inject("training", fault,
           lambda: run("espnet_peft.bin.asr_train", args, fault),
           lambda: run("espnet_peft.bin.asr_train", args),
           lambda: same_tensors(out / "checkpoint.pth", uninterrupted / "checkpoint.pth")
           and same_tensors(out / "3epoch.pth", uninterrupted / "3epoch.pth"))


# ------------------------------------------------------------------------------------- merging, packaging


@pytest.mark.parametrize("tool,out_name", [("espnet_peft.bin.merge", "merged"),
                                           ("espnet_peft.bin.export_adapter", "adapter")])
def test_merging_and_packaging_survive_a_kill(uninterrupted: Path, tmp_path: Path, tool: str, out_name: str) -> None:
    reference = tmp_path / "reference" / out_name
    args = ["--task", "asr", "--exp_dir", str(uninterrupted), "--model_file", str(uninterrupted / "3epoch.pth")]
    assert run(tool, [*args, "--output_dir", str(reference)]).returncode == 0
    out = tmp_path / "faulted" / out_name
    first = out.parent / "first_attempt_leftover"

    def interrupted() -> subprocess.CompletedProcess:
        out.parent.mkdir(parents=True)
        first.write_text("an unrelated file in the same parent stays")
        return run(tool, [*args, "--output_dir", str(out)], f"rename_dir:{out_name}:1")

    def identical() -> bool:
        files = sorted(p.name for p in reference.iterdir())
        return (files == sorted(p.name for p in out.iterdir()) and first.is_file()
                and all(same_tensors(reference / f, out / f) if f.endswith(".pth")
                        else (reference / f).read_bytes() == (out / f).read_bytes()
                        for f in files if f not in ("config.yaml", "adapter_config.yaml")))

    inject(out_name, f"rename_dir:{out_name}:1", interrupted,
           lambda: run(tool, [*args, "--output_dir", str(out)]), identical)


# ------------------------------------------------------------------------------------------------ decoding


def test_decoding_survives_a_kill_between_sets(pretrained_s2t: PretrainedModel, tmp_path: Path) -> None:
    data = tmp_path / "data"
    for name in ("a", "b"):
        shutil.copytree(pretrained_s2t.valid_dir, data / name)
    model = ["--s2t_train_config", str(pretrained_s2t.config), "--s2t_model_file", str(pretrained_s2t.model_file)]

    def args(root: Path) -> List[str]:
        return [*model, "--set", str(data / "a"), str(root / "a"), "--set", str(data / "b"), str(root / "b")]

    assert run("espnet_peft.bin.s2t_batch_inference", args(tmp_path / "reference")).returncode == 0
    out = tmp_path / "faulted"
    inject("decoding", "decoded_set:1",
           lambda: run("espnet_peft.bin.s2t_batch_inference", args(out), "decoded_set:1"),
           lambda: run("espnet_peft.bin.s2t_batch_inference", args(out)),
           lambda: all((out / s / "text").read_text() == (tmp_path / "reference" / s / "text").read_text()
                       for s in ("a", "b")))


# ---------------------------------------------------------------------------------------------- bad inputs


def test_bad_data_is_refused_by_name(tmp_path: Path) -> None:
    from espnet_peft.utils.kaldi_data import read_table, validate_and_filter

    table = tmp_path / "latin1" / "text"
    table.parent.mkdir()
    table.write_bytes(b"utt1 hello\nutt2 caf\xe9\n")
    refuse("non-UTF-8 transcript", lambda: read_table(table), f"{table}, line 2")
    duplicated = tmp_path / "dup" / "text"
    duplicated.parent.mkdir()
    duplicated.write_text("utt1 a\nutt1 b\n")
    refuse("duplicate utterance id", lambda: read_table(duplicated), "utt1")
    refuse("missing data dir", lambda: validate_and_filter(tmp_path / "nowhere", tmp_path / "out"),
           str(tmp_path / "nowhere"))


@pytest.mark.parametrize("conf,names", [
    ({"method": "lora", "target_modules": TARGETS, "overrides": {"w_1": {"rank": 2}}}, "w_1"),
    ({"method": "lora", "target_modules": TARGETS, "overrides": {"linear_z": {"r": 2}}}, "linear_z"),
    ({"method": "ssvd_o", "target_modules": TARGETS, "budget": 40, "outer_share": "0.5"}, "outer_share"),
    ({"method": "lora", "target_modules": 3}, "target_modules"),
    ({"method": "lora", "target_modules": TARGETS, "total_budget": 500, "r": 4}, "total_budget=500 and {'r': 4}"),
    ({"method": "ssvd", "target_modules": TARGETS, "rotation_ratio": 0.4, "preset": "espnet_pr6425",
      "rotation_map": "cayley"}, "rotation_map"),
    ({"method": "lora", "target_modules": TARGETS, "alpha": 0}, "alpha must be > 0"),
    ({"method": "dora", "target_modules": TARGETS, "alpha": -16}, "alpha must be > 0"),
    ({"method": "ssvd_o", "target_modules": TARGETS, "k_inner": 0, "k_outer": 0}, "k_inner = k_outer = 0"),
])
def test_bad_adapter_configs_are_refused_by_name(conf: dict, names: str) -> None:
    sys.path.insert(0, str(Path(__file__).parent))
    from helpers.adapter_models import build_model
    from espnet_peft.injection import inject_adapters

    refuse(f"adapter_conf {conf}", lambda: inject_adapters(build_model(), conf), names)


def test_bad_checkpoints_are_refused_by_name(pretrained_asr: PretrainedModel, uninterrupted: Path,
                                             tmp_path: Path) -> None:
    from espnet_peft.export import task_class

    truncated = tmp_path / "truncated.pth"
    data = (uninterrupted / "3epoch.pth").read_bytes()
    truncated.write_bytes(data[: len(data) // 3])
    refuse("truncated checkpoint",
           lambda: task_class("asr").build_model_from_file(uninterrupted / "config.yaml", truncated),
           str(truncated))
    if not json.loads((uninterrupted / "base_fingerprint.json").read_text())["init_param"]:
        pytest.fail("the run recorded no init_param")
    changed = tmp_path / "changed_base.pth"
    state = torch.load(pretrained_asr.model_file, map_location="cpu")
    state["encoder.encoders.0.feed_forward.w_1.weight"] += 0.05
    torch.save(state, changed)
    import yaml

    config = yaml.safe_load((uninterrupted / "config.yaml").read_text())
    config["init_param"] = [str(changed)]
    (tmp_path / "changed.yaml").write_text(yaml.safe_dump(config))
    adapter_only = tmp_path / "adapter_only.pth"
    full = torch.load(uninterrupted / "3epoch.pth", map_location="cpu")
    torch.save({k: v for k, v in full.items() if "lora" in k or "svd" in k or "generator" in k or "sigma" in k
                or "adapter_initialised" in k}, adapter_only)
    shutil.copy(uninterrupted / "base_fingerprint.json", tmp_path / "base_fingerprint.json")
    refuse("adapter-only checkpoint on another base",
           lambda: task_class("asr").build_model_from_file(tmp_path / "changed.yaml", adapter_only),
           "encoders.0.feed_forward.w_1.weight")


def test_a_command_for_the_wrong_task_is_refused_by_name(uninterrupted: Path, tmp_path: Path) -> None:
    from espnet_peft.bin.merge import main as merge

    refuse("--task s2t on an ASR experiment",
           lambda: merge(["--task", "s2t", "--exp_dir", str(uninterrupted), "--output_dir", str(tmp_path / "m")]),
           "run with --task asr")


def test_an_adapter_only_resume_without_its_base_is_refused_by_name(pretrained_asr: PretrainedModel,
                                                                    tmp_path: Path) -> None:
    out = tmp_path / "exp"
    args = [*training_args(pretrained_asr, out), "--save_strategy", "adapter_only", "--max_epoch", "1"]
    assert run("espnet_peft.bin.asr_train", args).returncode == 0
    without_base = [*args[:-2], "--max_epoch", "2", "--init_param"]

    def resume() -> None:
        result = run("espnet_peft.bin.asr_train", without_base)
        if result.returncode != 0:
            raise RuntimeError(result.stderr[-2000:])

    refuse("adapter-only resume without --init_param", resume, f"Pass --init_param {pretrained_asr.model_file}")


def test_unusable_utterances_are_skipped_by_name_in_analysis(pretrained_asr: PretrainedModel, tmp_path: Path) -> None:
    import numpy as np
    import soundfile

    from espnet_peft.analysis.utterances import read_utterances
    from espnet_peft.utils.kaldi_data import read_table, write_table

    data = tmp_path / "data"
    shutil.copytree(pretrained_asr.valid_dir, data)
    wavs, text = read_table(data / "wav.scp"), read_table(data / "text")
    first = sorted(wavs)[0]
    corrupt, truncated, empty = tmp_path / "corrupt.wav", tmp_path / "truncated.wav", tmp_path / "empty.wav"
    corrupt.write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt garbage")
    payload = Path(wavs[first]).read_bytes()
    truncated.write_bytes(payload[: len(payload) // 2])
    soundfile.write(empty, np.zeros(0, dtype=np.int16), 16000)
    wavs.update({"x_corrupt": str(corrupt), "x_truncated": str(truncated), "x_zero_samples": str(empty),
                 "x_no_words": wavs[first]})
    text.update({k: text[first] for k in ("x_corrupt", "x_truncated", "x_zero_samples")})
    text["x_no_words"] = ""
    write_table(data / "wav.scp", wavs)
    write_table(data / "text", text)
    for key, reason in (("x_corrupt", "unreadable_audio"), ("x_truncated", "truncated_audio"),
                        ("x_zero_samples", "empty_audio"), ("x_no_words", "empty_text")):
        def analysed(key: str = key, reason: str = reason) -> None:
            skipped: dict = {}
            read_utterances(str(data), skipped=skipped)
            if key in skipped:
                raise ValueError(f"skipped {key}: {skipped[key][0]} ({skipped[key][1]})")

        refuse(f"analysis input {key}", analysed, f"skipped {key}: ")
        assert reason in LEDGER["bad_inputs"][-1]["message"]


# ------------------------------------------------------------------------------------------ adapter packages


@pytest.fixture(scope="module")
def package(uninterrupted: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from espnet_peft.export import export_adapter

    return export_adapter("asr", uninterrupted / "config.yaml", uninterrupted / "3epoch.pth",
                          tmp_path_factory.mktemp("package") / "adapter")


def _copy_with(package: Path, tmp_path: Path, name: str, edit: Callable[[bytes], bytes]) -> Path:
    copy = tmp_path / f"edited_{name}"
    shutil.copytree(package, copy)
    (copy / name).write_bytes(edit((copy / name).read_bytes()))
    return copy


def test_edited_or_cut_short_package_files_are_refused_by_name(pretrained_asr: PretrainedModel, package: Path,
                                                              tmp_path: Path) -> None:
    from espnet_peft.bin.apply_adapter import main as apply_adapter

    def apply(pkg: Path) -> Callable[[], None]:
        return lambda: apply_adapter(["--task", "asr", "--base_config", str(pretrained_asr.config), "--base_model_file",
                                      str(pretrained_asr.model_file), "--adapter_dir", str(pkg), "--output_dir",
                                      str(tmp_path / "applied"), "--merge"])

    apply(package)()  # the package as exported applies
    for what, name, edit in (
        ("package adapter_config.yaml edited (budget)", "adapter_config.yaml",
         lambda b: b.replace(b"budget: 150", b"budget: 300")),
        ("package adapter_model.pth cut short", "adapter_model.pth", lambda b: b[: len(b) // 2]),
        ("package base_fingerprint.json cut short", "base_fingerprint.json", lambda b: b[: len(b) // 2]),
    ):
        edited = _copy_with(package, tmp_path, name, edit)
        assert (edited / name).read_bytes() != (package / name).read_bytes()
        refuse(what, apply(edited), str(edited / name))
    unsummed = tmp_path / "no_sums"
    shutil.copytree(package, unsummed)
    (unsummed / "SHA256SUMS").unlink()
    refuse("package without SHA256SUMS", apply(unsummed), "missing ['SHA256SUMS']")


def test_a_stage_11_rerun_redoes_an_edited_package(uninterrupted: Path, tmp_path: Path) -> None:
    exp = tmp_path / "exp"
    shutil.copytree(uninterrupted, exp)
    args = ["--task", "asr", "--model_name", "3epoch.pth", str(exp)]
    assert run("espnet_peft.bin.package_experiments", args).returncode == 0
    config = exp / "adapter" / "adapter_config.yaml"
    exported = config.read_text()
    config.write_text(exported.replace("budget: 150", "budget: 300"))
    again = run("espnet_peft.bin.package_experiments", args)
    assert again.returncode == 0, again.stderr[-2000:]
    record_bad_input("exp/*/adapter/adapter_config.yaml edited, stage 11 re-run", config.read_text() == exported,
                     str(config) in again.stderr,
                     next((line for line in again.stderr.splitlines() if str(config) in line), ""))
    assert config.read_text() == exported, "the edited package file must be rewritten"
    assert str(config) in again.stderr


def test_merge_of_another_methods_checkpoint_and_unparsable_configs_are_refused_by_name(uninterrupted: Path,
                                                                                      tmp_path: Path) -> None:
    from espnet_peft.bin.export_adapter import main as export_adapter
    from espnet_peft.bin.merge import main as merge

    state = torch.load(uninterrupted / "3epoch.pth", map_location="cpu")
    lora = {}
    for key, value in state.items():
        module, _, name = key.rpartition(".")
        if name == "sigma_delta":  # an SSVD-O layer becomes a LoRA layer of rank 2
            out_features, in_features = state[f"{module}.weight"].shape
            lora.update({f"{module}.lora_A": torch.zeros(2, in_features),
                         f"{module}.lora_B": torch.zeros(out_features, 2),
                         f"{module}.adapter_initialised": torch.tensor(True)})
        elif name not in ("inner_generator", "outer_generator", "svd_s", "svd_u", "svd_vh", "adapter_initialised"):
            lora[key] = value
    other = tmp_path / "lora.pth"
    torch.save(lora, other)
    refuse("merge of a LoRA checkpoint with an SSVD-O config",
           lambda: merge(["--task", "asr", "--exp_dir", str(uninterrupted), "--model_file", str(other),
                          "--output_dir", str(tmp_path / "merged")]),
           "holds lora adapters, but")
    cut = tmp_path / "exp"
    shutil.copytree(uninterrupted, cut)
    text = (cut / "config.yaml").read_text()
    (cut / "config.yaml").write_text(text[: len(text) // 2] + "\n  - [unclosed")
    refuse("export_adapter with a cut-short config.yaml",
           lambda: export_adapter(["--task", "asr", "--exp_dir", str(cut), "--model_file", str(cut / "3epoch.pth"),
                                   "--output_dir", str(tmp_path / "pkg")]),
           str(cut / "config.yaml"))


# ------------------------------------------------------------------------------------------ smaller cases


def test_a_punctuation_only_transcript_is_dropped_at_data_validation_by_name(tmp_path: Path) -> None:
    import numpy as np
    import soundfile

    from espnet_peft.utils.kaldi_data import validate_and_filter

    src = tmp_path / "src"
    src.mkdir()
    for utt in ("spk1-a", "spk1-b"):
        soundfile.write(src / f"{utt}.wav", 0.1 * np.sin(np.arange(16000) / 5.0), 16000, subtype="PCM_16")
    (src / "wav.scp").write_text("".join(f"{u} {src / u}.wav\n" for u in ("spk1-a", "spk1-b")))
    (src / "text").write_text("spk1-a hello there\nspk1-b ... !\n")
    (src / "utt2spk").write_text("spk1-a spk1\nspk1-b spk1\n")
    filtered = validate_and_filter(src, tmp_path / "dst")
    reason = filtered.dropped.get("spk1-b")
    record_bad_input("punctuation-only transcript at data validation (stage 3)", reason is not None,
                     reason is not None, f"dropped spk1-b: {reason}")
    assert reason is not None and reason[0] == "empty_text" and "'... !'" in reason[1]
    assert (tmp_path / "dst" / "text").read_text() == "spk1-a hello there\n"


def test_analyze_with_no_utterances_names_the_flag(tmp_path: Path) -> None:
    def analyze() -> None:
        result = run("espnet_peft.bin.analyze", ["--model_a", "nowhere", "--data", str(tmp_path), "--max_utts", "0",
                                                 "--out", str(tmp_path / "out")])
        if result.returncode != 0:
            raise RuntimeError(result.stderr)

    refuse("analyze --max_utts 0", analyze, "--max_utts must be at least 1, got 0")


def test_unmatched_target_modules_are_refused_when_the_config_is_made(pretrained_asr: PretrainedModel,
                                                                      tmp_path: Path) -> None:
    from espnet_peft.bin.make_finetune_config import main as make_finetune_config

    base = tmp_path / "source" / "config.yaml"
    base.parent.mkdir()
    shutil.copy(pretrained_asr.config, base)
    peft = tmp_path / "peft"
    peft.mkdir()
    (tmp_path / "finetune.yaml").write_text("max_epoch: 1\n")
    (peft / "lora.yaml").write_text("adapter_conf:\n  method: lora\n  target_modules: [linear_q, linear_v]\n")
    (peft / "dora.yaml").write_text("adapter_conf:\n  method: dora\n  target_modules: [query, value]\n")

    def make(method: str) -> None:
        make_finetune_config(["--base", str(base), "--overrides", str(tmp_path / "finetune.yaml"), "--method", method,
                              "--peft_conf_dir", str(peft), "--budget", "2000",
                              "--out", str(tmp_path / f"{method}.yaml")])

    make("lora")
    assert (tmp_path / "lora.yaml").is_file() and (base.parent / "linear_modules.json").is_file()
    refuse("target_modules that match no module of the base, at make_finetune_config", lambda: make("dora"),
           "target_modules ['query', 'value']")
    assert not (tmp_path / "dora.yaml").exists()

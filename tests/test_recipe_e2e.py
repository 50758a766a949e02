"""The embedded default recipe, stages 1 to 13, in a reduced configuration (tiny model, few utterances).

It runs the real ``egs2/synthetic/peft1/run.sh`` (espeak-ng + sox corpus, ESPnet training through
``espnet2.bin.launch`` and ``run.pl``, decoding, sclite + jiwer scoring, report), in a copy of ``egs2/``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Optional

import pytest

from helpers.fault_ledger import record_fault
from helpers.recipe_runs import copy_recipe, recipe_env, run_quick
from helpers.slurm_cluster import SlurmCluster

METHODS = ("lora", "ssvd_o", "full")
DOMAINS = ("child", "accent")
SWEEP_LABEL = "ssvd_o outer_share=1"  # run.sh --quick sweeps ssvd_o:outer_share=1 beside the default 0.5

@pytest.fixture(scope="module")
def recipe(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_recipe(tmp_path_factory.mktemp("egs"))


def recipe_command(*options: str) -> list:
    return ["./run.sh", "--quick", "--python", sys.executable, "--nj", "1", "--methods", " ".join(METHODS), *options]


def run_recipe(recipe_dir: Path, *options: str, base_env: Optional[dict] = None) -> subprocess.CompletedProcess:
    return run_quick(recipe_dir, ["--methods", " ".join(METHODS), *options], base_env)


#: the one experiment the re-run tests redo; options that make a stage touch only it
ONE_EXPERIMENT = ("--methods", "lora", "--target_domains", "child")


def copy_without_one_experiment(finished: Path, tmp_path: Path) -> tuple:
    """A copy of the finished recipe dir without ``exp/child_lora_s0``: ``(recipe dir, that experiment's dir)``."""
    copy = tmp_path / "egs2"
    shutil.copytree(finished.parents[1], copy, symlinks=True)
    recipe_dir = copy / "synthetic" / "peft1"
    exp = recipe_dir / "exp" / "child_lora_s0"
    shutil.rmtree(exp)
    return recipe_dir, exp


@pytest.fixture(scope="module")
def finished(recipe: Path) -> Path:
    run_recipe(recipe, "--stage", "1", "--stop_stage", "13")
    return recipe


def test_every_stage_leaves_its_outputs(finished: Path) -> None:
    for domain in DOMAINS:
        for split in ("train", "dev", "test"):
            assert (finished / "data" / f"{domain}_{split}" / "wav.scp").is_file()
            for name in ("wav.scp", "text", "text.prev", "text.ctc", "utt2spk", "speech_shape"):
                assert (finished / "dump" / "raw" / f"{domain}_{split}" / name).is_file(), name
    assert (finished / "data" / "token_list" / "bpe.model").is_file()
    assert (finished / "exp" / "source" / "model.pth").exists()
    # --quick trains the source model in two parts, as the shipped one was: the model is the second part's
    assert (finished / "exp" / "source" / "continued" / "made_from.json").is_file()
    assert os.readlink(finished / "exp" / "source" / "model.pth") == "continued/valid.acc.ave.pth"
    assert "specaug: specaug" in (finished / "exp" / "source" / "continued" / "config.yaml").read_text()
    for domain in DOMAINS:
        for method in METHODS:
            name = f"{domain}_{method}_s0"
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
    assert (finished / "exp" / "report" / "sweep_ssvd_o_outer_share.png").stat().st_size > 1000


def test_report_has_one_row_per_method_and_domain(finished: Path) -> None:
    results = json.loads((finished / "exp" / "report" / "results.json").read_text())
    for domain in DOMAINS:
        labels = [row["label"] for row in results["domains"][domain]["rows"]]
        assert sorted(labels) == sorted(["zero_shot", *METHODS, SWEEP_LABEL])
        compared = {(c["method"], c["reference"]) for c in results["domains"][domain]["comparisons"]}
        assert compared == {("lora", "full"), ("ssvd_o", "full"), ("ssvd_o", "lora")}
        for row in results["domains"][domain]["rows"]:
            assert row["target_wer"]["low"] <= row["target_wer"]["point"] <= row["target_wer"]["high"]
    text = (finished / "RESULTS.md").read_text()
    for domain in DOMAINS:
        assert domain in text
    budgets = {row["label"]: row["trainable_params"] for row in results["domains"]["child"]["rows"]}
    assert abs(budgets["ssvd_o"] - budgets["lora"]) <= 0.05 * 8000 + abs(budgets["lora"] - 8000)


def test_sclite_and_jiwer_agree(finished: Path) -> None:
    checks = sorted(finished.glob("exp/**/score_*/jiwer_crosscheck.json"))
    assert len(checks) >= 2 * (3 + 2 * len(METHODS) * len(DOMAINS))  # WER and CER of every scored set
    for path in checks:
        check = json.loads(path.read_text())
        assert check["ref_tokens"]["sclite"] == check["ref_tokens"]["jiwer"], path
        # Equal, or every difference explained by sclite's weighted alignment (listed utterance by utterance).
        assert check["equal"] or not check.get("unexplained"), path


def test_analysis_stage_writes_drift_maps_into_the_report(finished: Path) -> None:
    for domain in DOMAINS:
        for method in METHODS:
            out = finished / "exp" / "analysis" / domain / f"{method}_s0"
            results = json.loads((out / "analysis.json").read_text())
            layers = len(results["models"]["A"]["layers"])  # the source model's encoder blocks
            assert len(results["cka"]["drift"]) == len(results["lens"]["B"]["cer"]) == layers > 0
            assert all(0.0 <= v <= 1.0 + 1e-9 for v in results["cka"]["drift"])
            assert len(results["contribution"]["B"]["update_ratio"]) == layers
            assert ("B" in results.get("energy", {})) == (method != "full")  # full fine-tuning has no adapters
            for figure in ("drift", "cka_AB", "lens", "contribution", "branches"):
                assert (out / f"{figure}.png").stat().st_size > 1000, (out, figure)
            assert (out / "summary.md").is_file()
        assert (finished / "exp" / "report" / f"analysis_drift_{domain}.png").stat().st_size > 1000
        # every method against every other and the source, per domain (the sweep point is a row of its own)
        models = json.loads((finished / "exp" / "analysis" / domain / "models" / "models.json").read_text())
        assert models["labels"][0] == "source" and set(models["labels"][1:]) >= {f"{m}_s0" for m in METHODS}
        assert (finished / "exp" / "analysis" / domain / "models" / "models_map.png").stat().st_size > 1000
    text = (finished / "RESULTS.md").read_text()
    assert "## Analysis" in text and "(exp/report/analysis_drift_child.png)" in text
    assert "exp/analysis/child/lora_s0/summary.md" in text and "exp/analysis/child/models/summary.md" in text


def snapshot(recipe_dir: Path) -> dict:
    """Content of every output, except logs and the report's generation date."""
    state = {}
    for path in sorted(p for top in ("data", "dump", "exp") for p in (recipe_dir / top).rglob("*") if p.is_file()):
        relative = str(path.relative_to(recipe_dir))
        if path.suffix == ".log" or relative.startswith("exp/report/") or "/logdir/" in relative:
            continue
        state[relative] = hashlib.sha256(path.read_bytes()).hexdigest()
    results = json.loads((recipe_dir / "exp" / "report" / "results.json").read_text())
    results.pop("environment")
    state["results.json without environment"] = results
    return state


def test_rerunning_finished_stages_changes_nothing(finished: Path) -> None:
    before = snapshot(finished)
    result = run_recipe(finished, "--stage", "1", "--stop_stage", "13")
    assert "skip exp/source: already trained" in result.stderr
    assert "skip exp/source/continued: already trained" in result.stderr
    # stage 8 decodes every experiment in one process: its log says what the decode fingerprints let it skip
    assert "skip decoding exp/child_lora_s0/decode/child_test" in (finished / "exp" / "decode_logdir" /
                                                                    "decode.1.log").read_text()
    assert "skip exp/analysis/child/lora_s0: done" in result.stderr
    after = snapshot(finished)
    changed = [k for k in before.keys() | after.keys() if before.get(k) != after.get(k)]
    assert not changed, f"re-running changed {changed[:10]}"


def test_training_and_decoding_through_slurm_match_the_local_run(finished: Path, slurm_cluster: SlurmCluster,
                                                                  tmp_path: Path) -> None:
    """Stages 7-8 for one experiment again, with every job submitted by slurm.pl to a real one-node Slurm."""
    recipe_dir, _ = copy_without_one_experiment(finished, tmp_path)
    env = {**slurm_cluster.env, "cmd_backend": "slurm"}
    run_recipe(recipe_dir, "--stage", "7", "--stop_stage", "8", *ONE_EXPERIMENT, base_env=env)
    train_log = (recipe_dir / "exp" / "child_lora_s0" / "train.log").read_text()
    decode_log = (recipe_dir / "exp" / "decode_logdir" / "decode.1.log").read_text()
    assert "sbatch" in train_log and "sbatch" in decode_log, "the jobs did not go through sbatch"
    for test_set in ("child_test", "source_test"):
        local = (finished / "exp" / "child_lora_s0" / "decode" / test_set / "text").read_text()
        assert (recipe_dir / "exp" / "child_lora_s0" / "decode" / test_set / "text").read_text() == local


def test_stage7_runs_two_trainings_at_once_through_slurm_with_the_serial_results(finished: Path,
                                                                                 slurm_cluster: SlurmCluster,
                                                                                 tmp_path: Path) -> None:
    """``--train_jobs 2`` under slurm.pl: both LoRA trainings are in Slurm's queue as running jobs at the same time
    (``squeue``), and stage 8 then gives the hypotheses of the serial local run."""
    import time

    recipe_dir, _ = copy_without_one_experiment(finished, tmp_path)
    shutil.rmtree(recipe_dir / "exp" / "accent_lora_s0")
    env = recipe_env({**slurm_cluster.env, "cmd_backend": "slurm"})
    stage7 = recipe_command("--stage", "7", "--stop_stage", "7", "--methods", "lora", "--train_jobs", "2")  # run.sh: 2 too
    with open(tmp_path / "stage7.log", "w") as log:
        run = subprocess.Popen(stage7, cwd=recipe_dir, env=env, stdout=log, stderr=log)
    most_running, deadline = 0, time.time() + 900
    while run.poll() is None and time.time() < deadline:
        queue = slurm_cluster.run("squeue", "--noheader", "--states=RUNNING", "--format=%j").stdout.split()
        most_running = max(most_running, sum(name.endswith("_lora_s0") for name in queue))
        time.sleep(0.5)
    assert run.wait(timeout=60) == 0, (tmp_path / "stage7.log").read_text()[-3000:]
    assert most_running == 2, f"at most {most_running} training job(s) ran at once"
    run_recipe(recipe_dir, "--stage", "8", "--stop_stage", "8", "--methods", "lora")
    for experiment, target in (("child_lora_s0", "child_test"), ("accent_lora_s0", "accent_test")):
        for test_set in (target, "source_test"):
            local = finished / "exp" / experiment / "decode" / test_set / "text"
            assert (recipe_dir / "exp" / experiment / "decode" / test_set / "text").read_text() == local.read_text()


def test_no_decode_comes_from_an_interrupted_training(finished: Path, tmp_path: Path) -> None:
    """Stage 7 stopped after epoch 1 (what a kill there leaves: checkpoint.pth, no made_from.json), stage 8, stage 7 again,
    stage 8: the hypotheses are those of the uninterrupted run's final model, never of epoch 1."""
    from espnet_peft.recipe.provenance import file_sha256

    recipe_dir, exp = copy_without_one_experiment(finished, tmp_path)
    config = recipe_dir / "conf" / "quick" / "finetune.yaml"
    full_length = config.read_text()
    config.write_text(full_length.replace("max_epoch: 2", "max_epoch: 1"))
    run_recipe(recipe_dir, "--stage", "7", "--stop_stage", "7", *ONE_EXPERIMENT)
    (exp / "made_from.json").unlink()
    config.write_text(full_length)

    refused = subprocess.run(recipe_command("--stage", "8", "--stop_stage", "8", *ONE_EXPERIMENT), cwd=recipe_dir,
                             env=recipe_env(), capture_output=True, text=True)
    assert refused.returncode != 0
    assert "training has not finished for exp/child_lora_s0: run stage 7 first" in refused.stdout + refused.stderr
    assert not (exp / "decode").exists()

    run_recipe(recipe_dir, "--stage", "7", "--stop_stage", "8", *ONE_EXPERIMENT)
    for test_set in ("child_test", "source_test"):
        decoded = exp / "decode" / test_set
        info = json.loads((decoded / "decode_info.json").read_text())
        assert info["settings"]["model_sha256"] == file_sha256(exp / "valid.acc.best.pth")
        uninterrupted = finished / "exp" / "child_lora_s0" / "decode" / test_set / "text"
        assert (decoded / "text").read_text() == uninterrupted.read_text()


def _descendants(pid: int) -> set:
    """Every live process started (directly or not) by ``pid``."""
    children = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, set()).add(int(entry.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), ()):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def _alive(pid: int) -> bool:
    try:
        return "Z" not in (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False


def start_training_run(recipe_dir: Path, exp: Path, log_path: Path, env: dict) -> subprocess.Popen:
    """Stage 7 of ``ONE_EXPERIMENT`` in its own session, returned once its training command has started."""
    import signal
    import time

    stage7 = recipe_command("--stage", "7", "--stop_stage", "7", *ONE_EXPERIMENT)
    with open(log_path, "w") as log:
        run = subprocess.Popen(stage7, cwd=recipe_dir, env=env, stdout=log, stderr=log, start_new_session=True)
    deadline = time.time() + 300
    while not (exp / "train.log").is_file() or "s2t_train" not in (exp / "train.log").read_text():
        if run.poll() is not None or time.time() > deadline:
            if run.poll() is None:
                os.killpg(run.pid, signal.SIGKILL)
            raise AssertionError(f"the training did not start: {log_path.read_text()[-3000:]}")
        time.sleep(0.2)
    return run


def test_a_decode_is_refused_while_another_run_holds_its_experiment(finished: Path, tmp_path: Path) -> None:
    import fcntl

    copy = tmp_path / "egs2"
    shutil.copytree(finished.parents[1], copy, symlinks=True)
    recipe_dir = copy / "synthetic" / "peft1"
    hypotheses = recipe_dir / "exp" / "child_lora_s0" / "decode" / "child_test" / "text"
    before = hypotheses.stat().st_mtime_ns
    with open(recipe_dir / "exp" / "child_lora_s0" / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)  # as a training or decode of another run holds it
        stage8 = recipe_command("--stage", "8", "--stop_stage", "8", *ONE_EXPERIMENT)
        result = subprocess.run(stage8, cwd=recipe_dir, env=recipe_env(), capture_output=True, text=True)
    assert result.returncode != 0
    assert "exp/child_lora_s0 is in use by another run right now" in result.stderr
    assert "cannot decode it" in result.stderr
    assert hypotheses.stat().st_mtime_ns == before


def test_a_second_run_of_a_training_is_refused_and_a_killed_run_stops_its_jobs(finished: Path,
                                                                                 tmp_path: Path) -> None:
    import signal
    import time

    recipe_dir, exp = copy_without_one_experiment(finished, tmp_path)
    config = recipe_dir / "conf" / "quick" / "finetune.yaml"
    config.write_text(config.read_text().replace("max_epoch: 2", "max_epoch: 500"))  # long enough to be caught
    env = recipe_env()
    stage7 = recipe_command("--stage", "7", "--stop_stage", "7", *ONE_EXPERIMENT)
    first = start_training_run(recipe_dir, exp, tmp_path / "first.log", env)
    try:
        second = subprocess.run(stage7, cwd=recipe_dir, env=env, capture_output=True, text=True)
        assert second.returncode != 0
        assert "exp/child_lora_s0 is in use by another run right now" in second.stderr

        jobs = _descendants(first.pid)
        assert jobs, "the first run has no running jobs to stop"
        first.send_signal(signal.SIGTERM)  # run.sh's own pid only, as `kill <pid>` does
        first.wait(timeout=60)
        deadline = time.time() + 30
        while any(_alive(pid) for pid in jobs) and time.time() < deadline:
            time.sleep(0.5)
        assert not [pid for pid in jobs if _alive(pid)], "jobs of the killed run are still running"
        assert "interrupted: stopping this run's jobs" in (tmp_path / "first.log").read_text()
        assert not (exp / "made_from.json").exists()
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)


def test_a_finished_training_whose_settings_changed_is_refused_and_kept(finished: Path, tmp_path: Path) -> None:
    """Stage 5's second part and a stage-7 run, both finished, with a changed setting: refused, nothing retrained."""
    copy = tmp_path / "egs2"
    shutil.copytree(finished.parents[1], copy, symlinks=True)
    recipe_dir = copy / "synthetic" / "peft1"
    continued = recipe_dir / "exp" / "source" / "continued"
    trained = (continued / "train.yaml").read_text()
    continue_config = recipe_dir / "conf" / "quick" / "train_source_specaug.yaml"
    continue_config.write_text(continue_config.read_text().replace("num_iters_per_epoch: 2", "num_iters_per_epoch: 3"))
    refused = subprocess.run(recipe_command("--stage", "5", "--stop_stage", "5"), cwd=recipe_dir, env=recipe_env(),
                             capture_output=True, text=True)
    assert refused.returncode != 0
    assert (f"ERROR: {continued.relative_to(recipe_dir)} was trained with other settings" in refused.stderr)
    assert (continued / "train.yaml").read_text() == trained

    experiment = recipe_dir / "exp" / "child_lora_s0"
    trained = (experiment / "train.yaml").read_text()
    refused = subprocess.run(recipe_command("--stage", "7", "--stop_stage", "7", *ONE_EXPERIMENT, "--budget", "9000"),
                             cwd=recipe_dir, env=recipe_env(), capture_output=True, text=True)
    assert refused.returncode != 0
    assert "ERROR: exp/child_lora_s0 was trained with other settings" in refused.stderr
    assert (experiment / "train.yaml").read_text() == trained


@pytest.mark.fault_case
def test_a_run_killed_with_sigkill_stops_its_jobs_and_resumes_to_the_same_model(finished: Path,
                                                                                  tmp_path: Path) -> None:
    """``kill -9`` of run.sh cannot be trapped: its sentinel stops the jobs that carry the run's id, so a re-run finds
    the experiment free, resumes it, and ends with the uninterrupted run's model."""
    import signal
    import time

    import torch

    recipe_dir, exp = copy_without_one_experiment(finished, tmp_path)
    stage7 = recipe_command("--stage", "7", "--stop_stage", "7", *ONE_EXPERIMENT)
    first = start_training_run(recipe_dir, exp, tmp_path / "first.log", recipe_env())
    jobs: set = set()
    try:
        for pid in _descendants(first.pid):
            try:
                if b"ESPNET_PEFT_RUN_ID=" in (Path("/proc") / str(pid) / "environ").read_bytes():
                    jobs.add(pid)
            except OSError:
                continue
        first.send_signal(signal.SIGKILL)  # run.sh's own pid only, as `kill -9 <pid>` does
        first.wait(timeout=10)
        deadline = time.time() + 30
        while any(_alive(pid) for pid in jobs) and time.time() < deadline:
            time.sleep(0.5)
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
    stopped = bool(jobs) and not any(_alive(pid) for pid in jobs)
    again = subprocess.run(stage7, cwd=recipe_dir, env=recipe_env(), capture_output=True, text=True)
    best = sorted(p.name for p in (finished / "exp" / "child_lora_s0").glob("valid.*.best.pth"))[0]
    resumed = again.returncode == 0 and (exp / best).is_file()
    same = resumed and all(torch.equal(a, b) for a, b in zip(
        *(torch.load(d / best, map_location="cpu").values() for d in (finished / "exp" / "child_lora_s0", exp))))
    record_fault("recipe driver", "SIGKILL of run.sh in stage 7", True, stopped and resumed, same)
    assert jobs, "the run had no running jobs"
    assert stopped, "jobs of the SIGKILLed run are still running"
    assert resumed and "in use by another run" not in again.stderr, again.stderr[-3000:]
    assert same, "the resumed training differs from the uninterrupted one"

"""The Kaldi-style job launchers of the recipes: egs2/TEMPLATE/peft1/utils/{run,slurm}.pl.

run.pl runs locally.  slurm.pl and ``espnet2.bin.launch --cmd slurm.pl`` run against a real
one-node Slurm started on localhost by ``slurm_cluster`` (tests/helpers/slurm_cluster.py; needs root and
the Debian packages slurmctld slurmd slurm-client munge).  The multi-node path of launch.py
(``slurm.pl ... srun ...``) cannot run on one node; its command shape is checked with a fake
slurm.pl, and the real slurm.pl then runs that same command with --num_nodes 1.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from helpers.slurm_cluster import SlurmCluster

TEMPLATE = Path(__file__).resolve().parents[1] / "egs2" / "TEMPLATE" / "peft1"
RUN_PL = TEMPLATE / "utils" / "run.pl"
SLURM_PL = TEMPLATE / "utils" / "slurm.pl"
FOOTER = re.compile(r"^# Accounting: time=\d+ threads=(\d+)\n# Ended \(code (\d+)\) at .+$", re.M)


def run(cmd: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: float = 60):
    return subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)


def footer(log: Path) -> tuple[int, int]:
    """(threads, exit code) from a job log's footer."""
    m = FOOTER.search(log.read_text())
    assert m, f"no footer in {log}:\n{log.read_text()}"
    return int(m.group(1)), int(m.group(2))


def intervals(d: Path, n: int) -> list[tuple[float, float]]:
    return [(float((d / f"{i}.start").read_text()), float((d / f"{i}.end").read_text())) for i in range(1, n + 1)]


def max_concurrency(spans: list[tuple[float, float]]) -> int:
    return max(sum(s <= start < e for s, e in spans) for start, _ in spans)


TIMED_JOB = "date +%s.%N > t/JOB.start; sleep {}; date +%s.%N > t/JOB.end"


# ---------------------------------------------------------------- the files themselves


def test_launchers_compile_and_cmd_sh_selects_the_backend(tmp_path):
    for script in (RUN_PL, SLURM_PL):
        assert os.access(script, os.X_OK), script
        r = run(["perl", "-c", script], tmp_path)
        assert r.returncode == 0 and "syntax OK" in r.stderr, r.stderr
    cmd_sh = TEMPLATE / "cmd.sh"
    show = f'. {shlex.quote(str(cmd_sh))} && echo "$train_cmd|$cuda_cmd|$decode_cmd"'
    env = {k: v for k, v in os.environ.items() if k != "cmd_backend"}
    r = run(["bash", "-c", show], tmp_path, env=env)
    assert r.stdout == "utils/run.pl|utils/run.pl|utils/run.pl\n", r.stderr
    r = run(["bash", "-c", show], tmp_path, env=dict(env, cmd_backend="slurm"))
    assert r.stdout == "|".join(["utils/slurm.pl --config conf/slurm.conf"] * 3) + "\n", r.stderr
    r = run(["bash", "-c", show], tmp_path, env=dict(env, cmd_backend="sge"))
    assert r.returncode != 0 and "unknown cmd_backend 'sge'" in r.stderr
    if shutil.which("shellcheck"):  # optional (Debian package shellcheck)
        r = run(["shellcheck", cmd_sh], tmp_path)
        assert r.returncode == 0, r.stdout


# ---------------------------------------------------------------- run.pl


def test_run_pl_job_array_substitutes_job_in_log_and_command(tmp_path):
    r = run([RUN_PL, "JOB=1:3", "exp/log/echo.JOB.log", "bash", "-c", "echo job JOB of 3 > out.JOB.txt; echo hi JOB"],
            tmp_path)
    assert r.returncode == 0, r.stderr
    for i in (1, 2, 3):
        assert (tmp_path / f"out.{i}.txt").read_text() == f"job {i} of 3\n"
        lines = (tmp_path / f"exp/log/echo.{i}.log").read_text().splitlines()
        assert lines[0] == f'# bash -c "echo job {i} of 3 > out.{i}.txt; echo hi {i}"'
        assert lines[1].startswith("# Started at ")
        assert f"hi {i}" in lines
    assert footer(tmp_path / "exp/log/echo.2.log") == (1, 0)


def test_run_pl_quotes_like_kaldi(tmp_path):
    # words without whitespace are shell syntax ('|'), words with spaces are quoted
    r = run([RUN_PL, "log/pipe.log", "echo", "a  b", '"c"', "|", "tr", "a-z", "A-Z"], tmp_path)
    assert r.returncode == 0, r.stderr
    assert "A  B C\n" in (tmp_path / "log/pipe.log").read_text()


def test_run_pl_runs_jobs_in_parallel_up_to_max_jobs_run(tmp_path):
    (tmp_path / "t").mkdir()
    t0 = time.monotonic()
    r = run([RUN_PL, "--max_jobs_run", "3", "JOB=1:3", "log/p.JOB.log", "bash", "-c", TIMED_JOB.format(1)], tmp_path)
    assert r.returncode == 0, r.stderr
    assert max_concurrency(intervals(tmp_path / "t", 3)) == 3
    assert time.monotonic() - t0 < 2.5

    r = run([RUN_PL, "--max-jobs-run=1", "JOB=1:3", "log/s.JOB.log", "bash", "-c", TIMED_JOB.format(0.2)], tmp_path)
    assert r.returncode == 0, r.stderr
    assert max_concurrency(intervals(tmp_path / "t", 3)) == 1


def test_run_pl_default_parallelism_is_the_cpu_count(tmp_path):
    (tmp_path / "t").mkdir()
    ncpu = len(os.sched_getaffinity(0))
    env = dict(os.environ, OMP_NUM_THREADS="1")  # nproc would say 1: run.pl must ignore it
    r = run([RUN_PL, f"JOB=1:{ncpu + 1}", "log/d.JOB.log", "bash", "-c", TIMED_JOB.format(0.6)], tmp_path, env=env)
    assert r.returncode == 0, r.stderr
    assert max_concurrency(intervals(tmp_path / "t", ncpu + 1)) == ncpu


def test_run_pl_failing_job_fails_and_names_its_log(tmp_path):
    r = run([RUN_PL, "JOB=1:3", "exp/log/f.JOB.log", "bash", "-c", "echo JOB; [ JOB -ne 2 ] || exit 3"], tmp_path)
    assert r.returncode == 1
    assert "run.pl: 1 / 3 failed, log is in exp/log/f.2.log" in r.stderr
    assert footer(tmp_path / "exp/log/f.2.log") == (1, 3)
    assert footer(tmp_path / "exp/log/f.1.log") == (1, 0)

    r = run([RUN_PL, "exp/log/single.log", "false"], tmp_path)
    assert r.returncode == 1
    assert "run.pl: job failed, log is in exp/log/single.log" in r.stderr


def test_run_pl_accepts_the_scheduler_options(tmp_path):
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="3")
    r = run([RUN_PL, "--config", "conf/missing.conf", "--gpu", "1", "--mem=2G", "--num_threads", "4",
             "--name", "x", "--time", "1:00:00", "JOB=2:2", "log/o.JOB.log",
             "bash", "-c", "echo cuda=$CUDA_VISIBLE_DEVICES"], tmp_path, env=env)
    assert r.returncode == 0, r.stderr
    log = tmp_path / "log/o.2.log"
    assert "cuda=3" in log.read_text()  # left as it is
    assert footer(log) == (4, 0)

    r = run([RUN_PL, "--num_nodes", "2", "log/n.log", "true"], tmp_path)
    assert r.returncode != 0 and "use slurm.pl" in r.stderr
    r = run([RUN_PL, "JOB=1:2", "log/same.log", "true"], tmp_path)
    assert r.returncode != 0 and "does not contain JOB" in r.stderr


# ---------------------------------------------------------------- slurm.pl on a real Slurm


@pytest.fixture
def recipe(tmp_path) -> Path:
    """A recipe-like working directory with the template's conf/slurm.conf."""
    (tmp_path / "conf").mkdir()
    shutil.copy(TEMPLATE / "conf" / "slurm.conf", tmp_path / "conf" / "slurm.conf")
    return tmp_path


def sbatch_line(log: Path) -> str:
    lines = log.read_text().splitlines()
    i = next(i for i, line in enumerate(lines) if line.startswith("# Slurm job "))
    return lines[i + 1]


def test_slurm_pl_job_array_runs_and_logs(slurm_cluster: SlurmCluster, recipe: Path):
    r = run([SLURM_PL, "--config", "conf/slurm.conf", "JOB=1:2", "exp/log/arr.JOB.log",
             "bash", "-c", "echo task=$SLURM_ARRAY_TASK_ID job=JOB > out.JOB.txt; echo in-log JOB"],
            recipe, env=slurm_cluster.env)
    assert r.returncode == 0, r.stderr + slurm_cluster.logs()
    for i in (1, 2):
        assert (recipe / f"out.{i}.txt").read_text() == f"task={i} job={i}\n"
        log = recipe / f"exp/log/arr.{i}.log"
        text = log.read_text()
        assert text.startswith(f'# bash -c "echo task=$SLURM_ARRAY_TASK_ID job={i} > out.{i}.txt; echo in-log {i}"\n'
                               "# Started at ")
        assert f"\nin-log {i}\n" in text
        assert re.search(rf"^# Slurm job \d+ \(array \d+_{i}\) on ", text, re.M)
        assert footer(log) == (1, 0)
    sbatch = shlex.split(sbatch_line(recipe / "exp/log/arr.1.log")[2:])
    assert sbatch[0] == "sbatch" and "--array=1-2" in sbatch
    assert "--gres" not in " ".join(sbatch)  # default gpu=0 adds nothing
    assert (recipe / "exp/q/arr.sh").exists() and not list((recipe / "exp/q").glob("done.*"))


def test_slurm_pl_failing_job_fails_and_names_its_log(slurm_cluster: SlurmCluster, recipe: Path):
    r = run([SLURM_PL, "--config", "conf/slurm.conf", "JOB=1:2", "exp/log/f.JOB.log",
             "bash", "-c", "echo JOB; [ JOB -ne 2 ] || exit 3"], recipe, env=slurm_cluster.env)
    assert r.returncode == 1
    assert "slurm.pl: 1 / 2 failed, log is in exp/log/f.2.log" in r.stderr
    assert footer(recipe / "exp/log/f.2.log") == (1, 3)
    assert footer(recipe / "exp/log/f.1.log") == (1, 0)


def test_slurm_pl_maps_options_to_sbatch_flags(slurm_cluster: SlurmCluster, recipe: Path):
    (recipe / "t").mkdir()
    r = run([SLURM_PL, "--config", "conf/slurm.conf", "--mem", "100M", "--num_threads", "2", "--name=peft-test",
             "--time", "5", "--max_jobs_run", "1", "JOB=1:2", "exp/log/opt.JOB.log",
             # (no "JOB" in $SLURM_JOB_NAME: launchers replace JOB anywhere, as Kaldi's do)
             "bash", "-c", "echo cpus=$SLURM_CPUS_PER_TASK mem=$SLURM_MEM_PER_CPU; printenv | grep SLURM_J[O]B_NAME; "
             + TIMED_JOB.format(0.3)], recipe, env=slurm_cluster.env)
    assert r.returncode == 0, r.stderr + slurm_cluster.logs()
    log = recipe / "exp/log/opt.1.log"
    sbatch = sbatch_line(log)
    for flags in ("--mem-per-cpu 100M", "--cpus-per-task 2", "--job-name peft-test", "--time 5", "--array=1-2%1"):
        assert flags in sbatch, sbatch
    assert "cpus=2 mem=100\nSLURM_JOB_NAME=peft-test\n" in log.read_text()  # what Slurm actually granted
    assert footer(log) == (2, 0)
    assert max_concurrency(intervals(recipe / "t", 2)) == 1  # %1: one task at a time

    r = run([SLURM_PL, "--config", "conf/slurm.conf", "--frobnicate", "1", "log/x.log", "true"], recipe,
            env=slurm_cluster.env)
    assert r.returncode != 0 and "option --frobnicate 1 is not described in conf/slurm.conf" in r.stderr


def test_slurm_pl_notices_a_job_that_died_without_exit_status(slurm_cluster: SlurmCluster, recipe: Path):
    # SIGKILL the job script itself: no footer, no exit status file; Slurm marks the job FAILED
    env = dict(slurm_cluster.env, SLURM_PL_SQUEUE_INTERVAL="1", SLURM_PL_GRACE="1")
    r = run([SLURM_PL, "exp/log/k.log", "bash", "-c", "kill -9 $PPID"], recipe, env=env)
    assert r.returncode == 1
    assert "slurm.pl: job failed, log is in exp/log/k.log" in r.stderr
    text = (recipe / "exp/log/k.log").read_text()
    assert re.search(r"ended in state FAILED without reporting an exit status\n# Ended \(code 1\)", text), text


# ---------------------------------------------------------------- espnet2.bin.launch


PRINT_ARGS = ("import os, sys; "
              "print('ARGS', sys.argv[1:], 'JOB', os.environ.get('SLURM_JOB_ID'), 'STEP', os.environ.get('SLURM_STEP_ID'))")


def launch(args: list[str], cwd: Path, env: dict[str, str]):
    return run([sys.executable, "-m", "espnet2.bin.launch", *args], cwd, env=env, timeout=120)


def test_launch_single_node_through_slurm(slurm_cluster: SlurmCluster, recipe: Path):
    cmd = f"{SLURM_PL} --config conf/slurm.conf --name launch-test"
    r = launch(["--cmd", cmd, "--log", "exp/train/train.log", "--ngpu", "0", "--num_nodes", "1",
                "--", sys.executable, "-c", PRINT_ARGS], recipe, slurm_cluster.env)
    assert r.returncode == 0, r.stderr + slurm_cluster.logs()
    log = recipe / "exp/train/train.log"
    text = log.read_text()
    # launch.py: `<cmd> --gpu 0 LOG python ... --ngpu 0 --multiprocessing_distributed True`, run by sbatch
    assert "ARGS ['--ngpu', '0', '--multiprocessing_distributed', 'True'] JOB " in text
    assert "--job-name launch-test" in sbatch_line(log) and "--nodes" not in sbatch_line(log)
    assert footer(log) == (1, 0)

    r = launch(["--cmd", cmd, "--log", "exp/fail/train.log", "--ngpu", "0", "--",
                sys.executable, "-c", "import sys; print('boom'); sys.exit(2)"], recipe, slurm_cluster.env)
    assert r.returncode != 0
    assert "The last 1000 lines of exp/fail/train.log" in r.stderr and "boom" in r.stderr


FAKE_SLURM_PL = """#!/bin/sh
exec {python} -c 'import json, sys; json.dump(sys.argv[1:], open("argv.json", "w"))' "$@"
"""


def test_launch_multi_node_command_shape_and_its_srun_step(slurm_cluster: SlurmCluster, recipe: Path):
    fakebin = recipe / "fakebin"
    fakebin.mkdir()
    (fakebin / "slurm.pl").write_text(FAKE_SLURM_PL.format(python=sys.executable))
    (fakebin / "slurm.pl").chmod(0o755)
    env = dict(slurm_cluster.env, PATH=f"{fakebin}{os.pathsep}{slurm_cluster.env['PATH']}")
    r = launch(["--cmd", "slurm.pl --config conf/slurm.conf", "--log", "exp/mn/train.log", "--ngpu", "0",
                "--num_nodes", "2", "--", sys.executable, "-c", PRINT_ARGS], recipe, env)
    assert r.returncode == 0, r.stderr
    argv = json.loads((recipe / "argv.json").read_text())
    init = argv[-3]
    assert init.startswith("file://") and ".dist_init_" in init
    assert argv == [
        "--config", "conf/slurm.conf", "--gpu", "0", "--num_threads", "1", "--num_nodes", "2",
        "exp/mn/train.log", "srun", "--export=ALL", sys.executable, "-c", PRINT_ARGS,
        "--ngpu", "0", "--multiprocessing_distributed", "true", "--dist_launcher", "slurm",
        "--dist_init_method", init, "--dist_backend", "gloo",
    ]

    # The real slurm.pl with that command line, on one node: sbatch --nodes 1, srun inside the job.
    one_node = argv.copy()
    one_node[one_node.index("--num_nodes") + 1] = "1"
    r = run([SLURM_PL, *one_node], recipe, env=slurm_cluster.env)
    assert r.returncode == 0, r.stderr + slurm_cluster.logs()
    log = recipe / "exp/mn/train.log"
    assert "--nodes 1" in sbatch_line(log) and "--cpus-per-task 1" in sbatch_line(log)
    assert re.search(r"ARGS \[.*'--dist_launcher', 'slurm', '--dist_init_method', .*\] JOB \d+ STEP 0", log.read_text())
    assert footer(log) == (1, 0)

    # With 2 nodes the one-node cluster can never start it: slurm.pl warns; SIGTERM cancels the job.
    env = dict(slurm_cluster.env, SLURM_PL_SQUEUE_INTERVAL="0.5")
    proc = subprocess.Popen([str(SLURM_PL), *argv], cwd=recipe, env=env, stderr=subprocess.PIPE, text=True)
    watchdog = threading.Timer(30, proc.kill)  # readline() below must not hang the suite
    watchdog.start()
    try:
        first = proc.stderr.readline()
        assert re.search(r"job \d+ is pending with reason Partition\w+; it may never start", first), first
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 1
        assert "cancelled Slurm job" in proc.stderr.read()
    finally:
        watchdog.cancel()
        proc.kill()
    job_id = re.search(r"job (\d+) is pending", first).group(1)
    assert "--nodes 2" in (recipe / "exp/mn/q/train.log").read_text()
    for _ in range(50):
        state = slurm_cluster.run("squeue", "--noheader", f"--jobs={job_id}", "--states=all", "--format=%T").stdout
        if state.strip() == "CANCELLED":
            break
        time.sleep(0.1)
    assert state.strip() == "CANCELLED"

"""A real one-node Slurm cluster on localhost, for testing utils/slurm.pl and espnet2.bin.launch.

``slurm_cluster`` (session fixture) starts a private munged, slurmctld and slurmd (Debian's
slurm-wlm 22.05 and munge packages) as child processes of pytest, waits until ``sinfo`` shows the
node idle, and stops them at the end of the session.  Nothing system-wide is touched: the
config, state, spool, logs and munge key live in temporary directories, the daemons listen on
free ports, and clients find the cluster through ``SLURM_CONF`` in ``cluster.env``, which tests
pass to their subprocesses (``os.environ`` is left alone).

Needs root (slurmd launches the jobs) and the Debian packages in ``APT_INSTALL``; if they are
missing the fixture fails (it does not skip) and says what to install.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

DEBIAN_PACKAGES = ("slurmctld", "slurmd", "slurm-client", "munge")
APT_INSTALL = "apt-get install -y --no-install-recommends " + " ".join(DEBIAN_PACKAGES)
# program -> Debian package that provides it
PROGRAMS = {
    "munged": "munge",
    "munge": "munge",
    "mungekey": "munge",
    "slurmctld": "slurmctld",
    "slurmd": "slurmd",
    "sbatch": "slurm-client",
    "squeue": "slurm-client",
    "sinfo": "slurm-client",
    "scancel": "slurm-client",
    "srun": "slurm-client",
}
_SBIN_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/local/sbin", "/usr/sbin", "/sbin"])
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0


def _which(program: str) -> str | None:
    return shutil.which(program, path=_SBIN_PATH)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _node_hardware(slurmd: str) -> str:
    """``CPUs=... Boards=... SocketsPerBoard=... CoresPerSocket=... ThreadsPerCore=... RealMemory=...``
    as ``slurmd -C`` reports them (a node configured with more than it has is drained)."""
    out = subprocess.run([slurmd, "-C"], capture_output=True, text=True, check=True, timeout=30).stdout
    first = out.strip().splitlines()[0]
    keep = ("CPUs", "Boards", "SocketsPerBoard", "CoresPerSocket", "ThreadsPerCore", "RealMemory")
    fields = dict(tok.split("=", 1) for tok in first.split() if "=" in tok)
    return " ".join(f"{k}={fields[k]}" for k in keep if k in fields)


@dataclass
class SlurmCluster:
    """A running cluster: ``env`` for its clients, daemon PIDs, and where everything is."""

    conf: Path  # slurm.conf
    workdir: Path  # state, spool, logs (under pytest's tmp dir: kept for post-mortems)
    rundir: Path  # munge key and socket (under /tmp, world-traversable as munged demands)
    env: dict[str, str]
    pids: dict[str, int] = field(default_factory=dict)
    _procs: dict[str, subprocess.Popen] = field(default_factory=dict, repr=False)

    def run(self, *cmd: str, check: bool = False, timeout: float = 30) -> subprocess.CompletedProcess:
        return subprocess.run(list(cmd), env=self.env, capture_output=True, text=True, check=check,
                              timeout=timeout)

    def logs(self, lines: int = 15) -> str:
        """The last lines of every daemon log, for error messages."""
        parts = []
        for path in sorted((self.workdir / "log").glob("*")):
            text = path.read_text(errors="replace").splitlines()[-lines:]
            parts.append(f"==> {path} <==\n" + "\n".join(text))
        return "\n".join(parts)

    def _start(self, name: str, cmd: list[str]) -> None:
        out = open(self.workdir / "log" / f"{name}.out", "wb")  # noqa: SIM115  (lives as long as the daemon)
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=self.env)
        out.close()
        self._procs[name] = proc
        self.pids[name] = proc.pid
        (self.workdir / "pids.json").write_text(json.dumps(self.pids, indent=1))

    def _check_alive(self) -> None:
        for name, proc in self._procs.items():
            if proc.poll() is not None:
                raise RuntimeError(f"{name} (pid {proc.pid}) exited with code {proc.returncode}")

    def stop(self) -> None:
        """Cancel leftover jobs, then stop slurmd, slurmctld and munged (SIGTERM, then SIGKILL)."""
        if "slurmctld" in self._procs and self._procs["slurmctld"].poll() is None:
            try:
                self.run("scancel", f"--user={pwd.getpwuid(os.getuid()).pw_name}", timeout=10)
            except (OSError, subprocess.SubprocessError):
                pass
        for name in ("slurmd", "slurmctld", "munged"):
            proc = self._procs.get(name)
            if proc is None or proc.poll() is not None:
                continue
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(STOP_TIMEOUT_S)
        shutil.rmtree(self.rundir, ignore_errors=True)


def missing_programs() -> dict[str, str]:
    return {p: pkg for p, pkg in PROGRAMS.items() if _which(p) is None}


def start_cluster(workdir: Path) -> SlurmCluster:
    """Start munged, slurmctld and slurmd; return once the node is idle.  Raises on failure
    (after stopping whatever was started)."""
    for sub in ("state", "spool", "log"):
        (workdir / sub).mkdir(parents=True, exist_ok=True)
    # munged refuses a socket whose directory or any parent lacks o+x ("Socket is inaccessible:
    # execute permissions for all required on ..."), and pytest's tmp dirs are 0700: use /tmp.
    rundir = Path(tempfile.mkdtemp(prefix="slurm-test-", dir="/tmp"))
    rundir.chmod(0o755)
    keydir = rundir / "key"
    keydir.mkdir(mode=0o700)
    key, sock = keydir / "munge.key", rundir / "munge.socket"
    if not key.exists():
        subprocess.run([_which("mungekey"), "--create", f"--keyfile={key}"], check=True, capture_output=True)

    conf = workdir / "slurm.conf"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "SBATCH_", "SRUN_", "SALLOC_"))}
    env["SLURM_CONF"] = str(conf)
    env["PATH"] = _SBIN_PATH
    cluster = SlurmCluster(conf=conf, workdir=workdir, rundir=rundir, env=env)
    conf.write_text(
        f"""# written by tests/helpers/slurm_cluster.py
ClusterName=espnetpeft
SlurmctldHost=localhost
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={sock}
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
# without this, batch jobs (and array tasks) after the first start only every 3 s
SchedulerParameters=batch_sched_delay=0
KillWait=2
MailProg=/bin/true
StateSaveLocation={workdir}/state
SlurmdSpoolDir={workdir}/spool
SlurmctldPidFile={workdir}/slurmctld.pid
SlurmdPidFile={workdir}/slurmd.pid
SlurmctldLogFile={workdir}/log/slurmctld.log
SlurmdLogFile={workdir}/log/slurmd.log
NodeName=localhost NodeAddr=127.0.0.1 {_node_hardware(_which("slurmd"))} State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
"""
    )
    try:
        cluster._start("munged", [
            _which("munged"), "--foreground", f"--socket={sock}", f"--key-file={key}",
            f"--log-file={workdir}/log/munged.log", f"--pid-file={rundir}/munged.pid",
            f"--seed-file={keydir}/munged.seed",
        ])
        _wait(cluster, "munged answers", lambda: cluster.run("munge", "-n", "-S", str(sock)).returncode == 0)
        cluster._start("slurmctld", [_which("slurmctld"), "-D", "-c", "-f", str(conf)])
        cluster._start("slurmd", [_which("slurmd"), "-D", "-c", "-N", "localhost", "-f", str(conf)])
        _wait(cluster, "the node is idle",
              lambda: cluster.run("sinfo", "--noheader", "--nodes=localhost", "--format=%t").stdout.strip() == "idle")
    except BaseException:
        cluster.stop()
        raise
    return cluster


def _wait(cluster: SlurmCluster, what: str, ready) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        cluster._check_alive()
        if ready():
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {START_TIMEOUT_S:.0f} s waiting until {what}")
        time.sleep(0.1)


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SlurmCluster]:
    missing = missing_programs()
    if missing:
        pytest.fail(
            f"Slurm/munge programs not found: {', '.join(sorted(missing))} (Debian packages "
            f"{', '.join(sorted(set(missing.values())))}). Install them with:\n  {APT_INSTALL}",
            pytrace=False,
        )
    if os.geteuid() != 0:
        pytest.fail("the local Slurm test cluster needs root (slurmd runs the jobs)", pytrace=False)
    workdir = tmp_path_factory.mktemp("slurm")
    try:
        cluster = start_cluster(workdir)
    except (OSError, RuntimeError, TimeoutError, subprocess.SubprocessError) as e:
        pytest.fail(f"could not start the local Slurm cluster: {e}\n{_logs_of(workdir)}", pytrace=False)
    try:
        yield cluster
    finally:
        cluster.stop()


def _logs_of(workdir: Path) -> str:
    return SlurmCluster(conf=workdir / "slurm.conf", workdir=workdir, rundir=workdir, env={}).logs()

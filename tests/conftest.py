"""Shared pytest set-up: the tests directory on sys.path, and the session fixtures every test module may use."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from helpers.fault_ledger import write_tally  # noqa: E402  (needs the sys.path above)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "fault_case: a case of the fault suite (python benchmarks/faults.py runs them)")


def pytest_sessionfinish(session: pytest.Session) -> None:
    write_tally()


# ---- tiny ESPnet models on synthetic speech (tests/helpers/espnet_fixtures.py), built once per session ----

from helpers.espnet_fixtures import PretrainedModel, pretrain, synthesize_corpus  # noqa: E402  (needs the sys.path above)


@pytest.fixture(scope="session")
def synthetic_train_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """16 espeak-ng utterances (Kaldi data dir) that the base models are pretrained on."""
    return synthesize_corpus(tmp_path_factory.mktemp("corpus") / "train", n_utts=16, seed=0)


@pytest.fixture(scope="session")
def synthetic_valid_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synthesize_corpus(tmp_path_factory.mktemp("corpus") / "valid", n_utts=4, seed=1)


@pytest.fixture(scope="session")
def pretrained_asr(
    tmp_path_factory: pytest.TempPathFactory, synthetic_train_dir: Path, synthetic_valid_dir: Path
) -> PretrainedModel:
    """Tiny conformer ASR (char tokens), a few real ASRTask training steps."""
    return pretrain("asr", tmp_path_factory.mktemp("pretrained_asr"), synthetic_train_dir, synthetic_valid_dir)


@pytest.fixture(scope="session")
def pretrained_s2t(
    tmp_path_factory: pytest.TempPathFactory, synthetic_train_dir: Path, synthetic_valid_dir: Path
) -> PretrainedModel:
    """Tiny OWSM-style E-Branchformer S2T (BPE + OWSM special tokens), a few real S2TTask training steps."""
    return pretrain("s2t", tmp_path_factory.mktemp("pretrained_s2t"), synthetic_train_dir, synthetic_valid_dir)


@pytest.fixture(params=["asr", "s2t"])
def pretrained_model(request: pytest.FixtureRequest) -> PretrainedModel:
    """Each tiny pretrained model in turn (tests using it run once per task)."""
    return request.getfixturevalue(f"pretrained_{request.param}")


# ---- a real one-node Slurm on localhost, for the slurm.pl tests (tests/helpers/slurm_cluster.py) ----

from helpers.slurm_cluster import slurm_cluster  # noqa: E402,F401  (session fixture, shared by the launcher and recipe tests)

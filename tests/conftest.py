"""Shared pytest set-up: the tests directory on sys.path, the suite's layers (markers), and the session fixtures every
test module may use."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from helpers.fault_ledger import write_tally  # noqa: E402  (needs the sys.path above)


#: every test module's layer, what it needs to run (``make test-fast`` runs ``unit``; ``pytest -m espnet`` etc.):
#: unit: the math and the pieces, on tensors, small files and tiny random models (seconds each, no training);
#: espnet: tiny ESPnet / Whisper models trained, decoded or converted through the real entry points;
#: recipe: whole ``run.sh`` pipelines, corpus preparation and killed runs;
#: slurm: a real one-node Slurm started on localhost (also any test that uses the ``slurm_cluster`` fixture).
LAYERS = {
    "unit": ("adapter_amp", "adapter_math", "analysis_decoder", "analysis_inside", "analysis_models",
             "analysis_similarity", "atomic", "benchmarks", "contributing", "docs", "injection", "layering",
             "made_from", "model_card", "peft_parity", "recipe_data", "recipe_scoring", "recipe_scripts_lint",
             "seed_intervals", "speech_stats", "ssvd_authors_parity", "ssvd_numerics", "stage_times",
             "subspace_rotation", "trainable_extras"),
    "espnet": ("analysis_cli", "analysis_hf_peft", "analysis_whisper", "batch_decode", "dynamics_probe",
               "espnet_fixtures", "espnet_training", "owsm_configs", "owsm_hub", "piper_corpus", "shipped_model",
               "tasks", "whisper", "whisper_decode"),
    "recipe": ("corpora", "faults", "recipe_ctc", "recipe_e2e", "recipe_sweep", "recipe_whisper"),
    "slurm": ("launchers",),
}
_LAYER_OF = {f"test_{name}.py": layer for layer, names in LAYERS.items() for name in names}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "fault_case: a case of the fault suite (python benchmarks/faults.py runs them)")
    for layer in LAYERS:
        config.addinivalue_line("markers", f"{layer}: a test of the {layer} layer (tests/conftest.py, LAYERS)")
    config.addinivalue_line("markers", "xdist_group(name): tests that pytest-xdist's loadgroup runs on one worker")


def pytest_collection_modifyitems(config: pytest.Config, items: list) -> None:
    """Mark every test with its module's layer; a module missing from LAYERS is an error, so none is left out of
    ``make test-fast`` or the layer runs by accident.

    Under xdist (``-n 2 --dist loadgroup``) each module runs on one worker, so its module fixtures (a finished quick
    recipe) are built once; the modules with a Slurm test share one worker, as one machine holds one cluster."""
    unlisted = sorted({item.path.name for item in items if item.path.name not in _LAYER_OF})
    if unlisted:
        raise pytest.UsageError(f"tests/conftest.py: add {unlisted} to LAYERS (unit, espnet, recipe or slurm)")
    slurm_modules = {item.path.name for item in items
                     if "slurm_cluster" in getattr(item, "fixturenames", ()) or _LAYER_OF[item.path.name] == "slurm"}
    for item in items:
        item.add_marker(_LAYER_OF[item.path.name])
        if "slurm_cluster" in getattr(item, "fixturenames", ()):
            item.add_marker("slurm")
        item.add_marker(pytest.mark.xdist_group("slurm" if item.path.name in slurm_modules else item.path.name))


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

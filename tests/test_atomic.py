"""Atomic writes: an interrupted write leaves the previous file whole and no temporary file behind."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from espnet_peft.atomic import atomic_torch_saves, atomic_write_text


class _KilledMidWrite:
    """Pickling it fails after torch.save has started writing: what a kill in the write window leaves."""

    def __reduce__(self):
        raise KeyboardInterrupt("killed while writing")


def test_an_interrupted_checkpoint_save_keeps_the_previous_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "checkpoint.pth"
    with atomic_torch_saves():
        torch.save({"epoch": 1, "weights": torch.arange(1000.0)}, path)
        with pytest.raises(KeyboardInterrupt):
            torch.save({"epoch": 2, "weights": torch.arange(1000.0), "boom": _KilledMidWrite()}, path)
    assert torch.load(path, weights_only=False)["epoch"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pth"]


def test_without_the_guard_the_same_interruption_truncates_the_file(tmp_path: Path) -> None:
    """The control: plain torch.save writes in place, so the previous checkpoint is lost."""
    path = tmp_path / "checkpoint.pth"
    torch.save({"epoch": 1}, path)
    with pytest.raises(KeyboardInterrupt):
        torch.save({"epoch": 2, "boom": _KilledMidWrite()}, path)
    with pytest.raises(Exception):
        torch.load(path, weights_only=False)


def test_atomic_text_write_replaces_whole_files(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "run_info.json"
    atomic_write_text(path, "{}")
    atomic_write_text(path, '{"a": 1}')
    assert path.read_text() == '{"a": 1}' and [p.name for p in path.parent.iterdir()] == ["run_info.json"]

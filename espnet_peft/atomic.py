"""Writing files so that a kill at any moment leaves either the old file or the complete new one, never a part."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any, Callable, Iterator, Union

from espnet_peft import fault_points


def _replace_atomically(path: Union[str, Path], write: Callable[[Path], None]) -> None:
    """``write`` a temporary sibling, flush it to disk, then rename it over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        write(tmp)
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        fault_points.reach(f"write:{path.name}")
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_text(path: Union[str, Path], content: str) -> None:
    _replace_atomically(path, lambda tmp: tmp.write_text(content, encoding="utf-8"))


@contextlib.contextmanager
def atomic_torch_saves() -> Iterator[None]:
    """While active, every ``torch.save`` to a path writes a temporary file and renames it.

    ESPnet's trainer writes ``checkpoint.pth`` and the epoch models in place; a kill during that write would leave a
    truncated file that the next run cannot resume from. Saves to file objects are left as they are.
    """
    import torch  # here, so that the data-preparation tools that write text do not pay torch's import

    original = torch.save

    def save(obj: Any, f: Any, *args: Any, **kwargs: Any) -> None:
        if isinstance(f, (str, os.PathLike)):
            _replace_atomically(f, lambda tmp: original(obj, tmp, *args, **kwargs))
        else:
            original(obj, f, *args, **kwargs)

    torch.save = save
    try:
        yield
    finally:
        torch.save = original

"""Running a function on a module right after it has executed, however and whenever it is imported.

Used to patch third-party modules (ESPnet's task modules, openai-whisper) without importing them early: an import
that never happens costs nothing.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
from types import ModuleType
from typing import Callable, Dict, List, Optional, Sequence

Patch = Callable[[ModuleType], object]


class _PatchAfterImport(importlib.abc.MetaPathFinder):
    """Finds the real spec of a watched module and runs its patches right after the module has executed."""

    def __init__(self) -> None:
        self.patches: Dict[str, List[Patch]] = {}

    def find_spec(self, fullname: str, path: Optional[Sequence[str]], target: Optional[ModuleType] = None):
        if fullname not in self.patches:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None:
            return None
        execute, patches = spec.loader.exec_module, self.patches[fullname]

        def exec_module(module: ModuleType) -> None:
            execute(module)
            for patch in patches:
                patch(module)

        spec.loader.exec_module = exec_module
        return spec


def _finder() -> _PatchAfterImport:
    for finder in sys.meta_path:
        if isinstance(finder, _PatchAfterImport):
            return finder
    finder = _PatchAfterImport()
    sys.meta_path.insert(0, finder)
    return finder


def after_import(module_name: str, patch: Patch) -> None:
    """Run ``patch(module)`` now if ``module_name`` is imported, and after every later import of it (once per
    registration: registering the same function twice adds nothing)."""
    patches = _finder().patches.setdefault(module_name, [])
    if patch not in patches:
        patches.append(patch)
    if module_name in sys.modules:
        patch(sys.modules[module_name])

"""Environment-activated hook: lets ESPnet's own ``asr.sh`` / ``s2t.sh`` (stock ``python -m espnet2.bin.*``) use
the plugin. The package installs ``espnet_peft_env_hook.pth``, which imports this module at interpreter start-up;
with ``ESPNET_PEFT=1`` in the environment it arranges that, as soon as ``espnet2.tasks.asr`` / ``s2t`` / ``s2t_ctc``
is imported, its task class is replaced by the plugin subclass. Spawned DDP children inherit the environment and
run the same start-up, so every process sees the plugin. It also lets ESPnet's Whisper encoder and decoder load a
converted checkpoint by name (``espnet_peft.whisper.offline``; active only with ``ESPNET_PEFT_WHISPER_DIR`` set).
Without ``ESPNET_PEFT`` this module does nothing else.
"""

from __future__ import annotations

import contextlib
import importlib
import os
from types import ModuleType
from typing import Callable, Iterator, List, Optional, Sequence, Tuple, Union

ENV_VARIABLE = "ESPNET_PEFT"
TASK_MODULES = ("espnet2.tasks.asr", "espnet2.tasks.s2t", "espnet2.tasks.s2t_ctc")


def _stock_tasks(module: ModuleType) -> List[Tuple[str, type]]:
    """The names under which ``module`` holds a stock task class (one defined in TASK_MODULES)."""
    from espnet2.tasks.abs_task import AbsTask

    return [(name, value) for name, value in list(vars(module).items())
            if isinstance(value, type) and issubclass(value, AbsTask) and value.__module__ in TASK_MODULES]


def patch_module_tasks(module: ModuleType) -> ModuleType:
    """Replace the stock task classes that ``module`` holds by their plugin subclasses."""
    from espnet_peft.tasks.peft_task import peft_task

    for name, stock in _stock_tasks(module):
        setattr(module, name, peft_task(stock))
    return module


@contextlib.contextmanager
def plugin_tasks(*modules: Union[ModuleType, str]) -> Iterator[None]:
    """Inside the block, the stock task classes that these modules hold are the plugin subclasses; after it, the
    stock ones again. Patching the task modules themselves, not only a bin module's global name, also covers stock
    code that reaches its task through a function-local import (espnet 202611's OWSM-CTC ``Speech2Text`` does)."""
    replaced: List[Tuple[ModuleType, str, type]] = []
    try:
        for module in modules:
            module = importlib.import_module(module) if isinstance(module, str) else module
            replaced += [(module, name, stock) for name, stock in _stock_tasks(module)]
            patch_module_tasks(module)
        yield
    finally:
        for module, name, stock in reversed(replaced):
            setattr(module, name, stock)


def inference_drop_in(stock: ModuleType, *task_modules: str) -> Tuple[type, Callable[..., None]]:
    """``(Speech2Text, main)`` of a stock inference module, building every model through the plugin task."""

    class Speech2Text(stock.Speech2Text):
        def __init__(self, *args, **kwargs) -> None:
            with plugin_tasks(stock, *task_modules):
                super().__init__(*args, **kwargs)

    Speech2Text.__doc__ = stock.Speech2Text.__doc__

    def main(cmd: Optional[Sequence[str]] = None) -> None:
        with plugin_tasks(stock, *task_modules):
            stock.main(cmd)

    return Speech2Text, main


def install() -> None:
    from espnet_peft.import_hooks import after_import
    from espnet_peft.whisper import offline

    for name in TASK_MODULES:
        after_import(name, patch_module_tasks)
    offline.install()  # ESPnet's Whisper encoder/decoder find converted checkpoints (ESPNET_PEFT_WHISPER_DIR)


if os.environ.get(ENV_VARIABLE, "") not in ("", "0", "false"):
    install()

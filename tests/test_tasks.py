"""The plugin task classes for ASR, S2T (OWSM) and S2T-CTC (OWSM-CTC), and their inference drop-ins."""

from __future__ import annotations

import importlib

import pytest

from espnet_peft.export import TASKS, task_class
from espnet_peft.tasks.peft_task import PeftTaskMixin
from espnet_peft.train.trainer import PeftTrainer

STOCK = {"asr": "espnet2.tasks.asr:ASRTask", "s2t": "espnet2.tasks.s2t:S2TTask",
         "s2t_ctc": "espnet2.tasks.s2t_ctc:S2TTask"}
INFERENCE = {"asr": "espnet_peft.bin.asr_inference", "s2t": "espnet_peft.bin.s2t_inference",
             "s2t_ctc": "espnet_peft.bin.s2t_ctc_inference"}


@pytest.mark.parametrize("task", sorted(TASKS))
def test_plugin_task_extends_the_stock_task(task: str) -> None:
    module, name = STOCK[task].split(":")
    stock = getattr(importlib.import_module(module), name)
    plugin = task_class(task)
    assert issubclass(plugin, stock) and issubclass(plugin, PeftTaskMixin)
    assert plugin.trainer is PeftTrainer
    args = plugin.get_parser().parse_args(["--use_adapter", "true", "--adapter", "espnet_peft",
                                           "--adapter_conf", "method=lora", "--output_dir", "x"])
    assert args.adapter == "espnet_peft" and args.adapter_conf == {"method": "lora"}
    with pytest.raises(SystemExit):  # the stock parser still refuses the name: the widening is the plugin's
        stock.get_parser().parse_args(["--adapter", "espnet_peft"])


@pytest.mark.parametrize("task", sorted(TASKS))
def test_inference_drop_in_uses_the_plugin_task(task: str) -> None:
    module = importlib.import_module(INFERENCE[task])
    stock_module = importlib.import_module(module.stock.__name__)
    task_name = STOCK[task].split(":")[1]
    assert getattr(stock_module, task_name) is task_class(task)
    assert callable(module.main) and module.Speech2Text is stock_module.Speech2Text


def test_s2t_ctc_train_entry_point_exists() -> None:
    entry = importlib.import_module("espnet_peft.bin.s2t_ctc_train")
    assert entry.S2TCTCTask is task_class("s2t_ctc")

"""Plugin versions of ESPnet tasks: one mixin, applied to ASR, S2T (OWSM) and S2T-CTC (OWSM-CTC).

What the mixin adds to a stock task:
  * ``--adapter espnet_peft`` is accepted on the command line (stock argparse choices only list lora/houlsby);
  * the trainer initialises SVD-dependent adapters after ``init_param`` loading (:class:`PeftTrainer`);
  * ``build_model_from_file`` also loads adapter-only checkpoints, taking the base from the config's ``init_param``;
  * Whisper models (``encoder: whisper``) build offline from converted checkpoints (``espnet_peft.whisper.offline``);
  * ``--use_deepspeed true`` is refused before anything is built (see :data:`DEEPSPEED_REFUSAL`).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Dict, Optional, Tuple, Type, Union

import torch

from espnet_peft.layers.create_adapter import ADAPTER_NAME
from espnet_peft.train.checkpoint import load_adapted_checkpoint
from espnet_peft.train.trainer import PeftTrainer, uses_plugin
from espnet_peft.whisper import offline as whisper_offline

# ESPnet's Whisper encoder/decoder call whisper.load_model(name): with ESPNET_PEFT_WHISPER_DIR set, a converted
# checkpoint stands for the name, so Whisper models build with no network
whisper_offline.install()


#: ESPnet swaps in its DeepSpeedTrainer only for tasks on its default trainer (``AbsTask.main_worker`` raises "only
#: default trainer is compatible with deepspeed" once the model and data are loaded, and silently ignores the option
#: on one process). DeepSpeedTrainer has its own run loop and checkpoints, so the plugin's adapter initialisation
#: after ``init_param`` and its adapter-only checkpoints would not happen.
DEEPSPEED_REFUSAL = (
    "--use_deepspeed true is not supported by espnet_peft's tasks: their trainer (espnet_peft.train.PeftTrainer) "
    "initialises the adapters after --init_param and writes adapter-only checkpoints, which ESPnet's "
    "DeepSpeedTrainer does not. Drop --use_deepspeed (and --deepspeed_config); multi-GPU training works with "
    "--ngpu N (DDP), and --use_amp true gives mixed precision."
)


def widen_adapter_choices(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    for action in parser._actions:
        if "--adapter" in action.option_strings and action.choices is not None and ADAPTER_NAME not in action.choices:
            action.choices = list(action.choices) + [ADAPTER_NAME]
    return parser


class PeftTaskMixin:
    trainer = PeftTrainer

    @classmethod
    def get_parser(cls) -> argparse.ArgumentParser:
        return widen_adapter_choices(super().get_parser())

    @classmethod
    def check_required_command_args(cls, args: argparse.Namespace) -> None:
        if getattr(args, "use_deepspeed", False):
            raise SystemExit(f"{cls.__name__}: {DEEPSPEED_REFUSAL}")
        super().check_required_command_args(args)

    @classmethod
    def build_model_from_file(cls, config_file: Union[Path, str, None] = None,
                              model_file: Union[Path, str, None] = None, device: str = "cpu"
                              ) -> Tuple[torch.nn.Module, argparse.Namespace]:
        if config_file is None:
            config_file = Path(model_file).parent / "config.yaml"
        model, args = super().build_model_from_file(config_file, None, device)
        if model_file is None:
            return model, args
        if not uses_plugin(args):
            return super().build_model_from_file(config_file, model_file, device)
        load_adapted_checkpoint(model, model_file, getattr(args, "init_param", None) or (),
                                map_location=_map_location(device))
        return model, args


def _map_location(device: str) -> str:
    if device == "cuda":
        return f"cuda:{torch.cuda.current_device()}"
    return device


_PLUGIN_TASKS: Dict[type, type] = {}


def peft_task(stock_task: type, module: Optional[str] = None) -> Type:
    """The plugin subclass of a stock ESPnet task (one class per stock task, however it is reached).

    ``module`` is where the subclass lives, so that pickling it for spawned DDP workers re-imports that module,
    which registers the adapters.
    """
    if issubclass(stock_task, PeftTaskMixin):
        return stock_task
    if stock_task not in _PLUGIN_TASKS:
        _PLUGIN_TASKS[stock_task] = type(
            stock_task.__name__, (PeftTaskMixin, stock_task),
            {"__module__": module or stock_task.__module__.replace("espnet2.", "espnet_peft.", 1),
             "__doc__": f"{stock_task.__module__}.{stock_task.__name__} with the espnet_peft adapters."},
        )
    return _PLUGIN_TASKS[stock_task]

"""ESPnet trainer that initialises SVD-dependent adapters once the pretrained weights are in place."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
from pathlib import Path
from typing import Optional, Sequence

import torch
from espnet2.train.trainer import Trainer, TrainerOptions
from espnet2.utils.build_dataclass import build_dataclass

from espnet_peft import fault_points
from espnet_peft.atomic import atomic_torch_saves, atomic_write_text
from espnet_peft.dynamics_probe_config import DynamicsProbeConfig
from espnet_peft.injection import SPEC_ATTRIBUTE, adapter_layers, initialise_adapters
from espnet_peft.layers.create_adapter import ADAPTER_NAME
from espnet_peft.train.checkpoint import (
    check_base,
    check_checkpoint_complete,
    is_full_state,
    load_adapter_only_state,
    read_checkpoint,
    write_base_record,
)
from espnet_peft.train.dynamics_probe import DynamicsProbe


def uses_plugin(options) -> bool:
    return bool(getattr(options, "use_adapter", False)) and getattr(options, "adapter", None) == ADAPTER_NAME


@dataclasses.dataclass
class PeftTrainerOptions(TrainerOptions):
    init_param: Sequence[str] = ()  # which base an adapter-only checkpoint belongs to


class PeftTrainer(Trainer):
    """``AbsTask.main_worker`` loads ``init_param`` after building the optimizer and before ``Trainer.run``; this is
    the first point where the pretrained weights are in the model, and it comes before the DDP wrap, which then
    broadcasts rank 0's adapter state to the other ranks."""

    @classmethod
    def build_options(cls, args: argparse.Namespace) -> PeftTrainerOptions:
        return build_dataclass(PeftTrainerOptions, args)

    @classmethod
    def run(cls, model, optimizers, schedulers, train_iter_factory, valid_iter_factory, plot_attention_iter_factory,
            trainer_options, distributed_option) -> None:
        writer = not distributed_option.distributed or distributed_option.dist_rank == 0
        if uses_plugin(trainer_options):
            prepare_for_training(model, trainer_options, writer)
        elif trainer_options.resume and (Path(trainer_options.output_dir) / "checkpoint.pth").exists():
            # a clear error instead of ESPnet's zip-reader traceback, without loading a large checkpoint twice
            check_checkpoint_complete(Path(trainer_options.output_dir) / "checkpoint.pth")
        if writer:
            write_parameter_counts(model, Path(trainer_options.output_dir))
        if os.environ.get(fault_points.ENV, "").startswith("train_forward:"):
            model.register_forward_pre_hook(lambda module, _: fault_points.reach("train_forward") if module.training
                                            else None)
        probe = attach_dynamics_probe(model, optimizers, Path(trainer_options.output_dir)) if writer else None
        with atomic_torch_saves():  # a kill while checkpoint.pth is written leaves the previous one intact
            super().run(model, optimizers, schedulers, train_iter_factory, valid_iter_factory,
                        plot_attention_iter_factory, trainer_options, distributed_option)
        if probe is not None:
            probe.finish()


def attach_dynamics_probe(model: torch.nn.Module, optimizers, output_dir: Path) -> Optional[DynamicsProbe]:
    """The training-dynamics probe when ``adapter_conf`` asks for one (``dynamics_probe``), else None: nothing runs."""
    settings = (getattr(model, SPEC_ATTRIBUTE, None) or {}).get("dynamics_probe")
    if settings is None:
        return None
    return DynamicsProbe(model, DynamicsProbeConfig.from_conf(settings), output_dir, optimizers).attach()


def write_parameter_counts(model: torch.nn.Module, output_dir: Path) -> None:
    """``trainable_parameters.json``: what a run trains, for reports that compare methods at a matched budget."""
    counts = {"trainable": sum(p.numel() for p in model.parameters() if p.requires_grad),
              "total": sum(p.numel() for p in model.parameters())}
    atomic_write_text(output_dir / "trainable_parameters.json", json.dumps(counts, indent=2))


def prepare_for_training(model: torch.nn.Module, options, writer: bool = True) -> None:
    output_dir = Path(options.output_dir)
    checkpoint = output_dir / "checkpoint.pth"
    init_param = list(getattr(options, "init_param", ()) or ())
    if options.resume and checkpoint.exists():
        state = read_checkpoint(checkpoint)["model"]
        if not is_full_state(model, state):
            check_base(model, output_dir, checkpoint, init_param)
            # Adapter-only checkpoints go on the pristine base (so PiSSA's residual is rebuilt from the saved factors);
            # Trainer.resume then loads the same tensors again, harmlessly, along with optimizer and reporter state.
            load_adapter_only_state(model, state, source=checkpoint)
        logging.info("espnet_peft: resuming adapters from %s", checkpoint)
    else:
        if writer:
            write_base_record(model, output_dir, init_param)
        count = initialise_adapters(model)
        logging.info("espnet_peft: initialised %d of %d adapter layers from the loaded weights",
                     count, len(adapter_layers(model)))
    if options.save_strategy == "adapter_only":
        # ESPnet's own adapter_only branch knows only loralib/houlsby. Keeping the trainable tensors plus buffers is
        # what an adapter-only checkpoint of ours must hold (SVD factors, PiSSA's initial factors, init flags).
        options.save_strategy = "required_grad_only"

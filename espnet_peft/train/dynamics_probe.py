"""The training-dynamics probe: ``espnet_peft.analysis.dynamics`` on a fixed batch, every N optimizer steps.

Enabled from the adapter config, off by default::

    adapter_conf:
      method: lora
      dynamics_probe: {every_n_steps: 50}    # optional: max_rows (tokens per layer, default 2048)

The first training batch becomes the probe batch. The probe runs on it before the first update, whenever the
optimizer's step count reaches a multiple of ``every_n_steps``, and once more on the final model (the count comes from the optimizer's state, so it is
right under gradient accumulation and after a resume). Each probe runs the model in eval mode, with autocast off,
takes gradients of the activations only (no parameter ``.grad`` is touched) and restores the random number
generators, so training is bit-identical with and without it. It adds no state-dict keys; when disabled nothing is
attached at all.

Output, in the experiment dir: ``adapter_dynamics.json`` (rewritten atomically after every probe) with one record
per probe, ``adapter_dynamics.png`` (curves over training, drawn at the end), and ``adapter_dynamics_start.pth``
(the probe batch and the maps at the start, so that a resumed run measures against the same start).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import torch
from torch import nn

from espnet_peft.analysis.dynamics import initial_state, probe_dynamics
from espnet_peft.atomic import atomic_write_text
from espnet_peft.dynamics_probe_config import DynamicsProbeConfig

RESULT = "adapter_dynamics.json"
START = "adapter_dynamics_start.pth"
FIGURE = "adapter_dynamics.png"


def _on_cpu(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().clone()
    if isinstance(value, Mapping):
        return {k: _on_cpu(v) for k, v in value.items()}
    return value


def _to(value: Any, device: torch.device) -> Any:
    if isinstance(value, torch.Tensor):
        return value.to(device)
    if isinstance(value, Mapping):
        return {k: _to(v, device) for k, v in value.items()}
    return value


def espnet_loss(model: nn.Module, batch: Mapping[str, Any]) -> torch.Tensor:
    """The training loss of an ESPnet model on a collated batch (returned as ``[1]`` by ``force_gatherable``)."""
    return model(**batch)[0].reshape(())


class DynamicsProbe:
    """Attach to a model before training (``attach``); ``finish`` after it. See the module docstring."""

    def __init__(self, model: nn.Module, config: DynamicsProbeConfig, output_dir: Path,
                 optimizers: Sequence[torch.optim.Optimizer] = (), run_loss=espnet_loss) -> None:
        self.model, self.config, self.output_dir = model, config, Path(output_dir)
        self.optimizers, self.run_loss = list(optimizers), run_loss
        self.forwards = 0  # training forwards seen: the step count when the optimizer keeps none (plain SGD)
        self.start: Optional[dict[str, Any]] = None
        self.records: list[dict[str, Any]] = []
        self.handle = None

    def attach(self) -> "DynamicsProbe":
        start_file, result_file = self.output_dir / START, self.output_dir / RESULT
        if start_file.exists():  # a resumed run: the same probe batch and start, the history so far
            self.start = torch.load(start_file, map_location="cpu", weights_only=False)
            if result_file.exists():
                self.records = json.loads(result_file.read_text(encoding="utf-8"))["probes"]
        self.handle = self.model.register_forward_pre_hook(self._before_forward, with_kwargs=True)
        return self

    def _step(self) -> int:
        for optimizer in self.optimizers:
            for group in optimizer.param_groups:
                for parameter in group["params"]:
                    step = optimizer.state.get(parameter, {}).get("step")
                    if step is not None:
                        return int(step)
        return self.forwards

    def _before_forward(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        if not module.training:  # validation, and the probe's own forward (it runs the model in eval mode)
            return
        if self.start is None:
            self.start = {"batch": _on_cpu(kwargs), "maps": _on_cpu(initial_state(module))}
            torch.save(self.start, self.output_dir / START)
        step = self._step()
        self.forwards += 1
        if step % self.config.every_n_steps == 0 and all(r["step"] != step for r in self.records):
            self.probe(step)

    def probe(self, step: int) -> None:
        """Measure now and append the record to ``adapter_dynamics.json``."""
        device = next(self.model.parameters()).device
        modes = {m: m.training for m in self.model.modules()}
        # fork_rng: training draws the same random numbers afterwards as without the probe
        with torch.random.fork_rng(devices=range(torch.cuda.device_count())):
            try:
                self.model.eval()
                with torch.autocast(device_type=device.type, enabled=False):
                    layers = probe_dynamics(self.model, _to(self.start["batch"], device), self.run_loss,
                                            _to(self.start["maps"], device), max_rows=self.config.max_rows)
            finally:
                for m, training in modes.items():
                    m.training = training
        self.records.append({"step": step, "layers": layers})
        self._write()
        logging.info("espnet_peft: adapter dynamics probed at step %d (%s)", step, self.output_dir / RESULT)

    def _write(self) -> None:
        result = {"every_n_steps": self.config.every_n_steps, "probes": self.records}
        atomic_write_text(self.output_dir / RESULT, json.dumps(result, indent=1))

    def finish(self) -> Optional[Path]:
        """Probe the final model (unless the last probe saw it), detach, and draw the curves of everything recorded
        (None when nothing was)."""
        if self.handle is not None:
            self.handle.remove()
            self.handle = None
        if not self.records:
            return None
        step = self._step()
        if all(r["step"] != step for r in self.records):
            self.probe(step)
        from espnet_peft.analysis.dynamics_plot import plot_dynamics

        return plot_dynamics(self.records, self.output_dir / FIGURE)

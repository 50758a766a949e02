"""The plugin task classes for ASR, S2T (OWSM) and S2T-CTC (OWSM-CTC), and their inference drop-ins."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
import torch
import yaml

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
def test_inference_drop_in_uses_the_plugin_task_inside_and_leaves_the_stock_one_outside(task: str) -> None:
    from espnet_peft.env_hook import plugin_tasks

    module = importlib.import_module(INFERENCE[task])
    stock_module = importlib.import_module(module.stock.__name__)
    task_module, task_name = STOCK[task].split(":")
    stock_task = getattr(importlib.import_module(task_module), task_name)
    assert callable(module.main) and issubclass(module.Speech2Text, stock_module.Speech2Text)
    with plugin_tasks(stock_module, task_module):
        assert getattr(importlib.import_module(task_module), task_name) is task_class(task)
        assert getattr(stock_module, task_name) is task_class(task)
    assert getattr(importlib.import_module(task_module), task_name) is stock_task  # no process-wide patch
    assert getattr(stock_module, task_name) is stock_task


def test_s2t_ctc_train_entry_point_exists() -> None:
    entry = importlib.import_module("espnet_peft.bin.s2t_ctc_train")
    assert entry.S2TCTCTask is task_class("s2t_ctc")


def _owsm_config(task: str, tmp_path: Path) -> tuple:
    """A tiny OWSM (``s2t``) or OWSM-CTC (``s2t_ctc``) experiment as a training run leaves it: a base model file and
    a ``config.yaml`` that adds LoRA adapters on top of it through ``init_param``."""
    from helpers.owsm_fixtures import TINY_ARCH, TINY_CTC_ARCH, model_args, owsm_token_list

    plugin = task_class(task)
    args = model_args(plugin, TINY_CTC_ARCH if task == "s2t_ctc" else TINY_ARCH, owsm_token_list(),
                      output_dir=str(tmp_path / "exp"))
    args.token_type, args.bpemodel = "bpe", None
    times = [t for t in args.token_list if t[1:-1].replace(".", "").isdigit()]
    args.preprocessor_conf = {"notime_symbol": "<notimestamps>", "first_time_symbol": times[0],
                              "last_time_symbol": times[-1]}
    torch.manual_seed(0)
    init = tmp_path / "base.pth"
    torch.save(plugin.build_model(args).state_dict(), init)
    args.use_adapter, args.adapter = True, "espnet_peft"
    args.adapter_conf = {"method": "lora", "target_modules": ["linear_q", "linear_v", "w_1"], "r": 2}
    args.init_param = [str(init)]
    config = tmp_path / "exp" / "config.yaml"
    config.parent.mkdir(parents=True)
    config.write_text(yaml.safe_dump(vars(args)), encoding="utf-8")
    return plugin, args, init, config


@pytest.mark.parametrize("task", ["s2t", "s2t_ctc"])
def test_inference_drop_in_decodes_an_adapter_only_checkpoint_on_its_base(task: str, tmp_path: Path) -> None:
    """Every base tensor of the model the drop-in's ``Speech2Text`` builds is the ``init_param`` file's, and every
    adapter tensor the checkpoint's: however the stock class reaches its task (bin-module name or function-local
    import), it must build through the plugin task."""
    from espnet_peft.injection import adapter_layers
    from espnet_peft.train.checkpoint import write_base_record

    plugin, args, init, config = _owsm_config(task, tmp_path)
    model, _ = plugin.build_model_from_file(config, None)  # with its adapters, as training builds it
    base = torch.load(init, map_location="cpu")
    model.load_state_dict(base, strict=False)
    assert {k for k, v in model.named_parameters() if v.requires_grad} == {k for k in model.state_dict() if "lora_" in k}
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.requires_grad:
                parameter.add_(0.01)
    adapters = {f"{name}.{key}": tensor.clone() for name, layer in adapter_layers(model).items()
                for key, tensor in layer.adapter_state_dict().items()}
    checkpoint = config.parent / "valid.acc.best.pth"
    torch.save(adapters, checkpoint)
    write_base_record(model, config.parent, args.init_param)

    drop_in = importlib.import_module(INFERENCE[task])
    speech2text = drop_in.Speech2Text(s2t_train_config=str(config), s2t_model_file=str(checkpoint))
    state = speech2text.s2t_model.state_dict()
    wrong_base = [k for k, v in base.items() if not torch.equal(state[k], v)]
    assert not wrong_base, f"{len(wrong_base)} of {len(base)} base tensors are not the init_param file's: {wrong_base[:5]}"
    wrong_adapters = [k for k, v in adapters.items() if not torch.equal(state[k], v)]
    assert not wrong_adapters, f"adapter tensors not loaded: {wrong_adapters[:5]}"


TRAIN_ENTRY = {"asr": "espnet_peft.bin.asr_train", "s2t": "espnet_peft.bin.s2t_train",
               "s2t_ctc": "espnet_peft.bin.s2t_ctc_train"}


@pytest.mark.parametrize("task", sorted(TASKS))
def test_deepspeed_is_refused_before_anything_is_built(task: str, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture) -> None:
    from espnet_peft.tasks.peft_task import DEEPSPEED_REFUSAL

    output_dir = tmp_path / "exp"
    entry = importlib.import_module(TRAIN_ENTRY[task])
    with pytest.raises(SystemExit) as refused:
        # no data, token list or config: the refusal must come before ESPnet would ask for them
        entry.main(cmd=["--use_deepspeed", "true", "--output_dir", str(output_dir), "--ngpu", "2"])
    message = str(refused.value.code)
    assert DEEPSPEED_REFUSAL in message and "--use_deepspeed" in message and "--ngpu N" in message
    assert not output_dir.exists()


def test_deepspeed_refusal_reaches_the_command_line(tmp_path: Path) -> None:
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-m", "espnet_peft.bin.asr_train", "--use_deepspeed", "true",
                             "--output_dir", str(tmp_path / "exp")], capture_output=True, text=True, timeout=300)
    assert result.returncode == 1
    assert "--use_deepspeed true is not supported by espnet_peft's tasks" in result.stderr
    assert "Traceback" not in result.stderr

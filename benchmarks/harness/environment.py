"""The machine a torch benchmark ran on, as its JSON record's ``environment`` lists it.

Package versions and the CPU model come from the project's probe (``espnet_peft.utils.environment``); torch's own
``__version__`` is kept because it names the build (``2.9.1+cu128``), which the package metadata leaves out.
"""

from __future__ import annotations

import os
import platform
from typing import Any, Dict

import torch

from espnet_peft.utils.environment import cpu_model, package_version


def torch_machine(device: str, dtype: str, threads: int) -> Dict[str, Any]:
    """Versions, platform, CPU and (on CUDA) GPU, with the ``device``, ``dtype`` and torch ``threads`` it ran with."""
    env: Dict[str, Any] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "espnet": package_version("espnet"),
        "peft": package_version("peft"),
        "platform": platform.platform(),
        "device": device,
        "dtype": dtype,
        "torch_threads": threads,
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "mkldnn": torch.backends.mkldnn.is_available(),
    }
    if device.startswith("cuda"):
        env["gpu"] = torch.cuda.get_device_name()
        env["cuda"] = torch.version.cuda
    return env

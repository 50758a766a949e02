"""Where the mixed-precision tests run, and which autocast dtypes that device supports.

``ESPNET_PEFT_TEST_DEVICE=cuda`` repeats them on a GPU (``benchmarks/gpu_check.sh``); the default is the CPU."""

from __future__ import annotations

import os
from typing import List

import torch

DEVICE = os.environ.get("ESPNET_PEFT_TEST_DEVICE", "cpu")


def autocast_dtypes() -> List[torch.dtype]:
    """bf16, and fp16 where the device's autocast supports it."""
    dtypes = [torch.bfloat16]
    try:
        with torch.autocast(DEVICE, dtype=torch.float16):
            torch.ones(2, 2, device=DEVICE) @ torch.ones(2, 2, device=DEVICE)
        dtypes.append(torch.float16)
    except RuntimeError:
        pass
    return dtypes

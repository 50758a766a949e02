"""A model ready for analysis, as its family loaded it (``espnet_peft.analysis.families``): its module, its
``ModelAccess`` and how it turns utterances into batches.

Each model prepares its own input the way its inference does (``batch``): ESPnet S2T (OWSM) models pad or trim every
input to ``speech_length`` seconds and see it all as real; ASR models take padded batches with lengths (ESPnet's
Whisper ASR models too: having no mask, its encoder sees the padding of a batch or of a padded data dir); HF models
get their feature extractor's input, one utterance per forward pass.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Mapping, Optional, Sequence

import numpy as np
from torch import nn

from espnet_peft.analysis.model_access import ModelAccess
from espnet_peft.analysis.resolve import ModelSource
from espnet_peft.analysis.utterances import Batch, Utterance


@dataclasses.dataclass
class LoadedModel:
    """A model ready for analysis: its module, its ``ModelAccess`` and how it turns audio into batches."""

    label: str
    source: ModelSource
    model: nn.Module
    access: ModelAccess
    fs: int
    batch: Callable[[list[Utterance], list[np.ndarray]], Batch]
    #: token ids -> normalised text (ESPnet CTC vocabulary), None for HF models
    decode: Optional[Callable[[Sequence[int]], str]] = None
    blank: int = 0
    #: the most utterances one forward pass may take (HF: 1, no padding and so no attention mask to get right)
    max_batch: Optional[int] = None
    #: HF: the loss that its batches' ``loss_inputs`` give (e.g. "CTC loss"), or None and ``no_loss`` says why
    loss_name: Optional[str] = None
    no_loss: Optional[str] = None
    #: the adapter layers in a model, by module name; None: espnet_peft's (an HF model with a peft adapter: peft's)
    find_adapters: Optional[Callable[[nn.Module], Mapping[str, nn.Module]]] = None

    def describe(self) -> dict:
        from espnet_peft.injection import adapter_layers

        adapters = (self.find_adapters or adapter_layers)(self.model)
        return {"label": self.label, **self.source.describe(), "layers": self.access.layers(),
                "parameters": sum(p.numel() for p in self.model.parameters()), "adapter_layers": len(adapters)}

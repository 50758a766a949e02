"""The interface of a model family: everything the analyses do differently for ESPnet models, Hugging Face models,
or a family added later.

A family is one ``ModelSource.kind`` (``"espnet"``, ``"hf"``). It loads the models of that kind (``load``: the module,
its ``ModelAccess``, how it batches audio) and answers, for a loaded model, what the analyses would otherwise tell
apart by kind: its CTC head and the logit lens over it, where its attention maps are, how the adapter energy reaches
its adapters and which loss it takes gradients of, and whether the ablation and the decoder analyses apply. The
``*_reason`` methods return why an analysis cannot run on the model (None: it can), as ``Analysis.skip_reason`` does.

What is the same for every family stays with the analyses: the layers come from ``LoadedModel.access``, and the
branches of a block from ``branches.block_branches``, which tells blocks apart by their class.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence
from typing import ClassVar, ContextManager, Optional

import torch
from torch import nn

from espnet_peft.analysis.energy import Bottleneck
from espnet_peft.analysis.lens import LensResult
from espnet_peft.analysis.loaded_model import LoadedModel
from espnet_peft.analysis.model_access import Capture
from espnet_peft.analysis.resolve import ModelSource
from espnet_peft.analysis.utterances import Batch


class ModelFamily(abc.ABC):
    """One model family: subclass, set ``kind``, implement the methods, and ``@register`` it."""

    kind: ClassVar[str]  # the ``ModelSource.kind`` of its models

    @abc.abstractmethod
    def load(self, label: str, source: ModelSource, device: str, eager_attention: bool) -> LoadedModel:
        """The model named by ``source`` in eval mode on ``device`` (``eager_attention``: its forward returns the
        attention maps where the family needs that asked for)."""

    # ----- logit lens (and the CTC scoring of the ablation and the energy) -----

    @abc.abstractmethod
    def ctc_reason(self, m: LoadedModel) -> Optional[str]:
        """Why model ``m`` has no CTC head to read (None: it has one)."""

    def lens_reason(self, m: LoadedModel) -> Optional[str]:
        """Why the logit lens cannot run on ``m``: by default, why it has no CTC head."""
        return self.ctc_reason(m)

    @abc.abstractmethod
    def ctc_lens(self, m: LoadedModel, capture: Capture, decode: Optional[Callable[[list[int]], str]],
                 refs: Optional[Sequence[str]]) -> LensResult:
        """The CTC lens of ``m`` from a capture of the shared pass (per-layer CER with ``decode`` and ``refs``)."""

    # ----- attention maps -----

    @abc.abstractmethod
    def attention_reason(self, m: LoadedModel) -> Optional[str]:
        """Why the attention maps of ``m`` cannot be read."""

    @abc.abstractmethod
    def attention_maps(self, m: LoadedModel, capture: Capture) -> list[torch.Tensor]:
        """The self-attention maps of every layer (``[B, H, T, T]``) of the pass that made ``capture``."""

    # ----- adapter energy -----

    @abc.abstractmethod
    def adapters_reason(self, m: LoadedModel) -> Optional[str]:
        """Why ``m`` has no adapters whose bottlenecks the adapter energy could probe."""

    @abc.abstractmethod
    def gradient_loss_reason(self, m: LoadedModel) -> Optional[str]:
        """Why ``m`` has no loss to take gradients of, given data with transcripts."""

    @abc.abstractmethod
    def adapter_bottlenecks(self, model: nn.Module) -> dict[str, Bottleneck]:
        """The bottleneck of every adapter in ``model``, by name."""

    @abc.abstractmethod
    def untrained_adapters(self, model: nn.Module) -> ContextManager[nn.Module]:
        """A context in which the adapters of ``model`` are as at the start of training."""

    @abc.abstractmethod
    def loss(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        """The scalar loss of ``batch`` that the adapter energy takes gradients of."""

    @abc.abstractmethod
    def loss_name(self, m: LoadedModel, batches: Sequence[Batch]) -> str:
        """What ``loss`` is on these batches (``analysis.json``'s ``energy_loss``)."""

    # ----- the analyses that one family alone supports -----

    @abc.abstractmethod
    def ablation_reason(self, m: LoadedModel) -> Optional[str]:
        """Why the layer ablation cannot erase the blocks of ``m`` (its CTC head is asked separately)."""

    @abc.abstractmethod
    def decoder_reason(self, m: LoadedModel) -> Optional[str]:
        """Why ``m`` has no attention decoder that the decoder analyses can teacher-force."""

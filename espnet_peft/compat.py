"""What differs between the supported ESPnet releases, in one place.

* espnet <= 202511 keeps the legacy network code in ``espnet.nets``; espnet 202609+ moved it to
  ``espnet2.legacy.nets`` (the old package is gone). :func:`legacy_nets` imports from whichever is installed, so that
  ``isinstance`` checks see the classes ESPnet's own models are built from.
* espnet 202609+ zero the padded frames of an E-Branchformer block before its merge convolution
  (:func:`ebf_masks_padding_before_merge`); 202511 convolves over them. The block output at valid frames next to
  padding therefore differs between the releases.
* espnet 202609+ make the conv subsampling's output projection a bare ``Linear`` (``embed.out``, with a load hook
  for old keys); 202511 wraps it with the positional encoding in a ``Sequential`` (``embed.out.0``)
  (:func:`subsampling_projection`).
* ESPnet 202511's joint CTC/attention beam search hands its CTC scorer the OWSM prompt as emitted labels; 202611's
  hands it the transcript alone (:func:`espnet_ctc_prefix`; measured: on 40 source-test utterances of the embedded
  model at CTC weight 0.3, beam 1, our greedy search with that prefix equals each release's hypotheses 40 of 40).

Both releases have the same Whisper encoder, decoder and token types; what they need from today's openai-whisper
(an offline ``load_model``, ``whisper.audio.N_MELS``, the Hugging Face tokenizer API) is in ``espnet_peft.whisper``.
"""

from __future__ import annotations

import importlib
import importlib.util
from functools import lru_cache
from types import ModuleType

import torch


@lru_cache(maxsize=None)
def legacy_nets_package() -> str:
    """``espnet2.legacy.nets`` (espnet 202609+) or ``espnet.nets`` (espnet <= 202511)."""
    return "espnet2.legacy.nets" if importlib.util.find_spec("espnet2.legacy") is not None else "espnet.nets"


def legacy_nets(module: str) -> ModuleType:
    """``<legacy nets package>.<module>``, e.g. ``legacy_nets("pytorch_backend.transformer.mask")``."""
    return importlib.import_module(f"{legacy_nets_package()}.{module}")


@lru_cache(maxsize=None)
def ebf_masks_padding_before_merge() -> bool:
    """Whether ESPnet's E-Branchformer block zeroes padded frames before ``depthwise_conv_fusion``."""
    from espnet2.asr.encoder import e_branchformer_encoder

    return hasattr(e_branchformer_encoder, "mask_padded_frames")


@lru_cache(maxsize=None)
def subsampling_projection() -> str:
    """The name of the conv subsampling's output ``Linear`` under ``encoder.embed``: ``out.0`` or ``out``."""
    subsampling = legacy_nets("pytorch_backend.transformer.subsampling").Conv2dSubsampling(8, 4, 0.0)
    return "out.0" if isinstance(subsampling.out, torch.nn.Sequential) else "out"


@lru_cache(maxsize=None)
def espnet_ctc_prefix() -> str:
    """The ``ctc_prefix`` of ``espnet_peft.inference.greedy`` that the installed ESPnet's beam search uses."""
    from importlib.metadata import version

    return "text" if int(version("espnet")[:6]) >= 202611 else "prompt"


def stock_ctc_cli_reads_mono_audio() -> bool:
    """Whether ``python -m espnet2.bin.s2t_inference_ctc --beam_size 1`` decodes a plain (mono) ``wav.scp``.

    ESPnet 202611's greedy CTC path rejects what its own loader hands it: "speech of size (56000, 1) is not one
    utterance; use batch_decode for a batch" (seen on the recipe's 16 kHz mono audio); 202511's decodes it.
    """
    from importlib.metadata import version

    return int(version("espnet")[:6]) < 202611

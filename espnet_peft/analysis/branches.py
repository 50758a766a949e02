"""Per-branch contribution: how large is each branch's update inside an encoder block, relative to the block input?

``contribution.layer_contribution`` measures a block's update as a whole; this splits it into the branches the block
adds to its residual stream, read by forward hooks on the branch modules and scaled as the block scales them
(``ff_scale`` = 0.5 on both FFNs of a macaron block, 1 otherwise; dropout and stochastic depth are identities in eval
mode). Per architecture (the blocks' ``forward`` in espnet / espnet2):

* Transformer (``transformer/encoder_layer.py``): ``self_attn``, ``feed_forward``;
* Conformer (``conformer/encoder_layer.py``): ``feed_forward_macaron``, ``self_attn``, ``conv_module``,
  ``feed_forward`` (then ``norm_final``);
* E-Branchformer (``e_branchformer_encoder.py``): ``feed_forward_macaron``, ``merge`` (the ``merge_proj`` output: the
  attention and cgMLP branches are concatenated, fused and projected *before* the residual add), ``feed_forward``
  (then ``norm_final``). Its ``attn`` and ``cgmlp`` branch outputs are reported too, but they are not residual
  updates themselves (``Branch.residual`` is False): they show each branch's size next to the merged update;
* Transformer decoder (``transformer/decoder_layer.py``): ``self_attn``, ``sequential_attn`` (when the block has
  one), ``src_attn`` (attention over the encoder output), ``feed_forward``. In a post-norm block
  (``normalize_before`` False) each branch's add is followed by its norm, so the update is read as the change of the
  residual stream across branch + norm (``Branch.stream``): the updates still sum to the block's output;
* openai-whisper ``ResidualAttentionBlock`` (ESPnet's Whisper encoder and decoder, ``whisper/model.py``), pre-norm:
  ``self_attn`` (``attn``), ``src_attn`` (``cross_attn``, decoder blocks only), ``feed_forward`` (``mlp``);
* Hugging Face encoder layers: Whisper (pre-norm) ``self_attn``, ``feed_forward`` (the ``fc2`` output); Wav2Vec2 /
  HuBERT with ``do_stable_layer_norm`` (pre-norm) ``self_attn`` (``attention``), ``feed_forward`` (and
  ``adapter_layer`` when present); Wav2Vec2 / HuBERT post-norm ``self_attn`` and ``feed_forward`` read as stream
  changes across ``layer_norm`` and ``final_layer_norm`` (``Branch.stream``), as in a post-norm decoder block.

With ``concat_after`` the attention update is ``concat_linear([x, att])``, so that module is read as ``self_attn``
(in a decoder block ``concat_linear1`` / ``3`` / ``2`` for ``self_attn`` / ``sequential_attn`` / ``src_attn``).
Per frame the value is ``||branch update|| / ||block input||``, averaged over real frames. In a pre-norm block the
residual updates sum to the block's pre-``norm_final`` update. See ``docs/analysis-definitions.md``, "Branch
contribution".
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from espnet_peft.analysis.model_access import Capture, EspnetEncoderAccess, ModelAccess, _hidden
from espnet_peft.compat import legacy_nets

#: guards the ratios against all-zero frames (padding, or a dead block input)
_EPS = 1e-12


@dataclasses.dataclass(frozen=True)
class Branch:
    """A branch inside a block: its name, the module whose output it is, the factor the block multiplies that output
    by, and whether the (scaled) output is added to the residual stream directly. ``stream``: the module's output is
    the residual stream after the branch (a post-norm block's norm), so the update is that minus the stream before."""

    name: str
    module: nn.Module
    scale: float = 1.0
    residual: bool = True
    stream: bool = False


def _attention(block: nn.Module) -> Branch:
    if getattr(block, "concat_after", False):
        return Branch("self_attn", block.concat_linear)
    return Branch("self_attn", block.self_attn)


def _optional(name: str, module: nn.Module | None, scale: float = 1.0) -> list[Branch]:
    return [] if module is None else [Branch(name, module, scale)]


def _decoder_branches(block: nn.Module) -> list[Branch]:
    # (name, attention module, its concat_after projection, its norm), in the block's forward order
    attentions = [("self_attn", block.self_attn, "concat_linear1", block.norm1)]
    if getattr(block, "sequential_attn", None) is not None:  # attention over a second memory, when built with one
        attentions.append(("sequential_attn", block.sequential_attn, "concat_linear3", block.norm4))
    attentions.append(("src_attn", block.src_attn, "concat_linear2", block.norm2))
    if not block.normalize_before:  # post-norm: only the norms' outputs are points of the residual stream
        return [Branch(name, norm, stream=True) for name, _, _, norm in attentions] + [
            Branch("feed_forward", block.norm3, stream=True)]
    return [Branch(name, getattr(block, concat) if block.concat_after else attention)
            for name, attention, concat, _ in attentions] + [Branch("feed_forward", block.feed_forward)]


#: Hugging Face encoder layers by class name (no transformers import needed to tell them)
_HF_WHISPER = ("WhisperEncoderLayer",)
_HF_PRE_NORM = ("Wav2Vec2EncoderLayerStableLayerNorm", "HubertEncoderLayerStableLayerNorm")
_HF_POST_NORM = ("Wav2Vec2EncoderLayer", "HubertEncoderLayer")


def _hf_branches(block: nn.Module) -> list[Branch] | None:
    """The branches of a Hugging Face Whisper / Wav2Vec2 / HuBERT encoder layer; None for any other block."""
    name = type(block).__name__
    if name in _HF_WHISPER:  # pre-norm: x + self_attn(norm(x)), then + fc2(act(fc1(norm(.))))
        return [Branch("self_attn", block.self_attn), Branch("feed_forward", block.fc2)]
    if name in _HF_PRE_NORM:
        return [Branch("self_attn", block.attention), Branch("feed_forward", block.feed_forward),
                *_optional("adapter_layer", getattr(block, "adapter_layer", None))]
    if name in _HF_POST_NORM:  # layer_norm(x + attention(x)), then final_layer_norm(y + feed_forward(y))
        return [Branch("self_attn", block.layer_norm, stream=True),
                Branch("feed_forward", block.final_layer_norm, stream=True)]
    return None


def _whisper_branches(block: nn.Module) -> list[Branch] | None:
    """The branches of an openai-whisper block (x + attn(attn_ln(x)), + cross_attn(...), + mlp(mlp_ln(.))); None for
    any other block. Told by class, as the HF layers are: no whisper import for models without it."""
    if type(block).__name__ != "ResidualAttentionBlock" or not type(block).__module__.startswith("whisper"):
        return None
    return [Branch("self_attn", block.attn), *_optional("src_attn", block.cross_attn),
            Branch("feed_forward", block.mlp)]


def block_branches(block: nn.Module) -> list[Branch]:
    """The branches of an ESPnet Transformer, Conformer or E-Branchformer encoder block, of a Transformer decoder
    block, of an openai-whisper block (ESPnet's Whisper encoder / decoder) or of a Hugging Face Whisper / Wav2Vec2 /
    HuBERT encoder layer, in forward order."""
    known = _hf_branches(block) or _whisper_branches(block)
    if known is not None:  # before the ESPnet imports: an HF-only run never loads ESPnet
        return known
    from espnet2.asr.encoder.e_branchformer_encoder import EBranchformerEncoderLayer

    ConformerLayer = legacy_nets("pytorch_backend.conformer.encoder_layer").EncoderLayer
    TransformerLayer = legacy_nets("pytorch_backend.transformer.encoder_layer").EncoderLayer
    DecoderLayer = legacy_nets("pytorch_backend.transformer.decoder_layer").DecoderLayer

    if isinstance(block, EBranchformerEncoderLayer):
        return [
            *_optional("feed_forward_macaron", block.feed_forward_macaron, block.ff_scale),
            Branch("attn", block.attn, residual=False),
            Branch("cgmlp", block.cgmlp, residual=False),
            Branch("merge", block.merge_proj),
            *_optional("feed_forward", block.feed_forward, block.ff_scale),
        ]
    if isinstance(block, ConformerLayer):
        return [
            *_optional("feed_forward_macaron", block.feed_forward_macaron, block.ff_scale),
            _attention(block),
            *_optional("conv_module", block.conv_module),
            Branch("feed_forward", block.feed_forward, block.ff_scale),
        ]
    if isinstance(block, TransformerLayer):
        return [_attention(block), Branch("feed_forward", block.feed_forward)]
    if isinstance(block, DecoderLayer):
        return _decoder_branches(block)
    raise TypeError(
        f"no branch layout for {type(block).__name__}; supported: Transformer, Conformer and E-Branchformer encoder "
        f"blocks, Transformer decoder blocks, openai-whisper blocks and Hugging Face Whisper / Wav2Vec2 / HuBERT "
        f"encoder layers"
    )


@dataclasses.dataclass
class BranchUpdates:
    """One forward pass: the capture (block inputs and outputs) and, per block, each branch's scaled update."""

    capture: Capture
    updates: list[dict[str, torch.Tensor]]


@contextlib.contextmanager
def _record_branches(blocks: list[nn.Module], updates: list[dict[str, torch.Tensor]]) -> Iterator[None]:
    def make_hook(store: dict[str, torch.Tensor], branch: Branch) -> Any:
        def hook(module: nn.Module, args: tuple, output: Any) -> None:
            store[branch.name] = branch.scale * _hidden(output).detach()

        return hook

    handles = []
    try:
        for block in blocks:
            store: dict[str, torch.Tensor] = {}
            updates.append(store)
            handles += [b.module.register_forward_hook(make_hook(store, b)) for b in block_branches(block)]
        yield
    finally:
        for handle in handles:
            handle.remove()


def _stream_to_updates(branches: list[Branch], store: dict[str, torch.Tensor], block_input: torch.Tensor) -> None:
    """Replace each ``stream`` branch's recorded stream by its update: the change from the stream before it."""
    if not any(branch.stream for branch in branches):
        return  # pre-norm blocks: every update was read directly
    stream = block_input
    for branch in branches:
        if branch.residual:
            if branch.stream:
                store[branch.name] = store[branch.name] - stream
            stream = stream + store[branch.name]


def branch_updates(access: ModelAccess, *args: Any, **kwargs: Any) -> BranchUpdates:
    """Run ``access`` once on ``args``/``kwargs`` (model in eval mode) and keep every branch's scaled update."""
    updates: list[dict[str, torch.Tensor]] = []
    blocks = list(access.layer_modules())
    with _record_branches(blocks, updates):
        cap = access.capture(*args, with_inputs=True, **kwargs)
    for block, store, block_input in zip(blocks, updates, cap.layer_inputs):
        _stream_to_updates(block_branches(block), store, block_input)
    return BranchUpdates(capture=cap, updates=updates)


@dataclasses.dataclass
class BranchContribution:
    """``branches[name][l]``: mean over real frames of ``||update|| / ||block input||`` of branch ``name`` in block
    ``l`` (NaN where the block has no such branch)."""

    layers: list[str]
    branches: dict[str, list[float]]

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable; a missing branch (NaN) becomes None."""
        return {
            "layers": list(self.layers),
            "branches": {
                name: [None if math.isnan(v) else v for v in values] for name, values in self.branches.items()
            },
        }


def mean_ratio(update: torch.Tensor, block_input: torch.Tensor, mask: torch.Tensor | None) -> float:
    """Mean over (real) frames of ``‖update‖ / ‖block input‖``."""
    # float64: ratios of norms over many frames
    ratio = update.double().norm(dim=-1) / block_input.double().norm(dim=-1).clamp_min(_EPS)
    return float(ratio[mask].mean() if mask is not None else ratio.mean())


def branch_contribution(access: EspnetEncoderAccess, *args: Any, **kwargs: Any) -> BranchContribution:
    """Per-branch update size of every block; ``args``/``kwargs`` go to ``access.capture`` (e.g. ``speech,
    speech_lengths`` with ``EspnetEncoderAccess.for_asr_model``)."""
    result = branch_updates(access, *args, **kwargs)
    cap = result.capture
    names = list(dict.fromkeys(name for per_block in result.updates for name in per_block))
    branches = {
        name: [
            mean_ratio(per_block[name], block_input, cap.mask) if name in per_block else math.nan
            for per_block, block_input in zip(result.updates, cap.layer_inputs)
        ]
        for name in names
    }
    return BranchContribution(layers=access.layers(), branches=branches)

"""Model access: the one place that knows where a model keeps its layers and how to read their hidden states.

Analysis code (logit lens, layer contribution, CKA over layers, ...) talks to a ``ModelAccess``: ``layers()`` names the
layers, ``capture(*args, **kwargs)`` runs the model once and returns each layer's output (and, on request, its
input) as ``[B, T, D]`` tensors, read by forward hooks on the layer modules. The hooks are removed when the forward
pass ends, also when it raises, so a failed capture never leaves a model that keeps recording.

Two implementations:

* ``EspnetEncoderAccess``: ESPnet encoders whose blocks live in ``encoder.encoders`` (Transformer, Conformer,
  E-Branchformer). Their blocks take and return ``(x, mask)``, or ``((x, pos_emb), mask)`` with relative positional
  encodings; the hidden state is the ``x`` part. The last block's output is the encoder output *before*
  ``after_norm``. ESPnet's Whisper encoder (``OpenAIWhisperEncoder``) keeps the openai-whisper ``AudioEncoder`` in
  ``encoder.encoders``: its blocks are ``encoders.blocks`` (tensor in, tensor out) and its final norm
  ``encoders.ln_post`` (``stack_blocks`` tells the two layouts apart, for the decoders too).
* ``HFAccess``: Hugging Face ``transformers`` Whisper (encoder), Wav2Vec2 and HuBERT, bare or ``*ForCTC``, loaded with
  ``from_pretrained(local_dir)``. The last layer's output is taken before any final encoder norm (Whisper's
  ``encoder.layer_norm``, the stable-layer-norm Wav2Vec2/HuBERT variants' ``encoder.layer_norm``): ``final_norm()``
  returns that module so that callers can apply it, as the model does, to compare with ``last_hidden_state``.
"""

from __future__ import annotations

import abc
import contextlib
import dataclasses
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from torch import nn


@dataclasses.dataclass
class Capture:
    """What one forward pass left behind.

    ``hidden_states[l]``: output of layer ``l``, ``[B, T, D]``; ``layer_inputs[l]``: its input (empty unless asked
    for); ``output``: what the model's forward returned; ``mask``: ``[B, T]`` bool, True on real (non-padded) frames,
    or None when the access cannot tell (then every frame counts as real).
    """

    hidden_states: list[torch.Tensor]
    layer_inputs: list[torch.Tensor]
    output: Any
    mask: torch.Tensor | None = None


def _hidden(value: Any) -> torch.Tensor:
    # Blocks pass tuples around: (x, mask), ((x, pos_emb), mask), HF (hidden, attn_weights, ...); x is the first leaf.
    while isinstance(value, (tuple, list)):
        value = value[0]
    if not isinstance(value, torch.Tensor):
        raise TypeError(
            f"cannot find a hidden-state tensor in a layer's {type(value).__name__}"
        )
    return value


def lengths_to_mask(lengths: torch.Tensor, max_len: int) -> torch.Tensor:
    """``[B]`` lengths as a ``[B, max_len]`` bool mask, True on the first ``lengths[b]`` frames."""
    return torch.arange(max_len, device=lengths.device)[None, :] < lengths[:, None]


def stack_blocks(stack: nn.Module) -> tuple[Sequence[nn.Module], str]:
    """The blocks of an ESPnet encoder's ``encoders`` or decoder's ``decoders``, and their path below it.

    A module list is the blocks itself (``""``); ESPnet's Whisper wrappers hold a whole openai-whisper
    ``AudioEncoder`` / ``TextDecoder`` there, whose blocks are its ``blocks`` list.
    """
    blocks = getattr(stack, "blocks", None)
    return (blocks, ".blocks") if isinstance(blocks, nn.ModuleList) else (stack, "")


class ModelAccess(abc.ABC):
    """Layers of a model and their hidden states, read with forward hooks."""

    @abc.abstractmethod
    def layer_modules(self) -> Sequence[nn.Module]:
        """The layer modules, in forward order."""

    @abc.abstractmethod
    def _run(self, *args: Any, **kwargs: Any) -> Any:
        """One forward pass of the wrapped model."""

    def _mask(self, output: Any, hidden: torch.Tensor) -> torch.Tensor | None:
        """Valid-frame mask for ``hidden`` ``[B, T, D]`` given the forward's output; None: all frames are real."""
        return None

    #: layer names are "<prefix>.<index>", the layers' path inside the wrapped module
    prefix: str = "layers"

    def layers(self) -> list[str]:
        """Names of the layers, in forward order (``"<prefix>.<index>"``)."""
        return [f"{self.prefix}.{i}" for i in range(len(self.layer_modules()))]

    @contextlib.contextmanager
    def _hooks(self, outs: list[Any], ins: list[Any] | None) -> Iterator[None]:
        modules = list(self.layer_modules())
        outs.extend([None] * len(modules))
        if ins is not None:
            ins.extend([None] * len(modules))

        def make_hook(i: int) -> Callable:
            def hook(module: nn.Module, args: tuple, output: Any) -> None:
                outs[i] = _hidden(output).detach()
                if ins is not None:
                    ins[i] = _hidden(args).detach()

            return hook

        handles = [m.register_forward_hook(make_hook(i)) for i, m in enumerate(modules)]
        try:
            yield
        finally:  # also on exceptions: a model must not keep recording after a failed capture
            for h in handles:
                h.remove()

    def capture(
        self, *args: Any, with_inputs: bool = False, grad: bool = False, **kwargs: Any
    ) -> Capture:
        """Run the model on ``args``/``kwargs`` once and return every layer's output (and input if ``with_inputs``).

        ``grad=False`` runs under ``torch.no_grad()`` (analysis only reads activations). A layer that did not run
        (e.g. a truncated forward) is an error rather than a silently shorter list.
        """
        outs: list[Any] = []
        ins: list[Any] | None = [] if with_inputs else None
        ctx = contextlib.nullcontext() if grad else torch.no_grad()
        with ctx, self._hooks(outs, ins):
            output = self._run(*args, **kwargs)
        missing = [name for name, o in zip(self.layers(), outs) if o is None]
        if missing:
            raise RuntimeError(f"layers did not run during capture: {missing}")
        return Capture(
            hidden_states=outs,
            layer_inputs=list(ins) if ins is not None else [],
            output=output,
            mask=self._mask(output, outs[-1]),
        )


class EspnetEncoderAccess(ModelAccess):
    """ESPnet encoder blocks (``encoder.encoders``).

    ``run`` is what ``capture`` calls; by default ``encoder(xs_pad, ilens)`` on features. Pass ``model.encode`` of an
    ``ESPnetASRModel`` to capture from raw audio (frontend + normalisation + encoder): ``for_asr_model`` does that.
    The mask comes from the output lengths that both return as their second element.
    """

    def __init__(self, encoder: nn.Module, run: Callable[..., Any] | None = None):
        if not hasattr(encoder, "encoders"):
            raise TypeError(f"{type(encoder).__name__} has no `encoders` block list")
        self.encoder = encoder
        self.run = run if run is not None else encoder
        self.blocks, below = stack_blocks(encoder.encoders)
        self.prefix = f"encoders{below}"

    @classmethod
    def for_asr_model(cls, model: nn.Module) -> EspnetEncoderAccess:
        """Access to ``model.encoder``, capturing from ``model.encode(speech, speech_lengths)``."""
        return cls(model.encoder, run=model.encode)

    def layer_modules(self) -> Sequence[nn.Module]:
        return list(self.blocks)

    def final_norm(self) -> nn.Module | None:
        """``after_norm`` when the encoder applies one after its last block (pre-norm layouts), Whisper's
        ``encoders.ln_post``, else None."""
        norm = getattr(self.encoder, "after_norm", None)
        return norm if norm is not None else getattr(self.encoder.encoders, "ln_post", None)

    def _run(self, *args: Any, **kwargs: Any) -> Any:
        return self.run(*args, **kwargs)

    def _mask(self, output: Any, hidden: torch.Tensor) -> torch.Tensor | None:
        # encoder(...) -> (out, olens, states); model.encode(...) -> (out, olens)
        if (
            isinstance(output, tuple)
            and len(output) >= 2
            and isinstance(output[1], torch.Tensor)
        ):
            return lengths_to_mask(output[1], hidden.shape[1])
        return None


#: where the supported HF models keep their encoder (first match wins)
_HF_ENCODER_PATHS = ("wav2vec2.encoder", "hubert.encoder", "model.encoder", "encoder")


class HFAccess(ModelAccess):
    """Encoder layers of a Hugging Face Whisper / Wav2Vec2 / HuBERT model (bare or ``*ForCTC``).

    ``capture(**inputs)`` calls ``model(**inputs)``, except for encoder-decoder models (Whisper), where it calls the
    encoder alone (no decoder inputs are needed to read encoder layers). No mask: HF audio encoders see padded frames
    as real unless an attention mask is passed, and their frame-level masks are model-specific.
    """

    prefix = "encoder.layers"

    def __init__(self, model: nn.Module):
        self.model = model
        self.encoder = self._find_encoder(model)

    @classmethod
    def from_pretrained(
        cls, local_dir: str, model_class: Any = None, **kwargs: Any
    ) -> HFAccess:
        """Load ``model_class`` (default: ``AutoModel``) from a local directory, in eval mode."""
        if model_class is None:
            from transformers import AutoModel  # lazy: transformers is slow to import

            model_class = AutoModel
        model = model_class.from_pretrained(local_dir, **kwargs)
        model.eval()
        return cls(model)

    @staticmethod
    def _find_encoder(model: nn.Module) -> nn.Module:
        if hasattr(model, "layers") and isinstance(model.layers, nn.ModuleList):
            return model  # already an encoder (e.g. WhisperEncoder)
        for path in _HF_ENCODER_PATHS:
            module: Any = model
            for attr in path.split("."):
                module = getattr(module, attr, None)
            if module is not None and isinstance(
                getattr(module, "layers", None), nn.ModuleList
            ):
                return module
        raise TypeError(f"cannot find encoder layers in {type(model).__name__}")

    def layer_modules(self) -> Sequence[nn.Module]:
        return list(self.encoder.layers)

    def final_norm(self) -> nn.Module | None:
        """The norm the encoder applies after its last layer, or None.

        Whisper always has one; Wav2Vec2/HuBERT only in the stable-layer-norm (pre-norm) variant, whereas the
        post-norm variant applies its ``layer_norm`` *before* the first layer.
        """
        config = getattr(self.model, "config", None)
        is_w2v_like = hasattr(self.encoder, "pos_conv_embed")
        if is_w2v_like and not getattr(config, "do_stable_layer_norm", False):
            return None
        return getattr(self.encoder, "layer_norm", None)

    def _run(self, *args: Any, **kwargs: Any) -> Any:
        config = getattr(self.model, "config", None)
        if getattr(config, "is_encoder_decoder", False):
            return self.encoder(*args, **kwargs)
        return self.model(*args, **kwargs)

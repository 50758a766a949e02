"""Step-by-step decoding of ESPnet's ``OpenAIWhisperDecoder`` with openai-whisper's own key/value cache.

ESPnet's ``OpenAIWhisperDecoder.forward_one_step`` keeps no cache: every step runs the whole prefix again and
projects the encoder output to cross-attention keys and values again, which on a 15 s window costs far more than the
step itself. openai-whisper's ``TextDecoder`` takes a ``kv_cache`` dict that forward hooks on each attention's
``key`` and ``value`` projections fill (``Whisper.install_kv_cache_hooks``): self-attention grows by one position per
step, cross-attention is projected once. This class installs those hooks on the decoder ESPnet holds (after any
adapter has replaced a projection, so the hook sits on the module that runs) and feeds one new token per step. The
arithmetic per position is the one ``forward_one_step`` does, so the greedy choices are ESPnet's
(``tests/test_whisper_decode.py`` checks them against ``espnet2.bin.asr_inference``).
"""

from __future__ import annotations

from typing import Dict, List

import torch


class WhisperSteps:
    def __init__(self, decoder: torch.nn.Module):
        from whisper.model import MultiHeadAttention

        self.text_decoder = decoder.decoders  # whisper.model.TextDecoder
        self.n_text_ctx = self.text_decoder.positional_embedding.size(0)
        self.cache: Dict[torch.nn.Module, torch.Tensor] = {}
        self.hooks: List[torch.utils.hooks.RemovableHandle] = []
        for module in self.text_decoder.modules():
            if isinstance(module, MultiHeadAttention):
                for projection in (module.key, module.value):
                    self.hooks.append(projection.register_forward_hook(self._save))

    def _save(self, module: torch.nn.Module, _inputs, output: torch.Tensor) -> torch.Tensor:
        # cross-attention projects the encoder frames (more than n_text_ctx): stored once, as openai-whisper does
        if module not in self.cache or output.size(1) > self.n_text_ctx:
            self.cache[module] = output
        else:
            self.cache[module] = torch.cat([self.cache[module], output], dim=1).detach()
        return self.cache[module]

    def step(self, ys: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        """``[rows, vocab]`` log-probabilities after the prefixes ``ys`` (the whole prompt first, then one token)."""
        fed = ys if not self.cache else ys[:, -1:]
        if ys.size(1) > self.n_text_ctx:
            raise ValueError(f"a Whisper hypothesis cannot outgrow the decoder's {self.n_text_ctx} positions: "
                             "cap it with --maxlenratio")
        logits = self.text_decoder(fed, memory, kv_cache=self.cache)
        return torch.log_softmax(logits[:, -1], dim=-1)

    def keep(self, rows: torch.Tensor) -> None:
        for module, value in self.cache.items():
            self.cache[module] = value[rows]

    def __enter__(self) -> "WhisperSteps":
        return self

    def __exit__(self, *_exc) -> None:  # the hooks go, so the model decodes and trains as before afterwards
        for hook in self.hooks:
            hook.remove()
        self.hooks.clear()
        self.cache.clear()

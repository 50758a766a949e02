"""Batched greedy decoding of ESPnet S2T (OWSM-style) encoder-decoder models.

ESPnet's ``Speech2Text`` decodes one utterance at a time through its beam search: with ``beam_size 1`` and
``ctc_weight 0`` it picks, at every step, the decoder's most likely token after its ``ScoreFilter`` has ruled out
timestamp tokens (``<notimestamps>`` is in the prompt). This module makes the same choices for a whole batch at once:

* every input is padded or trimmed to the model's fixed window (``preprocessor_conf.speech_length``), exactly as
  ``Speech2Text`` does, so all encoder outputs have the same length and batching changes no frame;
* the decoder runs one step for all unfinished hypotheses, with its key/value cache; finished rows leave the batch;
* the length limit follows ESPnet's ``maxlenratio`` rule (0: the encoder length; > 0: ratio x encoder length;
  < 0: an absolute number of tokens), and a hypothesis still running at the limit is closed there, as ESPnet does.

With ``ctc_weight > 0`` the step is joint CTC/attention, as in ESPnet's beam search with a CTC scorer: the
``ctc_candidates`` tokens the decoder likes best are rescored with ``(1 - ctc_weight) * decoder + ctc_weight * CTC
prefix score`` (ESPnet's own ``CTCPrefixScoreTH``), and the best of them is taken. The CTC prefix score of a token
the audio does not support is very low, so a hypothesis cannot loop ("alice alice alice ...") past what the frames
hold, and ``<eos>`` is scored by the probability of the whole prefix. ESPnet's ``Speech2Text`` rescores
``int(1.5 * beam_size)`` candidates, i.e. one at beam 1, where CTC cannot change a choice; this module is that
search with a wider candidate list (``BatchBeamSearch`` with ``beam_size=1, pre_beam_ratio=ctc_candidates``).

The CTC prefix is the transcript alone (``ctc_prefix="text"``, the default). ESPnet 202511's beam search hands the scorer
the whole hypothesis, OWSM prompt included, and ``CTCPrefixScoreTH`` counts every token after ``<sos>`` as an
emitted label: the first transcript token then cannot start before encoder frame ``len(primer) - 1`` (3 frames,
180 ms at 6x subsampling), and speech that starts at once loses its first sounds ("why was" -> "was", "jane's" ->
"ge's"; on the embedded source model at CTC weight 0.5, source_dev WER is 24.6% that way and 9.2% with the
transcript alone). ``ctc_prefix="prompt"`` counts the prompt that way, for parity with ESPnet 202511; ESPnet 202611's
beam search scores the transcript alone, as ``"text"`` does (``espnet_peft.compat.espnet_ctc_prefix``).

``tests/test_batch_decode.py`` checks the hypotheses against ``espnet2.bin.s2t_inference`` token for token, without
CTC and, with the installed ESPnet's prefix, at the recipe's CTC weight 0.3 (at 0.5 an untrained model's run-on hypotheses
end later than ESPnet's: open); and that the text prefix scores the first token as a prompt-free CTC would.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from espnet_peft.compat import legacy_nets

CTCPrefixScoreTH = legacy_nets("ctc_prefix_score").CTCPrefixScoreTH
subsequent_mask = legacy_nets("pytorch_backend.transformer.mask").subsequent_mask

CTC_CANDIDATES = 10  # tokens rescored by CTC per step (ESPnet's pre-beam of a 6-7 wide beam)
CTC_PREFIXES = ("text", "prompt")  # what the CTC scorer sees: the transcript after the prompt, or prompt + transcript
WORD_START = "\u2581"  # sentencepiece's mark of a piece that begins a word


@dataclass(frozen=True)
class Prompt:
    """The decoder prompt and the ids the greedy search needs (from the model's token list)."""

    primer: List[int]            # <sos> <lang> <task> <notimestamps>
    eos: int
    blank: int
    suppressed: List[int]        # timestamp tokens: never emitted after <notimestamps>
    word_starts: List[int] = field(default_factory=list)  # pieces that open a word ("\u2581..."): --word_penalty


def make_prompt(token_list: Sequence[str], sos: int, eos: int, blank: int, lang_sym: str, task_sym: str,
                notime_sym: str, first_time_sym: str, last_time_sym: str) -> Prompt:
    """The prompt ESPnet's ``Speech2Text`` builds for a transcript without timestamps and without a previous text."""
    index = {token: i for i, token in enumerate(token_list)}
    for symbol in (lang_sym, task_sym, notime_sym, first_time_sym, last_time_sym):
        if symbol not in index:
            raise ValueError(f"{symbol!r} is not in the model's token list: check --lang_sym/--task_sym and the "
                             "model's preprocessor_conf")
    return Prompt(primer=[sos, index[lang_sym], index[task_sym], index[notime_sym]], eos=eos, blank=blank,
                  suppressed=list(range(index[first_time_sym], index[last_time_sym] + 1)),
                  word_starts=[i for i, token in enumerate(token_list) if token.startswith(WORD_START)])


def fixed_window(waveforms: Sequence[np.ndarray], n_samples: int) -> torch.Tensor:
    """``[batch, n_samples]`` float32: each waveform trimmed or zero-padded to the model's window."""
    rows = []
    for wave in waveforms:
        row = torch.as_tensor(np.asarray(wave, dtype=np.float32))
        if row.dim() != 1:
            raise ValueError(f"expected mono audio, got shape {tuple(row.shape)}")
        rows.append(row[:n_samples] if row.numel() >= n_samples else F.pad(row, (0, n_samples - row.numel())))
    return torch.stack(rows)


def max_length(maxlenratio: float, encoder_frames: int) -> int:
    """ESPnet's ``BeamSearch.forward`` rule for the number of decoding steps."""
    if maxlenratio == 0:
        return encoder_frames
    if maxlenratio < 0:
        return -int(maxlenratio)
    return max(1, int(maxlenratio * encoder_frames))


class _CTCPrefix:
    """ESPnet's batched CTC prefix scorer for the rows still decoding; rebuilt when rows leave the batch."""

    def __init__(self, ctc_logp: torch.Tensor, blank: int, eos: int, skip: int = 0):
        # skip: leading prompt tokens hidden from the scorer (its first token stands for <sos>)
        self.ctc_logp, self.blank, self.eos, self.skip = ctc_logp, blank, eos, skip
        self._build(ctc_logp)
        self.state = None

    def _build(self, logp: torch.Tensor) -> None:
        lengths = torch.full((logp.size(0),), logp.size(1), dtype=torch.long, device=logp.device)
        self.impl = CTCPrefixScoreTH(logp.clone(), lengths, self.blank, self.eos)

    def score(self, ys: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
        """``[rows, vocab]`` CTC prefix score gains of each candidate (very low elsewhere)."""
        scores, self._pending = self.impl(ys[:, self.skip:], self.state, candidates)
        return scores

    def advance(self, token: torch.Tensor) -> None:
        """Keep the CTC state of the chosen token of every row."""
        self.state = self.impl.index_select_state(self._pending, token.unsqueeze(1))

    def keep(self, rows: torch.Tensor) -> None:
        r, s, f_min, f_max = self.state
        self.ctc_logp = self.ctc_logp[rows]
        self._build(self.ctc_logp)
        self.state = (r[:, :, rows], s[rows], f_min, f_max)


class _TransformerSteps:
    """ESPnet's Transformer-style ``forward_one_step`` with its per-layer cache."""

    def __init__(self, decoder: torch.nn.Module):
        self.decoder, self.cache = decoder, None

    def step(self, ys: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        mask = subsequent_mask(ys.size(1), device=ys.device).unsqueeze(0)
        logp, self.cache = self.decoder.forward_one_step(ys, mask, memory, cache=self.cache)
        return logp

    def keep(self, rows: torch.Tensor) -> None:
        self.cache = [layer[rows] for layer in self.cache]

    def __enter__(self) -> "_TransformerSteps":
        return self

    def __exit__(self, *_exc) -> None:
        self.cache = None


def decoder_steps(decoder: torch.nn.Module):
    """The step-by-step view of ``decoder``: ``step(ys, memory) -> [rows, vocab]`` log-probabilities of the next
    token after the prefixes ``ys``, and ``keep(rows)`` when rows leave the batch."""
    if type(decoder).__name__ == "OpenAIWhisperDecoder":  # its forward_one_step keeps no cache
        from espnet_peft.inference.whisper_steps import WhisperSteps

        return WhisperSteps(decoder)
    return _TransformerSteps(decoder)


@torch.no_grad()
def greedy_decode(model: torch.nn.Module, speech: torch.Tensor, prompt: Prompt, maxlenratio: float = 0.0,
                  ctc_weight: float = 0.0, ctc_candidates: int = CTC_CANDIDATES,
                  ctc_prefix: str = "text", word_penalty: float = 0.0) -> List[List[int]]:
    """Token ids (prompt and ``<eos>`` removed, blanks dropped) for every row of ``speech`` ``[batch, samples]``.

    ``model`` is an ESPnet S2T model (``encode`` + a Transformer-style ``decoder.forward_one_step``, and ``ctc`` when
    ``ctc_weight > 0``) in eval mode. ``ctc_prefix``: see the module docstring. ``word_penalty``: subtracted from
    the score of every piece that opens a word (``prompt.word_starts``), a word insertion penalty: a sound the
    model cannot place then rather extends a word or ends the hypothesis than starts one more word (0: ESPnet's
    choices).
    """
    if not 0.0 <= ctc_weight < 1.0:
        raise ValueError(f"ctc_weight must be in [0, 1): got {ctc_weight} (1 would be CTC decoding)")
    if ctc_prefix not in CTC_PREFIXES:
        raise ValueError(f"ctc_prefix must be one of {CTC_PREFIXES}: got {ctc_prefix!r}")
    lengths = torch.full((speech.size(0),), speech.size(1), dtype=torch.long, device=speech.device)
    encoded, _ = model.encode(speech, lengths)
    if isinstance(encoded, tuple):  # intermediate CTC outputs ride along
        encoded = encoded[0]
    batch, frames = encoded.size(0), encoded.size(1)
    steps = max_length(maxlenratio, frames)
    ys = torch.tensor(prompt.primer, device=speech.device).repeat(batch, 1)
    active = torch.arange(batch, device=speech.device)
    memory = encoded
    skip = len(prompt.primer) - 1 if ctc_prefix == "text" else 0
    ctc = _CTCPrefix(model.ctc.log_softmax(encoded), prompt.blank, prompt.eos, skip) if ctc_weight > 0 else None
    if ctc is not None:  # CTCPrefixScoreTH cannot score a prefix of more labels than frames
        steps = min(steps, frames - len(prompt.primer) + 2 + skip)
    with decoder_steps(model.decoder) as decoder:
        hyps: List[List[int]] = [[] for _ in range(batch)]
        new_word: torch.Tensor | float = 0.0  # [vocab]: word_penalty on the pieces that open a word
        for step in range(steps):
            logp = decoder.step(ys, memory)
            logp[:, prompt.suppressed] = float("-inf")
            if word_penalty and step == 0:
                new_word = torch.zeros_like(logp[0])
                new_word[prompt.word_starts] = word_penalty
            if ctc is None:
                token = (logp - new_word).argmax(dim=-1)
            else:  # the penalty joins the weighted sum, after the decoder's pre-beam, as ESPnet's scorers do
                candidates = logp.topk(min(ctc_candidates, logp.size(-1)), dim=-1).indices
                joint = (1.0 - ctc_weight) * logp + ctc_weight * ctc.score(ys, candidates) - new_word
                token = candidates.gather(1, joint.gather(1, candidates).argmax(dim=-1, keepdim=True)).squeeze(1)
                ctc.advance(token)
            ended = token == prompt.eos
            for row, tok in zip(active.tolist(), token.tolist()):
                if tok != prompt.eos:
                    hyps[row].append(tok)
            if step == steps - 1:
                break
            keep = ~ended
            if not keep.any():
                break
            if not keep.all():  # finished rows leave the batch, with their cache
                active, memory, token, ys = active[keep], memory[keep], token[keep], ys[keep]
                decoder.keep(keep)
                if ctc is not None:
                    ctc.keep(keep.nonzero().squeeze(1))
            ys = torch.cat([ys, token.unsqueeze(1)], dim=1)
    return [[t for t in hyp if t != prompt.blank] for hyp in hyps]

"""Batched greedy S2T decoding (espnet_peft.inference.greedy, espnet_peft.bin.s2t_batch_inference) against ESPnet's
own ``Speech2Text`` with beam 1 and no CTC, on a real (tiny) OWSM-style model."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from helpers.espnet_fixtures import FS, PretrainedModel, decode, read_wav_scp
from helpers.fault_ledger import record_bad_input

from espnet_peft.bin import s2t_batch_inference
from espnet_peft.compat import espnet_ctc_prefix
from espnet_peft.inference.greedy import CTC_CANDIDATES, _CTCPrefix, fixed_window, max_length
from espnet_peft.utils.kaldi_data import read_table


def _decode_dir(model: PretrainedModel, data_dir: Path, out: Path, *extra: str) -> dict[str, str]:
    s2t_batch_inference.main(["--s2t_train_config", str(model.config), "--s2t_model_file", str(model.model_file),
                              "--set", str(data_dir), str(out), "--batch_size", "3", *extra])
    return read_table(out / "text")


def test_batched_greedy_equals_espnet_beam_one(pretrained_s2t: PretrainedModel, tmp_path: Path) -> None:
    data_dir = pretrained_s2t.valid_dir
    ours = _decode_dir(pretrained_s2t, data_dir, tmp_path / "out")
    stock = decode("s2t", pretrained_s2t.config, pretrained_s2t.model_file, read_wav_scp(data_dir))
    assert set(ours) == set(stock)
    # batch size 3 over 4 utterances: one full batch and one partial, rows finishing at different steps
    assert {k: ours.get(k, "") for k in stock} == {k: v.strip() for k, v in stock.items()}


# 0.3 is the recipe's weight. At 0.5 the tiny, untrained model's hypotheses run on ("h s h s ...") and ESPnet stops
# some 20 tokens earlier than this search: not explained yet (see the issue-14 note), so not claimed here.
# On espnet 202611 (whose CTC scorer sees the transcript alone) one of two trainings of the session's tiny model gave
# three run-on hypotheses that are ESPnet's token for token plus one more token at the end; the other matched exactly.
# An off-by-one at the length cap that depends on the model: open, so not claimed there. The shipped model's parity
# (tests/test_shipped_model.py), whose hypotheses end on <eos>, holds on both releases.
@pytest.mark.xfail(espnet_ctc_prefix() == "text", strict=False,
                   reason="espnet 202611 may end a run-on hypothesis one token earlier at the length cap (open)")
@pytest.mark.parametrize("ctc_weight", [0.3])
def test_joint_ctc_greedy_equals_espnet_beam_one_with_ctc_rescoring(pretrained_s2t: PretrainedModel, tmp_path: Path,
                                                                    ctc_weight: float) -> None:
    data_dir = pretrained_s2t.valid_dir
    # ESPnet's beam search at beam 1, CTC rescoring CTC_CANDIDATES tokens (Speech2Text's own pre-beam is 1 there)
    stock = decode("s2t", pretrained_s2t.config, pretrained_s2t.model_file, read_wav_scp(data_dir),
                   ctc_weight=ctc_weight, pre_beam_size=CTC_CANDIDATES)
    ours = _decode_dir(pretrained_s2t, data_dir, tmp_path / "joint", "--ctc_weight", str(ctc_weight),
                       "--ctc_prefix", espnet_ctc_prefix())
    assert {k: ours.get(k, "") for k in stock} == {k: v.strip() for k, v in stock.items()}
    info = json.loads((tmp_path / "joint" / "decode_info.json").read_text())
    assert info["settings"]["ctc_weight"] == ctc_weight and info["settings"]["ctc_candidates"] == CTC_CANDIDATES


def test_length_limit_follows_espnet(pretrained_s2t: PretrainedModel, tmp_path: Path) -> None:
    stock = decode("s2t", pretrained_s2t.config, pretrained_s2t.model_file, read_wav_scp(pretrained_s2t.valid_dir),
                   maxlenratio=-3.0)
    ours = _decode_dir(pretrained_s2t, pretrained_s2t.valid_dir, tmp_path / "out", "--maxlenratio", "-3")
    assert {k: ours.get(k, "") for k in stock} == {k: v.strip() for k, v in stock.items()}
    assert max_length(0.0, 58) == 58 and max_length(-3.0, 58) == 3 and max_length(0.5, 58) == 29


def test_fixed_window_pads_and_trims() -> None:
    batch = fixed_window([torch.ones(5).numpy(), torch.ones(12).numpy()], 8)
    assert batch.shape == (2, 8)
    assert batch[0, :5].eq(1).all() and batch[0, 5:].eq(0).all() and batch[1].eq(1).all()


@pytest.mark.fault_case
def test_skips_only_when_model_audio_settings_and_hypotheses_match(pretrained_s2t: PretrainedModel, tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture) -> None:
    data = tmp_path / "data"
    shutil.copytree(pretrained_s2t.valid_dir, data)
    wavs = {}
    for key, location in read_table(data / "wav.scp").items():  # own copies of the audio, to overwrite below
        wavs[key] = shutil.copy(location, tmp_path / f"{key}.wav")
    (data / "wav.scp").write_text("".join(f"{k} {v}\n" for k, v in sorted(wavs.items())))
    out = tmp_path / "out"
    first = _decode_dir(pretrained_s2t, data, out)
    info = json.loads((out / "decode_info.json").read_text())
    assert info["utterances"] == len(wavs)
    stamp = (out / "text").stat().st_mtime_ns
    assert _decode_dir(pretrained_s2t, data, out) == first
    assert (out / "text").stat().st_mtime_ns == stamp, "same model, audio and settings: the set is skipped"
    # a hypothesis file edited by hand is decoded again, never kept
    (out / "text").write_text("stale\n")
    capsys.readouterr()
    redone = _decode_dir(pretrained_s2t, data, out) == first
    message = capsys.readouterr().err
    record_bad_input("decoded hypotheses edited by hand, decode re-run", redone, f"{out / 'text'}" in message,
                     next((line for line in message.splitlines() if line.startswith("redo")), ""))
    assert redone and f"redo {out}: ['{out / 'text'}'] changed after it was written" in message
    # a wav overwritten in place (wav.scp unchanged): decoded again, so that utterance now reads the other's audio
    one, other = sorted(wavs)[:2]
    shutil.copy(wavs[other], wavs[one])
    again = _decode_dir(pretrained_s2t, data, out)
    message = capsys.readouterr().err
    redone = again[one] == first[other] and {k: v for k, v in again.items() if k != one} == \
        {k: v for k, v in first.items() if k != one}
    record_bad_input("a test wav overwritten in place (wav.scp unchanged), decode re-run", redone,
                     "its audio changed" in message,
                     next((line for line in message.splitlines() if line.startswith("redo")), ""))
    assert redone and f"redo {out}: its audio changed since it was made: ['audio']" in message
    # another checkpoint (a copy with one changed byte is enough to change the fingerprint)
    changed = tmp_path / "model.pth"
    shutil.copy(pretrained_s2t.model_file, changed)
    state = torch.load(changed, map_location="cpu")
    first_key = next(iter(state))
    state[first_key] = state[first_key] + 1.0
    torch.save(state, changed)
    stamp = (out / "text").stat().st_mtime_ns
    s2t_batch_inference.main(["--s2t_train_config", str(pretrained_s2t.config), "--s2t_model_file", str(changed),
                              "--set", str(data), str(out)])
    assert (out / "text").stat().st_mtime_ns != stamp, "a different model must be decoded again"
    assert json.loads((out / "decode_info.json").read_text())["settings"]["model_file"] == str(changed)


def test_unreadable_audio_names_the_utterance(pretrained_s2t: PretrainedModel, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    bad = tmp_path / "broken.wav"
    bad.write_bytes(b"RIFF0000WAVEfmt garbage")
    (data / "wav.scp").write_text(f"utt-broken {bad}\n")
    with pytest.raises(SystemExit, match="utt-broken"):
        _decode_dir(pretrained_s2t, data, tmp_path / "out")
    assert FS == 16000


@pytest.mark.parametrize("prefix", ["text", "prompt"])
def test_text_prefix_scores_the_transcript_as_ctc_does_and_the_prompt_prefix_bars_the_first_frames(prefix: str) -> None:
    """Summed over the steps, the chosen tokens' CTC gains are log p_CTC(transcript | audio) (torch's ctc_loss) when
    the scorer sees the transcript alone; ESPnet's prompt-counting scorer loses the paths that start in frames 0-2."""
    torch.manual_seed(0)
    frames, vocab, blank, eos = 12, 9, 0, 8
    logp = torch.randn(1, frames, vocab).mul(3).log_softmax(-1)
    logp[0, :3, 1] += 6.0  # the first label is spoken at once
    logp = logp.log_softmax(-1)
    primer, transcript = [eos, 5, 6, 7], [1, 2, 3]  # <sos> = <eos> as in ESPnet; then <lang> <task> <notimestamps>
    scorer = _CTCPrefix(logp, blank, eos, skip=len(primer) - 1 if prefix == "text" else 0)
    ys, total = torch.tensor([primer]), 0.0
    for token in [*transcript, eos]:
        candidates = torch.tensor([[token, 4]])
        total += scorer.score(ys, candidates)[0, token].item()
        if token != eos:
            scorer.advance(torch.tensor([token]))
            ys = torch.cat([ys, torch.tensor([[token]])], dim=1)
    expected = -F.ctc_loss(logp.transpose(0, 1), torch.tensor([transcript]), torch.tensor([frames]),
                           torch.tensor([len(transcript)]), blank=blank, reduction="sum").item()
    if prefix == "text":
        assert total == pytest.approx(expected, abs=1e-4)
    else:
        assert total < expected - 1.0


class _ScriptedS2T(torch.nn.Module):
    """An S2T stand-in whose next-token scores depend on the last token and the length: a known greedy path."""

    def __init__(self, vocab: int, seed: int = 0) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        self.table = torch.randn(vocab, vocab, generator=generator) * 2.0
        self.decoder = self

    def encode(self, speech: torch.Tensor, lengths: torch.Tensor) -> tuple:
        return speech[:, :40].unsqueeze(-1).repeat(1, 1, 4), lengths

    def forward_one_step(self, ys: torch.Tensor, mask, memory, cache=None) -> tuple:
        scores = self.table[ys[:, -1]] + 0.3 * ys.size(1) * (torch.arange(self.table.size(0)) == 2)  # eos = 2
        return torch.log_softmax(scores, dim=-1), [torch.zeros(ys.size(0), 1)]


def _reference_greedy(model: _ScriptedS2T, prompt, penalty: float, steps: int) -> list:
    """Greedy search written out one row at a time: argmax of log p minus the penalty on word-opening pieces."""
    ys, hyp = list(prompt.primer), []
    for _ in range(steps):
        logp, _ = model.forward_one_step(torch.tensor([ys]), None, None)
        logp[0, prompt.suppressed] = float("-inf")
        logp[0, prompt.word_starts] -= penalty
        token = int(logp[0].argmax())
        if token == prompt.eos:
            break
        hyp.append(token)
        ys.append(token)
    return hyp


def test_word_penalty_lowers_only_the_pieces_that_open_a_word() -> None:
    from espnet_peft.inference.greedy import greedy_decode, make_prompt

    tokens = ["<blank>", "<unk>", "<sos/eos>", "<eng>", "<asr>", "<notimestamps>", "<0.00>", "<3.50>",
              *[("\u2581" if i % 2 else "") + f"p{i}" for i in range(24)]]
    prompt = make_prompt(tokens, sos=2, eos=2, blank=0, lang_sym="<eng>", task_sym="<asr>",
                         notime_sym="<notimestamps>", first_time_sym="<0.00>", last_time_sym="<3.50>")
    assert prompt.word_starts == [i for i, t in enumerate(tokens) if t.startswith("\u2581")]
    speech = torch.zeros(1, 40)
    words = {}
    for seed in range(4):
        model = _ScriptedS2T(len(tokens), seed)
        for penalty in (0.0, 0.7, 3.0):
            ours = greedy_decode(model, speech, prompt, maxlenratio=-12.0, word_penalty=penalty)[0]
            assert ours == _reference_greedy(model, prompt, penalty, steps=12), (seed, penalty)
            words[seed, penalty] = sum(t in prompt.word_starts for t in ours)
    assert any(words[s, 3.0] < words[s, 0.0] for s in range(4))  # the penalty changed some paths

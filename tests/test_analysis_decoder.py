"""Decoder analyses on tiny random ESPnet models: an OWSM-style S2T model and ASR models with a Transformer decoder
(pre- and post-norm, with and without ``concat_after``), run teacher-forced on their own encoder output."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Optional

import numpy as np
import pytest
import soundfile
import torch
from torch import nn

from helpers.adapter_models import perturb_adapters
from espnet_peft.analysis.branches import block_branches
from espnet_peft.analysis.decoder import (
    NO_TARGETS, DecoderAccess, decoder_targets, no_decoder_reason, teacher_forced,
)
from espnet_peft.analysis.loaded_model import LoadedModel
from espnet_peft.analysis.methods import REGISTRY
from espnet_peft.analysis.model_access import EspnetEncoderAccess
from espnet_peft.analysis.resolve import ModelSource
from espnet_peft.analysis.runner import Settings, run_analysis
from espnet_peft.analysis.utterances import Batch, Utterance
from espnet_peft.injection import initialise_adapters, inject_adapters
from helpers.owsm_fixtures import TINY_ARCH, build_model as build_owsm, owsm_token_list

torch.set_num_threads(1)

TOKENS = ["<blank>", "<unk>", "a", "b", "c", "<space>", "<sos/eos>"]
N_MELS = 20
FS = 16000
DECODER_BLOCKS = 2
BRANCHES = ["self_attn", "src_attn", "feed_forward"]
DECODER_ANALYSES = ("decoder_drift", "decoder_contribution", "decoder_branches")
#: ASR decoder layouts: (normalize_before, concat_after)
LAYOUTS = {"pre_norm": (True, False), "post_norm": (False, False), "pre_norm_concat": (True, True),
           "post_norm_concat": (False, True)}


def _asr_model(normalize_before: bool = True, concat_after: bool = False, decoder: bool = True,
               blocks: int = DECODER_BLOCKS) -> nn.Module:
    """An ESPnetASRModel: STFT/mel frontend, utterance MVN, Transformer encoder, CTC and (``decoder``) a
    Transformer decoder of that layout; without one it is CTC-only, as ESPnet builds it at ctc_weight 1."""
    from espnet2.asr.ctc import CTC
    from espnet2.asr.decoder.transformer_decoder import TransformerDecoder
    from espnet2.asr.encoder.transformer_encoder import TransformerEncoder
    from espnet2.asr.espnet_model import ESPnetASRModel
    from espnet2.asr.frontend.default import DefaultFrontend
    from espnet2.layers.utterance_mvn import UtteranceMVN

    torch.manual_seed(0)
    attention_decoder = TransformerDecoder(
        len(TOKENS), 32, attention_heads=2, linear_units=32, num_blocks=blocks,
        normalize_before=normalize_before, concat_after=concat_after) if decoder else None
    model = ESPnetASRModel(
        vocab_size=len(TOKENS), token_list=list(TOKENS),
        frontend=DefaultFrontend(n_fft=512, hop_length=160, n_mels=N_MELS), specaug=None, normalize=UtteranceMVN(),
        preencoder=None, encoder=TransformerEncoder(N_MELS, output_size=32, attention_heads=2, linear_units=32,
                                                    num_blocks=2),
        postencoder=None, decoder=attention_decoder, ctc=CTC(len(TOKENS), 32), joint_network=None,
        ctc_weight=0.3 if decoder else 1.0,
    )
    return model.eval()


def _padded(rows: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Token id rows, padded with ESPnet's ignore id (-1) as the collate function pads them, and their lengths."""
    out = torch.full((len(rows), max(map(len, rows))), -1, dtype=torch.long)
    for b, row in enumerate(rows):
        out[b, : len(row)] = torch.tensor(row)
    return out, torch.tensor([len(row) for row in rows])


def _speech(lengths: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    speech = 0.1 * torch.randn(len(lengths), max(lengths), generator=torch.Generator().manual_seed(1))
    for b, n in enumerate(lengths):
        speech[b, n:] = 0.0
    return speech, torch.tensor(lengths)


def _batch(speech: torch.Tensor, lengths: torch.Tensor, **texts: list[list[int]]) -> Batch:
    """A batch whose ``loss_inputs`` hold the given token rows (``text``, ``text_prev``) with their lengths."""
    inputs: dict[str, torch.Tensor] = {"speech": speech, "speech_lengths": lengths}
    for name, rows in texts.items():
        inputs[name], inputs[f"{name}_lengths"] = _padded(rows)
    return Batch([], (speech, lengths), {}, lengths.tolist(), lengths.tolist(), speech=speech, lengths=lengths,
                 loss_inputs=inputs)


def _s2t_case() -> tuple[nn.Module, Batch, list[list[int]]]:
    """The tiny OWSM-style model, a batch of two (one with a ``text_prev`` prompt, one with ``<na>``) and the
    decoder input rows that training builds from it: ``<sos> text`` and ``<sop> prev <sos> text``."""
    tokens = owsm_token_list()
    model = build_owsm(TINY_ARCH, tokens, device="cpu").eval()
    ids = {t: i for i, t in enumerate(tokens)}
    prompt = [ids["<eng>"], ids["<asr>"], ids["<notimestamps>"]]
    text = [prompt + [ids["p1"], ids["p2"], ids["p3"]], prompt + [ids["p4"]]]
    prev = [[ids["<na>"]], [ids["p5"], ids["p6"]]]
    expected = [[ids["<sos>"], *text[0]], [ids["<sop>"], *prev[1], ids["<sos>"], *text[1]]]
    text_ctc = [row[len(prompt):] for row in text]  # the model's forward takes the CTC targets too
    return model, _batch(*_speech([16000, 11000]), text=text, text_prev=prev, text_ctc=text_ctc), expected


def _asr_case(layout: str) -> tuple[nn.Module, Batch, list[list[int]]]:
    model = _asr_model(*LAYOUTS[layout])
    text = [[2, 3, 5, 4], [4, 2]]
    return model, _batch(*_speech([16000, 9000]), text=text), [[6, *row] for row in text]


CASES = ["s2t", *(f"asr_{layout}" for layout in LAYOUTS)]


def _case(name: str) -> tuple[nn.Module, Batch, list[list[int]]]:
    return _s2t_case() if name == "s2t" else _asr_case(name[len("asr_"):])


# ----- the teacher-forced pass and its branch updates -------------------------------------------------------------


@pytest.mark.parametrize("case", CASES)
def test_each_decoder_blocks_branch_updates_rebuild_its_output(case: str) -> None:
    model, batch, expected_inputs = _case(case)
    with torch.no_grad():
        encoded = model.encode(batch.speech, batch.lengths)
    result = teacher_forced(model, encoded, decoder_targets(batch))
    cap, taught = result.capture, result.capture.output

    # the decoder input is what training builds, and only its real positions count
    assert taught.lengths.tolist() == [len(row) for row in expected_inputs]
    assert [taught.tokens[b, :n].tolist() for b, n in enumerate(taught.lengths.tolist())] == expected_inputs
    assert cap.mask.sum(dim=1).tolist() == taught.lengths.tolist() and not cap.mask.all()
    # ... and it gives the model's own training attention loss
    with torch.no_grad():
        _, stats, _ = model(**batch.loss_inputs)
    assert float(taught.loss) == pytest.approx(float(stats["loss_att"]), rel=1e-5)

    blocks = DecoderAccess(model).layer_modules()
    assert len(blocks) == len(result.updates) == len(cap.hidden_states) == DECODER_BLOCKS
    for block, updates, h_in, h_out in zip(blocks, result.updates, cap.layer_inputs, cap.hidden_states):
        assert [b.name for b in block_branches(block)] == list(updates) == BRANCHES
        torch.testing.assert_close(h_in + sum(updates.values()), h_out, atol=1e-5, rtol=1e-5)
        for dropped in BRANCHES:  # every branch carries part of the update: none can be left out
            partial = h_in + sum(u for name, u in updates.items() if name != dropped)
            assert (partial - h_out)[cap.mask].abs().max() > 1e-3, dropped
    if model.decoder.normalize_before:  # the last block's output is what the decoder's head reads
        with torch.no_grad():
            logits, _ = model.decoder(encoded[0], encoded[1], taught.tokens, taught.lengths)
        torch.testing.assert_close(model.decoder.output_layer(model.decoder.after_norm(cap.hidden_states[-1])),
                                   logits, atol=1e-5, rtol=1e-5)
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.decoder.modules())


def test_models_without_an_attention_decoder_are_refused_with_the_reason() -> None:
    ctc_only = _asr_model(decoder=False)
    assert "CTC-only" in no_decoder_reason(ctc_only)
    with pytest.raises(TypeError, match="CTC-only"):
        DecoderAccess(ctc_only)
    assert no_decoder_reason(_asr_model()) is None
    no_texts = _batch(*_speech([8000]))
    no_texts.loss_inputs = None
    assert decoder_targets(no_texts) is None


# ----- the registered analyses, through the runner ----------------------------------------------------------------


def _loaded(label: str, model: nn.Module, root: Path) -> LoadedModel:
    """``model`` as the runner takes it: char tokens of each utterance's text as the decoder's targets."""

    def batch(utts: list[Utterance], audio: list[np.ndarray]) -> Batch:
        lengths = [len(a) for a in audio]
        speech = torch.zeros(len(audio), max(lengths))
        for b, a in enumerate(audio):
            speech[b, : len(a)] = torch.from_numpy(a)
        texts = [u.ctc_text for u in utts]
        if any(t is None for t in texts):
            return Batch(utts, (speech, torch.tensor(lengths)), {}, lengths, lengths)
        rows = [[TOKENS.index("<space>" if c == " " else c) for c in t] for t in texts]
        return _batch(speech, torch.tensor(lengths), text=rows)

    return LoadedModel(label, ModelSource("espnet", root, task="asr"), model,
                       EspnetEncoderAccess.for_asr_model(model), FS, batch)


def _utterances(root: Path, texts: Optional[list[str]]) -> list[Utterance]:
    utts = []
    for i, seconds in enumerate((0.6, 0.9, 0.5)):
        wav = root / f"utt{i}.wav"
        soundfile.write(wav, 0.1 * np.random.default_rng(i).standard_normal(int(seconds * FS)).astype(np.float32), FS)
        utts.append(Utterance(f"utt{i}", wav, {"text": texts[i]} if texts else {}))
    return utts


def _adapted_decoder(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with LoRA on its decoder blocks' linears only, moved off the identity start."""
    adapted = copy.deepcopy(model)
    inject_adapters(adapted, {"method": "lora", "r": 4, "alpha": 8,
                              "target_modules": r"decoder\.decoders\.\d+\..*(linear_q|linear_v|w_1|w_2)"})
    initialise_adapters(adapted)
    perturb_adapters(adapted, scale=0.3)
    return adapted.eval()


def _run(models: list[LoadedModel], utts: list[Utterance]) -> dict[str, Any]:
    return run_analysis(models, utts, Settings(analyses=("cka", *DECODER_ANALYSES), batch_size=2, progress=False))


def test_decoder_drift_is_one_against_itself_and_below_one_with_adapted_decoder(tmp_path: Path) -> None:
    model = _asr_model()
    utts = _utterances(tmp_path, ["ab c", "cab", "b"])
    same = _run([_loaded("A", model, tmp_path), _loaded("B", copy.deepcopy(model), tmp_path)], utts)
    assert same["decoder_drift"]["drift"] == pytest.approx([1.0] * DECODER_BLOCKS, abs=1e-9)
    assert same["decoder_drift"]["tokens"] == sum(len(u.ctc_text) + 1 for u in utts)  # <sos> + characters

    adapted = _run([_loaded("A", model, tmp_path), _loaded("B", _adapted_decoder(model), tmp_path)], utts)
    assert adapted["cka"]["drift"] == pytest.approx([1.0, 1.0], abs=1e-9)  # the encoder is untouched ...
    assert all(v < 0.999 for v in adapted["decoder_drift"]["drift"])  # ... the decoder has moved
    for label in ("A", "B"):
        assert len(adapted["decoder_contribution"][label]["update_ratio"]) == DECODER_BLOCKS
        section = adapted["decoder_branches"][label]
        assert section["layers"] == [f"decoder.decoders.{i}" for i in range(DECODER_BLOCKS)]
        assert list(section["branches"]) == BRANCHES
    assert adapted["decoder_contribution"]["A"] != adapted["decoder_contribution"]["B"]
    assert not adapted["skipped"]
    assert {"decoder forward (teacher-forced)", *DECODER_ANALYSES} <= set(adapted["timing_s"])

    from espnet_peft.analysis.methods import summary_lines, write_plots

    figures = write_plots(adapted, tmp_path / "figures")
    assert {name: path.stat().st_size > 1000 for name, path in figures.items()} == {
        "cka_A": True, "cka_B": True, "cka_AB": True, "drift": True,
        **{name: True for name in DECODER_ANALYSES}}
    lines = "\n".join(summary_lines(adapted))
    assert "decoder drift" in lines and "src_attn" in lines


def test_decoder_analyses_skip_models_and_data_without_a_decoder_input(tmp_path: Path) -> None:
    ctc_only = _run([_loaded("A", _asr_model(decoder=False), tmp_path)], _utterances(tmp_path, ["ab", "c", "ba"]))
    for name in DECODER_ANALYSES[1:]:
        assert name not in ctc_only and "CTC-only" in ctc_only["skipped"][name]["A"]
    assert "give two models" in ctc_only["skipped"]["decoder_drift"]["AB"]

    model = _asr_model()
    untranscribed = _run([_loaded("A", model, tmp_path), _loaded("B", model, tmp_path)], _utterances(tmp_path, None))
    for name in DECODER_ANALYSES:
        assert name not in untranscribed and untranscribed["skipped"][name] == {"A": NO_TARGETS, "B": NO_TARGETS}

    deeper = _run([_loaded("A", model, tmp_path), _loaded("B", _asr_model(blocks=3), tmp_path)],
                  _utterances(tmp_path, ["ab", "c", "ba"]))
    assert "decoder_drift" not in deeper and "2 and 3 layers" in deeper["skipped"]["decoder_drift"]["AB"]
    assert len(deeper["decoder_contribution"]["B"]["update_ratio"]) == 3  # the per-model analyses still run
    assert set(DECODER_ANALYSES) <= set(REGISTRY)

"""The source model that the embedded recipe ships (egs2/synthetic/peft1/source_model): its checksum, that it loads
the way stage 5 loads it, that it transcribes new sentences read by its source-domain voices, and that the batched
greedy decoder of stages 6 and 8 gives exactly ESPnet's own beam-1 hypotheses with it."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from helpers.espnet_fixtures import decode

from espnet_peft.bin import s2t_batch_inference
from espnet_peft.compat import espnet_ctc_prefix
from espnet_peft.inference.greedy import CTC_CANDIDATES
from espnet_peft.recipe.provenance import file_sha256
from espnet_peft.utils.kaldi_data import DataDir, read_table, write_data_dir
from espnet_peft.recipe.scoring import score_files
from espnet_peft.recipe.sentences import unique_sentences
from espnet_peft.recipe.source_model import fetch_source_model
from espnet_peft.recipe.synth import Utterance, draw_speakers, synthesize_utterance

SHIPPED = Path(__file__).resolve().parents[1] / "egs2" / "synthetic" / "peft1" / "source_model"
#: the embedded recipe's source speakers per split (local/data.sh)
SOURCE_SPEAKERS = {"train": 46, "dev": 6, "test": 10}


def shipped_archive() -> tuple[Path, str]:
    line = (SHIPPED / "SHA256SUMS").read_text().split()
    return SHIPPED / line[1], line[0]


@pytest.fixture(scope="module")
def fetched(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    archive, sha256 = shipped_archive()
    root = tmp_path_factory.mktemp("shipped")
    out = fetch_source_model(str(archive), root / "exp" / "source", root / "data" / "token_list",
                             special_tokens=["<eng>", "<asr>"], expected_sha256=sha256)
    return out / "config.yaml", out / "model.pth"


@pytest.fixture(scope="module")
def new_sentences(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """16 sentences the model never heard, read by its training voices (as the recipe's source_newtext set; its
    model card says why unseen voices are another matter)."""
    root = tmp_path_factory.mktemp("new_sentences")
    speakers = draw_speakers("source", SOURCE_SPEAKERS, seed=0)["train"]
    texts = unique_sentences(16, seed="shipped-model-test", max_words=6)
    utts = [Utterance(f"{speakers[i % len(speakers)].id}-x{i:02d}", speakers[i % len(speakers)], text,
                      root / "wav" / f"x{i:02d}.wav", "test") for i, text in enumerate(texts)]
    for utt in utts:
        synthesize_utterance(utt)
    data = root / "data"
    write_data_dir(data, DataDir(wav_scp={u.id: str(u.wav) for u in utts}, text={u.id: u.text for u in utts},
                                 utt2spk={u.id: u.speaker.id for u in utts}))
    return data


def test_the_archive_matches_its_checksum() -> None:
    archive, sha256 = shipped_archive()
    assert archive.stat().st_size > 1_000_000, f"{archive} is not a packed model (a Git LFS pointer?)"
    assert file_sha256(archive) == sha256


def test_batched_greedy_equals_espnet_and_the_model_transcribes(fetched, new_sentences, tmp_path) -> None:
    config, model = fetched
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        s2t_batch_inference.main(["--s2t_train_config", str(config), "--s2t_model_file", str(model),
                                  "--set", str(new_sentences), str(tmp_path / "ours"), "--batch_size", "5"])
        stock = decode("s2t", config, model, read_table(new_sentences / "wav.scp"))
    finally:
        torch.set_num_threads(threads)
    ours = read_table(tmp_path / "ours" / "text")
    assert {k: ours.get(k, "") for k in stock} == {k: v.strip() for k, v in stock.items()}
    joint = _joint_ctc_parity(config, model, new_sentences, tmp_path / "joint")
    s2t_batch_inference.main(["--s2t_train_config", str(config), "--s2t_model_file", str(model), "--set",
                              str(new_sentences), str(tmp_path / "recipe"), "--batch_size", "5", "--ctc_weight", "0.5"])
    lengths = {len(v.split()) for v in ours.values()}
    assert len(lengths) > 1, "hypotheses of different lengths: rows leave the batch at different steps"
    for hyps in (tmp_path / "ours", joint, tmp_path / "recipe"):
        wer = score_files(new_sentences / "text", hyps / "text", hyps / "score", units=["word"])
        # the card reports a few % on 300 such utterances; 16 utterances leave room for chance
        assert wer["word"].counts.error_rate < 15.0


def _joint_ctc_parity(config: Path, model: Path, data: Path, out: Path) -> Path:
    """Joint CTC/attention greedy with ESPnet's CTC prefix (the prompt counted as labels) against ESPnet's beam 1
    with the same CTC rescoring."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        s2t_batch_inference.main(["--s2t_train_config", str(config), "--s2t_model_file", str(model),
                                  "--set", str(data), str(out), "--batch_size", "5", "--ctc_weight", "0.3",
                                  "--ctc_prefix", espnet_ctc_prefix()])
        stock = decode("s2t", config, model, read_table(data / "wav.scp"), ctc_weight=0.3,
                       pre_beam_size=CTC_CANDIDATES)
    finally:
        torch.set_num_threads(threads)
    ours = read_table(out / "text")
    assert {k: ours.get(k, "") for k in stock} == {k: v.strip() for k, v in stock.items()}
    return out

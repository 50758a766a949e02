"""The fixtures themselves: synthetic data, real ESPnet pretraining, decoding and
the --init_param fine-tuning command line."""

from __future__ import annotations

from pathlib import Path

import soundfile
import torch

from espnet_peft.compat import subsampling_projection
from helpers.espnet_fixtures import (
    MAX_DURATION,
    MIN_DURATION,
    PretrainedModel,
    decode,
    finetune_cmd,
    read_wav_scp,
    run_task,
    synthesize_corpus,
)

# Module names adapters will target (OWSM naming for S2T).
EXPECTED_MODULES = {
    "asr": ["encoder.encoders.0.self_attn.linear_q", "encoder.encoders.1.feed_forward.w_1",
            "encoder.encoders.0.conv_module.norm", "decoder.decoders.0.src_attn.linear_v",
            "decoder.output_layer", "ctc.ctc_lo"],
    "s2t": ["encoder.encoders.0.attn.linear_q", "encoder.encoders.1.feed_forward.w_1",
            "encoder.encoders.0.feed_forward_macaron.w_2", "encoder.encoders.0.cgmlp.channel_proj1.0",
            "encoder.encoders.0.cgmlp.channel_proj2", "encoder.encoders.0.merge_proj",
            "decoder.decoders.0.self_attn.linear_q", "decoder.decoders.0.src_attn.linear_out",
            "decoder.output_layer", "ctc.ctc_lo", f"encoder.embed.{subsampling_projection()}"],
}  # fmt: skip


def _is_running_stat(key: str) -> bool:
    # BatchNorm statistics move in train mode even when the optimiser does nothing.
    return "running_" in key or key.endswith("num_batches_tracked")


def test_synthetic_corpus_is_kaldi_dir(synthetic_train_dir: Path, tmp_path: Path) -> None:
    tables = {}
    for name in ("wav.scp", "text", "utt2spk"):
        lines = (synthetic_train_dir / name).read_text().splitlines()
        keys = [line.split(" ", 1)[0] for line in lines]
        assert keys == sorted(keys) and len(keys) == 16, name
        tables[name] = keys
    assert tables["wav.scp"] == tables["text"] == tables["utt2spk"]
    spk2utt = (synthetic_train_dir / "spk2utt").read_text().split()
    assert len(spk2utt) == 16 + 4  # 4 voices as speakers
    for path in read_wav_scp(synthetic_train_dir).values():
        info = soundfile.info(str(path))
        assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
        assert MIN_DURATION <= info.duration <= MAX_DURATION
    # Same seed, same transcripts.
    again = synthesize_corpus(tmp_path / "again", n_utts=16, seed=0)
    assert (again / "text").read_text() == (synthetic_train_dir / "text").read_text()


def test_pretrain_and_decode(pretrained_model: PretrainedModel) -> None:
    pm = pretrained_model
    assert pm.model_file.is_file() and pm.config.is_file()
    assert pm.token_list.is_file() and (pm.bpemodel is None) == (pm.task == "asr")
    state = torch.load(pm.model_file, map_location="cpu")
    for module in EXPECTED_MODULES[pm.task]:
        assert f"{module}.weight" in state, module

    wavs = dict(sorted(read_wav_scp(pm.valid_dir).items())[:2])
    hyps = decode(pm.task, pm.config, pm.model_file, wavs)
    assert list(hyps) == list(wavs)
    assert all(isinstance(h, str) for h in hyps.values())
    # A list of paths works too (ids are the file stems).
    assert decode(pm.task, pm.config, pm.model_file, list(wavs.values())) == hyps


def test_finetune_cmd_starts_from_checkpoint(pretrained_model: PretrainedModel, tmp_path: Path) -> None:
    pm = pretrained_model
    outdir = tmp_path / "finetune"
    # Fine-tune on another corpus (other voice), as a domain-adaptation test would.
    shifted = synthesize_corpus(tmp_path / "shifted", n_utts=4, seed=7, voices=["en-gb-scotland"])
    # lr=0: one real fine-tuning step that must leave the loaded weights untouched,
    # which proves --init_param loaded the pretrained checkpoint.
    extra = ["--max_epoch", "1", "--num_iters_per_epoch", "1", "--optim_conf", "lr=0.0"]
    cmd = finetune_cmd(pm, outdir, extra, train_dir=shifted)
    assert cmd.count("--output_dir") == 1 and cmd[cmd.index("--output_dir") + 1] == str(outdir)
    assert cmd[cmd.index("--init_param") + 1] == str(pm.model_file)
    data = [cmd[i + 1] for i, a in enumerate(cmd) if a.endswith("_data_path_and_name_and_type")]
    assert all(d.startswith(str(outdir / "data")) for d in data)
    files_per_split = {"asr": 2, "s2t": 4}[pm.task]  # wav.scp + text (+ text.prev, text.ctc)
    assert len(data) == 2 * files_per_split
    run_task(pm.task, cmd)

    before = torch.load(pm.model_file, map_location="cpu")
    after = torch.load(outdir / "1epoch.pth", map_location="cpu")
    assert before.keys() == after.keys()
    for key in before:
        if not _is_running_stat(key):
            torch.testing.assert_close(after[key], before[key], rtol=0, atol=0, msg=key)

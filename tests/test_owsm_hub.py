"""OWSM source models through the real hub path, local dirs and archives, and OWSM text files for v3.1 and v4.

Tiny OWSM-architecture models (tests/helpers/owsm_fixtures.py) are packed as the hub distributes OWSM and put into a
temporary Hugging Face cache with ``HF_HUB_OFFLINE=1``; ``fetch_source_model("espnet/<tag>")`` then runs
espnet_model_zoo's ``ModelDownloader`` and huggingface_hub's ``snapshot_download`` unchanged, and so does
``Speech2Text.from_pretrained(tag)``. The fetched model is fine-tuned with an adapter through the plugin's training
entry point (``--init_param``, the recipe's conf/owsm settings) and decoded.
"""

from __future__ import annotations

import importlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
import yaml

from helpers.espnet_fixtures import decode, read_wav_scp
from helpers.owsm_fixtures import FLAVOURS, make_tiny_owsm, pack_hub_repo, populate_hub_cache, task_class, train_args
from espnet_peft.bin import fetch_source_model as fetch_cli
from espnet_peft.recipe.finetune_config import finetune_config
from espnet_peft.recipe.provenance import file_sha256
from espnet_peft.recipe.key_remap import remap_state_dict
from espnet_peft.utils.kaldi_data import read_table
from espnet_peft.recipe.s2t_text import s2t_tables, write_s2t_text
from espnet_peft.recipe.source_model import fetch_source_model

CONF = Path(__file__).resolve().parents[1] / "conf" / "owsm"
#: the real tags of the models each tiny flavour stands in for
HUB_TAGS = {"v3.1": "espnet/owsm_v3.1_ebf_base", "v4": "espnet/owsm_v4_base_102M"}


def load(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=False)


def assert_same_state(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


#: decoding the random-weight models stops after this many tokens (a negative maxlenratio is a length in ESPnet)
MAXLEN = {"maxlenratio": -5.0}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One intra-op thread: the tiny models gain nothing from more, and a busy machine stalls OpenMP barriers."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory, synthetic_train_dir, synthetic_valid_dir):
    return {f: make_tiny_owsm(tmp_path_factory.mktemp(f"owsm_{f}"), f, synthetic_train_dir, synthetic_valid_dir)
            for f in FLAVOURS}


@pytest.fixture(scope="module")
def hub_repos(tiny_models, tmp_path_factory):
    root = tmp_path_factory.mktemp("hub_repos")
    return {f: pack_hub_repo(model, root / f) for f, model in tiny_models.items()}


@pytest.fixture
def offline_hub(tmp_path, monkeypatch, hub_repos) -> Path:
    """``HF_HOME`` in a temporary dir whose hub cache holds both tiny models; no network."""
    from huggingface_hub import constants

    home = tmp_path / "hf_home"
    for flavour, repo in hub_repos.items():
        populate_hub_cache(home / "hub", HUB_TAGS[flavour], repo)
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # huggingface_hub read the variable at import
    # espnet_model_zoo >= 0.1.8 leaves the cache to huggingface_hub, which read HF_HOME at import too
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(home / "hub"))
    return home / "hub"


def fetch(source: str, root: Path, **kw) -> tuple:
    out, tokens = root / "exp" / "source", root / "data" / "token_list"
    fetch_source_model(source, out, tokens, **kw)
    return out, tokens


@pytest.mark.parametrize("flavour, method", [("v3.1", "ssvd_o"), ("v4", "lora")])
def test_hub_tag_is_fetched_finetuned_with_an_adapter_and_decoded(flavour, method, tiny_models, offline_hub,
                                                                  tmp_path):
    model = tiny_models[flavour]
    out, tokens = fetch(HUB_TAGS[flavour], tmp_path)
    assert any(offline_hub.glob("models--espnet--*/snapshots/*/meta.yaml")), "not served from the temporary cache"
    assert_same_state(load(out / "model.pth"), load(model.model_file))
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["bpemodel"] == str((tokens / "bpe.model").resolve())
    assert config["normalize_conf"]["stats_file"] == str((out / "feats_stats.npz").resolve())
    assert config["preprocessor_conf"]["time_apply_prob"] == 1.0  # text already holds <notimestamps>
    assert (tokens / "tokens.txt").read_text().split() == model.token_list.read_text().split()

    # The recipe's composition: the fetched config + conf/owsm/<model>/finetune.yaml + conf/owsm/peft/<method>.yaml
    name = HUB_TAGS[flavour].split("/")[1]
    train_yaml = tmp_path / "train.yaml"
    train_yaml.write_text(yaml.safe_dump(finetune_config(out / "config.yaml", CONF / name / "finetune.yaml", method,
                                                         CONF / "peft", budget=12000)))
    exp = tmp_path / "exp" / method
    cmd = ["--config", str(train_yaml), *train_args(model), "--bpemodel", str(tokens / "bpe.model"),
           "--token_list", str(tokens / "tokens.txt"), "--output_dir", str(exp), "--init_param", str(out / "model.pth"),
           # a few CPU steps instead of the GPU settings
           "--max_epoch", "1", "--num_iters_per_epoch", "2", "--batch_size", "2", "--valid_batch_size", "2",
           "--accum_grad", "1", "--use_amp", "false", "--num_workers", "0"]
    importlib.import_module("espnet_peft.bin.s2t_train").main(cmd)

    tuned = load(exp / "checkpoint.pth")["model"]
    base = load(out / "model.pth")
    assert all(torch.equal(tuned[k], v) for k, v in base.items()), "a base weight moved"
    assert any(k.endswith(("outer_generator", "lora_B")) and v.abs().sum() > 0 for k, v in tuned.items())
    wavs = dict(list(read_wav_scp(model.valid_dir).items())[:1])
    hyps = decode("s2t", exp / "config.yaml", exp / "1epoch.pth", wavs,
                  inference_module="espnet_peft.bin.s2t_inference", **MAXLEN)
    assert set(hyps) == set(wavs) and all(isinstance(h, str) for h in hyps.values())


def test_speech2text_from_pretrained_reads_the_hub_model_as_fetched(tiny_models, hub_repos, offline_hub, tmp_path,
                                                                      monkeypatch):
    import espnet_model_zoo.downloader as zoo
    from espnet2.bin.s2t_inference import Speech2Text

    # ModelDownloader() caches next to its own module: point that at a temporary copy of the package dir.
    package = tmp_path / "espnet_model_zoo"
    package.mkdir()
    shutil.copy(Path(zoo.__file__).parent / "table.csv", package)
    monkeypatch.setattr(zoo, "__file__", str(package / "downloader.py"))
    populate_hub_cache(package, HUB_TAGS["v3.1"], hub_repos["v3.1"])

    wav = next(iter(read_wav_scp(tiny_models["v3.1"].valid_dir).values()))
    speech, _ = soundfile.read(str(wav), dtype="float32")
    speech2text = Speech2Text.from_pretrained(HUB_TAGS["v3.1"], device="cpu", beam_size=1, nbest=1, ctc_weight=0.0,
                                              **MAXLEN)
    from_hub = speech2text(speech)[0][3]
    out, _ = fetch(HUB_TAGS["v3.1"], tmp_path)
    assert decode("s2t", out / "config.yaml", out / "model.pth", [wav], **MAXLEN) == {wav.stem: from_hub}


def pack_archive(repo: Path, archive: Path, monkeypatch) -> Path:
    """``repo`` (a hub-layout model) packed by ``espnet2.bin.pack``'s function into ``archive``."""
    from espnet2.main_funcs.pack_funcs import pack

    meta = yaml.safe_load((repo / "meta.yaml").read_text())
    config_rel, model_rel = meta["yaml_files"]["s2t_train_config"], meta["files"]["s2t_model_file"]
    with monkeypatch.context() as m:  # espnet2.bin.pack stores the paths relative to the working dir
        m.chdir(repo)
        options = [str(p.relative_to(repo)) for p in (repo / "data").rglob("*") if p.is_file()]
        options += [str(p.relative_to(repo)) for p in repo.glob("exp/s2t_stats*/**/*.npz")]
        pack({"s2t_model_file": model_rel}, {"s2t_train_config": config_rel}, archive, options)
    return archive


def test_a_shipped_archive_is_checked_by_sha256_and_by_the_recipes_tokens(hub_repos, tmp_path, monkeypatch):
    archive = pack_archive(hub_repos["v3.1"], tmp_path / "shipped.zip", monkeypatch)
    sha = file_sha256(archive)
    out, tokens = fetch(str(archive), tmp_path / "ok", expected_sha256=sha)
    assert json.loads((out / "source.json").read_text())["sha256"] == sha
    written = (out / "model.pth").stat().st_mtime_ns
    fetch(str(archive), tmp_path / "ok", expected_sha256=sha)  # the same package again: nothing to do
    assert (out / "model.pth").stat().st_mtime_ns == written

    with pytest.raises(ValueError, match=f"sha256 {sha}, expected {'0' * 64}"):
        fetch(str(archive), tmp_path / "changed", expected_sha256="0" * 64)
    assert not (tmp_path / "changed").exists(), "a refused package writes nothing"

    # a token list made by another BPE run (stage 4 of an earlier retrain) is refused, and left as it was
    lines = (tokens / "tokens.txt").read_text().splitlines()
    other = tmp_path / "other" / "data" / "token_list"
    other.mkdir(parents=True)
    (other / "tokens.txt").write_text("\n".join(lines[:5] + ["\u2581another"] + lines[6:]) + "\n")
    with pytest.raises(ValueError, match=r"tokens.txt \(\d+ tokens\) differs .* first at line 6"):
        fetch(str(archive), tmp_path / "other", expected_sha256=sha)
    assert not (tmp_path / "other" / "exp").exists()
    assert "\u2581another" in (other / "tokens.txt").read_text()
    # the same token list but another BPE model
    shutil.copy(tokens / "tokens.txt", other / "tokens.txt")
    (other / "bpe.model").write_bytes(b"not the shipped BPE model")
    with pytest.raises(ValueError, match="bpe.model differs from the source model's BPE model"):
        fetch(str(archive), tmp_path / "other", expected_sha256=sha)
    # and once both match, the package is taken
    shutil.copy(tokens / "bpe.model", other / "bpe.model")
    fetch(str(archive), tmp_path / "other", expected_sha256=sha)
    assert_same_state(load(tmp_path / "other" / "exp" / "source" / "model.pth"), load(out / "model.pth"))


def test_a_hub_repository_dir_an_exp_dir_and_a_packed_archive_are_sources(tiny_models, hub_repos, tmp_path,
                                                                          monkeypatch):
    from espnet2.torch_utils.load_pretrained_model import load_pretrained_model

    model, repo = tiny_models["v3.1"], hub_repos["v3.1"]
    pack_archive(repo, tmp_path / "model.zip", monkeypatch)
    for kind, source in (("repo", repo), ("exp_dir", model.config.parent), ("archive", tmp_path / "model.zip")):
        out, tokens = fetch(str(source), tmp_path / kind)
        assert_same_state(load(out / "model.pth"), load(model.model_file))
        assert (tokens / "bpe.model").read_bytes() == model.bpemodel.read_bytes()
        built, _ = task_class("s2t").build_model_from_file(out / "config.yaml", None)
        load_pretrained_model(str(out / "model.pth"), built, ignore_init_mismatch=False)  # --init_param's loader


def test_the_known_key_difference_is_renamed_and_any_other_refused(tiny_models, tmp_path):
    model = tiny_models["v4"]  # 8x subsampling: ESPnet 202511 names its projection encoder.embed.out
    state = load(model.model_file)
    assert "encoder.embed.out.weight" in state
    older = {k.replace("encoder.embed.out.", "encoder.embed.out.0."): v for k, v in state.items()}
    source = tmp_path / "older_layout"
    source.mkdir()
    shutil.copy(model.config, source / "config.yaml")
    torch.save(older, source / "model.pth")

    out, _ = fetch(str(source), tmp_path)
    assert_same_state(load(out / "model.pth"), state)
    assert json.loads((out / "source.json").read_text())["renamed_keys"] == {
        "encoder.embed.out.0.bias": "encoder.embed.out.bias", "encoder.embed.out.0.weight": "encoder.embed.out.weight"}
    # the other direction (a bare Linear's keys into 202511's Sequential for 4x subsampling)
    expected = {"encoder.embed.out.0.weight": (4, 8), "encoder.embed.out.0.bias": (4,)}
    renamed, report = remap_state_dict({"encoder.embed.out.weight": torch.zeros(4, 8),
                                        "encoder.embed.out.bias": torch.zeros(4)}, expected)
    assert report.ok and set(renamed) == set(expected)

    broken = dict(state)
    broken.pop("decoder.output_layer.bias")
    broken["encoder.extra.weight"] = torch.zeros(1)
    torch.save(broken, source / "model.pth")
    with pytest.raises(ValueError, match=r"missing from the checkpoint: decoder\.output_layer\.bias.*"
                                         r"unknown to the model: encoder\.extra\.weight"):
        fetch(str(source), tmp_path / "refused")


def test_unavailable_tag_and_missing_tokens_fail_with_their_cause(hub_repos, offline_hub, tmp_path, capsys):
    with pytest.raises(SystemExit, match=r"espnet/owsm_v3.1_ebf_small.*cache"):
        fetch_cli.main(["--source", "espnet/owsm_v3.1_ebf_small", "--out", str(tmp_path / "a"),
                        "--token_dir", str(tmp_path / "t")])
    with pytest.raises(SystemExit, match=r"lacks \['<en>'\].*<en> -> <eng>"):  # OWSM v1/v2 spelling
        fetch_cli.main(["--source", HUB_TAGS["v4"], "--out", str(tmp_path / "b"), "--token_dir", str(tmp_path / "t"),
                        "--lang_token", "<en>"])


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_s2t_text_uses_the_models_tokens_and_survives_its_preprocessor(flavour, hub_repos, synthetic_train_dir,
                                                                       tmp_path):
    out, tokens = fetch(str(hub_repos[flavour]), tmp_path)
    data = tmp_path / "data" / "train"
    shutil.copytree(synthetic_train_dir, data, ignore=shutil.ignore_patterns("wav"))
    write_s2t_text(data, use_prev=True, token_list=tokens / "tokens.txt")
    text, prev, ctc = (read_table(data / n) for n in ("text", "text.prev", "text.ctc"))
    plain = read_table(data / "text.plain")
    assert all(text[u] == f"<eng><asr><notimestamps> {plain[u]}" and ctc[u] == plain[u] for u in plain)
    utt2spk = read_table(data / "utt2spk")
    first_of_speaker = {min(u for u in plain if utt2spk[u] == spk) for spk in set(utt2spk.values())}
    assert all((prev[u] == "<na>") == (u in first_of_speaker) for u in plain)

    # ESPnet's S2T preprocessor in training mode, with the fetched config: exactly one <notimestamps>, up front
    config = yaml.safe_load((out / "config.yaml").read_text())
    import argparse

    preprocess = task_class("s2t").build_preprocess_fn(argparse.Namespace(**config), train=True)
    token_list = config["token_list"]
    utt = sorted(plain)[1]
    for _ in range(10):
        ids = preprocess(utt, {"speech": np.zeros(8000, dtype=np.float32), "text": text[utt], "text_prev": prev[utt],
                               "text_ctc": ctc[utt]})["text"]
        decoded = [token_list[i] for i in ids]
        assert decoded[:3] == ["<eng>", "<asr>", "<notimestamps>"] and decoded.count("<notimestamps>") == 1

    assert s2t_tables({"u1": "hello"}, notime=False)["text"] == {"u1": "<eng><asr> hello"}  # OWSM-CTC
    with pytest.raises(ValueError, match=r"<en> -> <eng>"):
        write_s2t_text(data, lang="<en>", token_list=tokens / "tokens.txt")

"""conf/owsm: every file parses, ESPnet accepts its options, and the adapters' target modules resolve on the OWSM
architecture classes (E-Branchformer encoder + Transformer decoder; OWSM-CTC's E-Branchformer-CTC encoder with
cross-attention + prompt encoder) as ESPnet 202511 builds them."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from helpers.owsm_fixtures import TINY_ARCH, TINY_CTC_ARCH, build_model, owsm_token_list
from espnet_peft.budget import plan_budget
from espnet_peft.injection import InjectionSpec, find_targets, inject_adapters
from espnet_peft.recipe.finetune_config import finetune_config
from espnet_peft.recipe.source_model import known_options
from espnet_peft.tuners import METHODS

CONF = Path(__file__).resolve().parents[1] / "conf" / "owsm"
MODELS = yaml.safe_load((CONF / "models.yaml").read_text(encoding="utf-8"))
VARIANTS = ("finetune.yaml", "finetune_8gpu.yaml", "finetune_full.yaml", "finetune_full_8gpu.yaml")
BATCH_KEYS = {"batch_size", "accum_grad", "valid_batch_size"}
HEADS = {"ctc.ctc_lo", "decoder.output_layer", "encoder.conditioning_layer"}


def read(path: Path) -> dict:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def adapter_conf(method: str) -> dict:
    return read(CONF / "peft" / f"{method}.yaml")["adapter_conf"]


@pytest.fixture(scope="module")
def tiny_models():
    return {"owsm": build_model(TINY_ARCH, owsm_token_list(), device="cpu"),
            "owsm_ctc": build_model(TINY_CTC_ARCH, owsm_token_list(), device="cpu")}


def test_every_model_has_its_four_configs_and_its_hub_tag():
    dirs = {d.name for d in CONF.iterdir() if d.is_dir() and d.name != "peft"}
    assert dirs == set(MODELS)
    for name, entry in MODELS.items():
        assert entry["hub_tag"] == f"espnet/{name}"
        assert sorted(p.name for p in (CONF / name).iterdir()) == sorted(VARIANTS)
    assert sorted(p.stem for p in (CONF / "peft").glob("*.yaml")) == sorted(METHODS)


@pytest.mark.parametrize("name", MODELS)
def test_finetune_configs_are_espnet_options_with_one_effective_batch(name):
    task = MODELS[name]["task"]
    known = known_options(task)
    configs = {v: read(CONF / name / v) for v in VARIANTS}
    for variant, config in configs.items():
        assert set(config) <= known, f"{name}/{variant}: options ESPnet does not know: {set(config) - known}"
        assert config["batch_type"] == "unsorted"  # every input is padded to 30 s: count utterances, not samples
        assert "ESTIMATES" in (CONF / name / variant).read_text(), "batch settings must be labelled as estimates"
    for one, eight in (("finetune.yaml", "finetune_8gpu.yaml"), ("finetune_full.yaml", "finetune_full_8gpu.yaml")):
        a, b = configs[one], configs[eight]
        assert {k: v for k, v in a.items() if k not in BATCH_KEYS} == {k: v for k, v in b.items() if k not in BATCH_KEYS}
        assert a["batch_size"] * a["accum_grad"] == b["batch_size"] * b["accum_grad"] == 64
        assert b["batch_size"] % 8 == 0, "ESPnet splits each batch over the 8 GPUs"
    assert configs["finetune_full.yaml"]["optim_conf"]["lr"] < configs["finetune.yaml"]["optim_conf"]["lr"]
    assert configs["finetune_full.yaml"]["batch_size"] <= configs["finetune.yaml"]["batch_size"]


@pytest.mark.parametrize("method", METHODS)
def test_adapter_confs_parse_and_compose_into_a_training_config(method, tmp_path):
    conf = adapter_conf(method)
    assert conf["method"] == method
    InjectionSpec.from_conf(conf)  # validates the method's own fields
    base = tmp_path / "config.yaml"
    base.write_text(yaml.safe_dump({"encoder": "e_branchformer", "output_dir": "exp/x", "init_param": ["a.pth"]}))
    config = finetune_config(base, CONF / "owsm_v3.1_ebf_base" / "finetune.yaml", method, CONF / "peft", budget=1000)
    assert config["adapter_conf"]["total_budget"] == 1000 and "init_param" not in config
    # the budget sets every layer's size: the file's own size (r / per-layer budget) gives way, not refused later
    spec = InjectionSpec.from_conf(config["adapter_conf"])
    assert not {"r", "budget", "k"} & set(spec.method_fields)


@pytest.mark.parametrize("family", ["owsm", "owsm_ctc"])
def test_target_modules_are_every_block_linear_and_no_head(family, tiny_models):
    model = tiny_models[family]
    chosen = set(find_targets(model, adapter_conf("lora")["target_modules"]))
    suffixes = {n.split(".", 3)[-1] if n.startswith(("encoder.encoders", "decoder.decoders")) else n for n in chosen}
    encoder = {f"attn.linear_{x}" for x in "qkv"} | {"attn.linear_out", "feed_forward.w_1", "feed_forward.w_2",
                                                     "feed_forward_macaron.w_1", "feed_forward_macaron.w_2",
                                                     "cgmlp.channel_proj1.0", "cgmlp.channel_proj2", "merge_proj"}
    assert encoder <= suffixes
    if family == "owsm":
        decoder = {f"{a}.linear_{x}" for a in ("self_attn", "src_attn") for x in ("q", "k", "v", "out")}
        assert decoder | {"feed_forward.w_1", "feed_forward.w_2"} <= suffixes
        assert any(n.startswith("decoder.decoders.") for n in chosen)
    else:
        assert {f"cross_attn.linear_{x}" for x in ("q", "k", "v", "out")} <= suffixes
        assert any(n.startswith("prompt_encoder.encoders.") and "self_attn" in n for n in chosen)
    # all-linear minus the subsampling projection (and OWSM-CTC's prompt / prefix projections) is the same set
    every = set(find_targets(model, "all-linear"))
    assert every - chosen <= {"encoder.embed.out.0", "encoder.embed.out", "embed_proj", "prompt_proj"}
    assert chosen <= every


@pytest.mark.parametrize("family", ["owsm", "owsm_ctc"])
def test_all_linear_leaves_out_the_output_heads(family, tiny_models):
    model = tiny_models[family]
    names = {n for n, _ in model.named_modules()}
    heads = HEADS & names
    assert heads == (HEADS - {"encoder.conditioning_layer"} if family == "owsm" else HEADS - {"decoder.output_layer"})
    assert not heads & set(find_targets(model, "all-linear"))


@pytest.mark.parametrize("family", ["owsm", "owsm_ctc"])
@pytest.mark.parametrize("method", METHODS)
def test_each_adapter_conf_injects_at_a_total_budget(family, method, tmp_path):
    model = build_model(TINY_CTC_ARCH if family == "owsm_ctc" else TINY_ARCH, owsm_token_list(), device="cpu")
    base = tmp_path / "config.yaml"
    base.write_text(yaml.safe_dump({"encoder": "e_branchformer"}))
    config = finetune_config(base, CONF / "owsm_v3.1_ebf_base" / "finetune.yaml", method, CONF / "peft", budget=20000)
    report = inject_adapters(model, config["adapter_conf"])
    assert abs(report.trainable - 20000) / 20000 < 0.05


@pytest.mark.parametrize("name", MODELS)
def test_budget_is_what_lora_r8_spends_on_the_full_size_model_and_every_method_meets_it(name):
    entry = MODELS[name]
    model = build_model(entry["architecture"], owsm_token_list(50000))  # meta device: no memory
    targets = find_targets(model, adapter_conf("lora")["target_modules"])
    assert sum(8 * (m.in_features + m.out_features) for m in targets.values()) == entry["budget"]
    shapes = {n: (m.out_features, m.in_features) for n, m in targets.items()}
    for method in METHODS:
        fields = {k: v for k, v in adapter_conf(method).items() if k not in ("method", "target_modules")}
        assert abs(plan_budget(method, shapes, entry["budget"], fields).relative_error) < 0.05, method
    if name.startswith("owsm_v3.1"):  # the assumed v3.1 shapes reproduce the published sizes
        published = float(entry["params"].rstrip("MB")) * (1e9 if entry["params"].endswith("B") else 1e6)
        assert abs(sum(p.numel() for p in model.parameters()) - published) / published < 0.01


def run_recipe(recipe: str, args: list, tmp_path: Path) -> subprocess.CompletedProcess:
    """The recipe's run.sh with peft.sh replaced by a stub that prints the options it gets."""
    src = CONF.parents[1] / "egs2" / recipe / "peft1"
    work = tmp_path / recipe
    work.mkdir(parents=True)
    for entry in src.iterdir():
        (work / entry.name).symlink_to(entry.resolve())
    (work / "peft.sh").unlink()
    (work / "peft.sh").write_text('#!/usr/bin/env bash\nprintf "%s\\n" "$@"\n')
    (work / "peft.sh").chmod(0o755)
    return subprocess.run(["./run.sh", *args], cwd=work, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("recipe", ["myst", "commonvoice"])
@pytest.mark.parametrize("name, ngpu", [("owsm_v3.1_ebf_base", None), ("owsm_v4_small_370M", "8"),
                                        ("owsm_ctc_v3.1_1B", None)])
def test_run_sh_turns_owsm_model_into_its_tag_budget_and_configs(recipe, name, ngpu, tmp_path):
    args = [] if name == "owsm_v3.1_ebf_base" else ["--owsm_model", name]  # v3.1 base is the default
    result = run_recipe(recipe, args + (["--ngpu", ngpu] if ngpu else []), tmp_path)
    assert result.returncode == 0, result.stderr
    printed = result.stdout.splitlines()
    options = dict(zip(printed[::2], printed[1::2]))  # the last value of an option wins, as in parse_options.sh
    suffix = "_8gpu" if ngpu else ""
    assert options["--source_model"] == MODELS[name]["hub_tag"]
    assert options["--budget"] == str(MODELS[name]["budget"])
    assert options["--task"] == MODELS[name]["task"]
    assert options["--finetune_config"] == f"conf/owsm/{name}/finetune{suffix}.yaml"
    assert options["--full_finetune_config"] == f"conf/owsm/{name}/finetune_full{suffix}.yaml"
    work = tmp_path / recipe
    for option in ("--finetune_config", "--full_finetune_config", "--peft_conf_dir"):
        assert (work / options[option]).exists(), options[option]


def test_run_sh_refuses_unknown_models(tmp_path):
    result = run_recipe("myst", ["--owsm_model", "owsm_v9"], tmp_path)
    assert result.returncode != 0 and "not in conf/owsm/models.yaml" in result.stderr

"""Seeds and generic sweeps of the recipe: the spec syntax, its checks against the tuner registry, the experiment
plan (names, labels, seeds), and what reaches train.yaml and run_info.json, in Python and through peft.sh."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from espnet_peft.bin import list_experiments, make_finetune_config, write_run_info
from espnet_peft.model_inventory import INVENTORY
from espnet_peft.utils.file_hash import file_sha256
from espnet_peft.recipe import field_settings as fmt
from espnet_peft.recipe.sweep import Experiment, Sweep, SweepError, check_sweep, parse_methods, parse_seeds, \
    parse_sweeps, plan
from espnet_peft.tuners import METHODS

REPO = Path(__file__).resolve().parents[1]
RECIPE = REPO / "egs2" / "synthetic" / "peft1"
PEFT_CONF = RECIPE / "conf" / "peft"


# ---------------------------------------------------------------- field=value text


@pytest.mark.parametrize("text, value, shown", [("0", 0, "0"), ("0.25", 0.25, "0.25"), ("1.0", 1.0, "1"),
                                                ("1e-5", 1e-5, "1e-05"), ("true", True, "true"),
                                                ("cayley", "cayley", "cayley")])
def test_values_are_yaml_scalars_with_one_written_form(text: str, value: object, shown: str) -> None:
    assert fmt.parse_value(text) == value and type(fmt.parse_value(text)) is type(value)
    assert fmt.format_value(fmt.parse_value(text)) == shown


def test_settings_have_one_text_form_and_bad_text_is_refused() -> None:
    assert fmt.parse_setting("outer_share=0.25") == ("outer_share", 0.25)
    assert fmt.format_settings({}) == "-"
    settings = {"outer_share": 0.25, "rotation_map": "linear"}
    assert fmt.format_settings(settings) == "outer_share=0.25,rotation_map=linear"
    for bad in ("outer_share", "=1", "1a=2", "a=b c", "a=x/y", "a=1,2"):
        with pytest.raises(fmt.SettingError):
            fmt.parse_setting(bad)


# ---------------------------------------------------------------- sweep specs


def test_specs_are_separated_by_spaces_or_semicolons() -> None:
    sweeps = parse_sweeps(" ssvd_o:outer_share=0,0.25,1;lora:alpha=8,32  dora:dropout=0.1 ")
    assert sweeps == [Sweep("ssvd_o", "outer_share", (0, 0.25, 1)), Sweep("lora", "alpha", (8, 32)),
                      Sweep("dora", "dropout", (0.1,))]
    assert parse_sweeps("") == []


@pytest.mark.parametrize("spec, message", [
    ("ssvd_o", "'ssvd_o': expected method:field=value"),
    ("ssvd_o:outer_share", "'ssvd_o:outer_share': expected"),
    (":outer_share=1", "':outer_share=1': expected"),
    ("ssvd_o:=1", "'ssvd_o:=1': expected"),
    ("ssvd_o:outer_share=0,,1", "an empty value"),
    ("ssvd_o:outer_share=a/b", "'a/b'"),
])
def test_malformed_specs_name_the_bad_part(spec: str, message: str) -> None:
    with pytest.raises(SweepError, match=message.replace("(", r"\(")):
        parse_sweeps(f"lora:alpha=8 {spec}")


def check(spec: str, budget: int | None = 40000) -> Sweep:
    (sweep,) = parse_sweeps(spec)
    return check_sweep(sweep, PEFT_CONF, budget)


def test_checked_sweep_has_the_field_type_and_the_default_of_the_recipe_conf() -> None:
    sweep = check("ssvd_o:outer_share=0,0.25,1")
    assert sweep.values == (0.0, 0.25, 1.0) and all(isinstance(v, float) for v in sweep.values)
    assert sweep.default == 0.5  # conf/peft/ssvd_o.yaml
    assert check("lora:use_rslora=true").default is False  # not in conf/peft/lora.yaml: the dataclass default


@pytest.mark.parametrize("spec, message", [
    ("sssvd_o:outer_share=1", "unknown method 'sssvd_o'; adapters are"),
    ("full:lr=1", "full fine-tuning has no adapter fields"),
    ("ssvd_o:outershare=1", "ssvd_o has no field 'outershare'; its fields are .*'outer_share'"),
    ("ssvd_o:outer_share=1.5", "value '1.5': outer_share must be a number in \\[0.0, 1.0\\], got 1.5"),
    ("ssvd_o:outer_share=half", "value 'half': .*not of the field's type float"),
    ("lora:use_rslora=1", "value '1': .*not of the field's type bool"),
    ("ssvd_o:rotation_map=cayley,expm", "value 'expm': rotation_map must be one of"),
    ("ssvd_o:outer_share=0.5,0.50", "value '0.5' is given twice"),
    ("lora:r=4,8", "the total budget \\(--budget 40000\\) sets r on every layer"),
    ("ssvd_o:k_inner=4", "sets k_inner on every layer"),
])
def test_sweeps_are_checked_against_the_tuner_registry(spec: str, message: str) -> None:
    with pytest.raises(SweepError, match=message):
        check(spec)


def test_without_a_budget_rank_fields_can_be_swept() -> None:
    assert check("lora:r=4,8", budget=None).values == (4, 8)


# ---------------------------------------------------------------- the plan


def test_methods_come_from_the_registry_and_seeds_are_checked() -> None:
    assert parse_methods("") == [*METHODS, "full"]
    assert parse_methods("lora full") == ["lora", "full"]
    with pytest.raises(SweepError, match="unknown method"):
        parse_methods("lora qlora")
    assert parse_seeds(" 0 1  2 ") == [0, 1, 2]
    for bad in ("", "0 x", "-1", "1 1"):
        with pytest.raises(SweepError, match="seeds"):
            parse_seeds(bad)


def test_default_configs_run_every_seed_and_sweep_points_the_first() -> None:
    sweeps = [check("ssvd_o:outer_share=0,0.5,1"), check("lora:alpha=8,16,32")]
    experiments = plan(["child"], ["lora", "ssvd_o", "full"], [3, 1], sweeps)
    assert [(e.name, e.label, e.seed, fmt.format_settings(dict(e.settings))) for e in experiments] == [
        ("child_lora_s3", "lora", 3, "alpha=16"),
        ("child_lora_s1", "lora", 1, "alpha=16"),
        ("child_lora_alpha8_s3", "lora alpha=8", 3, "alpha=8"),  # 16 is lora.yaml's alpha: the default run
        ("child_lora_alpha32_s3", "lora alpha=32", 3, "alpha=32"),
        ("child_ssvd_o_s3", "ssvd_o", 3, "outer_share=0.5"),
        ("child_ssvd_o_s1", "ssvd_o", 1, "outer_share=0.5"),
        ("child_ssvd_o_outer_share0_s3", "ssvd_o outer_share=0", 3, "outer_share=0"),
        ("child_ssvd_o_outer_share1_s3", "ssvd_o outer_share=1", 3, "outer_share=1"),
        ("child_full_s3", "full", 3, "-"),
        ("child_full_s1", "full", 1, "-"),
    ]
    assert len({e.name for e in experiments}) == len(experiments)


def test_sweeps_of_methods_not_run_are_left_out_and_a_field_is_swept_once() -> None:
    assert [e.name for e in plan(["a", "b"], ["lora"], [0], [check("ssvd_o:outer_share=0")])] == ["a_lora_s0",
                                                                                                 "b_lora_s0"]
    with pytest.raises(SweepError, match="swept twice"):
        plan(["a"], ["ssvd_o"], [0], [check("ssvd_o:outer_share=0"), check("ssvd_o:outer_share=1")])


def test_list_experiments_prints_one_line_each_with_the_label_last(capsys: pytest.CaptureFixture) -> None:
    list_experiments.main(["--domains", "child accent", "--methods", "ssvd_o full", "--seeds", "0 1",
                           "--sweep", "ssvd_o:outer_share=0.25", "--peft_conf_dir", str(PEFT_CONF),
                           "--budget", "40000"])
    lines = capsys.readouterr().out.splitlines()
    assert lines[:4] == ["child ssvd_o 0 child_ssvd_o_s0 outer_share=0.5 ssvd_o",
                         "child ssvd_o 1 child_ssvd_o_s1 outer_share=0.5 ssvd_o",
                         "child ssvd_o 0 child_ssvd_o_outer_share0.25_s0 outer_share=0.25 ssvd_o outer_share=0.25",
                         "child full 0 child_full_s0 - full"]
    assert len(lines) == 10 and lines[5].startswith("accent ssvd_o 0 accent_ssvd_o_s0 ")
    assert Experiment("d", "m", 0).line() == "d m 0 d_m_s0 - m"


def test_list_experiments_exits_with_the_reason() -> None:
    with pytest.raises(SystemExit, match="list_experiments: sweep ssvd_o:outer_share: value '2'"):
        list_experiments.main(["--domains", "child", "--sweep", "ssvd_o:outer_share=2",
                               "--peft_conf_dir", str(PEFT_CONF)])


# ---------------------------------------------------------------- train.yaml and run_info.json


@pytest.fixture
def base_config(tmp_path: Path) -> Path:
    path = tmp_path / "source" / "config.yaml"
    path.parent.mkdir()
    path.write_text(yaml.safe_dump({"encoder": "e_branchformer", "seed": 7, "output_dir": "exp/source"}))
    return with_inventory(path)


def with_inventory(config: Path) -> Path:
    """The nn.Linear inventory that make_finetune_config checks adapter settings against, for a config that builds
    no model (an E-Branchformer's attention and feed-forward linears)."""
    linears = {f"encoder.encoders.{i}.{name}": [256, 256] for i in range(4)
               for name in ("attn.linear_q", "attn.linear_k", "attn.linear_v", "attn.linear_out")}
    linears.update({f"encoder.encoders.{i}.feed_forward.{name}": shape for i in range(4)
                    for name, shape in (("w_1", [1024, 256]), ("w_2", [256, 1024]))})
    (config.parent / INVENTORY).write_text(json.dumps({"config_sha256": file_sha256(config), "linears": linears}))
    return config


def make_config(base: Path, out: Path, *options: str) -> dict:
    make_finetune_config.main(["--base", str(base), "--overrides", str(RECIPE / "conf" / "finetune.yaml"),
                               "--peft_conf_dir", str(PEFT_CONF), "--out", str(out), *options])
    return yaml.safe_load(out.read_text())


def test_seed_and_settings_reach_train_yaml(base_config: Path, tmp_path: Path) -> None:
    config = make_config(base_config, tmp_path / "a.yaml", "--method", "ssvd_o", "--budget", "40000",
                         "--seed", "2", "--set", "outer_share=0.25", "--set", "rotation_map=linear")
    assert config["seed"] == 2
    assert config["adapter_conf"] == {**yaml.safe_load((PEFT_CONF / "ssvd_o.yaml").read_text())["adapter_conf"],
                                      "total_budget": 40000, "outer_share": 0.25, "rotation_map": "linear"}
    overrides_seed = yaml.safe_load((RECIPE / "conf" / "finetune.yaml").read_text())["seed"]
    assert overrides_seed != 7  # the source model's seed, which is dropped
    assert make_config(base_config, tmp_path / "b.yaml", "--method", "lora")["seed"] == overrides_seed
    assert make_config(base_config, tmp_path / "c.yaml", "--method", "full", "--seed", "1")["seed"] == 1


@pytest.mark.parametrize("options, message", [
    (["--method", "full", "--set", "r=4"], "full fine-tuning has no adapter fields"),
    (["--method", "lora", "--set", "outer_share=0.5"], "lora has no field"),
    (["--method", "lora", "--set", "r"], "not field=value"),
])
def test_make_finetune_config_refuses_bad_settings(base_config: Path, tmp_path: Path, options: list,
                                                   message: str) -> None:
    with pytest.raises(SystemExit, match=message):
        make_config(base_config, tmp_path / "x.yaml", *options)


def test_make_finetune_config_methods_are_the_registry_and_full(base_config: Path, tmp_path: Path) -> None:
    with pytest.raises(SystemExit):  # argparse: invalid choice
        make_config(base_config, tmp_path / "x.yaml", "--method", "qlora")


def test_run_info_records_seed_settings_and_label(tmp_path: Path) -> None:
    exp = tmp_path / "child_ssvd_o_outer_share0.25_s1"
    exp.mkdir()
    (exp / "trainable_parameters.json").write_text(json.dumps({"trainable": 123}))
    write_run_info.main(["--exp_dir", str(exp), "--domain", "child", "--method", "ssvd_o", "--seed", "1",
                         "--set", "outer_share=0.25", "--label", "ssvd_o outer_share=0.25",
                         "--target", str(exp / "t"), "--source", str(exp / "s")])
    info = json.loads((exp / "run_info.json").read_text())
    assert (info["seed"], info["settings"], info["label"]) == (1, {"outer_share": 0.25}, "ssvd_o outer_share=0.25")


# ---------------------------------------------------------------- through peft.sh


STUB_PYTHON = """#!/usr/bin/env bash
# The real interpreter, except that training only records its arguments and writes what a finished run leaves.
if [ "$2" = espnet_peft.bin.measure ]; then
  while [ $# -gt 0 ]; do
    case $1 in --output_dir) out=$2 ;; --config) config=$2 ;; esac
    shift
  done
  echo "${out} ${config}" >> trained.txt
  echo '{"trainable": 40000}' > "${out}/trainable_parameters.json"
  exit 0
fi
exec "%s" "$@"
"""


@pytest.mark.skipif(shutil.which("sox") is None or not (shutil.which("sclite") or Path("/usr/lib/sctk/bin/sclite")
                                                         .exists()), reason="peft.sh needs sox and sclite")
def test_peft_sh_runs_every_seed_and_the_sweep(tmp_path: Path) -> None:
    """Stages 7 (fine-tuning, training stubbed) and 9 (run_info.json) of the real driver with --seeds and --sweep."""
    shutil.copytree(REPO / "egs2", tmp_path / "egs2", symlinks=True,
                    ignore=shutil.ignore_patterns("data", "dump", "exp", "RESULTS.md"))
    recipe = tmp_path / "egs2" / "synthetic" / "peft1"
    stub = tmp_path / "python"
    stub.write_text(STUB_PYTHON % sys.executable)
    stub.chmod(0o755)
    (recipe / "exp" / "source").mkdir(parents=True)
    (recipe / "exp" / "source" / "config.yaml").write_text(yaml.safe_dump({"encoder": "e_branchformer"}))
    with_inventory(recipe / "exp" / "source" / "config.yaml")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    options = ["--python", str(stub), "--target_domains", "child", "--methods", "lora ssvd_o", "--seeds", "0 1",
               "--sweep", "ssvd_o:outer_share=0,0.5", "--budget", "40000"]
    for stages in (["--stage", "7", "--stop_stage", "7"], ["--stage", "9", "--stop_stage", "9"]):
        result = subprocess.run(["./peft.sh", *stages, *options], cwd=recipe, env=env, capture_output=True,
                                text=True, timeout=600)
        assert result.returncode == 0, result.stderr[-3000:]
    names = ["child_lora_s0", "child_lora_s1", "child_ssvd_o_s0", "child_ssvd_o_s1", "child_ssvd_o_outer_share0_s0"]
    trained = (recipe / "trained.txt").read_text().split()
    assert trained[::2] == [f"exp/{n}" for n in names]
    for name in names:
        config = yaml.safe_load((recipe / "exp" / name / "train.yaml").read_text())
        info = json.loads((recipe / "exp" / name / "run_info.json").read_text())
        seed = int(name[-1])
        assert config["seed"] == info["seed"] == seed
        if "ssvd_o" in name:
            share = 0.0 if "outer_share0_" in name else 0.5
            assert config["adapter_conf"]["outer_share"] == info["settings"]["outer_share"] == share
            assert info["label"] == ("ssvd_o outer_share=0" if share == 0.0 else "ssvd_o")
        else:
            assert info["label"] == "lora" and "settings" not in info
    bad = subprocess.run(["./peft.sh", "--stage", "7", "--stop_stage", "7", *options[:-4], "--sweep", "lora:rank=4"],
                         cwd=recipe, env=env, capture_output=True, text=True, timeout=600)
    assert bad.returncode != 0 and "lora has no field 'rank'" in bad.stderr

#!/usr/bin/env python
"""Wall time of the analysis of one fine-tuned method (the recipe's stage 13 for one model pair) on CPU.

What is timed: ``python -m espnet_peft.bin.analyze`` in a fresh interpreter (imports and model loading included),
source model A vs adapted model B on the source-domain test set, with

* ``stage13``: the analyses stage 13 runs (``STAGE13``: the encoder analyses cka, lens, contribution, branches,
  energy and the decoder analyses), and
* ``all``: every analysis (adds single + cumulative layer ablation and attention-map similarity).

Models: the default recipe's (``egs2/synthetic/peft1``: ``exp/source`` and ``exp/<domain>_<method>``, on
``dump/raw/source_test``) when that recipe has been run; otherwise models of the same shape, randomly initialised
(the recipe's ``conf/train_source.yaml``, a 300-piece OWSM-style BPE, the method's ``conf/peft/<method>.yaml`` at the
recipe's budget, adapters moved off their identity start) on synthetic audio with the recipe's test-set size and
utterance lengths. The JSON says which (``models.origin``). Run time does not depend on the weights' values.

Usage::

    nice -n 19 python benchmarks/analysis_runtime.py            # writes benchmarks/results/analysis_runtime_cpu.json
    python benchmarks/analysis_runtime.py --utts 8 --output /tmp/a.json   # smoke run
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import soundfile
import torch
import yaml

from harness.output import write_record
from harness.paths import REPO, RESULTS_DIR
from harness.subprocess_runs import checkout_environment

RECIPE = REPO / "egs2" / "synthetic" / "peft1"
RESULTS = RESULTS_DIR / "analysis_runtime_cpu.json"
STAGE13 = "cka,lens,contribution,branches,energy,decoder_drift,decoder_contribution,decoder_branches"
FS = 16000
TARGET_S = 300.0


# ---------------------------------------------------------------------------------------------------------------------
# Same-shape models and data (also used by tests/test_analysis_cli.py)


def synthetic_data_dir(root: Path, texts: Sequence[str], seconds: Sequence[float], seed: int = 0) -> Path:
    """A Kaldi data dir with the recipe's S2T text files (prompted ``text``, ``text.prev``, ``text.ctc``) and
    harmonic, amplitude-modulated noisy tones of the given lengths (speech-like enough for a frontend)."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    tables: dict[str, list[str]] = {"wav.scp": [], "text": [], "text.prev": [], "text.ctc": []}
    for i, (words, length) in enumerate(zip(texts, seconds)):
        t = np.arange(int(length * FS)) / FS
        pitch = 110 + 40 * rng.random()
        audio = sum(np.sin(2 * np.pi * k * pitch * t) / k for k in range(1, 6))
        audio = 0.1 * audio * (1 + np.sin(2 * np.pi * 4 * t)) + 0.01 * rng.standard_normal(t.size)
        key = f"spk{i % 4}-utt{i:04d}"
        soundfile.write(root / f"{key}.wav", audio.astype(np.float32), FS)
        tables["wav.scp"].append(f"{key} {(root / f'{key}.wav').resolve()}")
        tables["text"].append(f"{key} <eng><asr><notimestamps> {words}")
        tables["text.prev"].append(f"{key} <na>")
        tables["text.ctc"].append(f"{key} {words}")
    for name, lines in tables.items():
        (root / name).write_text("\n".join(sorted(lines)) + "\n", encoding="utf-8")
    return root


def write_experiment(out: Path, config: dict, seed: int, adapted_from: Optional[Path] = None,
                     adapter_scale: float = 0.3) -> Path:
    """An ESPnet S2T experiment dir as training leaves it (``config.yaml`` with every option, full ``model.pth``),
    randomly initialised; with ``adapted_from`` (an experiment dir) and an ``adapter_conf`` in ``config``: that
    model's weights plus adapters moved off their identity start by ``adapter_scale``-sized random values."""
    from espnet2.layers.create_adapter import create_adapter

    from espnet_peft.injection import adapter_layers
    from espnet_peft.tasks.s2t import S2TTask

    out.mkdir(parents=True, exist_ok=True)
    (out / "train.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    args = S2TTask.get_parser().parse_args(["--config", str(out / "train.yaml"), "--output_dir", str(out)])
    torch.manual_seed(seed)
    model = S2TTask.build_model(args)  # reads the token list file into args.token_list
    if adapted_from is not None:
        model.load_state_dict(torch.load(adapted_from / "model.pth"))
        create_adapter(model, args.adapter, args.adapter_conf)
        generator = torch.Generator().manual_seed(seed)
        for layer in adapter_layers(model).values():
            layer.initialise_from_weight()
            for p in layer.adapter_parameters().values():  # e.g. LoRA's B starts at zero: B = A exactly
                p.data += adapter_scale * torch.randn(p.shape, generator=generator)
    torch.save(model.state_dict(), out / "model.pth")
    (out / "config.yaml").write_text(yaml.safe_dump(vars(args)), encoding="utf-8")
    return out


def _same_shape_models(root: Path, method: str, budget: int, utts: int) -> tuple[Path, Path, Path]:
    """(A, B, data) of the default recipe's shapes, in ``root``."""
    from espnet_peft.recipe.finetune_config import finetune_config
    from espnet_peft.recipe.owsm_tokens import train_owsm_bpe
    from espnet_peft.recipe.sentences import unique_sentences
    from espnet_peft.recipe.speech_stats import (
        build_frontend,
        speech_feature_stats,
        write_stats,
    )

    source = yaml.safe_load((RECIPE / "conf" / "train_source.yaml").read_text(encoding="utf-8"))
    speech_length = float(source["preprocessor_conf"]["speech_length"])
    texts = unique_sentences(max(utts, 400), seed=0)
    bpe, tokens = train_owsm_bpe(texts, root / "token_list", vocab_size=300, speech_length=speech_length)
    rng = np.random.default_rng(0)
    # the recipe keeps utterances shorter than its fixed input length (max_sec < speech_length)
    data = synthetic_data_dir(root / "source_test", texts[:utts], rng.uniform(1.0, 0.9 * speech_length, utts))
    common = {"token_list": str(tokens), "bpemodel": str(bpe), "token_type": "bpe", "use_preprocessor": True}
    if source.get("normalize") == "global_mvn":  # as the recipe's stage 5: statistics of the unpadded speech
        stats = root / "feats_stats.npz"
        write_stats(speech_feature_stats(data / "wav.scp", build_frontend(source)), stats)
        source["normalize_conf"] = {**(source.get("normalize_conf") or {}), "stats_file": str(stats)}
    a = write_experiment(root / "source", {**source, **common}, seed=0)
    finetune = finetune_config(a / "train.yaml", RECIPE / "conf" / "finetune.yaml", method, RECIPE / "conf" / "peft",
                               budget)
    b = write_experiment(root / f"child_{method}", {**finetune, **common}, seed=1, adapted_from=a)
    return a, b, data


def _recipe_models(method: str, domain: str) -> Optional[tuple[Path, Path, Path]]:
    b = RECIPE / "exp" / f"{domain}_{method}_s0"  # the recipe's name of the method's default config, seed 0
    a, data = RECIPE / "exp" / "source", RECIPE / "dump" / "raw" / "source_test"
    if not (b / "valid.acc.best.pth").exists() or not (a / "model.pth").exists() or not (data / "wav.scp").is_file():
        return None
    return a, b, data


# ---------------------------------------------------------------------------------------------------------------------
# Timing


def _run(cwd: Path, a: Path, b: Path, data: Path, analyses: str, out: Path, max_utts: int) -> dict[str, Any]:
    a_file = "model.pth" if (a / "model.pth").exists() else "valid.acc.best.pth"
    b_file = "valid.acc.best.pth" if (b / "valid.acc.best.pth").exists() else "model.pth"
    cmd = [sys.executable, "-m", "espnet_peft.bin.analyze", "--model_a_config", str(a / "config.yaml"),
           "--model_a_file", str(a / a_file), "--model_b_config", str(b / "config.yaml"), "--model_b_file",
           str(b / b_file), "--data", str(data), "--max_utts", str(max_utts), "--analyses", analyses,
           "--out", str(out), "--no_progress"]
    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=cwd, env=checkout_environment(), capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"analyze failed ({' '.join(cmd)}):\n{done.stderr[-3000:]}")
    results = json.loads((out / "analysis.json").read_text(encoding="utf-8"))
    return {"analyses": analyses, "wall_s": round(wall, 2), "within_target": wall <= TARGET_S,
            "steps_s": {k: round(v, 2) for k, v in results["timing_s"].items()},
            "utterances": results["data"]["utterances"], "cka_frames": results["cka"]["frames"],
            "load_avg_1min_before": load_before, "load_avg_1min_after": os.getloadavg()[0]}


def main(cmd: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--method", default="ssvd_o", help="the fine-tuned method analysed (recipe name)")
    parser.add_argument("--domain", default="child")
    parser.add_argument("--budget", type=int, default=20000, help="adapter budget of the same-shape model")
    parser.add_argument("--utts", type=int, default=80, help="source test utterances (the recipe's test size)")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(cmd)

    with tempfile.TemporaryDirectory(prefix="analysis_runtime_") as tmp:
        tmp_dir = Path(tmp)
        found = _recipe_models(args.method, args.domain)
        if found is not None:
            origin, cwd = f"recipe outputs of {RECIPE.relative_to(REPO)}", RECIPE  # configs hold recipe-relative paths
            a, b, data = found
        else:
            origin, cwd = "same-shape random models (the recipe outputs are absent)", tmp_dir
            print(f"building {origin} in {tmp_dir}", file=sys.stderr)
            a, b, data = _same_shape_models(tmp_dir / "build", args.method, args.budget, args.utts)
        runs = [_run(cwd, a, b, data, analyses, tmp_dir / f"out_{name}", args.utts)
                for name, analyses in (("stage13", STAGE13), ("all", "all"))]
        described = json.loads((tmp_dir / "out_all" / "analysis.json").read_text())["models"]
        config = yaml.safe_load((b / "config.yaml").read_text(encoding="utf-8"))

    report = {
        "benchmark": "benchmarks/analysis_runtime.py",
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "target": f"one method's analysis <= {TARGET_S:.0f} s on 2 CPU cores",
        "models": {"origin": origin, "method": args.method, "adapter_conf": config.get("adapter_conf"),
                   "encoder": config["encoder"],
                   "encoder_conf": config["encoder_conf"],
                   "speech_length_s": config["preprocessor_conf"]["speech_length"],
                   **{label: {k: m[k] for k in ("layers", "parameters", "adapter_layers")}
                      for label, m in described.items()}},
        "host": {"cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(), "python":
                 platform.python_version(), "torch": torch.__version__, "processor": platform.processor()},
        "runs": runs,
    }
    write_record(args.output, report)
    for run in runs:
        print(f"{run['analyses']}: {run['wall_s']:.1f} s ({'within' if run['within_target'] else 'OVER'} target)")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()

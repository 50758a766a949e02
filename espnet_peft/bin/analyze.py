"""Analyse one model, or compare two (pretrained A vs adapted B), layer by layer on the same audio.

    python -m espnet_peft.bin.analyze --model_a exp/source --model_b exp/child_lora_s0 \\
        --data dump/raw/source_test --out exp/analysis/child/lora_s0
    python -m espnet_peft.bin.analyze --model_a_config conf.yaml --model_a_file model.pth --data wavs.txt --out out
    python -m espnet_peft.bin.analyze --hf_model_a whisper-dir --hf_model_b whisper-ft --data data/test --out out \\
        --analyses cka,attention
    python -m espnet_peft.bin.analyze --hf_model_a whisper-dir --hf_model_b whisper-lora@whisper-dir \\
        --data data/test --out out --analyses cka,contribution,branches,energy
    python -m espnet_peft.bin.analyze --models source=exp/source lora=exp/child_lora_s0 full=exp/child_full_s0 \\
        --data dump/raw/source_test --out exp/analysis/child/models

A model is an ESPnet experiment dir (config.yaml + valid.acc.best.pth / valid.loss.best.pth / model.pth /
latest.pth), a config + checkpoint pair, a Hugging Face dir (config.json: Whisper, Wav2Vec2, HuBERT), or a Hugging
Face peft adapter dir (adapter_config.json) over such a model: loaded with peft, unmerged, over the base its
adapter_config.json names (base_model_name_or_path, a local dir), or over the base given as ADAPTER_DIR@BASE_DIR
(wherever a model is named: --model_b, --hf_model_b, --models LABEL=ADAPTER_DIR@BASE_DIR). The data is
a Kaldi data dir (wav.scp, and text.ctc or text for the scored analyses) or a file with one wav path (or "key path")
per line. Writes OUT/analysis.json (last: its presence marks a finished run), OUT/*.png and OUT/summary.md.
With --models (LABEL=MODEL, the first one the reference, e.g. the source model): linear CKA between every pair of
models layer by layer, a heatmap per layer group and an MDS map of the models (espnet_peft.analysis.many_models),
in OUT/models.json (last), OUT/models_*.png and OUT/summary.md.

Analyses (--analyses, comma-separated or "all"; default
cka,lens,contribution,branches,energy,decoder_drift,decoder_contribution,decoder_branches): every analysis of
the registry in espnet_peft/analysis/methods/, listed with what it does by --help.
Relative paths inside ESPnet configs (init_param, bpemodel) are resolved from the current dir: run from the recipe dir.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Optional, Sequence

from espnet_peft.analysis.methods import DEFAULT_ANALYSES, REGISTRY, summary_lines, write_plots
from espnet_peft.analysis.runner import Settings, run_analysis
from espnet_peft.atomic import atomic_write_text


def _model_arguments(parser: argparse.ArgumentParser, label: str) -> None:
    x = label.lower()
    group = parser.add_argument_group(f"model {label}" + (" (optional: compare with A)" if label == "B" else ""))
    group.add_argument(f"--model_{x}", help="ESPnet exp dir, config.yaml, .pth (config.yaml beside it), HF dir or "
                                            "peft adapter dir (ADAPTER_DIR[@BASE_DIR])")
    group.add_argument(f"--model_{x}_config", help="ESPnet training config (config.yaml)")
    group.add_argument(f"--model_{x}_file", help="ESPnet checkpoint (default: the first found beside the config)")
    group.add_argument(f"--hf_model_{x}", metavar="DIR", help="Hugging Face model dir (from_pretrained), or a peft "
                       "adapter dir (adapter_config.json) over the base its config names; ADAPTER_DIR@BASE_DIR gives "
                       "the base explicitly")


def get_parser() -> argparse.ArgumentParser:
    listing = "\n".join(f"  {name:<14}{cls.description}" for name, cls in REGISTRY.items())
    parser = argparse.ArgumentParser(description=__doc__, epilog=f"analyses:\n{listing}",
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    _model_arguments(parser, "A")
    _model_arguments(parser, "B")
    parser.add_argument("--models", nargs="+", metavar="LABEL=MODEL",
                        help="compare these models with each other (instead of --model_a / --model_b); MODEL as "
                             "--model_a takes it")
    parser.add_argument("--task", default="auto", choices=["auto", "asr", "s2t"],
                        help="ESPnet task of the models (auto: s2t when the config uses the s2t preprocessor)")
    parser.add_argument("--data", required=True, help="Kaldi data dir (wav.scp + text) or a wav list file")
    parser.add_argument("--max_utts", type=int, default=100, help="utterances, spread over the sorted keys")
    parser.add_argument("--analyses", default=",".join(DEFAULT_ANALYSES),
                        help="comma-separated names (listed below), or 'all'")
    parser.add_argument("--batch_size", type=int, default=8, help="utterances per forward pass (HF: 1)")
    parser.add_argument("--max_frames", type=int, default=5000,
                        help="frames kept for CKA, spread over utterances (peak memory about 20 bytes x max_frames "
                             "x width per layer and model: 2.5 GB per model at 24 layers x 1024)")
    parser.add_argument("--energy_max_utts", type=int, default=32,
                        help="utterances (whole batches, spread over the data) for the adapter energy's forward + "
                             "backward passes, trained and untrained: its r x r statistics settle on far fewer "
                             "tokens than the frame-level ones")
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")
    parser.add_argument("--out", type=Path, required=True, help="output dir")
    parser.add_argument("--no_progress", action="store_true", help="no progress bars")
    return parser


def main(cmd: Optional[Sequence[str]] = None) -> None:
    parser = get_parser()
    args = parser.parse_args(cmd)
    for flag in ("max_utts", "batch_size", "max_frames", "energy_max_utts"):
        if getattr(args, flag) < 1:
            parser.error(f"--{flag} must be at least 1, got {getattr(args, flag)}")
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s (%(module)s:%(lineno)d) %(levelname)s: %(message)s")
    # Inputs are checked before ESPnet is imported (10-15 s): a wrong path fails at once.
    from espnet_peft.analysis.errors import AnalysisInputError
    from espnet_peft.analysis.families import load_model
    from espnet_peft.analysis.resolve import resolve_model
    from espnet_peft.analysis.reuse import load_model_once
    from espnet_peft.analysis.utterances import read_utterances

    if args.models:
        return compare(args)
    analyses = tuple(REGISTRY) if args.analyses.strip() == "all" else tuple(a.strip() for a in args.analyses.split(","))
    try:
        settings = Settings(analyses=analyses, batch_size=args.batch_size, max_frames=args.max_frames,
                            energy_max_utts=args.energy_max_utts,
                            progress=not args.no_progress)
        sources = [resolve_model("A", args.model_a, args.model_a_config, args.model_a_file, args.hf_model_a,
                                 args.task)]
        if any((args.model_b, args.model_b_config, args.model_b_file, args.hf_model_b)):
            sources.append(resolve_model("B", args.model_b, args.model_b_config, args.model_b_file,
                                         args.hf_model_b, args.task))
        skipped: dict = {}
        utts = read_utterances(args.data, args.max_utts, skipped)
        for key, (reason, detail) in sorted(skipped.items()):
            print(f"analyze: skipped {key}: {reason} ({detail})", file=sys.stderr)
        models = [load_model_once(label, source, args.device, "attention" in settings.analyses, load_model)
                  for label, source in zip("AB", sources)]
        results = run_analysis(models, utts, settings, data_name=str(args.data))
        results["skipped_utterances"] = {key: {"reason": r, "detail": d} for key, (r, d) in sorted(skipped.items())}
    except AnalysisInputError as error:
        raise SystemExit(f"analyze: {error}") from None
    from espnet_peft.analysis.summary import ANALYSIS_JSON, render_summary

    args.out.mkdir(parents=True, exist_ok=True)
    figures = write_plots(results, args.out)
    atomic_write_text(args.out / "summary.md", render_summary(results, figures, args.out,
                                                                 summary_lines(results)))
    atomic_write_text(args.out / ANALYSIS_JSON, json.dumps(results, indent=1, ensure_ascii=False) + "\n")
    print(f"analysis written to {args.out} ({ANALYSIS_JSON}, summary.md, {len(figures)} figures)")


def compare(args: argparse.Namespace) -> None:
    """``--models``: every pair of models, layer by layer (``espnet_peft.analysis.many_models``)."""
    from espnet_peft.analysis.errors import AnalysisInputError
    from espnet_peft.analysis.families import load_model
    from espnet_peft.analysis.many_models import MANY_MODELS_JSON, compare_models, render
    from espnet_peft.analysis.resolve import resolve_model
    from espnet_peft.analysis.utterances import read_utterances

    if any((args.model_a, args.model_a_config, args.model_a_file, args.hf_model_a, args.model_b)):
        raise SystemExit("analyze: give either --models or --model_a [--model_b], not both")
    pairs = [entry.partition("=") for entry in args.models]
    bad = [entry for entry, (label, eq, path) in zip(args.models, pairs) if not (label and eq and path)]
    if bad:
        raise SystemExit(f"analyze: --models takes LABEL=MODEL entries, e.g. lora=exp/child_lora_s0: got {bad}")
    try:
        sources = [(label, resolve_model(label, path, task=args.task)) for label, _, path in pairs]
        skipped: dict = {}
        utts = read_utterances(args.data, args.max_utts, skipped)
        models = [load_model(label, source, args.device) for label, source in sources]
        result = compare_models(models, utts, args.max_frames, args.batch_size, not args.no_progress)
    except (AnalysisInputError, ValueError) as error:
        raise SystemExit(f"analyze: {error}") from None
    result["models"] = {m.label: m.describe() for m in models}
    result["data"] = {"source": str(args.data), "utterances": len(utts)}
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out / "summary.md", render(result, args.out))
    atomic_write_text(args.out / MANY_MODELS_JSON, json.dumps(result, indent=1) + "\n")
    print(f"comparison of {len(models)} models written to {args.out} ({MANY_MODELS_JSON}, summary.md)")


if __name__ == "__main__":
    main()

"""Greedy decoding of whole Kaldi data dirs with an ESPnet S2T, S2T-CTC or Whisper ASR model, many utterances per
forward pass.

    python -m espnet_peft.bin.s2t_batch_inference --s2t_train_config exp/x/config.yaml \
        --s2t_model_file exp/x/valid.acc.best.pth --set dump/raw/child_test exp/x/decode/child_test \
        [--set DATA_DIR OUT_DIR ...] [--batch_size 64] [--device cpu] [--lang_sym <eng>] [--task_sym <asr>]

Makes the same choices as ``python -m espnet2.bin.s2t_inference --beam_size 1 --ctc_weight 0`` (see
:mod:`espnet_peft.inference.greedy`), 10-30x faster on CPU; ``--ctc_weight 0.3`` adds CTC prefix scores to the
``--ctc_candidates`` best tokens of each step (joint CTC/attention, which does not loop). An OWSM-CTC model (its
config has a ``promptencoder``) is decoded by greedy CTC instead, as ``python -m espnet2.bin.s2t_inference_ctc
--beam_size 1`` does (see :mod:`espnet_peft.inference.ctc_greedy`); the attention-search options do not apply to it.
An ESPnet ASR model with ESPnet's Whisper encoder and decoder (``encoder: whisper``, ``decoder: whisper``) is decoded
as ``python -m espnet2.bin.asr_inference --beam_size 1 --ctc_weight 0`` does, prompt ``<|startoftranscript|>
<|notimestamps|>`` and nothing suppressed. Whisper's encoder has no padding mask, so a batch must not pad: give
``--window_sec`` (every input padded or trimmed to that window, as the recipe's data already are) or inputs of one
length; otherwise each batch pads to its longest input and the results differ from one-at-a-time decoding (warned).
Adapter checkpoints load through the plugin task.
Each ``OUT_DIR`` gets ``text`` (``utt-id hypothesis``, special tokens removed, sorted by id), ``decode_info.json``
(the settings, times and length-cap hits) and, last, ``made_from.json`` (``espnet_peft.recipe.provenance``: the
sha256 of the model file, config, ``wav.scp`` and every audio file it names, the settings, and of the files written).
A set whose record matches the current model, audio and settings, and whose ``text`` is unchanged, is skipped;
anything else is decoded again, so a retrained model, a replaced wav or a hand-edited hypothesis file never leaves
stale hypotheses.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path
from typing import Callable, List, Optional, Sequence

import soundfile
import torch
from tqdm import tqdm

from espnet_peft import fault_points
from espnet_peft.atomic import atomic_write_text
from espnet_peft.inference.ctc_greedy import ctc_greedy_decode, make_ctc_prompt
from espnet_peft.inference.greedy import (CTC_CANDIDATES, CTC_PREFIXES, Prompt, fixed_window, greedy_decode,
                                          make_prompt)
from espnet_peft.recipe.provenance import (ProvenanceError, file_sha256, is_current_or_say_why, made_from,
                                            mark_made_from)
from espnet_peft.recipe.source_model import task_of
from espnet_peft.utils.kaldi_data import read_table
from espnet_peft.utils.structured_files import UnreadableFileError, read_yaml

DECODE_INFO = "decode_info.json"
WHISPER_FS = 16000  # whisper.audio.SAMPLE_RATE
#: ``[batch, samples]`` fixed-window speech -> token ids per row
BatchDecoder = Callable[[torch.Tensor], List[List[int]]]


def model_task(config: Path) -> str:
    """``s2t`` (OWSM), ``s2t_ctc`` (OWSM-CTC) or ``asr`` (ESPnet's Whisper), from the model's training config."""
    try:
        conf = read_yaml(config)
    except UnreadableFileError as err:
        raise SystemExit(str(err)) from None
    task = task_of(conf)
    if task == "asr" and conf.get("decoder") != "whisper":
        raise SystemExit(f"{config}: an ASR model with a {conf.get('decoder')!r} decoder; this decoder takes OWSM "
                         "(s2t), OWSM-CTC (s2t_ctc) and ESPnet Whisper (asr, decoder: whisper) models")
    return task


def decode_settings(args: argparse.Namespace, task: str) -> dict:
    """What shapes the hypotheses: the model (by content) and the search settings."""
    settings = {"model_sha256": file_sha256(Path(args.s2t_model_file)),
                "config_sha256": file_sha256(Path(args.s2t_train_config)),
                "model_file": str(args.s2t_model_file), "lang_sym": args.lang_sym, "task_sym": args.task_sym}
    if task == "s2t_ctc":
        return {**settings, "search": "ctc_greedy"}
    if task == "asr":
        settings["window_sec"] = args.window_sec
    return {**settings, "search": "greedy", "maxlenratio": args.maxlenratio, "ctc_weight": args.ctc_weight,
            "ctc_candidates": args.ctc_candidates if args.ctc_weight > 0 else None,
            "ctc_prefix": args.ctc_prefix if args.ctc_weight > 0 else None, "word_penalty": args.word_penalty}


def provenance(settings: dict, wav_scp: Path) -> dict:
    """The ``made_from.json`` record of a decoded set: the model and search settings, ``wav.scp`` and every audio
    file it names (``espnet_peft.recipe.provenance``)."""
    try:
        return made_from({"wav_scp": wav_scp}, {"audio": wav_scp}, **settings)
    except ProvenanceError as err:
        raise SystemExit(str(err)) from None


def is_current(out_dir: Path, settings: dict, wav_scp: Path) -> bool:
    """Done with this model, these settings and this audio, and ``text`` is as the decode wrote it."""
    return is_current_or_say_why(out_dir, provenance(settings, wav_scp))


def read_audio(key: str, location: str, wav_scp: Path):
    try:
        audio, _ = soundfile.read(location, dtype="float32")
    except Exception as err:  # soundfile raises several types for unreadable files
        raise SystemExit(f"{wav_scp}: utterance {key}: cannot read {location} ({err}); fix or drop it "
                         "(python -m espnet_peft.bin.validate_data)") from err
    if audio.ndim != 1:
        raise SystemExit(f"{wav_scp}: utterance {key}: {location} has {audio.shape[1]} channels; S2T models "
                         "take mono audio")
    return audio


def window_samples(train_args: argparse.Namespace, args: argparse.Namespace) -> Optional[int]:
    """The fixed input length in samples: an S2T model's own window, ``--window_sec`` for Whisper, else None."""
    conf = getattr(train_args, "preprocessor_conf", None) or {}
    if "speech_length" in conf:
        return int(conf["fs"] * conf["speech_length"])
    return int(round(args.window_sec * WHISPER_FS)) if args.window_sec else None


def longest(audio: Sequence, data_dir: Path) -> int:
    lengths = {len(a) for a in audio}
    if len(lengths) > 1:
        warnings.warn(f"{data_dir}: inputs of {len(lengths)} lengths in one batch and no --window_sec: each batch is "
                      "padded to its longest input, which changes what Whisper's encoder (no padding mask) computes; "
                      "pad the data to one window for results equal to one-at-a-time decoding", stacklevel=2)
    return max(lengths)


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--s2t_train_config", "--asr_train_config", dest="s2t_train_config", type=Path, required=True)
    parser.add_argument("--s2t_model_file", "--asr_model_file", dest="s2t_model_file", type=Path, required=True)
    parser.add_argument("--set", nargs=2, action="append", required=True, metavar=("DATA_DIR", "OUT_DIR"),
                        type=Path, help="a Kaldi data dir (wav.scp) and where its hypotheses go; repeatable")
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--num_threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--lang_sym", default="<eng>")
    parser.add_argument("--task_sym", default="<asr>")
    parser.add_argument("--maxlenratio", type=float, default=0.0,
                        help="ESPnet's length limit: 0 the encoder length, > 0 that ratio of it, < 0 that many tokens")
    parser.add_argument("--window_sec", type=float,
                        help="Whisper (asr) models: pad or trim every input to this many seconds (default: inputs of "
                        "one length; S2T models use their own preprocessor_conf.speech_length)")
    parser.add_argument("--ctc_weight", type=float, default=0.0,
                        help="joint CTC/attention greedy search (e.g. 0.3): CTC prefix scores rule out loops")
    parser.add_argument("--ctc_candidates", type=int, default=CTC_CANDIDATES,
                        help="decoder's best tokens rescored with CTC per step (with --ctc_weight > 0)")
    parser.add_argument("--ctc_prefix", choices=CTC_PREFIXES, default="text",
                        help="text: CTC scores the transcript after the prompt (as ESPnet 202611's beam search); prompt: "
                        "the prompt tokens count as emitted labels, as in ESPnet 202511's (bars the first frames)")
    parser.add_argument("--word_penalty", type=float, default=0.0,
                        help="subtracted from the score of every piece that opens a word (a word insertion penalty; "
                        "0: ESPnet's choices)")
    return parser


def decode_set(decode_batch: BatchDecoder, train_args: argparse.Namespace, tokenizer, converter,
               data_dir: Path, out_dir: Path, args: argparse.Namespace, settings: dict) -> None:
    wav_scp = data_dir / "wav.scp"
    table = read_table(wav_scp)
    n_samples = window_samples(train_args, args)
    keys = sorted(table)
    lines: List[str] = []
    cap = -int(args.maxlenratio) if args.maxlenratio < 0 else None  # an absolute limit: count who reached it
    capped: List[str] = []
    start = time.time()
    for first in tqdm(range(0, len(keys), args.batch_size), desc=f"decode {data_dir.name}", unit="batch",
                      file=sys.stderr):
        batch_keys = keys[first:first + args.batch_size]
        audio = [read_audio(k, table[k], wav_scp) for k in batch_keys]
        speech = fixed_window(audio, n_samples or longest(audio, data_dir)).to(args.device)
        for key, ids in zip(batch_keys, decode_batch(speech)):
            if cap is not None and len(ids) >= cap:
                capped.append(key)
            tokens = [t for t in converter.ids2tokens(ids) if not (t.startswith("<") and t.endswith(">"))]
            lines.append(f"{key} {tokenizer.tokens2text(tokens)}".rstrip())
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out_dir / "text", "".join(line + "\n" for line in lines))
    info = {"settings": settings, "wav_scp_sha256": file_sha256(wav_scp), "utterances": len(keys),
            "batch_size": args.batch_size, "device": args.device, "decode_time_s": round(time.time() - start, 2),
            # hypotheses cut at the --maxlenratio < 0 token limit (still running there: a loop, most likely)
            "length_cap": cap, "hit_length_cap": len(capped) if cap is not None else None, "capped": capped[:20]}
    atomic_write_text(out_dir / DECODE_INFO, json.dumps(info, indent=2) + "\n")
    mark_made_from(out_dir, provenance(settings, wav_scp), outputs=["text", DECODE_INFO])  # last: marks it done
    fault_points.reach("decoded_set")
    print(f"{out_dir}/text: {len(keys)} utterances in {info['decode_time_s']} s", file=sys.stderr)


def main(cmd: Optional[Sequence[str]] = None) -> None:
    args = get_parser().parse_args(cmd)
    task = model_task(args.s2t_train_config)
    settings = decode_settings(args, task)
    todo = [(data, out) for data, out in args.set if not is_current(out, settings, data / "wav.scp")]
    for data, out in args.set:
        if (data, out) not in todo:
            print(f"skip decoding {out}: done with this model and these settings", file=sys.stderr)
    if not todo:
        return
    from espnet2.text.build_tokenizer import build_tokenizer
    from espnet2.text.token_id_converter import TokenIDConverter

    if args.num_threads > 0:
        torch.set_num_threads(args.num_threads)
    model, train_args, decode_batch = load_decoder(task, args)
    tokenizer = build_tokenizer(token_type=train_args.token_type, bpemodel=train_args.bpemodel)
    converter = whisper_converter(train_args) if task == "asr" else TokenIDConverter(token_list=train_args.token_list)
    for data, out in todo:
        decode_set(decode_batch, train_args, tokenizer, converter, data, out, args, settings)


def whisper_converter(train_args: argparse.Namespace):
    """The ids-to-tokens converter ``espnet2.bin.asr_inference`` builds for a Whisper model (its prompt too)."""
    from espnet2.text.whisper_token_id_converter import OpenAIWhisperTokenIDConverter

    conf = getattr(train_args, "preprocessor_conf", None) or {}
    return OpenAIWhisperTokenIDConverter(model_type=train_args.bpemodel, language=conf.get("whisper_language") or "en",
                                         task=conf.get("whisper_task") or "transcribe")


def load_decoder(task: str, args: argparse.Namespace) -> tuple:
    """``(model, training args, batch decoder)`` of an adapter-aware S2T or S2T-CTC checkpoint."""
    from espnet_peft.export import task_class  # the plugin's task of each kind

    model, train_args = task_class(task).build_model_from_file(args.s2t_train_config, args.s2t_model_file,
                                                               args.device)
    model.eval()
    if task == "asr":
        primer = list(whisper_converter(train_args).tokenizer.sot_sequence_including_notimestamps)
        prompt = Prompt(primer=primer, eos=model.eos, blank=-1, suppressed=[])  # token 0 is "!", not a blank
        return model, train_args, lambda speech: greedy_decode(model, speech, prompt, args.maxlenratio)
    if task == "s2t_ctc":
        ctc_prompt = make_ctc_prompt(train_args.token_list, model.blank_id, args.lang_sym, args.task_sym)
        return model, train_args, lambda speech: ctc_greedy_decode(model, speech, ctc_prompt)
    prompt = make_prompt(train_args.token_list, model.sos, model.eos, model.blank_id, args.lang_sym, args.task_sym,
                         train_args.preprocessor_conf["notime_symbol"],
                         train_args.preprocessor_conf["first_time_symbol"],
                         train_args.preprocessor_conf["last_time_symbol"])
    return model, train_args, lambda speech: greedy_decode(model, speech, prompt, args.maxlenratio, args.ctc_weight,
                                                           args.ctc_candidates, args.ctc_prefix, args.word_penalty)


if __name__ == "__main__":
    main()

"""Tiny real ESPnet models and synthetic speech for tests.

Everything here drives the stock ESPnet 202511 entry points in-process
(``ASRTask.main(cmd=...)``, ``S2TTask.main(cmd=...)`` and the ``Speech2Text``
inference classes), so tests exercise the same code paths as a recipe:

    corpus = synthesize_corpus(tmp / "corpus", n_utts=16, seed=0)
    base = pretrain("s2t", tmp / "s2t", train_dir=corpus)
    cmd = finetune_cmd(base, tmp / "ft", ["--use_adapter", "true", ...])
    run_task("s2t", cmd)
    hyps = decode("s2t", tmp / "ft" / "config.yaml", tmp / "ft" / "valid.loss.best.pth",
                  read_wav_scp(corpus))

Training runs in the calling process on purpose: importing ``espnet2.tasks.{asr,s2t}``
costs 10-16 s (g2p_en/inflect), which a subprocess per run would pay again.
"""

from __future__ import annotations

import importlib
import random
import shutil
import subprocess
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import soundfile
import yaml

from espnet_peft.recipe.owsm_tokens import time_tokens, train_owsm_bpe

FS = 16000

# A small closed vocabulary: enough phonetic variety for a tiny model to latch on to,
# and every word is short so that 2-5 words fit in 0.8-2 s of espeak-ng speech.
VOCABULARY: tuple[str, ...] = (
    "the", "a", "red", "blue", "green", "big", "small", "old",
    "cat", "dog", "bird", "fish", "car", "book", "tree", "house",
    "sun", "box", "runs", "sees", "likes", "eats", "has", "jumps",
    "over", "near", "under", "fast", "slow", "one", "two", "three",
)  # fmt: skip

# espeak-ng voice variants act as speakers; the variant name is the speaker id.
VOICES: tuple[str, ...] = ("en-us+m1", "en-us+m3", "en-us+f2", "en-us+f4")

MIN_DURATION = 0.8
MAX_DURATION = 2.0

# OWSM special tokens; the S2T model, S2TPreprocessor and s2t_inference look
# them up by name, so only their presence matters, not their ids.
S2T_LANG, S2T_TASK, S2T_NOTIME = "<eng>", "<asr>", "<notimestamps>"
S2T_SPEECH_LENGTH = 3.0  # seconds; every S2T input is padded/trimmed to this


# --------------------------------------------------------------------------- data


def _require_tools() -> None:
    missing = [t for t in ("espeak-ng", "sox") if shutil.which(t) is None]
    if missing:
        raise RuntimeError(
            f"{', '.join(missing)} not found: synthetic speech needs them "
            "(Debian/Ubuntu: apt-get install espeak-ng sox)"
        )


def _synthesize(text: str, voice: str, wav: Path) -> float:
    """espeak-ng (22.05 kHz) -> sox -> 16 kHz mono 16-bit wav; returns seconds."""
    raw = subprocess.run(
        ["espeak-ng", "-v", voice, "-s", "170", "--stdout", text],
        check=True,
        capture_output=True,
    ).stdout
    subprocess.run(
        ["sox", "-t", "wav", "-", "-r", str(FS), "-c", "1", "-b", "16", str(wav)],
        input=raw,
        check=True,
        capture_output=True,
    )
    return soundfile.info(str(wav)).duration


def _make_utterance(rng: random.Random, voice: str, wav: Path) -> str:
    """Synthesize a random 2-5 word sentence, adjusting its length until the
    audio lasts MIN_DURATION..MAX_DURATION seconds. Returns the transcript."""
    words = rng.choices(VOCABULARY, k=rng.randint(2, 5))
    for _ in range(6):
        duration = _synthesize(" ".join(words), voice, wav)
        if duration > MAX_DURATION and len(words) > 1:
            words.pop()
        elif duration < MIN_DURATION:
            words.append(rng.choice(VOCABULARY))
        else:
            return " ".join(words)
    raise RuntimeError(f"could not fit {words!r} into {MIN_DURATION}-{MAX_DURATION} s")


def _write_table(path: Path, rows: Mapping[str, str]) -> None:
    """Kaldi-style `key value` file, sorted by key (ESPnet/Kaldi expect sorted)."""
    path.write_text("".join(f"{k} {rows[k]}\n" for k in sorted(rows)), encoding="utf-8")


def _read_table(path: Path) -> dict[str, str]:
    rows = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        key, _, value = line.partition(" ")
        rows[key] = value
    return rows


def synthesize_corpus(
    root: Path, n_utts: int, seed: int, voices: Sequence[str] = VOICES
) -> Path:
    """Create a Kaldi data dir (wav.scp, text, utt2spk, spk2utt) at `root`.

    Utterances are deterministic for a given (seed, index, voice list); wavs go
    to `root/wav/`. Returns `root`.
    """
    _require_tools()
    root = Path(root)
    (root / "wav").mkdir(parents=True, exist_ok=True)

    def one(i: int) -> tuple[str, str, str, Path]:
        voice = voices[i % len(voices)]
        spk = voice.replace("+", "_")
        # Speaker-prefixed utterance ids keep utt2spk and spk2utt in the same sort order.
        utt = f"{spk}-s{seed}-{i:04d}"
        wav = (root / "wav" / f"{utt}.wav").resolve()
        # A per-utterance RNG keeps the corpus deterministic despite threading.
        text = _make_utterance(random.Random(f"{seed}/{i}"), voice, wav)
        return utt, spk, text, wav

    # External processes dominate, so threads are enough to use both cores.
    with ThreadPoolExecutor(max_workers=4) as pool:
        utts = list(pool.map(one, range(n_utts)))

    _write_table(root / "wav.scp", {u: str(w) for u, _, _, w in utts})
    _write_table(root / "text", {u: t for u, _, t, _ in utts})
    _write_table(root / "utt2spk", {u: s for u, s, _, _ in utts})
    spk2utt: dict[str, list[str]] = {}
    for u, s, _, _ in sorted(utts):
        spk2utt.setdefault(s, []).append(u)
    _write_table(root / "spk2utt", {s: " ".join(us) for s, us in spk2utt.items()})
    return root


def read_wav_scp(data_dir: Path) -> dict[str, Path]:
    """utt id -> wav path, from a data dir made by `synthesize_corpus`."""
    return {k: Path(v) for k, v in _read_table(Path(data_dir) / "wav.scp").items()}


# --------------------------------------------------------------------- tokens


def _char_tokens(texts: Sequence[str], out_dir: Path) -> tuple[Path, None]:
    """ESPnet `char` token list: <blank> <unk> chars... <sos/eos> (as asr.sh writes it)."""
    from espnet2.text.char_tokenizer import CharTokenizer

    tokenizer = CharTokenizer(space_symbol="<space>")
    chars = sorted({c for t in texts for c in tokenizer.text2tokens(t)})
    token_list = out_dir / "tokens.txt"
    token_list.write_text("\n".join(["<blank>", "<unk>", *chars, "<sos/eos>"]) + "\n")
    return token_list, None


def _bpe_tokens(texts: Sequence[str], out_dir: Path) -> tuple[Path, Path]:
    """Sentencepiece BPE model + OWSM-style token list (the recipe's own builder)."""
    model, token_list = train_owsm_bpe(texts, out_dir, vocab_size=60, speech_length=S2T_SPEECH_LENGTH)
    return token_list, model


# --------------------------------------------------------------------- configs


def _common_config(max_epoch: int, num_iters_per_epoch: int, batch_size: int) -> dict:
    """Frontend, decoder, optimiser and trainer settings shared by ASR and S2T."""
    return {
        "frontend": "default",
        "frontend_conf": {"n_fft": 512, "win_length": 400, "hop_length": 160, "n_mels": 80},
        # utterance_mvn needs no collect_stats pass (global_mvn would).
        "normalize": "utterance_mvn",
        "decoder": "transformer",
        "decoder_conf": {
            "attention_heads": 2,
            "linear_units": 128,
            "num_blocks": 1,
            "dropout_rate": 0.1,
            "positional_dropout_rate": 0.1,
            "self_attention_dropout_rate": 0.0,
            "src_attention_dropout_rate": 0.0,
        },
        "optim": "adam",
        "optim_conf": {"lr": 0.002},
        "scheduler": "warmuplr",
        "scheduler_conf": {"warmup_steps": 10},
        # unsorted batches only read the keys of the shape file, so hand-written
        # shape files replace the collect_stats stage.
        "batch_type": "unsorted",
        "batch_size": batch_size,
        "max_epoch": max_epoch,
        "num_iters_per_epoch": num_iters_per_epoch,
        "num_workers": 0,
        "num_att_plot": 0,
        "use_matplotlib": False,
        "use_tensorboard": False,
        "keep_nbest_models": 1,
        "best_model_criterion": [["valid", "loss", "min"]],
        "seed": 0,
        "log_interval": 1,
    }


_ENCODER_BASE = {
    "output_size": 64,
    "attention_heads": 2,
    "linear_units": 128,
    "num_blocks": 2,
    "dropout_rate": 0.1,
    "positional_dropout_rate": 0.1,
    "attention_dropout_rate": 0.0,
    "input_layer": "conv2d",
    "rel_pos_type": "latest",
    "pos_enc_layer_type": "rel_pos",
}


def _asr_model_config() -> dict:
    # Conformer (with its BatchNorm conv module) + transformer decoder.
    return {
        "encoder": "conformer",
        "encoder_conf": {
            **_ENCODER_BASE,
            "selfattention_layer_type": "rel_selfattn",
            "activation_type": "swish",
            "macaron_style": True,
            "use_cnn_module": True,
            "cnn_module_kernel": 15,
        },
        "model_conf": {"ctc_weight": 0.3, "lsm_weight": 0.1, "length_normalized_loss": False},
    }


def _s2t_model_config() -> dict:
    # OWSM v3.1 layout in miniature: E-Branchformer encoder + transformer decoder.
    s2t_time_tokens = time_tokens(S2T_SPEECH_LENGTH)
    return {
        "encoder": "e_branchformer",
        "encoder_conf": {
            **_ENCODER_BASE,
            "attention_layer_type": "rel_selfattn",
            "cgmlp_linear_units": 128,
            "cgmlp_conv_kernel": 15,
            "use_linear_after_conv": False,
            "gate_activation": "identity",
            "use_ffn": True,
            "macaron_ffn": True,
            "merge_conv_kernel": 15,
        },
        "model_conf": {
            "ctc_weight": 0.3,
            "lsm_weight": 0.1,
            "length_normalized_loss": False,
            "sym_na": "<na>",
        },
        "preprocessor": "s2t",
        # s2t_inference reads fs/speech_length/*_symbol from here by key: keep them explicit.
        "preprocessor_conf": {
            "text_prev_name": "text_prev",
            "text_ctc_name": "text_ctc",
            "fs": FS,
            "na_symbol": "<na>",
            "speech_length": S2T_SPEECH_LENGTH,
            "speech_resolution": 0.02,
            "speech_init_silence": S2T_SPEECH_LENGTH - MAX_DURATION,
            "text_prev_apply_prob": 0.0,
            # Our `text` already has <notimestamps>; a lower value would insert a second one.
            "time_apply_prob": 1.0,
            "notime_symbol": S2T_NOTIME,
            "first_time_symbol": s2t_time_tokens[0],
            "last_time_symbol": s2t_time_tokens[-1],
        },
    }


# --------------------------------------------------------------------- tasks


@dataclass(frozen=True)
class _TaskSpec:
    task_module: str  # defines `task_class`
    task_class: str
    inference_module: str  # defines Speech2Text(<prefix>_train_config, <prefix>_model_file, ...)
    inference_prefix: str
    token_type: str
    # transcript -> {data file: line}; a file `a.b` is the ESPnet data name `a_b`.
    text_files: Callable[[str], dict[str, str]]
    build_tokens: Callable[[Sequence[str], Path], tuple[Path, Path | None]]
    model_config: Callable[[], dict]
    decode_options: dict[str, float]  # Speech2Text defaults we override
    result_text_index: int  # where the detokenized text sits in a Speech2Text result


TASKS: dict[str, _TaskSpec] = {
    "asr": _TaskSpec(
        task_module="espnet2.tasks.asr",
        task_class="ASRTask",
        inference_module="espnet2.bin.asr_inference",
        inference_prefix="asr",
        token_type="char",
        text_files=lambda t: {"text": t},
        build_tokens=_char_tokens,
        model_config=_asr_model_config,
        # lm_weight defaults to 1.0 in asr_inference; there is no LM here.
        decode_options={"ctc_weight": 0.3, "lm_weight": 0.0},
        result_text_index=0,  # (text, tokens, ids, hyp)
    ),
    "s2t": _TaskSpec(
        task_module="espnet2.tasks.s2t",
        task_class="S2TTask",
        inference_module="espnet2.bin.s2t_inference",
        inference_prefix="s2t",
        token_type="bpe",
        text_files=lambda t: {
            "text": f"{S2T_LANG}{S2T_TASK}{S2T_NOTIME} {t}",
            "text.prev": "<na>",
            "text.ctc": t,
        },
        build_tokens=_bpe_tokens,
        model_config=_s2t_model_config,
        decode_options={"ctc_weight": 0.0},  # OWSM's default decoding is attention-only
        result_text_index=3,  # (text, tokens, ids, text_nospecial, hyp): no <eng><asr>...
    ),
}


def _spec(task: str) -> _TaskSpec:
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; expected one of {sorted(TASKS)}")
    return TASKS[task]


def task_class(task: str) -> Any:
    """The stock ESPnet Task class (ASRTask or S2TTask)."""
    spec = _spec(task)
    return getattr(importlib.import_module(spec.task_module), spec.task_class)


def run_task(task: str, cmd: Sequence[str], task_cls: Any = None) -> None:
    """Run `<Task>.main(cmd=cmd)` in-process; `task_cls` swaps in a Task subclass."""
    (task_cls or task_class(task)).main(cmd=list(cmd))


def _prepare_task_data(spec: _TaskSpec, corpus: Path, out: Path) -> Path:
    """Task-specific copy of a corpus: its text files plus a speech shape file."""
    out.mkdir(parents=True, exist_ok=True)
    for name in ("wav.scp", "utt2spk", "spk2utt"):
        shutil.copyfile(corpus / name, out / name)
    texts = _read_table(corpus / "text")
    per_file: dict[str, dict[str, str]] = {}
    for utt, words in texts.items():
        for fname, line in spec.text_files(words).items():
            per_file.setdefault(fname, {})[utt] = line
    for fname, rows in per_file.items():
        _write_table(out / fname, rows)
    # `utt n_samples`, the format collect_stats writes.
    shapes = {u: str(soundfile.info(p).frames) for u, p in _read_table(out / "wav.scp").items()}
    _write_table(out / "speech_shape", shapes)
    return out


_DATA_OPTIONS = tuple(
    f"--{split}_{kind}" for split in ("train", "valid") for kind in ("data_path_and_name_and_type", "shape_file")
)


def _data_args(spec: _TaskSpec, train: Path, valid: Path) -> list[str]:
    """--{train,valid}_data_path_and_name_and_type / _shape_file for prepared data dirs."""
    args = []
    for split, data in (("train", train), ("valid", valid)):
        args += [f"--{split}_data_path_and_name_and_type", f"{data / 'wav.scp'},speech,sound"]
        for fname in spec.text_files(""):  # file `text.prev` holds data name `text_prev`
            args += [f"--{split}_data_path_and_name_and_type", f"{data / fname},{fname.replace('.', '_')},text"]
        args += [f"--{split}_shape_file", str(data / "speech_shape")]
    return args


def _drop_options(cmd: Sequence[str], options: Sequence[str]) -> list[str]:
    """`cmd` without every `--option value` pair named in `options`."""
    out, i = [], 0
    while i < len(cmd):
        if cmd[i] in options:
            i += 2
        else:
            out.append(cmd[i])
            i += 1
    return out


@dataclass(frozen=True)
class Experiment:
    """Inputs for one ESPnet training run: data, token list, YAML config, arguments."""

    task: str
    workdir: Path
    train_dir: Path
    valid_dir: Path
    token_list: Path
    bpemodel: Path | None
    config: Path  # training YAML
    args: tuple[str, ...]  # command line without --output_dir

    def cmd(self, output_dir: Path) -> list[str]:
        return [*self.args, "--output_dir", str(output_dir)]


def make_experiment(
    task: str,
    workdir: Path,
    train_dir: Path,
    valid_dir: Path | None = None,
    *,
    max_epoch: int = 3,
    num_iters_per_epoch: int = 4,
    batch_size: int = 4,
    config_overrides: Mapping[str, Any] | None = None,
) -> Experiment:
    """Write data dirs, token list (+ BPE model) and YAML config for `task` under
    `workdir`. Tokens are learnt from the training transcripts, as recipes do."""
    spec = _spec(task)
    workdir = Path(workdir)
    train = _prepare_task_data(spec, Path(train_dir), workdir / "data" / "train")
    valid = _prepare_task_data(spec, Path(valid_dir or train_dir), workdir / "data" / "valid")

    token_dir = workdir / "token_list"
    token_dir.mkdir(parents=True, exist_ok=True)
    token_list, bpemodel = spec.build_tokens(list(_read_table(Path(train_dir) / "text").values()), token_dir)

    config = {
        **_common_config(max_epoch, num_iters_per_epoch, batch_size),
        **spec.model_config(),
        **(config_overrides or {}),
    }
    config_path = workdir / "conf" / f"train_{task}_tiny.yaml"
    config_path.parent.mkdir(parents=True, exist_ok=True)
    config_path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")

    args = ["--config", str(config_path), "--ngpu", "0", "--use_preprocessor", "true"]
    args += ["--token_type", spec.token_type, "--token_list", str(token_list)]
    if bpemodel is not None:
        args += ["--bpemodel", str(bpemodel)]
    args += _data_args(spec, train, valid)
    return Experiment(task, workdir, train, valid, token_list, bpemodel, config_path, tuple(args))


def make_asr_experiment(workdir: Path, train_dir: Path, valid_dir: Path | None = None, **kw: Any) -> Experiment:
    """Tiny conformer ASR (char tokens)."""
    return make_experiment("asr", workdir, train_dir, valid_dir, **kw)


def make_s2t_experiment(workdir: Path, train_dir: Path, valid_dir: Path | None = None, **kw: Any) -> Experiment:
    """Tiny OWSM-style E-Branchformer S2T (BPE with OWSM special tokens)."""
    return make_experiment("s2t", workdir, train_dir, valid_dir, **kw)


# ------------------------------------------------------------ train / decode


@dataclass(frozen=True)
class PretrainedModel:
    task: str
    config: Path  # config.yaml dumped by ESPnet in output_dir (what inference reads)
    model_file: Path  # best checkpoint (state dict)
    data_dir: Path  # task-specific training data dir
    valid_dir: Path
    token_list: Path
    bpemodel: Path | None
    cmd: list[str]  # the training command line that produced model_file
    output_dir: Path
    train_config: Path  # the YAML passed with --config


def _best_checkpoint(output_dir: Path) -> Path:
    best = output_dir / "valid.loss.best.pth"  # symlink to <N>epoch.pth
    if best.exists():
        return best.resolve()
    epochs = sorted(output_dir.glob("*epoch.pth"), key=lambda p: int(p.name[: -len("epoch.pth")]))
    if not epochs:
        raise FileNotFoundError(f"no checkpoint in {output_dir}")
    return epochs[-1]


def pretrain(
    task: str,
    workdir: Path,
    train_dir: Path | None = None,
    valid_dir: Path | None = None,
    *,
    n_utts: int = 16,
    seed: int = 0,
    extra_args: Sequence[str] = (),
    **experiment_kw: Any,
) -> PretrainedModel:
    """Train a tiny `task` model from scratch in-process and return its checkpoint.

    Without `train_dir`, synthesizes `n_utts` training and 4 validation
    utterances under `workdir/corpus`. `experiment_kw` goes to `make_experiment`.
    """
    workdir = Path(workdir)
    if train_dir is None:
        train_dir = synthesize_corpus(workdir / "corpus" / "train", n_utts, seed)
        valid_dir = valid_dir or synthesize_corpus(workdir / "corpus" / "valid", 4, seed + 1)
    exp = make_experiment(task, workdir, Path(train_dir), valid_dir, **experiment_kw)
    output_dir = workdir / "exp"
    cmd = [*exp.cmd(output_dir), *extra_args]
    run_task(task, cmd)
    return PretrainedModel(
        task=task,
        config=output_dir / "config.yaml",
        model_file=_best_checkpoint(output_dir),
        data_dir=exp.train_dir,
        valid_dir=exp.valid_dir,
        token_list=exp.token_list,
        bpemodel=exp.bpemodel,
        cmd=cmd,
        output_dir=output_dir,
        train_config=exp.config,
    )


def finetune_cmd(
    pretrained: PretrainedModel,
    outdir: Path,
    extra_args: Sequence[str] = (),
    train_dir: Path | None = None,
    valid_dir: Path | None = None,
) -> list[str]:
    """Training command that starts from `pretrained` via --init_param, with its
    token list (+ BPE model) and config; `extra_args` come last so they win.

    The pretraining data is reused unless `train_dir` names another corpus (e.g.
    a domain-shifted one from `synthesize_corpus`); it is then prepared under
    `outdir/data/`, with `valid_dir` defaulting to `train_dir`.
    """
    cmd = _drop_options(pretrained.cmd, ["--output_dir"])
    if train_dir is not None:
        spec = _spec(pretrained.task)
        train = _prepare_task_data(spec, Path(train_dir), Path(outdir) / "data" / "train")
        valid = _prepare_task_data(spec, Path(valid_dir or train_dir), Path(outdir) / "data" / "valid")
        # The data options use `append`: drop the old ones rather than add to them.
        cmd = _drop_options(cmd, _DATA_OPTIONS) + _data_args(spec, train, valid)
    return [*cmd, "--output_dir", str(outdir), "--init_param", str(pretrained.model_file), *extra_args]


def load_speech2text(task: str, config: Path, model_file: Path, inference_module: str | None = None,
                     **kwargs: Any) -> Any:
    """`Speech2Text` for `task` (stock, or from `inference_module`), greedy (beam 1) by default."""
    spec = _spec(task)
    cls = importlib.import_module(inference_module or spec.inference_module).Speech2Text
    return cls(
        **{
            f"{spec.inference_prefix}_train_config": str(config),
            f"{spec.inference_prefix}_model_file": str(model_file),
            "device": "cpu",
            "beam_size": 1,
            "nbest": 1,
            **spec.decode_options,
            **kwargs,
        }
    )


def decode(
    task: str,
    config: Path,
    model_file: Path,
    wav_paths: Mapping[str, Path] | Sequence[Path],
    pre_beam_size: int | None = None,
    **speech2text_kw: Any,
) -> dict[str, str]:
    """Decode wavs with the stock inference class; returns utt id -> hypothesis.

    `wav_paths` is either {utt_id: path} (e.g. `read_wav_scp(data_dir)`) or a
    list of paths, whose stems become the ids. Special tokens are stripped.
    `pre_beam_size`: how many of the full scorers' best tokens the partial
    scorers (CTC) rescore; `Speech2Text` fixes it at int(1.5 * beam_size).
    """
    if not isinstance(wav_paths, Mapping):
        wav_paths = {Path(p).stem: Path(p) for p in wav_paths}
    speech2text = load_speech2text(task, config, model_file, **speech2text_kw)
    if pre_beam_size is not None:
        search = speech2text.beam_search
        search.pre_beam_size = pre_beam_size
        assert search.do_pre_beam and pre_beam_size < search.n_vocab and search.part_scorers
    text_index = _spec(task).result_text_index
    hyps = {}
    for utt, path in wav_paths.items():
        speech, rate = soundfile.read(str(path), dtype="float32")
        if rate != FS:
            raise ValueError(f"{path}: expected {FS} Hz, got {rate}")
        results = speech2text(speech)
        # Beam search returns nothing when no hypothesis reached <eos>.
        hyps[utt] = (results[0][text_index] or "") if results else ""
    return hyps

"""What an analysis run reads: the models (ESPnet experiments or Hugging Face dirs) and the audio, turned into batches.

Models are named the way users have them on disk (``resolve_model``):

* an ESPnet experiment dir (``config.yaml`` + a checkpoint: ``valid.acc.best.pth``, ``valid.loss.best.pth``,
  ``model.pth`` or ``latest.pth``, first found), or an explicit config + model file; adapted experiments load through
  the plugin's tasks, so adapter-only checkpoints find their base through the config's ``init_param``;
* a Hugging Face dir (``config.json``): Whisper, Wav2Vec2 or HuBERT, through ``HFAccess``, loaded with the class its
  config names (a ``*ForCTC`` model keeps its CTC head);
* a Hugging Face ``peft`` adapter dir (``adapter_config.json``) over such a model: its base is the one the adapter
  config names, or the one given as ``ADAPTER_DIR@BASE_DIR``; loaded with peft itself (``hf_peft``).

Audio (``read_utterances``): a Kaldi data dir (``wav.scp`` with plain paths, and ``text.ctc`` or ``text`` for the
analyses that score transcripts), or a list file with one ``path`` or ``key path`` per line. A data dir padded to one
fixed window on disk (for Whisper, which has no padding mask: ``espnet_peft.utils.audio_window``) keeps each
utterance's real length in ``utt2num_samples``: the audio is read as given, padding and all, and only the frames that
cover the real samples count.

Each model prepares its own input the way its inference does (``LoadedModel.batch``): ESPnet S2T (OWSM) models pad or
trim every input to ``speech_length`` seconds and see it all as real; ASR models take padded batches with lengths
(ESPnet's Whisper ASR models too: having no mask, its encoder sees the padding of a batch or of a padded data dir);
HF models get their feature extractor's input, one utterance per forward pass. ``Batch.real_frames`` says how many
output frames of each utterance cover real audio, so that fixed-length padding (silence) never enters the statistics.
"""

from __future__ import annotations

import dataclasses
import math
import re
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence

import numpy as np
import soundfile
import torch
from torch import nn

from espnet_peft.analysis.errors import AnalysisInputError
from espnet_peft.analysis.hf_peft import adapter_base, is_adapter_dir, load_adapter, lora_layers, split_adapter_spec
from espnet_peft.analysis.model_access import EspnetEncoderAccess, HFAccess, ModelAccess
from espnet_peft.utils.kaldi_data import check_audio, read_table
from espnet_peft.utils.text_norm import normalize_text

#: checkpoints looked for in an ESPnet experiment dir, in this order (the recipe decodes the first)
CHECKPOINTS = ("valid.acc.best.pth", "valid.loss.best.pth", "model.pth", "latest.pth")
#: ESPnet tasks whose models encode raw audio with ``model.encode(speech, speech_lengths)``
ESPNET_TASKS = ("asr", "s2t")

_FIX = ("pass an ESPnet experiment dir (config.yaml + a .pth checkpoint), a config + model file pair, or a Hugging "
        "Face model dir (config.json) or a peft adapter dir (adapter_config.json; ADAPTER_DIR@BASE_DIR names its "
        "base)")


# ---------------------------------------------------------------------------------------------------------------------
# Naming models


@dataclasses.dataclass(frozen=True)
class ModelSource:
    """Where a model comes from. ``kind`` is ``"espnet"`` (``config`` + ``model_file``, ``task``) or ``"hf"``
    (``path`` is the HF dir; ``adapter``, when set, a peft adapter dir over it)."""

    kind: str
    path: Path
    config: Optional[Path] = None
    model_file: Optional[Path] = None
    task: Optional[str] = None
    adapter: Optional[Path] = None

    def describe(self) -> dict:
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in dataclasses.asdict(self).items()}


def _require_file(path: Path, what: str, label: str) -> Path:
    if not path.is_file():
        raise AnalysisInputError(f"model {label}: {what} {path} not found; {_FIX}")
    return path


def detect_task(config: Path) -> str:
    """The ESPnet task of a training config: OWSM-style S2T configs use the ``s2t`` preprocessor, the rest is ASR.

    OWSM-CTC (``s2t_ctc``) models encode with a text prompt and are not supported: their config is refused here.
    """
    from espnet_peft.export import config_task

    task = config_task(config)
    if task == "s2t_ctc":
        raise AnalysisInputError(f"{config}: OWSM-CTC (s2t_ctc) models need a text prompt to encode and are not "
                                 f"supported; use an ASR or S2T model")
    return task


def _espnet_source(label: str, config: Path, model_file: Optional[Path], task: str) -> ModelSource:
    _require_file(config, "config", label)
    if model_file is None:
        found = [config.parent / name for name in CHECKPOINTS if (config.parent / name).exists()]
        if not found:
            raise AnalysisInputError(f"model {label}: no checkpoint ({', '.join(CHECKPOINTS)}) next to {config}; "
                                     f"pass the model file explicitly (--model_{label.lower()}_file)")
        model_file = found[0]
    _require_file(model_file, "model file", label)
    if task == "auto":
        task = detect_task(config)
    if task not in ESPNET_TASKS:
        raise AnalysisInputError(f"model {label}: task {task!r} is not supported; choose one of {ESPNET_TASKS}")
    return ModelSource("espnet", config.parent, config, model_file, task)


def _hf_source(label: str, spec: str) -> ModelSource:
    """An HF model dir, or a peft adapter dir over its base (``ADAPTER_DIR`` or ``ADAPTER_DIR@BASE_DIR``)."""
    named, base = split_adapter_spec(spec)
    path = Path(named)
    if base is None and not is_adapter_dir(path):
        _require_file(path / "config.json", "Hugging Face config", label)
        return ModelSource("hf", path)
    base_dir = adapter_base(label, path, base)
    _require_file(base_dir / "config.json", f"Hugging Face config of the base of adapter {path}", label)
    return ModelSource("hf", base_dir, adapter=path)


def resolve_model(label: str, path: Optional[str] = None, config: Optional[str] = None,
                  model_file: Optional[str] = None, hf_dir: Optional[str] = None, task: str = "auto") -> ModelSource:
    """One model from whichever way it was named; ``label`` ("A", "B") only appears in error messages."""
    given = [x for x in (path, hf_dir) if x] + ([config or model_file] if (config or model_file) else [])
    if len(given) != 1:
        raise AnalysisInputError(f"model {label}: give exactly one of a path, a config/model file pair or an HF dir; "
                                 f"got {len(given)}")
    if hf_dir:
        return _hf_source(label, hf_dir)
    if config or model_file:
        model = Path(model_file) if model_file else None
        conf = Path(config) if config else (model.parent / "config.yaml")
        return _espnet_source(label, conf, model, task)
    if split_adapter_spec(path)[1] is not None:
        return _hf_source(label, path)
    p = Path(path)
    if p.is_dir():
        if (p / "config.yaml").is_file():
            return _espnet_source(label, p / "config.yaml", None, task)
        if (p / "config.json").is_file() or is_adapter_dir(p):
            return _hf_source(label, path)
        raise AnalysisInputError(f"model {label}: {p} holds neither config.yaml (ESPnet) nor config.json (Hugging "
                                 f"Face); {_FIX}")
    if p.suffix == ".pth":
        return _espnet_source(label, p.parent / "config.yaml", _require_file(p, "model file", label), task)
    if p.suffix in (".yaml", ".yml"):
        return _espnet_source(label, p, None, task)
    raise AnalysisInputError(f"model {label}: {p} not found (or not a dir, .yaml or .pth); {_FIX}")


# ---------------------------------------------------------------------------------------------------------------------
# Audio


@dataclasses.dataclass(frozen=True)
class Utterance:
    """One utterance: its audio file and the raw transcripts the data has for it (``texts``: file name ("text",
    "text.prev", "text.ctc") -> line, empty for a wav list)."""

    key: str
    wav: Path
    texts: Mapping[str, str] = dataclasses.field(default_factory=dict)
    #: the real (unpadded) samples of a file padded on disk (``utt2num_samples``); None: all of it is real
    num_samples: Optional[int] = None

    def real_samples(self, audio_samples: int) -> int:
        """How many of the ``audio_samples`` read from the file are real audio."""
        return audio_samples if self.num_samples is None else min(audio_samples, self.num_samples)

    @property
    def ctc_text(self) -> Optional[str]:
        """The plain transcript (``text.ctc``, else ``text`` without leading ``<...>`` tags), None without one."""
        if "text.ctc" in self.texts:
            return self.texts["text.ctc"]
        if "text" in self.texts:
            return _LEADING_TAGS.sub("", self.texts["text"])
        return None

    @property
    def ref(self) -> Optional[str]:
        """The normalised reference that CERs are computed against."""
        text = self.ctc_text
        return None if text is None else normalize_text(text)


#: OWSM-style prompts in front of an S2T transcript: <eng><asr><notimestamps> ...
_LEADING_TAGS = re.compile(r"^(\s*<[^<>\s]*>)+\s*")
#: transcript files read from a Kaldi data dir (the S2T ones when present)
TEXT_FILES = ("text", "text.prev", "text.ctc")
#: the real lengths of a data dir padded on disk (``espnet_peft.utils.audio_window.pad_data_dir``)
NUM_SAMPLES = "utt2num_samples"


def _evenly_spaced(items: list, count: Optional[int]) -> list:
    """``count`` items spread over the whole (key-sorted) list, so a subset still covers every speaker."""
    if count is None or count >= len(items):
        return items
    return [items[(i * len(items)) // count] for i in range(count)]


def _read_table(path: Path) -> dict[str, str]:
    try:
        return read_table(path)
    except ValueError as error:  # duplicate ids, a non-UTF-8 byte: the message names the file
        raise AnalysisInputError(str(error)) from None


def _read_num_samples(source: Path) -> dict[str, int]:
    """``utt2num_samples`` of a data dir as ints (empty when it has none)."""
    path = source / NUM_SAMPLES
    if not path.is_file():
        return {}
    table = _read_table(path)
    bad = [(key, value) for key, value in table.items() if not value.isdigit()]
    if bad:
        raise AnalysisInputError(f"{path}: sample counts must be non-negative integers, got {bad[:3]}")
    return {key: int(value) for key, value in table.items()}


def read_utterances(data: str, max_utts: Optional[int] = None,
                    skipped: Optional[dict[str, tuple[str, str]]] = None) -> list[Utterance]:
    """Utterances of a Kaldi data dir or a wav list (see the module docstring), at most ``max_utts`` of them.

    Each picked utterance passes the recipe's checks (``check_audio``: missing, truncated, undecodable, multi-channel,
    empty or silent audio) and, where the data has transcripts, must have a non-empty one. Those that fail are left
    out and recorded in ``skipped`` (utterance id -> (reason code, detail)), with the recipe's reason codes.
    """
    skipped = {} if skipped is None else skipped
    source = Path(data)
    tables: dict[str, dict[str, str]] = {}
    num_samples: dict[str, int] = {}
    if source.is_dir():
        scp = source / "wav.scp"
        if not scp.is_file():
            raise AnalysisInputError(f"{scp} not found: --data needs a Kaldi data dir with wav.scp (+ text) or a "
                                     f"file listing one wav path (or 'key path') per line")
        wavs = _read_table(scp)
        tables = {name: _read_table(source / name) for name in TEXT_FILES if (source / name).is_file()}
        num_samples = _read_num_samples(source)
    elif source.is_file():
        wavs = {}
        for line in source.read_text(encoding="utf-8").splitlines():
            parts = line.split(None, 1)
            if parts:
                key, wav = (Path(parts[0]).stem, parts[0]) if len(parts) == 1 else (parts[0], parts[1].strip())
                wavs[key] = wav
    else:
        raise AnalysisInputError(f"--data {source} not found: give a Kaldi data dir (wav.scp + text) or a wav list")
    if not wavs:
        raise AnalysisInputError(f"{source}: no utterances")
    for key, wav in wavs.items():
        if wav.rstrip().endswith("|"):
            raise AnalysisInputError(f"{source}: {key} is a Kaldi pipe entry; only plain wav paths are supported")
    utts = []
    for key in _evenly_spaced(sorted(wavs), max_utts):
        utt = Utterance(key, Path(wavs[key]), {name: t[key] for name, t in tables.items() if key in t},
                        num_samples.get(key))
        audio = check_audio(wavs[key], None)
        if audio.reason:
            skipped[key] = (audio.reason, audio.detail)
        elif tables and utt.ctc_text is None:
            skipped[key] = ("not_in_text", f"no transcript in {source}/{' or '.join(sorted(tables))}")
        elif tables and not utt.ref:
            skipped[key] = ("empty_text", f"no words in its transcript in {source}")
        else:
            utts.append(utt)
    if not utts:
        raise AnalysisInputError(f"{source}: no usable utterance among the {len(skipped)} picked: "
                                 f"{dict(list(skipped.items())[:5])}")
    return utts


def load_audio(utt: Utterance, fs: int) -> np.ndarray:
    """Mono float32 samples at ``fs``; anything else is an error that names the file."""
    if not utt.wav.is_file():
        raise AnalysisInputError(f"{utt.key}: audio file {utt.wav} not found")
    samples, rate = soundfile.read(str(utt.wav), dtype="float32")
    if rate != fs:
        raise AnalysisInputError(f"{utt.wav}: {rate} Hz, the model expects {fs} Hz; resample it (e.g. sox in.wav "
                                 f"-r {fs} out.wav)")
    if samples.ndim != 1:
        raise AnalysisInputError(f"{utt.wav}: {samples.shape[1]} channels, expected mono")
    return samples


# ---------------------------------------------------------------------------------------------------------------------
# Loaded models and their batches


@dataclasses.dataclass
class Batch:
    """One forward pass worth of utterances, as one model wants them.

    ``args``/``kwargs``: what ``access.capture`` (and the model's encoder) takes; ``real_samples``/``told_samples`` per
    utterance: the audio it has and the length the model was told (larger when padded to a fixed length).
    ESPnet only: ``speech``/``lengths`` (raw audio), ``ctc_text``/``ctc_text_lengths`` (CTC targets, -1 padded) and
    ``refs`` (normalised transcripts) when every utterance has a transcript, and ``loss_inputs``, the collated
    training batch (``model(**loss_inputs)`` gives the training loss) when the data has every text the model's
    forward needs (S2T: ``text`` with its prompt tokens besides the CTC text).
    HF: ``refs`` with transcripts, and ``loss_inputs`` (the model's input plus ``labels``, the transcript through the
    model's tokenizer: ``model(**loss_inputs).loss`` is its ``LoadedModel.loss_name``) when the model has a loss.
    """

    utts: list[Utterance]
    args: tuple
    kwargs: dict
    real_samples: list[int]
    told_samples: list[int]
    speech: Optional[torch.Tensor] = None
    lengths: Optional[torch.Tensor] = None
    ctc_text: Optional[torch.Tensor] = None
    ctc_text_lengths: Optional[torch.Tensor] = None
    refs: Optional[list[str]] = None
    loss_inputs: Optional[dict[str, torch.Tensor]] = None

    def real_frames(self, mask_counts: Sequence[int]) -> list[int]:
        """Output frames of each utterance that cover real audio, given the frames the model counted as real."""
        return [max(1, min(n, math.ceil(n * real / told)))
                for n, real, told in zip(mask_counts, self.real_samples, self.told_samples)]


@dataclasses.dataclass
class LoadedModel:
    """A model ready for analysis: its module, its ``ModelAccess`` and how it turns audio into batches."""

    label: str
    source: ModelSource
    model: nn.Module
    access: ModelAccess
    fs: int
    batch: Callable[[list[Utterance], list[np.ndarray]], Batch]
    #: token ids -> normalised text (ESPnet CTC vocabulary), None for HF models
    decode: Optional[Callable[[Sequence[int]], str]] = None
    blank: int = 0
    #: the most utterances one forward pass may take (HF: 1, no padding and so no attention mask to get right)
    max_batch: Optional[int] = None
    #: HF: the loss that its batches' ``loss_inputs`` give (e.g. "CTC loss"), or None and ``no_loss`` says why
    loss_name: Optional[str] = None
    no_loss: Optional[str] = None

    @property
    def is_espnet(self) -> bool:
        return self.source.kind == "espnet"

    def describe(self) -> dict:
        from espnet_peft.injection import adapter_layers

        adapters = lora_layers(self.model) if self.source.adapter is not None else adapter_layers(self.model)
        return {"label": self.label, **self.source.describe(), "layers": self.access.layers(),
                "parameters": sum(p.numel() for p in self.model.parameters()), "adapter_layers": len(adapters)}


def _espnet_inputs(utt: Utterance, task: str, na_symbol: str) -> tuple[dict[str, str], bool]:
    """The texts the model's preprocessor should tokenize for ``utt``, and whether they make a full training batch.

    ASR: ``text``. S2T: ``text_ctc`` always (the CTC target), plus ``text`` (with its OWSM prompt tokens) and
    ``text_prev`` (``<na>`` when the data has none, as the recipe writes it) when the data has a prompted ``text``.
    """
    plain = utt.ctc_text
    if plain is None:
        return {}, False
    if task == "asr":
        return {"text": plain}, True
    texts = {"text_ctc": plain}
    prompted = utt.texts.get("text", "")
    if _LEADING_TAGS.match(prompted):
        texts.update(text=prompted, text_prev=utt.texts.get("text.prev", na_symbol))
        return texts, True
    return texts, False


def _load_espnet(label: str, source: ModelSource, device: str) -> LoadedModel:
    from espnet2.train.collate_fn import common_collate_fn

    from espnet_peft.export import task_class

    task = task_class(source.task)
    try:
        model, args = task.build_model_from_file(source.config, source.model_file, device)
    except FileNotFoundError as error:  # e.g. the init_param base of an adapter-only checkpoint, or the bpemodel
        raise AnalysisInputError(f"model {label} ({source.model_file}): {error}; run from the dir that the "
                                 f"config's relative paths start at (the recipe dir)") from None
    model.eval()
    # The model's own inference-side preprocessing (S2T: pad/trim to speech_length; tokenizer, text cleaner)
    preprocess = task.build_preprocess_fn(args, train=False)
    if preprocess is None:
        raise AnalysisInputError(f"{source.config}: use_preprocessor is false; the analysis needs the model's "
                                 f"preprocessor (tokenizer, S2T padding): set use_preprocessor: true")
    conf = getattr(args, "preprocessor_conf", None) or {}
    fs = int(conf.get("fs", 16000))
    fixed = int(fs * conf["speech_length"]) if source.task == "s2t" else None
    ctc_key = "text_ctc" if source.task == "s2t" else "text"

    def decode(ids: Sequence[int]) -> str:
        tokens = preprocess.token_id_converter.ids2tokens(list(ids))
        return normalize_text(preprocess.tokenizer.tokens2text(tokens))

    def batch(utts: list[Utterance], audio: list[np.ndarray]) -> Batch:
        inputs = [_espnet_inputs(u, source.task, conf.get("na_symbol", "<na>")) for u in utts]
        scored = all(texts for texts, _ in inputs)
        full = scored and all(f for _, f in inputs)
        items = [(u.key, preprocess(u.key, {"speech": a, **(texts if scored else {})}))
                 for u, a, (texts, _) in zip(utts, audio, inputs)]
        _, data = common_collate_fn(items, float_pad_value=0.0, int_pad_value=-1)  # -1: ESPnet's ignore_id
        data = {k: v.to(device) for k, v in data.items()}
        # the S2T preprocessor returns mono audio as [T, 1]; [B, T] is what inference feeds the encoder
        speech = data["speech"].squeeze(-1) if data["speech"].dim() == 3 else data["speech"]
        real = [min(u.real_samples(len(a)), fixed or len(a)) for u, a in zip(utts, audio)]
        out = Batch(utts, (speech, data["speech_lengths"]), {}, real, data["speech_lengths"].tolist(),
                    speech=speech, lengths=data["speech_lengths"])
        if scored:
            out.ctc_text, out.ctc_text_lengths = data[ctc_key], data[f"{ctc_key}_lengths"]
            out.refs = [u.ref for u in utts]
        if full:
            out.loss_inputs = data
        return out

    return LoadedModel(label, source, model, EspnetEncoderAccess.for_asr_model(model), fs, batch, decode,
                       blank=int(getattr(model, "blank_id", 0)))


def _hf_dirs(source: ModelSource) -> list[Path]:
    """Where an HF model's preprocessing files may be: the adapter dir first (saved with the fine-tuned model), then
    the base."""
    return [d for d in (source.adapter, source.path) if d is not None]


def _hf_feature_extractor(source: ModelSource, config: Any) -> Any:
    """The model's own feature extractor, or the model family's default when its dirs have none (a bare checkpoint)."""
    import transformers as tf

    for path in _hf_dirs(source):
        if (path / "preprocessor_config.json").is_file():
            return tf.AutoFeatureExtractor.from_pretrained(str(path))
    if config.model_type == "whisper":
        return tf.WhisperFeatureExtractor(feature_size=config.num_mel_bins)
    return tf.Wav2Vec2FeatureExtractor(do_normalize=True, return_attention_mask=False)


def _hf_model(label: str, source: ModelSource, **kwargs: Any) -> nn.Module:
    """The HF model in eval mode, built as the class its config names: a ``*ForCTC`` keeps its CTC head, and a peft
    adapter's weights are named after the class it was trained on. With the peft adapter over it when there is one."""
    import transformers as tf

    architectures = getattr(tf.AutoConfig.from_pretrained(str(source.path)), "architectures", None) or []
    model_class = getattr(tf, architectures[0], tf.AutoModel) if architectures else tf.AutoModel
    model = HFAccess.from_pretrained(str(source.path), model_class, **kwargs).model
    return model if source.adapter is None else load_adapter(label, model, source.adapter)


#: the loss an HF model computes from ``labels``, by the ending of its class name
_HF_LOSSES = {"ForCTC": "CTC loss", "ForConditionalGeneration": "decoder loss"}


def is_hf_ctc(model: nn.Module) -> bool:
    """Whether an HF model has a CTC head (``lm_head``): the ``*ForCTC`` classes."""
    return type(model).__name__.endswith("ForCTC")


def _hf_tokenizer(source: ModelSource, model: nn.Module) -> tuple[Any, Optional[str], Optional[str]]:
    """(tokenizer, loss name, None), or (tokenizer or None, None, why its batches can carry no loss)."""
    import transformers as tf

    found = next((d for d in _hf_dirs(source) if (d / "tokenizer_config.json").is_file()), None)
    tokenizer = tf.AutoTokenizer.from_pretrained(str(found)) if found is not None else None
    name = type(model).__name__
    loss = next((loss for ending, loss in _HF_LOSSES.items() if name.endswith(ending)), None)
    if loss is None:
        return tokenizer, None, (f"{name} computes no loss from transcripts (a *ForCTC or *ForConditionalGeneration "
                                 f"does)")
    if tokenizer is None:
        where = " or ".join(str(d) for d in _hf_dirs(source))
        return None, None, f"no tokenizer (tokenizer_config.json) in {where} to turn transcripts into labels"
    return tokenizer, loss, None


def _ctc_decode(tokenizer: Any) -> Callable[[Sequence[int]], str]:
    """Greedy CTC token ids (repeats collapsed, blanks dropped) -> normalised text, through an HF CTC tokenizer."""

    def decode(ids: Sequence[int]) -> str:
        return normalize_text(tokenizer.decode(list(ids), group_tokens=False))  # grouping again would merge "ll"

    return decode


def _load_hf(label: str, source: ModelSource, device: str, eager_attention: bool) -> LoadedModel:
    kwargs = {"attn_implementation": "eager"} if eager_attention else {}  # only eager attention returns its maps
    model = _hf_model(label, source, **kwargs).to(device)
    access = HFAccess(model)
    extractor = _hf_feature_extractor(source, model.config)
    tokenizer, loss_name, no_loss = _hf_tokenizer(source, model)
    fs = int(extractor.sampling_rate)
    # the decoder prepends its start token to the labels itself (shift_tokens_right)
    start = model.config.decoder_start_token_id if model.config.is_encoder_decoder else None

    def labels(text: str) -> torch.Tensor:
        ids = tokenizer(text).input_ids
        return torch.tensor([ids[1:] if ids and ids[0] == start else ids], device=device)

    def batch(utts: list[Utterance], audio: list[np.ndarray]) -> Batch:
        if len(utts) != 1:
            raise ValueError("HF models are run one utterance at a time")  # no padding: no attention mask needed
        features = extractor(audio[0], sampling_rate=fs, return_tensors="pt")
        inputs = {k: v.to(device) for k, v in features.items() if k in ("input_values", "input_features")}
        told = len(audio[0])
        if "input_features" in inputs:  # Whisper pads every input to its 30 s window
            told = max(told, int(extractor.n_samples))
        out = Batch(utts, (), dict(inputs), [utts[0].real_samples(len(audio[0]))], [told])
        if eager_attention:
            out.kwargs["output_attentions"] = True
        if utts[0].ctc_text is not None:
            out.refs = [utts[0].ref]
            if loss_name is not None:
                out.loss_inputs = {**inputs, "labels": labels(utts[0].ctc_text)}
        return out

    ctc = is_hf_ctc(model)
    blank = int(model.config.pad_token_id or 0) if ctc else 0  # HF CTC's blank is its pad token
    decode = _ctc_decode(tokenizer) if ctc and tokenizer is not None else None
    return LoadedModel(label, source, model, access, fs, batch, decode, blank=blank, max_batch=1, loss_name=loss_name,
                       no_loss=no_loss)


def load_model(label: str, source: ModelSource, device: str = "cpu", eager_attention: bool = False) -> LoadedModel:
    """Build the model named by ``source`` in eval mode on ``device``."""
    if source.kind == "espnet":
        return _load_espnet(label, source, device)
    return _load_hf(label, source, device, eager_attention)

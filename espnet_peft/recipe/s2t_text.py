"""OWSM (espnet2 S2T) text files for a Kaldi data dir.

ESPnet's S2T task reads three utterance-keyed text files (``s2t.sh`` passes ``text.prev`` and ``text.ctc`` as
extra files):

    text       <eng><asr><notimestamps> the words           the decoder target, led by language and task tokens
    text.prev  <na>                                          the previous sentence as a prompt, or <na> for none
    text.ctc   the words                                     the CTC target, no special tokens

The format is OWSM v3 / v3.1's, assumed for v4 (ISO 639-3 language tokens; v1/v2 used ``<en>``; ``token_list``
checks them against a model's vocabulary). S2TPreprocessor drops the ``text`` line's first BPE piece (the ``▁``
before ``<eng>``) and, for a fraction ``1 - time_apply_prob`` of the utterances, inserts ``<notimestamps>`` after
the first two tokens, so text that already holds it needs ``time_apply_prob: 1.0`` (``source_model`` sets it).
OWSM-CTC (``espnet2/tasks/s2t_ctc.py``) has no timestamps: its ``text`` is ``<eng><asr> the words``
(``notime=False``); its preprocessor takes the first two tokens as the prompt prefix and prepends them to
``text.ctc`` itself.

The plain transcript is kept in ``text.plain`` so the conversion can be repeated (e.g. with other tokens) without
stacking prefixes.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path

from espnet_peft.utils.kaldi_data import read_table, write_table
from espnet_peft.recipe.owsm_tokens import NOTIME, check_s2t_tokens

NA = "<na>"
PLAIN = "text.plain"


def _check_token(token: str, what: str) -> None:
    if not (token.startswith("<") and token.endswith(">")) or " " in token:
        raise ValueError(f"{what} token {token!r} must look like <xxx> (e.g. <eng>, <asr>)")


def prefix_tokens(lang: str = "<eng>", task: str = "<asr>", notime: bool = True) -> list[str]:
    """The special tokens that lead every ``text`` line: ``<lang><task><notimestamps>`` (OWSM), or without
    ``<notimestamps>`` (OWSM-CTC, ``notime=False``)."""
    _check_token(lang, "language")
    _check_token(task, "task")
    return [lang, task, *([NOTIME] if notime else [])]


def s2t_tables(text: Mapping[str, str], utt2spk: Mapping[str, str] | None = None, lang: str = "<eng>",
               task: str = "<asr>", use_prev: bool = False, notime: bool = True) -> dict[str, dict[str, str]]:
    """``{"text": ..., "text.prev": ..., "text.ctc": ...}`` from plain transcripts.

    With ``use_prev`` the prompt is the previous utterance of the same speaker in utterance-id order (the first
    of each speaker gets ``<na>``); ``utt2spk`` is then required. ``notime=False`` leaves ``<notimestamps>`` out
    (OWSM-CTC).
    """
    prefix = "".join(prefix_tokens(lang, task, notime))
    if use_prev and utt2spk is None:
        raise ValueError("use_prev needs utt2spk to know which utterance precedes which")
    for utt, words in text.items():
        if not words.strip():
            raise ValueError(f"{utt}: empty transcript; filter the data dir first "
                             "(python -m espnet_peft.bin.validate_data)")
        if words.lstrip().startswith("<"):
            raise ValueError(f"{utt}: transcript already starts with a special token ({words.split()[0]}); "
                             f"pass the plain transcript, not an S2T text")
    prev: dict[str, str] = {}
    last_by_speaker: dict[str, str] = {}
    for utt in sorted(text):
        if use_prev:
            speaker = utt2spk.get(utt)  # type: ignore[union-attr]
            if speaker is None:
                raise ValueError(f"{utt}: in text but not in utt2spk")
            prev[utt] = last_by_speaker.get(speaker, NA)
            last_by_speaker[speaker] = text[utt]
        else:
            prev[utt] = NA
    return {
        "text": {utt: f"{prefix} {words}" for utt, words in text.items()},
        "text.prev": prev,
        "text.ctc": dict(text),
    }


def write_s2t_text(data_dir: Path, dst_dir: Path | None = None, lang: str = "<eng>", task: str = "<asr>",
                   use_prev: bool = False, notime: bool = True, token_list: Path | None = None) -> Path:
    """Write ``text``/``text.prev``/``text.ctc`` (and the plain ``text.plain``) into ``dst_dir`` (default: in place;
    a different ``dst_dir`` also gets copies of the other top-level files, e.g. ``wav.scp``, but not the audio).

    A ``text`` that is already in S2T form (a dir converted before) is rebuilt from its ``text.plain``. With
    ``token_list`` (the model's ``tokens.txt``) the special tokens are checked against the model's vocabulary
    before anything is written.
    """
    if token_list is not None:
        check_s2t_tokens(Path(token_list).read_text(encoding="utf-8").split(), prefix_tokens(lang, task, notime))
    data_dir = Path(data_dir)
    dst_dir = Path(dst_dir) if dst_dir is not None else data_dir
    plain = read_table(data_dir / "text")
    if any(words.lstrip().startswith("<") for words in plain.values()):
        if not (data_dir / PLAIN).is_file():
            raise ValueError(f"{data_dir / 'text'} already holds special tokens and there is no {PLAIN} with the "
                             "plain transcripts; regenerate the data dir")
        plain = read_table(data_dir / PLAIN)
    utt2spk = read_table(data_dir / "utt2spk") if use_prev else None
    tables = s2t_tables(plain, utt2spk, lang=lang, task=task, use_prev=use_prev, notime=notime)
    if dst_dir.resolve() != data_dir.resolve():
        dst_dir.mkdir(parents=True, exist_ok=True)
        for path in data_dir.iterdir():
            if path.is_file() and path.name not in (PLAIN, *tables):
                shutil.copy2(path, dst_dir / path.name)
    write_table(dst_dir / PLAIN, plain)  # first, so an interrupted run still has the original words
    for name, rows in tables.items():
        write_table(dst_dir / name, rows)
    return dst_dir

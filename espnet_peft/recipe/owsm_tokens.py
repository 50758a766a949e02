"""An OWSM-style BPE model and token list for a from-scratch S2T source model.

ESPnet 202511's S2T model, preprocessor and ``s2t_inference`` look special tokens up by name, so the token list must
hold ``<blank> <unk> <na> <sos> <eos> <sop> <notimestamps>``, a contiguous block of time tokens ``<0.00>`` ...
and the language / task tokens; the BPE model must declare them all as user-defined symbols so they stay whole.

The released OWSM v3 and v3.1 models follow the same conventions: language tokens are ISO 639-3 codes (``<eng>``,
``<fra>``), tasks are ``<asr>`` / ``<st_xxx>``, an S2T ``text`` starts with ``<lang><task><notimestamps>`` (or time
tokens; OWSM-CTC's with ``<lang><task>``), and ``<na>`` means "no previous text"; OWSM v1/v2 used ISO 639-1
(``<en>``). OWSM v4 is assumed to keep the v3.1 conventions (its token list could not be checked offline), so the
recipe does not rely on either: ``check_s2t_tokens`` checks the tokens it writes against each model's own token list
when the model is fetched.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Sequence, Tuple

TIME_RESOLUTION = 0.02
LANGUAGE_TOKENS = ("<eng>",)
TASK_TOKENS = ("<asr>",)
NOTIME = "<notimestamps>"
#: looked up by name in the S2T model, preprocessor and inference of ESPnet 202511
REQUIRED_SYMBOLS = ("<blank>", "<unk>", "<na>", "<sos>", "<eos>", "<sop>")
#: OWSM v1/v2 language tokens (ISO 639-1) -> the v3+ spelling (ISO 639-3), for error messages
OLD_LANGUAGE_TOKENS = {"<en>": "<eng>", "<de>": "<deu>", "<fr>": "<fra>", "<es>": "<spa>", "<zh>": "<zho>",
                       "<ja>": "<jpn>"}


def time_tokens(speech_length: float) -> List[str]:
    """``<0.00>`` .. ``<speech_length>``; the preprocessor and inference use only the first and last ids."""
    n = round(speech_length / TIME_RESOLUTION)
    return [f"<{i * TIME_RESOLUTION:.2f}>" for i in range(n + 1)]


def special_symbols(speech_length: float, languages: Sequence[str] = LANGUAGE_TOKENS,
                    tasks: Sequence[str] = TASK_TOKENS) -> List[str]:
    return ["<na>", *languages, *tasks, NOTIME, *time_tokens(speech_length), "<sos>", "<eos>", "<sop>"]


def train_owsm_bpe(texts: Sequence[str], out_dir: Path, vocab_size: int, speech_length: float,
                   languages: Sequence[str] = LANGUAGE_TOKENS, tasks: Sequence[str] = TASK_TOKENS
                   ) -> Tuple[Path, Path]:
    """Train ``out_dir/bpe.model`` on ``texts`` (plain words) and write ``out_dir/tokens.txt``; returns both paths.

    ``vocab_size`` counts the BPE pieces on top of the special symbols. Token order: ``<blank> <unk>``, the symbols,
    the pieces, then ``<sos> <eos> <sop>`` (OWSM's layout; ESPnet maps pieces by name, so only presence matters).
    """
    import sentencepiece as spm

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    corpus = out_dir / "bpe_train.txt"
    corpus.write_text("\n".join(texts) + "\n", encoding="utf-8")
    symbols = special_symbols(speech_length, languages, tasks)
    spm.SentencePieceTrainer.train(
        input=str(corpus), model_prefix=str(out_dir / "bpe"), model_type="bpe",
        vocab_size=len(symbols) + vocab_size,
        hard_vocab_limit=False,  # a small corpus may not fill the vocabulary: accept fewer pieces
        character_coverage=1.0, user_defined_symbols=symbols, bos_id=-1, eos_id=-1, unk_piece="<unk>",
        minloglevel=2,
    )
    model = out_dir / "bpe.model"
    processor = spm.SentencePieceProcessor(model_file=str(model))
    pieces = [processor.id_to_piece(i) for i in range(processor.get_piece_size())]
    # S2TPreprocessor drops the first token of `text`, assuming it is the lone "▁" before the leading special token.
    if "▁" not in pieces:
        raise RuntimeError(f"{model} lacks the standalone '▁' piece that ESPnet's S2T preprocessor expects")
    head, tail = ["<blank>", "<unk>", *symbols[:-3]], symbols[-3:]
    body = [p for p in pieces if p not in head and p not in tail]
    token_list = out_dir / "tokens.txt"
    token_list.write_text("\n".join([*head, *body, *tail]) + "\n", encoding="utf-8")
    return model, token_list


def check_s2t_tokens(token_list: Sequence[str], tokens: Sequence[str] = ()) -> None:
    """Raise ``ValueError`` unless ``token_list`` holds ESPnet's required S2T symbols and ``tokens`` (e.g. the
    language / task tokens and ``<notimestamps>`` that a recipe writes into ``text``)."""
    present = set(token_list)
    missing = [t for t in (*REQUIRED_SYMBOLS, *tokens) if t not in present]
    if not missing:
        return
    hints = [f"{t} -> {OLD_LANGUAGE_TOKENS[t]} (OWSM v3+ uses ISO 639-3 language tokens)"
             for t in missing if OLD_LANGUAGE_TOKENS.get(t) in present]
    raise ValueError(f"the model's token list lacks {missing}" + (f"; did you mean {', '.join(hints)}" if hints else ""))

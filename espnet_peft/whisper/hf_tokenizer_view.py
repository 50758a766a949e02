"""ESPnet's Whisper token types on today's openai-whisper.

ESPnet's ``whisper_en`` / ``whisper_multilingual`` tokenizer, token-id converter and vocabulary export (both 202511
and 202611) call ``whisper.tokenizer.Tokenizer.tokenizer``: the Hugging Face ``GPT2TokenizerFast`` that openai-whisper
used up to release 20230308. Since 20230314 openai-whisper tokenises with tiktoken and has no such attribute
(``AttributeError: 'Tokenizer' object has no attribute 'tokenizer'``), and its older sdists no longer build
(``pkg_resources`` is gone from setuptools). :class:`HFTokenizerView` gives a tiktoken-based ``Tokenizer`` the part of
the Hugging Face API that ESPnet calls, with the old tokenizer's token strings and ids:

* ordinary tokens are GPT-2 byte-level strings (``"Ġhello"``), ids as in the tiktoken ranks;
* ``vocab_size`` counts the ordinary tokens and ``<|endoftext|>``, as GPT-2's did; the special tokens
  (``<|startoftranscript|>``, languages, tasks, ``<|notimestamps|>``) form the added vocabulary, and timestamps join it
  when ESPnet adds them, at the ids the model's embedding gives them;
* a token unknown to the model (``add_tokens`` / a speaker-change symbol) gets the next free id, as in Hugging Face.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Dict, Iterable, List, Mapping, Union

TIMESTAMP_PREFIX = "<|"


@lru_cache(maxsize=1)
def byte_to_unicode() -> Dict[int, str]:
    """GPT-2's reversible map of the 256 byte values onto printable characters (space -> "Ġ")."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    chars = list(printable)
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(printable, map(chr, chars)))


@lru_cache(maxsize=1 << 16)
def _byte_level(raw: bytes) -> str:
    """A token's bytes as GPT-2's byte-level string."""
    table = byte_to_unicode()
    return "".join(table[b] for b in raw)


def _is_timestamp(name: str) -> bool:
    return name.startswith(TIMESTAMP_PREFIX) and name[2:-2].replace(".", "", 1).isdigit()


class HFTokenizerView:
    """The Hugging Face tokenizer calls that ESPnet makes, answered by a tiktoken ``Encoding``."""

    def __init__(self, encoding: Any) -> None:
        self.encoding = encoding
        self.special_ids: Dict[str, int] = dict(encoding._special_tokens)
        self.eot = self.special_ids["<|endoftext|>"]
        # the old tokenizer's added vocabulary: every special but the timestamps (ESPnet adds those itself), then
        # tokens the model does not know; kept with its inverse, as every token string and id is looked up in it
        self.added: Dict[str, int] = {}
        self.added_names: Dict[int, str] = {}
        self._add(n for n in self.special_ids if not _is_timestamp(n))
        self._to_byte = {c: b for b, c in byte_to_unicode().items()}

    def __deepcopy__(self, memo: Dict[int, Any]) -> "HFTokenizerView":
        copied = HFTokenizerView(self.encoding)  # the Encoding itself is immutable: share it
        copied.added, copied.added_names = dict(self.added), dict(self.added_names)
        return copied

    # sizes and vocabularies
    @property
    def vocab_size(self) -> int:
        return self.eot + 1

    def get_added_vocab(self) -> Dict[str, int]:
        return dict(self.added)

    @property
    def additional_special_tokens(self) -> List[str]:
        return [n for n in self.added if n != "<|endoftext|>"]

    @property
    def all_special_ids(self) -> List[int]:
        return sorted(self.added_names)

    # growing the vocabulary
    def _add(self, names: Iterable[str]) -> int:
        count = 0
        for name in names:
            if name in self.added:
                continue
            token_id = self.special_ids.get(name)
            if token_id is None:  # unknown to the model: the next free id, as in Hugging Face
                token_id = max(self.encoding.n_vocab - 1, *self.added_names) + 1
            self.added[name], self.added_names[token_id] = token_id, name
            count += 1
        return count

    def add_tokens(self, names: Iterable[str]) -> int:
        return self._add(names)

    def add_special_tokens(self, tokens: Mapping[str, Iterable[str]]) -> int:
        return sum(self._add(names) for key, names in tokens.items()
                   if key in ("additional_special_tokens", "extra_special_tokens"))

    # tokens <-> ids <-> text
    def _token(self, token_id: int) -> str:
        if token_id in self.added_names:
            return self.added_names[token_id]
        return _byte_level(self.encoding.decode_single_token_bytes(token_id))

    def _id(self, token: str) -> int:
        if token in self.added:
            return self.added[token]
        return self.encoding.encode_single_token(bytes(self._to_byte[c] for c in token))

    def tokenize(self, text: str, add_special_tokens: bool = False) -> List[str]:
        allowed = self.added.keys() & self.special_ids.keys()
        return [self._token(i) for i in self.encoding.encode(text, allowed_special=allowed, disallowed_special=())]

    def convert_tokens_to_ids(self, tokens: Union[str, Iterable[str]]) -> Union[int, List[int]]:
        return self._id(tokens) if isinstance(tokens, str) else [self._id(t) for t in tokens]

    def convert_ids_to_tokens(self, ids: Union[int, Iterable[int]], skip_special_tokens: bool = False
                              ) -> Union[str, List[str]]:
        if isinstance(ids, int) or getattr(ids, "ndim", 1) == 0:
            return self._token(int(ids))
        skip = set(self.all_special_ids) if skip_special_tokens else set()
        return [self._token(int(i)) for i in ids if int(i) not in skip]

    def convert_tokens_to_string(self, tokens: Iterable[str]) -> str:
        pieces, buffer = [], bytearray()
        for token in tokens:
            if token in self.added:
                pieces.append(buffer.decode("utf-8", errors="replace") + token)
                buffer = bytearray()
            else:
                buffer.extend(self._to_byte[c] for c in token)
        return "".join(pieces) + buffer.decode("utf-8", errors="replace")


def _view(tokenizer: Any) -> HFTokenizerView:
    view = tokenizer.__dict__.get("_hf_view")
    if view is None:
        view = tokenizer.__dict__["_hf_view"] = HFTokenizerView(tokenizer.encoding)
    return view


def patch_tokenizer_module(module: Any) -> Any:
    """Give ``whisper.tokenizer.Tokenizer`` a ``tokenizer`` property (the view), unless it has one of its own."""
    if "tokenizer" not in module.Tokenizer.__dataclass_fields__ and not hasattr(module.Tokenizer, "tokenizer"):
        module.Tokenizer.tokenizer = property(_view)
    return module

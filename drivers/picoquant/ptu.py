"""The PicoQuant unified tag container of PTU files: header reader and writer for every tag type.

A PTU file is the magic `PQTTTR\\0\\0`, an 8-byte version string, then tags until `Header_End`,
then the 32-bit TTTR records. A tag is a 32-byte NUL-padded identifier, an int32 index (-1 for a
single value, 0.. for array elements), a uint32 type code and an 8-byte value; variable-length
types (strings, blobs, float arrays) store their byte length there and the data right after.
Every malformed header raises `FormatError` naming the byte offset.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import IntEnum
from typing import IO, Any, NamedTuple

from drivers.errors import FormatError

__all__ = [
    "PTU_MAGIC",
    "TagType",
    "Tag",
    "PtuHeader",
    "read_header",
    "parse_header",
    "encode_header",
    "tags_from_mapping",
]

PTU_MAGIC = b"PQTTTR\0\0"
_PREAMBLE = 16  # magic + version
_TAG_HEAD = struct.Struct("<32siI8s")
_DELPHI_EPOCH = datetime(1899, 12, 30)  # TDateTime counts days from here
_HEADER_END = "Header_End"


class TagType(IntEnum):
    """Type codes of PicoQuant unified tags."""

    EMPTY8 = 0xFFFF0008
    BOOL8 = 0x00000008
    INT8 = 0x10000008
    BITSET64 = 0x11000008
    COLOR8 = 0x12000008
    FLOAT8 = 0x20000008
    TDATETIME = 0x21000008
    FLOAT8_ARRAY = 0x2001FFFF
    ANSI_STRING = 0x4001FFFF
    WIDE_STRING = 0x4002FFFF
    BINARY_BLOB = 0xFFFFFFFF


_VARIABLE = {TagType.FLOAT8_ARRAY, TagType.ANSI_STRING, TagType.WIDE_STRING, TagType.BINARY_BLOB}


class Tag(NamedTuple):
    """One header tag; `offset` is where it starts in its file (-1 for tags not read from a file).

    `index` is PicoQuant's tag index (-1 for a single value); it shadows `tuple.index` on purpose.
    """

    ident: str
    index: int  # type: ignore[assignment]
    type: TagType
    value: Any
    offset: int = -1


@dataclass(frozen=True)
class PtuHeader:
    """The parsed header: version, tags in file order, and where the records start."""

    version: str
    tags: tuple[Tag, ...]
    data_offset: int

    def as_dict(self) -> dict[str, Any]:
        """Tags by identifier: a single value, or a list by index (gaps filled with None)."""
        out: dict[str, Any] = {}
        for tag in self.tags:
            if tag.index < 0:
                out[tag.ident] = tag.value
                continue
            values = out.get(tag.ident)
            if not isinstance(values, list):
                values = []
                out[tag.ident] = values
            while len(values) <= tag.index:
                values.append(None)
            values[tag.index] = tag.value
        return out

    def find(self, ident: str, index: int = -1) -> Tag | None:
        """The last tag with this identifier and index (later tags refine earlier ones), or None."""
        return self.lookup().get((ident, index))

    def lookup(self) -> dict[tuple[str, int], Tag]:
        """Tags by (identifier, index), the last one winning."""
        return {(t.ident, t.index): t for t in self.tags}


class _Reader:
    """Bounded reads from a binary file whose size is known, failing with the byte offset.

    The header is read in large pieces and parsed from memory: one system call for a typical file.
    """

    def __init__(self, fh: IO[bytes], size: int, start: int) -> None:
        self.fh = fh
        self.size = size
        self.base = start  # file offset of buf[0]
        self.buf = b""
        self.at = 0  # parse position in buf

    @property
    def pos(self) -> int:
        return self.base + self.at

    def read(self, n: int, what: str) -> bytes:
        end = self.at + n
        if n < 0 or self.base + end > self.size:
            raise FormatError(
                f"{what} at byte offset {self.pos} needs {n} bytes but the file ends at byte offset {self.size}"
            )
        if end > len(self.buf):
            want = min(max(end - len(self.buf), len(self.buf), 1 << 16), self.size - self.base - len(self.buf))
            more = self.fh.read(want)
            self.buf += more
            if end > len(self.buf):
                raise FormatError(
                    f"{what} at byte offset {self.pos}: file ended at byte offset {self.base + len(self.buf)}"
                )
        data = self.buf[self.at : end]
        self.at = end
        return data


_TYPES = {int(t): t for t in TagType}
_UNPACK_Q = struct.Struct("<q").unpack
_UNPACK_D = struct.Struct("<d").unpack
_INTEGER_TYPES = (TagType.INT8, TagType.BITSET64, TagType.COLOR8)


def _decode_value(reader: _Reader, ident: str, ttype: TagType, raw: bytes, offset: int) -> Any:
    if ttype in _INTEGER_TYPES:
        return _UNPACK_Q(raw)[0]
    if ttype == TagType.FLOAT8:
        return _UNPACK_D(raw)[0]
    if ttype == TagType.BOOL8:
        return _UNPACK_Q(raw)[0] != 0
    if ttype == TagType.EMPTY8:
        return None
    if ttype == TagType.TDATETIME:
        days = _UNPACK_D(raw)[0]
        try:
            return _DELPHI_EPOCH + timedelta(days=days)
        except (OverflowError, ValueError):
            raise FormatError(f"tag {ident!r} at byte offset {offset}: TDateTime {days!r} is not a date") from None
    size = _UNPACK_Q(raw)[0]
    if size < 0:
        raise FormatError(f"tag {ident!r} at byte offset {offset}: negative data length {size}")
    data = reader.read(size, f"data of tag {ident!r} (starting at byte offset {offset})")
    if ttype == TagType.ANSI_STRING:
        return data.split(b"\0", 1)[0].decode("windows-1252", errors="replace")
    if ttype == TagType.WIDE_STRING:
        text = data.decode("utf-16-le", errors="replace")
        return text.split("\0", 1)[0]
    if ttype == TagType.FLOAT8_ARRAY:
        if size % 8:
            raise FormatError(
                f"tag {ident!r} at byte offset {offset}: Float8Array length {size} is not a multiple of 8"
            )
        return struct.unpack(f"<{size // 8}d", data)
    return data  # BINARY_BLOB


def read_header(fh: IO[bytes], size: int, start: int = 0) -> PtuHeader:
    """Parse the header of a PTU file of `size` bytes whose first byte is at `start` in `fh`.

    Byte offsets in tags and errors count from the start of `fh`; `data_offset` from `start`.
    """
    reader = _Reader(fh, size, start)
    if size - start < _PREAMBLE:
        raise FormatError(
            f"truncated PTU file: {size - start} bytes, the preamble ends at byte offset {start + _PREAMBLE}"
        )
    magic = reader.read(8, "magic")
    if magic != PTU_MAGIC:
        raise FormatError(f"wrong magic {magic!r} at byte offset {start}; a PTU file starts with {PTU_MAGIC!r}")
    version = reader.read(8, "version").split(b"\0", 1)[0].decode("ascii", errors="replace")
    tags: list[Tag] = []
    unpack = _TAG_HEAD.unpack
    while True:
        offset = reader.pos
        ident_raw, index, code, raw = unpack(reader.read(_TAG_HEAD.size, "tag"))
        ident = ident_raw.split(b"\0", 1)[0].decode("ascii", errors="replace")
        ttype = _TYPES.get(code)
        if ttype is None:
            raise FormatError(f"tag {ident!r} at byte offset {offset} has unknown type code 0x{code:08X}")
        if ident == _HEADER_END:
            break
        value = _decode_value(reader, ident, ttype, raw, offset)
        tags.append(Tag(ident, index, ttype, value, offset))
    return PtuHeader(version, tuple(tags), reader.pos - start)


def parse_header(data: bytes) -> PtuHeader:
    """Parse a header held in memory (for tests and for headers received over a link)."""
    import io

    return read_header(io.BytesIO(data), len(data))


# --- writing --------------------------------------------------------------------------------------


def _pad8(data: bytes) -> bytes:
    return data + b"\0" * (-len(data) % 8)


def _encode_tag(tag: Tag) -> bytes:
    ident = tag.ident.encode("ascii")
    if not ident or len(ident) > 31:
        raise ValueError(f"tag identifier {tag.ident!r} must be 1..31 ASCII characters")
    if not -1 <= tag.index <= 0x7FFFFFFF:
        raise ValueError(f"tag {tag.ident!r}: index must be -1 or 0..2**31-1, got {tag.index}")
    ttype = TagType(tag.type)
    v = tag.value
    extra = b""
    if ttype == TagType.EMPTY8:
        raw = bytes(8)
    elif ttype == TagType.BOOL8:
        raw = struct.pack("<q", 1 if v else 0)
    elif ttype in (TagType.INT8, TagType.BITSET64, TagType.COLOR8):
        raw = struct.pack("<q", int(v))
    elif ttype == TagType.FLOAT8:
        raw = struct.pack("<d", float(v))
    elif ttype == TagType.TDATETIME:
        if not isinstance(v, datetime):
            raise ValueError(f"tag {tag.ident!r}: a TDateTime value must be a datetime, got {type(v).__name__}")
        raw = struct.pack("<d", (v.replace(tzinfo=None) - _DELPHI_EPOCH) / timedelta(days=1))
    else:
        if ttype == TagType.ANSI_STRING:
            extra = _pad8(str(v).encode("windows-1252") + b"\0")
        elif ttype == TagType.WIDE_STRING:
            extra = _pad8(str(v).encode("utf-16-le") + b"\0\0")
        elif ttype == TagType.FLOAT8_ARRAY:
            extra = struct.pack(f"<{len(v)}d", *v)
        else:
            extra = _pad8(bytes(v))
        raw = struct.pack("<q", len(extra))
    return _TAG_HEAD.pack(ident, tag.index, int(ttype), raw) + extra


def _infer_type(ident: str, value: Any) -> TagType:
    if value is None:
        return TagType.EMPTY8
    if isinstance(value, bool):
        return TagType.BOOL8
    if isinstance(value, int):
        return TagType.INT8
    if isinstance(value, float):
        return TagType.FLOAT8
    if isinstance(value, datetime):
        return TagType.TDATETIME
    if isinstance(value, str):
        try:
            value.encode("windows-1252")
            return TagType.ANSI_STRING
        except UnicodeEncodeError:
            return TagType.WIDE_STRING
    if isinstance(value, (bytes, bytearray)):
        return TagType.BINARY_BLOB
    if isinstance(value, tuple) and all(isinstance(x, float) for x in value):
        return TagType.FLOAT8_ARRAY
    raise ValueError(
        f"tag {ident!r}: cannot infer a PTU tag type for {type(value).__name__}; "
        "allowed: None, bool, int, float, datetime, str, bytes, tuple of floats, or a list of these"
    )


def tags_from_mapping(mapping: Mapping[str, Any]) -> list[Tag]:
    """Tags for a dict like `PtuHeader.as_dict()`: lists become indexed tags, types are inferred."""
    tags: list[Tag] = []
    for ident, value in mapping.items():
        if isinstance(value, list):
            tags.extend(Tag(ident, i, _infer_type(ident, v), v) for i, v in enumerate(value))
        else:
            tags.append(Tag(ident, -1, _infer_type(ident, value), value))
    return tags


def encode_header(tags: Iterable[Tag] | Mapping[str, Any], version: str = "1.0.00") -> bytes:
    """The bytes of a PTU header (magic, version, tags, `Header_End`); records follow directly."""
    if isinstance(tags, Mapping):
        tags = tags_from_mapping(tags)
    v = version.encode("ascii")
    if len(v) > 8:
        raise ValueError(f"version must be at most 8 ASCII characters, got {version!r}")
    parts = [PTU_MAGIC, v.ljust(8, b"\0")]
    parts.extend(_encode_tag(t) for t in tags if t.ident != _HEADER_END)
    parts.append(_encode_tag(Tag(_HEADER_END, -1, TagType.EMPTY8, None)))
    return b"".join(parts)

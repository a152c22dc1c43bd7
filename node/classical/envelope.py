"""The multipart message envelope of the classical channel (DESIGN §4), without its MAC.

On the wire a message is the ZeroMQ multipart sequence

    [protocol/version, type, JSON header, payload 0, ..., payload k-1, MAC]

- protocol/version: the ASCII bytes of `PROTOCOL` (``b"qkdnode/1"``);
- type: ASCII upper-case name, ``[A-Z][A-Z0-9_]{0,63}`` (e.g. ``KEY_BLOCK``);
- JSON header: a UTF-8 JSON object ``{"header": {...}, "frames": [descriptor, ...]}`` where the
  caller's header sits under ``"header"`` and each payload frame has a descriptor: ``null`` for raw
  bytes, or ``{"dtype": "<u8", "shape": [n]}`` for a numpy array (little-endian, C order); a reply
  also has ``"re"``: the seq of the message it answers;
- payloads: raw buffers;
- MAC: the sequence number and Wegman–Carter tag, written by `node.classical.link`.

This module builds and parses frames 0 .. k+2 and checks every one strictly: every decoding failure
is a `MessageFormatError` naming the frame and the rule it broke.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from node.classical.errors import MessageFormatError, VersionError

__all__ = [
    "PROTOCOL",
    "MAX_TYPE_LENGTH",
    "MAX_HEADER_BYTES",
    "MAX_PAYLOAD_FRAMES",
    "MAX_MESSAGE_BYTES",
    "ARRAY_DTYPES",
    "Message",
    "Payload",
    "check_type",
    "encode_body",
    "decode_body",
    "check_version",
    "as_buffer",
]

PROTOCOL = b"qkdnode/1"
"""Contents of the protocol/version frame: protocol name and major version."""

MAX_TYPE_LENGTH = 64
MAX_HEADER_BYTES = 64 * 1024
MAX_PAYLOAD_FRAMES = 64
MAX_MESSAGE_BYTES = 256 * 1024 * 1024
"""Default limit on the total size of all frames of one message (a 1e8-bit key block is 12.5 MB)."""

MAX_NDIM = 8

_TYPE_RE = re.compile(r"[A-Z][A-Z0-9_]{0,63}\Z")

ARRAY_DTYPES = frozenset(["|b1", "|u1", "|i1", "<u2", "<i2", "<u4", "<i4", "<u8", "<i8", "<f4", "<f8", "<c8", "<c16"])
"""Wire names of the numpy dtypes a payload array may have (little-endian numeric types only)."""

Payload = bytes | np.ndarray


@dataclass(slots=True)
class Message:
    """One classical message: its type, a JSON-able header, binary payload frames and sequence number.

    `seq` is assigned by the sending `SecureLink` (the value given to `seal` is ignored) and set on
    every message `open` returns. `re` is, on a reply, the seq of the message it answers (the peer's
    numbering). Received arrays are read-only views of the received buffers. `transcript`,
    `closing` and `verified` belong to transcript authentication (`node.classical.transcript`).
    """

    type: str
    header: dict[str, Any] = field(default_factory=dict)
    frames: list[Payload] = field(default_factory=list)
    seq: int | None = None
    re: int | None = None
    transcript: int | None = None
    """Block transcript this message belongs to (transcript-mode links); None: it carries its own tag."""
    closing: bool = False
    """On a transcript message: it closes the transcript with a tag over every message of it so far."""
    verified: bool = False
    """Set by `open`: True when a tag was checked (its own, or a closing tag over its transcript);
    False for a transcript member, which must not be trusted for anything irreversible until closed."""

    def raw(self, index: int) -> bytes:
        """Payload frame `index` as raw bytes; `MessageFormatError` if absent or an array."""
        frame = self._frame(index)
        if not isinstance(frame, bytes):
            raise MessageFormatError(f"{self.type}: payload frame {index} must be raw bytes, got an array")
        return frame

    def array(self, index: int) -> np.ndarray:
        """Payload frame `index` as a numpy array; `MessageFormatError` if absent or raw bytes."""
        frame = self._frame(index)
        if not isinstance(frame, np.ndarray):
            raise MessageFormatError(f"{self.type}: payload frame {index} must be an array, got raw bytes")
        return frame

    def _frame(self, index: int) -> Payload:
        if not 0 <= index < len(self.frames):
            raise MessageFormatError(f"{self.type}: needs payload frame {index}, got {len(self.frames)} frames")
        return self.frames[index]

    def __repr__(self) -> str:
        # payloads may be key material: show their shapes, never their contents
        parts = []
        for f in self.frames:
            if isinstance(f, np.ndarray):
                parts.append(f"ndarray[{f.dtype}, {f.shape}]")
            else:
                parts.append(f"bytes[{len(f)}]")
        keys = ", ".join(sorted(map(str, self.header)))
        re = "" if self.re is None else f", re={self.re}"
        return f"Message(type={self.type!r}, seq={self.seq}{re}, header keys=[{keys}], frames=[{', '.join(parts)}])"


def check_type(msg_type: object) -> str:
    """Validate a message type name (``[A-Z][A-Z0-9_]{0,63}``) and return it."""
    if not isinstance(msg_type, str) or not _TYPE_RE.match(msg_type):
        raise ValueError(
            f"message type must be an upper-case ASCII name matching [A-Z][A-Z0-9_]{{0,63}}, got {_short(msg_type)}"
        )
    return msg_type


def _wire_array(a: np.ndarray, index: int) -> tuple[dict[str, Any], memoryview]:
    """A payload array as its descriptor and a zero-copy little-endian byte view."""
    if a.dtype.kind not in "biufc" or a.dtype.fields is not None:
        raise ValueError(f"frames[{index}] must have a numeric dtype (one of {sorted(ARRAY_DTYPES)}), got {a.dtype}")
    le = a.dtype.newbyteorder("<")  # the wire is little-endian (DESIGN §4)
    shape = list(a.shape)  # before ascontiguousarray, which turns 0-d arrays into 1-d
    a = np.ascontiguousarray(a, dtype=le)
    name = a.dtype.str
    if name not in ARRAY_DTYPES:
        raise ValueError(f"frames[{index}] dtype must be one of {sorted(ARRAY_DTYPES)}, got {name}")
    if a.ndim > MAX_NDIM:
        raise ValueError(f"frames[{index}] must have at most {MAX_NDIM} dimensions, got {a.ndim}")
    return {"dtype": name, "shape": shape}, a.reshape(-1).view(np.uint8).data


def encode_body(message: Message) -> list[bytes | memoryview]:
    """Frames 0 .. k+2 of `message` (everything but the MAC frame); arrays are not copied."""
    if not isinstance(message, Message):
        raise ValueError(f"message must be a Message, got {type(message).__name__}")
    check_type(message.type)
    if not isinstance(message.header, dict):
        raise ValueError(f"message.header must be a dict, got {type(message.header).__name__}")
    if not isinstance(message.frames, (list, tuple)):
        raise ValueError(f"message.frames must be a list of bytes or numpy arrays, got {type(message.frames).__name__}")
    if len(message.frames) > MAX_PAYLOAD_FRAMES:
        raise ValueError(f"message.frames may hold at most {MAX_PAYLOAD_FRAMES} payloads, got {len(message.frames)}")
    if message.re is not None and (type(message.re) is not int or not 0 <= message.re < 1 << 64):
        raise ValueError(f"message.re must be None or a seq in [0, 2^64), got {message.re!r}")
    descriptors: list[dict[str, Any] | None] = []
    payloads: list[bytes | memoryview] = []
    for i, f in enumerate(message.frames):
        if isinstance(f, np.ndarray):
            desc, buf = _wire_array(f, i)
            descriptors.append(desc)
            payloads.append(buf)
        elif isinstance(f, (bytes, bytearray, memoryview)):
            descriptors.append(None)
            payloads.append(bytes(f) if not isinstance(f, bytes) else f)
        else:
            raise ValueError(f"frames[{i}] must be bytes or a numpy array, got {type(f).__name__}")
    doc: dict[str, Any] = {"header": message.header, "frames": descriptors}
    if message.re is not None:
        doc["re"] = message.re
    try:
        header = json.dumps(
            doc,
            separators=(",", ":"),
            allow_nan=False,
            ensure_ascii=False,
        ).encode("utf-8")
    except (TypeError, ValueError) as exc:
        raise ValueError(f"message.header must be JSON-serialisable with finite numbers and str keys: {exc}") from None
    if len(header) > MAX_HEADER_BYTES:
        raise ValueError(f"message.header encodes to {len(header)} bytes; at most {MAX_HEADER_BYTES} are allowed")
    return [PROTOCOL, message.type.encode("ascii"), header, *payloads]


def check_version(frame: Any) -> None:
    """Raise `VersionError` unless the protocol/version frame is exactly `PROTOCOL`."""
    if len(frame) != len(PROTOCOL) or bytes(frame) != PROTOCOL:
        shown = _short(bytes(memoryview(frame)[:32]))
        raise VersionError(f"frame 0 (protocol/version) must be {PROTOCOL!r}, got {shown}")


def as_buffer(frame: Any) -> Any:
    """The memory of a received frame (bytes, memoryview or `zmq.Frame`) without copying it."""
    if isinstance(frame, bytes):
        return frame
    if isinstance(frame, memoryview):
        return frame if frame.format == "B" and frame.ndim == 1 else frame.cast("B")
    buf = getattr(frame, "buffer", None)  # zmq.Frame
    if buf is not None:
        return buf
    if isinstance(frame, bytearray):
        return bytes(frame)
    raise MessageFormatError(f"frames must be bytes-like, got {type(frame).__name__}")


def _reject_constant(name: str) -> Any:
    raise MessageFormatError(f"frame 2 (JSON header) contains {name}; only finite numbers are allowed")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        raise MessageFormatError("frame 2 (JSON header) has an object with a duplicate key")
    return out


def _parse_header(frame: Any) -> tuple[dict[str, Any], list[Any], int | None]:
    if len(frame) > MAX_HEADER_BYTES:
        raise MessageFormatError(f"frame 2 (JSON header) is {len(frame)} bytes; at most {MAX_HEADER_BYTES} are allowed")
    try:
        text = bytes(frame).decode("utf-8")
        doc = json.loads(text, parse_constant=_reject_constant, object_pairs_hook=_unique_keys)
    except MessageFormatError:
        raise
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise MessageFormatError(f"frame 2 (JSON header) is not valid UTF-8 JSON: {type(exc).__name__}") from None
    if not isinstance(doc, dict) or not {"header", "frames"} <= set(doc) <= {"header", "frames", "re"}:
        raise MessageFormatError(
            'frame 2 (JSON header) must be an object with the keys "header" and "frames" (and "re" on a reply)'
        )
    header, descriptors, re = doc["header"], doc["frames"], doc.get("re")
    if re is not None and (type(re) is not int or not 0 <= re < 1 << 64):
        raise MessageFormatError('frame 2 (JSON header): "re" must be a seq in [0, 2^64)')
    if not isinstance(header, dict):
        raise MessageFormatError('frame 2 (JSON header): "header" must be an object')
    if not isinstance(descriptors, list):
        raise MessageFormatError('frame 2 (JSON header): "frames" must be a list of payload descriptors')
    return header, descriptors, re


def _decode_payload(desc: Any, frame: Any, index: int) -> Payload:
    where = f"payload frame {index} (frame {index + 3})"
    if desc is None:
        return bytes(frame)
    if not isinstance(desc, dict) or set(desc) != {"dtype", "shape"}:
        raise MessageFormatError(f'{where}: descriptor must be null or {{"dtype": ..., "shape": [...]}}')
    dtype, shape = desc["dtype"], desc["shape"]
    if not isinstance(dtype, str) or dtype not in ARRAY_DTYPES:
        raise MessageFormatError(f"{where}: dtype must be one of {sorted(ARRAY_DTYPES)}, got {_short(dtype)}")
    if not isinstance(shape, list) or len(shape) > MAX_NDIM or not all(type(d) is int and d >= 0 for d in shape):
        raise MessageFormatError(f"{where}: shape must be a list of at most {MAX_NDIM} non-negative integers")
    dt = np.dtype(dtype)
    size = math.prod(shape)
    if size * dt.itemsize != len(frame):
        raise MessageFormatError(
            f"{where}: {dtype} array of shape {tuple(shape)} needs {size * dt.itemsize} bytes, the frame has {len(frame)}"
        )
    arr = np.frombuffer(frame, dtype=dt, count=size).reshape(tuple(shape))
    if arr.flags.writeable:
        arr.flags.writeable = False
    return arr


def decode_body(frames: Sequence[Any]) -> Message:
    """Parse frames 0 .. k+2 (no MAC frame) into a `Message` (seq None); `MessageFormatError` if malformed."""
    frames = [as_buffer(f) for f in frames]
    if len(frames) < 3:
        raise MessageFormatError(
            f"a message needs at least the version, type and header frames, got {len(frames)} frames"
        )
    check_version(frames[0])
    raw_type = frames[1]
    if len(raw_type) > MAX_TYPE_LENGTH:
        raise MessageFormatError(f"frame 1 (type) is {len(raw_type)} bytes; at most {MAX_TYPE_LENGTH} are allowed")
    try:
        msg_type = check_type(bytes(raw_type).decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        raise MessageFormatError(
            f"frame 1 (type) must match [A-Z][A-Z0-9_]{{0,63}}, got {_short(bytes(raw_type))}"
        ) from None
    header, descriptors, re = _parse_header(frames[2])
    payload_frames = frames[3:]
    if len(descriptors) != len(payload_frames):
        raise MessageFormatError(
            f"frame 2 (JSON header) describes {len(descriptors)} payload frames but {len(payload_frames)} follow"
        )
    if len(payload_frames) > MAX_PAYLOAD_FRAMES:
        raise MessageFormatError(
            f"a message may carry at most {MAX_PAYLOAD_FRAMES} payload frames, got {len(payload_frames)}"
        )
    payloads = [_decode_payload(d, f, i) for i, (d, f) in enumerate(zip(descriptors, payload_frames))]
    return Message(msg_type, header, payloads, None, re)


def _short(value: object, limit: int = 40) -> str:
    """A bounded repr of untrusted input for error messages."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."

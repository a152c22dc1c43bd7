"""Wegman–Carter one-time MAC: a reusable universal hash whose output is masked by fresh key bits.

tag = (h_r(m) + s) mod 2^128, with h_r the Poly1305 polynomial hash over GF(2^130 - 5) keyed by the
128-bit hash key r (clamped to 106 free bits, RFC 8439 §2.5) and s a 128-bit one-time mask drawn
once from the authentication key pool and never reused.

Security (information-theoretic, no computational assumption): h_r is ε-almost-Δ-universal over
Z/2^128 with ε = 8·⌈L/16⌉ / 2^106 for messages of at most L bytes (Bernstein, "The Poly1305-AES
message-authentication code", FSE 2005, Thm 3.3). Because every tag is masked by an independent
uniform s, the tags an adversary sees are independent of r, so r may be reused for every message;
each forgery attempt then succeeds with probability at most ε, and D attempts with at most D·ε.
The computation is OpenSSL's Poly1305 (through `cryptography`), the same polynomial whatever the
source of s; `poly1305_python` is the slow reference it is tested against.
"""

from __future__ import annotations

import hmac
import math
import struct
from collections.abc import Iterable
from typing import Any

__all__ = [
    "TAG_BITS",
    "TAG_BYTES",
    "HASH_KEY_BYTES",
    "MASK_BYTES",
    "wc_tag",
    "tags_equal",
    "forgery_probability",
    "mac_input_bytes",
    "poly1305_python",
    "BACKEND",
]

TAG_BYTES = 16
TAG_BITS = 8 * TAG_BYTES
HASH_KEY_BYTES = 16
MASK_BYTES = 16

_P1305 = (1 << 130) - 5
_CLAMP = 0x0FFFFFFC0FFFFFFC0FFFFFFC0FFFFFFF

_Poly1305: Any = None
BACKEND = "python"
try:
    from cryptography.hazmat.primitives.poly1305 import Poly1305 as _OpenSSLPoly1305

    _OpenSSLPoly1305(bytes(32))  # raises UnsupportedAlgorithm where OpenSSL lacks Poly1305
    _Poly1305, BACKEND = _OpenSSLPoly1305, "openssl"
except Exception:  # noqa: BLE001, S110 - the pure-Python fallback stays  # pragma: no cover - depends on the OpenSSL build
    pass


def poly1305_python(key: bytes, data: bytes) -> bytes:
    """Poly1305 of `data` under the 32-byte `key` = r || s, written from RFC 8439 §2.5 (slow reference)."""
    if len(key) != 32:
        raise ValueError(f"key must be 32 bytes (r || s), got {len(key)}")
    r = int.from_bytes(key[:16], "little") & _CLAMP
    s = int.from_bytes(key[16:], "little")
    acc = 0
    for i in range(0, len(data), 16):
        block = data[i : i + 16] + b"\x01"
        acc = (acc + int.from_bytes(block, "little")) * r % _P1305
    return ((acc + s) & ((1 << 128) - 1)).to_bytes(16, "little")


def _frame_chunks(seq: int, frames: Iterable[Any]) -> list[Any]:
    """The MAC input: seq, frame count, then each frame as 8-byte length + bytes (unambiguous)."""
    frames = list(frames)
    chunks: list[Any] = [struct.pack("<QQ", seq, len(frames))]
    for f in frames:
        chunks.append(struct.pack("<Q", len(f)))
        chunks.append(f)
    return chunks


def mac_input_bytes(frames: Iterable[Any]) -> int:
    """Length L in bytes of the MAC input for these frames (what the forgery bound depends on)."""
    frames = list(frames)
    return 16 + sum(8 + len(f) for f in frames)


def wc_tag(hash_key: bytes, mask: bytes, seq: int, frames: Iterable[Any]) -> bytes:
    """The 128-bit Wegman–Carter tag of message number `seq` made of `frames` (bytes-like)."""
    if len(hash_key) != HASH_KEY_BYTES or len(mask) != MASK_BYTES:
        raise ValueError(f"hash_key and mask must be {HASH_KEY_BYTES} and {MASK_BYTES} bytes")
    if not isinstance(seq, int) or not 0 <= seq < 1 << 64:
        raise ValueError(f"seq must be an integer in [0, 2^64), got {seq!r}")
    chunks = _frame_chunks(seq, frames)
    if _Poly1305 is not None:
        p = _Poly1305(bytes(hash_key) + bytes(mask))
        for c in chunks:
            p.update(c)
        return p.finalize()
    return poly1305_python(bytes(hash_key) + bytes(mask), b"".join(bytes(c) for c in chunks))


def tags_equal(a: bytes, b: bytes) -> bool:
    """Constant-time comparison of two tags."""
    return hmac.compare_digest(a, b)


def forgery_probability(n_bytes: int) -> float:
    """Upper bound ε = 8·⌈L/16⌉/2^106 on one forgery attempt's success, for MAC inputs of L ≤ `n_bytes` bytes."""
    if not isinstance(n_bytes, int) or n_bytes < 0:
        raise ValueError(f"n_bytes must be a non-negative integer, got {n_bytes!r}")
    return 8 * max(1, math.ceil(n_bytes / 16)) / 2.0**106

"""Message types and header checks shared by Bob's reconciler and Alice's responder.

Bob -> Alice  ASK     {block, seq, [start: {n, seed}], [pass: {index, kind, size}]}
                      buffers: question pass (u1), block (u4), tree node (u4)
Bob -> Alice  DONE    {block, seq, leaked, aborted}                     (no reply)
Alice -> Bob  PARITY  {block, seq, [seed]}  buffers: answers, block parities of the new pass
                      (both packed little-endian bit order, np.packbits)
Alice -> Bob  ERROR   {block, seq, reason}
"""

from __future__ import annotations

from typing import Any

from postprocessing.errors import ProtocolError

ASK = "cascade.ask"
DONE = "cascade.done"
PARITY = "cascade.parity"
ERROR = "cascade.error"

MAX_PASSES = 64
MAX_BLOCK_ID = 2**63 - 1
MAX_N = 2**31 - 1


def header_int(header: dict[str, Any], key: str, lo: int, hi: int) -> int:
    """`header[key]` as an int in [lo, hi], else ProtocolError."""
    v = header.get(key)
    if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
        raise ProtocolError(f"cascade header field {key!r} must be an int in [{lo}, {hi}]")
    return v


def header_dict(header: dict[str, Any], key: str) -> dict[str, Any] | None:
    """`header[key]` if present (must be a JSON object)."""
    v = header.get(key)
    if v is None:
        return None
    if not isinstance(v, dict):
        raise ProtocolError(f"cascade header field {key!r} must be an object")
    return v


def header_seed(header: dict[str, Any], key: str, size: int) -> bytes:
    """A hex-encoded seed of `size` bytes."""
    v = header.get(key)
    try:
        raw = bytes.fromhex(v) if isinstance(v, str) else None
    except ValueError:
        raw = None
    if raw is None or len(raw) != size:
        raise ProtocolError(f"cascade header field {key!r} must be {size} hex-encoded bytes")
    return raw

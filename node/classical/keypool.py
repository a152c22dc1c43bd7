"""A one-directional pool of authentication key bits, consumed once and accounted for (DESIGN §5).

The pool is a stream: every bit ever added (the bootstrap secret, then refills from distilled key)
has a fixed position, counted from 0 at the first bit. Bits are handed out in order and never again;
the pool remembers how many were used for masks and how many were discarded unused (the masks of
messages that never arrived), so `used_bits + discarded_bits == consumed_bits` at all times.
Bit counts are multiples of 8: the pool works in whole bytes.
"""

from __future__ import annotations

import threading
from typing import Any

from node.classical.errors import AuthKeyExhausted

__all__ = ["AuthKeyPool"]

_COMPACT_BYTES = 1 << 20


class AuthKeyPool:
    """One direction's stream of secret authentication bits (bootstrap secret, then refills).

    `state()` returns everything needed to rebuild the pool with `AuthKeyPool.from_state`; it holds
    the unconsumed key material, so the caller must store it as secretly as the keys themselves.
    """

    def __init__(self, key_material: bytes = b"", *, position_bits: int = 0) -> None:
        """`key_material`: the secret bytes; `position_bits`: the stream position of its first bit."""
        if not isinstance(key_material, (bytes, bytearray, memoryview)):
            raise ValueError(f"key_material must be bytes, got {type(key_material).__name__}")
        if not isinstance(position_bits, int) or position_bits < 0 or position_bits % 8:
            raise ValueError(f"position_bits must be a non-negative multiple of 8, got {position_bits!r}")
        self._lock = threading.Lock()
        self._buf = bytearray(key_material)
        self._head = 0  # index in _buf of the next unconsumed byte
        self._base = position_bits // 8  # stream byte position of _buf[0]
        self._used = 0
        self._discarded = 0
        self._added = len(self._buf) * 8

    # -- accounting -----------------------------------------------------------------------------

    @property
    def position_bits(self) -> int:
        """Stream position of the next unconsumed bit."""
        return (self._base + self._head) * 8

    @property
    def end_bits(self) -> int:
        """Stream position one past the last bit the pool holds."""
        return (self._base + len(self._buf)) * 8

    @property
    def available_bits(self) -> int:
        """Bits held and not yet consumed."""
        return (len(self._buf) - self._head) * 8

    @property
    def consumed_bits(self) -> int:
        """Bits consumed by this pool object (used + discarded); never handed out again."""
        return self._used + self._discarded

    @property
    def used_bits(self) -> int:
        """Bits handed out by `take` (masks and keys actually used)."""
        return self._used

    @property
    def discarded_bits(self) -> int:
        """Bits skipped by `discard_to` without being used (masks of lost or skipped messages)."""
        return self._discarded

    @property
    def added_bits(self) -> int:
        """Bits put into this pool object (initial material plus refills)."""
        return self._added

    # -- operations -----------------------------------------------------------------------------

    def take(self, nbits: int) -> bytes:
        """Consume and return the next `nbits` bits; `AuthKeyExhausted` (and nothing consumed) if too few."""
        n = _nbytes(nbits)
        with self._lock:
            have = len(self._buf) - self._head
            if n > have:
                raise AuthKeyExhausted(
                    f"authentication key pool holds {have * 8} unconsumed bits, {nbits} are needed; refill it"
                )
            out = bytes(self._buf[self._head : self._head + n])
            self._head += n
            self._used += n * 8
            self._compact()
        return out

    def peek(self, position_bits: int, nbits: int) -> bytes:
        """The `nbits` bits at stream position `position_bits` (not before `position_bits`), not consumed."""
        n = _nbytes(nbits)
        if not isinstance(position_bits, int) or position_bits % 8:
            raise ValueError(f"position_bits must be a multiple of 8, got {position_bits!r}")
        with self._lock:
            start = position_bits // 8 - self._base
            if start < self._head:
                raise AuthKeyExhausted(
                    f"bits at stream position {position_bits} were already consumed (pool is at {self.position_bits})"
                )
            if start + n > len(self._buf):
                raise AuthKeyExhausted(
                    f"authentication key pool ends at stream position {self.end_bits}; "
                    f"bits up to {position_bits + n * 8} are needed; refill it"
                )
            return bytes(self._buf[start : start + n])

    def discard_to(self, position_bits: int) -> None:
        """Consume, unused, every bit before stream position `position_bits` (counted as discarded)."""
        if not isinstance(position_bits, int) or position_bits % 8:
            raise ValueError(f"position_bits must be a multiple of 8, got {position_bits!r}")
        with self._lock:
            target = position_bits // 8 - self._base
            if target < self._head:
                raise ValueError(f"position_bits {position_bits} is behind the pool position {self.position_bits}")
            if target > len(self._buf):
                raise AuthKeyExhausted(
                    f"authentication key pool ends at stream position {self.end_bits}, cannot advance to {position_bits}"
                )
            self._discarded += (target - self._head) * 8
            self._head = target
            self._compact()

    def refill(self, material: bytes) -> None:
        """Append secret bits (e.g. reserved from a distilled key block) at the end of the stream."""
        if not isinstance(material, (bytes, bytearray, memoryview)):
            raise ValueError(f"material must be bytes, got {type(material).__name__}")
        with self._lock:
            self._buf += material
            self._added += len(material) * 8

    def _compact(self) -> None:
        if self._head >= _COMPACT_BYTES and self._head * 2 >= len(self._buf):
            # overwrite consumed material before dropping it
            self._buf[: self._head] = bytes(self._head)
            del self._buf[: self._head]
            self._base += self._head
            self._head = 0

    # -- persistence ----------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        """Position and unconsumed material, for the caller to persist (secret: holds key bits)."""
        with self._lock:
            return {
                "position_bits": (self._base + self._head) * 8,
                "material": bytes(self._buf[self._head :]),
                "used_bits": self._used,
                "discarded_bits": self._discarded,
                "added_bits": self._added,
            }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> AuthKeyPool:
        """Rebuild a pool from `state()`."""
        try:
            pool = cls(state["material"], position_bits=state["position_bits"])
            used, discarded, added = int(state["used_bits"]), int(state["discarded_bits"]), int(state["added_bits"])
        except (KeyError, TypeError) as exc:
            raise ValueError(f"state must be a dict from AuthKeyPool.state(), missing or bad {exc}") from None
        if min(used, discarded, added) < 0 or added - used - discarded != pool.available_bits:
            raise ValueError(
                "state counters are inconsistent: added_bits - used_bits - discarded_bits != len(material) * 8"
            )
        pool._used, pool._discarded, pool._added = used, discarded, added
        return pool

    def __repr__(self) -> str:
        return (
            f"AuthKeyPool(position_bits={self.position_bits}, available_bits={self.available_bits}, "
            f"used_bits={self._used}, discarded_bits={self._discarded})"
        )


def _nbytes(nbits: object) -> int:
    if not isinstance(nbits, int) or nbits < 0 or nbits % 8:
        raise ValueError(f"nbits must be a non-negative multiple of 8, got {nbits!r}")
    return nbits // 8

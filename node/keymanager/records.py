"""The key store's records: blocks as they arrive, where a key's bits lie, and the allocations the
owner KM of a chunk tells its peer (key IDs and positions, never bits)."""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass, field
from typing import Any

AUTH_SAE = "@auth"  # the "master SAE" of bits drawn to authenticate the KM link (no SAE can fetch them)


@dataclass(frozen=True)
class KeyBlock:
    """One distilled block as the local QKD module delivered it (DESIGN §4 `KEY_BLOCK`)."""

    link_id: str
    block_id: int
    pool: str
    length_bits: int
    key: bytes = field(repr=False)
    qber: float | None = None
    params: dict = field(default_factory=dict)


@dataclass(frozen=True)
class KeyPosition:
    """Where a key's bits lie: a byte range of one chunk of one block."""

    link_id: str
    block_id: int
    idx: int
    offset: int
    nbytes: int


@dataclass(frozen=True)
class Allocation:
    """A key ID bound to bits: what the owner KM tells its peer (never the bits themselves)."""

    key_id: str
    master_sae: str
    slaves: tuple[str, ...]
    position: KeyPosition

    def to_json(self) -> dict:
        """The wire form of the allocation (key IDs and positions only)."""
        p = self.position
        return {
            "key_ID": self.key_id,
            "master": self.master_sae,
            "slaves": list(self.slaves),
            "link": p.link_id,
            "block": p.block_id,
            "chunk": p.idx,
            "offset": p.offset,
            "nbytes": p.nbytes,
        }

    @classmethod
    def from_json(cls, obj: object) -> Allocation:
        """Parse the wire form, raising `ValueError` on anything malformed."""
        if not isinstance(obj, dict):
            raise ValueError("allocation must be a JSON object")
        try:
            key_id = str(uuid.UUID(_typed(obj, "key_ID", str)))
            slaves = _typed(obj, "slaves", list)
            if not slaves or not all(isinstance(s, str) and s for s in slaves):
                raise ValueError("allocation field 'slaves' must be a non-empty list of SAE IDs")
            pos = KeyPosition(
                _typed(obj, "link", str),
                _typed(obj, "block", int),
                _typed(obj, "chunk", int),
                _typed(obj, "offset", int),
                _typed(obj, "nbytes", int),
            )
        except KeyError as exc:
            raise ValueError(f"allocation lacks field {exc}") from None
        if pos.offset < 0 or pos.nbytes <= 0 or pos.idx < 0:
            raise ValueError("allocation offset/nbytes/chunk out of range")
        return cls(key_id, _typed(obj, "master", str), tuple(slaves), pos)


def _typed(obj: dict, name: str, kind: type) -> Any:
    value = obj[name]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ValueError(f"allocation field {name!r} must be of type {kind.__name__}")
    return value


@dataclass
class Reserved:
    """Keys reserved for a master SAE: the allocations, the key bytes (memory only) and retired chunks."""

    allocations: list[Allocation]
    material: list[bytes] = field(repr=False)
    retired: list[tuple[str, int, int]]


def chunk_owner(block_id: int, idx: int) -> int:
    """Which KM of the pair (0: the KME ID that sorts first) may allocate from this chunk."""
    return (block_id + idx) & 1


def new_key_id() -> str:
    """A fresh random key ID (UUID version 4 from `os.urandom`)."""
    return str(uuid.UUID(bytes=os.urandom(16), version=4))

"""Key blocks: sifted batches accumulated until a block holds enough key-basis bits (DESIGN §2).

A block is made of whole sift batches, so its decoy statistics (detections and errors per basis
and intensity) are exactly those of the rounds whose key bits it holds; it closes at the first
batch boundary where it has at least `target_bits` key bits. Alice and Bob see the same batches
with the same key lengths, so their blocks close at the same batch.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from postprocessing.sifting import SiftCounts, SiftedKey


@dataclass(frozen=True)
class KeyBlock:
    """One side's key block: sifted key bits (one uint8 per bit), their counts, the batches it spans."""

    block_id: int
    bits: NDArray[np.uint8]
    classes: NDArray[np.uint8]
    counts: SiftCounts
    first_batch: int
    last_batch: int

    @property
    def n_bits(self) -> int:
        """Number of key bits in the block."""
        return int(self.bits.size)

    def __repr__(self) -> str:  # never show key bits
        return (
            f"KeyBlock(block_id={self.block_id}, <{self.n_bits} bits>, batches {self.first_batch}..{self.last_batch})"
        )


@dataclass
class KeyBlockAccumulator:
    """Collects `SiftedKey` batches and hands out a `KeyBlock` once `target_bits` key bits are in."""

    target_bits: int
    n_intensities: int
    next_block_id: int = 0
    _parts: list[NDArray[np.uint8]] = field(default_factory=list)
    _classes: list[NDArray[np.uint8]] = field(default_factory=list)
    _counts: SiftCounts | None = None
    _bits: int = 0
    _first_batch: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.target_bits, int) or self.target_bits < 64:
            raise ValueError(f"target_bits must be an integer >= 64, got {self.target_bits!r}")

    @property
    def pending_bits(self) -> int:
        """Key bits collected towards the next block."""
        return self._bits

    def add(self, batch_id: int, sifted: SiftedKey) -> KeyBlock | None:
        """Add one batch's sifted key; returns the completed block when this batch fills it."""
        if sifted.counts.n_intensities != self.n_intensities:
            raise ValueError(
                f"batch has {sifted.counts.n_intensities} intensity classes, the link has {self.n_intensities}"
            )
        if self._first_batch is None:
            self._first_batch = batch_id
            self._counts = SiftCounts.zeros(self.n_intensities)
        self._parts.append(sifted.bits)
        self._classes.append(sifted.intensity)
        self._bits += int(sifted.bits.size)
        assert self._counts is not None
        self._counts = self._counts + sifted.counts
        if self._bits < self.target_bits:
            return None
        block = KeyBlock(
            self.next_block_id,
            np.concatenate(self._parts),
            np.concatenate(self._classes),
            self._counts,
            self._first_batch,
            batch_id,
        )
        self.next_block_id += 1
        self.discard()
        return block

    def discard(self) -> None:
        """Forget the partial block (after an abort, or when the peers lost step)."""
        self._parts = []
        self._classes = []
        self._bits = 0
        self._counts = None
        self._first_batch = None

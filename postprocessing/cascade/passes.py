"""Materialising a pass on one side: its tables row, its shuffled copy of the key or its subset mask.

Both roles keep the same layout (see `kernels`): `rows[0]` the frame in frame order as packed bits,
one more packed row per shuffled BLOCK pass (in pass order), one packed subset-mask row per HALF/BICONF pass. Arrays grow by doubling.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from drivers.jit import kernel
from postprocessing.bits import pack_bits, unpack_bits
from postprocessing.cascade import kernels, shuffle
from postprocessing.cascade.scratch import POOL, tree_state
from postprocessing.cascade.variants import BLOCK

__all__ = ["PassTables", "tree_state"]


@kernel
def _gather_packed(
    src: NDArray[np.uint64], perm: NDArray[np.int32], out: NDArray[np.uint64], pos: NDArray[np.int32]
) -> None:
    """out bit q = src bit perm[q] (packed bits, DESIGN §3); where `pos` is not empty, also the inverse
    permutation pos[perm[q]] = q in the same sweep over `perm`."""
    n = perm.size
    inverse = pos.size > 0
    acc = np.uint64(0)
    for q in range(n):
        p = perm[q]
        if inverse:
            pos[p] = q
        acc |= ((src[p >> 6] >> np.uint64(p & 63)) & np.uint64(1)) << np.uint64(q & 63)
        if (q & 63) == 63:
            out[q >> 6] = acc
            acc = np.uint64(0)
    if n & 63:
        out[n >> 6] = acc


_NO_POSITIONS = np.zeros(0, dtype=np.int32)
_I64 = NDArray[np.int64]
TreeLayout = tuple[_I64, _I64, _I64, _I64, _I64, _I64, _I64]  # kind, ksz, nb, stride, base, rowi, mrow per pass


class PassTables:
    """The started passes of one block on one side, laid out for the kernels. Its big arrays come
    from `scratch.POOL`; `release()` returns them when the block ends."""

    def __init__(
        self,
        bits: NDArray[np.uint8],
        max_passes: int,
        keep_inverse: bool,
        mask_capacity: int = 4,
        row_capacity: int = 2,
        range_tables: bool = False,
    ) -> None:
        n = bits.size
        self.n = n
        self.max_passes = max_passes
        self.keep_inverse = keep_inverse
        self.mask_capacity = max(1, mask_capacity)
        self.kind = np.zeros(max_passes, dtype=np.int64)
        self.ksz = np.zeros(max_passes, dtype=np.int64)
        self.nb = np.zeros(max_passes, dtype=np.int64)
        self.stride = np.zeros(max_passes, dtype=np.int64)
        self.base = np.zeros(max_passes + 1, dtype=np.int64)
        self.rowi = np.zeros(max_passes, dtype=np.int64)
        self.mrow = np.full(max_passes, -1, dtype=np.int64)
        self.prow = np.full(max_passes, -1, dtype=np.int64)
        self.started = 0
        words = pack_bits(bits)
        self.rows = POOL.take((max(1, row_capacity), words.size), np.uint64)
        self.rows[0] = words
        self.n_rows = 1
        self.masks = np.zeros((1, 1), dtype=np.uint64)
        self.n_masks = 0
        self.perms = np.zeros((1, 1), dtype=np.int32)
        self.poss = np.zeros((1, 1), dtype=np.int32)
        self.n_perms = 0
        # node-range tables of small-tree BLOCK passes (kernels.range_table), where `range_tables`
        self.range_tables = range_tables
        self.trow = np.full(max_passes, -1, dtype=np.int64)
        self.ranges = np.zeros((1, 2, 1), dtype=np.int32)
        self.n_ranges = 0

    @property
    def layout(self) -> TreeLayout:
        """The per-pass tree layout the kernels take first: kind, ksz, nb, stride, base, rowi, mrow."""
        return (self.kind, self.ksz, self.nb, self.stride, self.base, self.rowi, self.mrow)

    def plan(self, j: int, kind: int, size: int) -> None:
        """Record pass `j`'s kind and block size (tree layout only; nothing is computed)."""
        n = self.n
        if kind == BLOCK:
            nb = -(-n // size)
            stride = int(kernels.tree_stride(min(size, n)))
        else:
            nb = 2 if kind == kernels.HALF else 1
            stride = int(kernels.tree_stride(n))
        self.kind[j] = kind
        self.ksz[j] = size
        self.nb[j] = nb
        self.stride[j] = stride
        self.base[j + 1] = self.base[j] + nb * stride
        if self.range_tables and kind == BLOCK and stride <= kernels.RANGE_TABLE_SLOTS:
            self.trow[j] = self._add_ranges(_range_table(min(size, n), stride))

    def start(self, j: int, seed: bytes | None, shuffle_block: bool) -> None:
        """Build pass `j`'s shuffled copy or subset mask from the shared seed."""
        n = self.n
        kind = int(self.kind[j])
        if kind == BLOCK:
            if shuffle_block:
                assert seed is not None
                r = self._add_row()
                self.rowi[j] = r
                if self.keep_inverse:
                    p = self._add_perm()
                    shuffle.permutation(n, shuffle.pass_seed(seed, j), out=self.perms[p])
                    _gather_packed(self.rows[0], self.perms[p], self.rows[r], self.poss[p])
                    self.prow[j] = p
                else:
                    perm = POOL.take((n,), np.int32)
                    shuffle.permutation(n, shuffle.pass_seed(seed, j), out=perm)
                    _gather_packed(self.rows[0], perm, self.rows[r], _NO_POSITIONS)
                    POOL.give(perm)
            else:
                self.rowi[j] = 0
        else:
            assert seed is not None
            m = self._add_mask()
            shuffle.subset_words(n, shuffle.pass_seed(seed, j), out=self.masks[m])
            self.mrow[j] = m
            self.rowi[j] = 0
        self.started = j + 1

    def bits(self) -> NDArray[np.uint8]:
        """The frame (row 0) as one uint8 per bit."""
        return unpack_bits(self.rows[0], self.n)

    def release(self) -> None:
        """Give the big arrays back to the pool (the tables are unusable afterwards)."""
        for name in ("rows", "masks", "perms", "poss"):
            a = getattr(self, name)
            if a.size > 1:
                POOL.give(a)
            setattr(self, name, np.zeros((1, 1), dtype=a.dtype))
        self.started = 0

    def _add_row(self) -> int:
        if self.n_rows == self.rows.shape[0]:
            self.rows = _grown(self.rows, self.n_rows)
        self.n_rows += 1
        return self.n_rows - 1

    def _add_mask(self) -> int:
        if self.n_masks == 0 and self.masks.shape[1] != self.rows.shape[1]:
            self.masks = POOL.take((self.mask_capacity, self.rows.shape[1]), np.uint64)
        elif self.n_masks == self.masks.shape[0]:
            self.masks = _grown(self.masks, self.n_masks)
        self.n_masks += 1
        return self.n_masks - 1

    def _add_ranges(self, table: NDArray[np.int32]) -> int:
        if self.n_ranges == self.ranges.shape[0] or self.ranges.shape[2] != table.shape[1]:
            grown = np.zeros((2 * self.n_ranges or 2, 2, table.shape[1]), dtype=np.int32)
            grown[: self.n_ranges] = self.ranges[: self.n_ranges]
            self.ranges = grown
        self.ranges[self.n_ranges] = table
        self.n_ranges += 1
        return self.n_ranges - 1

    def _add_perm(self) -> int:
        if self.n_perms == 0 and self.perms.shape[1] != self.n:
            self.perms = POOL.take((2, self.n), np.int32)
            self.poss = POOL.take((2, self.n), np.int32)
        elif self.n_perms == self.perms.shape[0]:
            self.perms = _grown(self.perms, self.n_perms)
            self.poss = _grown(self.poss, self.n_perms)
        self.n_perms += 1
        return self.n_perms - 1


_RANGE_TABLES: dict[tuple[int, int], NDArray[np.int32]] = {}


def _range_table(length: int, slots: int) -> NDArray[np.int32]:
    """kernels.range_table(length, slots), kept: every block of a frame length meets the same few sizes."""
    key = (length, slots)
    table = _RANGE_TABLES.get(key)
    if table is None:
        if len(_RANGE_TABLES) >= 256:
            _RANGE_TABLES.clear()
        table = _RANGE_TABLES[key] = kernels.range_table(length, slots)
    return table


def _grown(a: np.ndarray, used: int) -> np.ndarray:
    b = POOL.take((2 * a.shape[0], a.shape[1]), a.dtype)
    b[:used] = a[:used]
    POOL.give(a)
    return b

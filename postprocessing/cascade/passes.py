"""Materialising a pass on one side: its tables row, its shuffled copy of the key or its subset mask.

Both roles keep the same layout (see `kernels`): `rows[0]` the frame in frame order as packed bits,
one more packed row per shuffled BLOCK pass (in pass order), one packed subset-mask row per HALF/BICONF pass. Arrays grow by doubling.
"""

from __future__ import annotations

import mmap

import numpy as np
from numpy.typing import NDArray

from drivers.jit import kernel
from postprocessing.bits import pack_bits, unpack_bits
from postprocessing.cascade import kernels, shuffle
from postprocessing.cascade.variants import BLOCK

__all__ = ["PassTables", "tree_state"]


@kernel
def _gather_packed(src: NDArray[np.uint64], perm: NDArray[np.int32], out: NDArray[np.uint64]) -> None:
    """out bit q = src bit perm[q] (packed bits, DESIGN §3)."""
    n = perm.size
    acc = np.uint64(0)
    for q in range(n):
        p = perm[q]
        acc |= ((src[p >> 6] >> np.uint64(p & 63)) & np.uint64(1)) << np.uint64(q & 63)
        if (q & 63) == 63:
            out[q >> 6] = acc
            acc = np.uint64(0)
    if n & 63:
        out[n >> 6] = acc


def tree_state(size: int) -> NDArray[np.int8]:
    """Zeroed int8 parity-tree state of `size` slots, backed by an anonymous mapping paged in 4 KiB at a
    time. The trees of half-frame passes span megabytes of which a search touches a few pages; numpy
    would advise huge pages for so large an array, and the kernel would then clear (and, when memory
    is fragmented, compact) 2 MiB for every tree a search enters: up to 15 ms per pass measured."""
    if size <= 0:
        return np.zeros(0, dtype=np.int8)
    return np.frombuffer(mmap.mmap(-1, size), dtype=np.int8)


class PassTables:
    """The started passes of one block on one side, laid out for the kernels."""

    def __init__(self, bits: NDArray[np.uint8], max_passes: int, keep_inverse: bool, mask_capacity: int = 4) -> None:
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
        self.rows = np.empty((1, words.size), dtype=np.uint64)
        self.rows[0] = words
        self.n_rows = 1
        self.masks = np.zeros((1, 1), dtype=np.uint64)
        self.n_masks = 0
        self.perms = np.zeros((1, 1), dtype=np.int32)
        self.poss = np.zeros((1, 1), dtype=np.int32)
        self.n_perms = 0

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

    def start(self, j: int, seed: bytes | None, shuffle_block: bool) -> None:
        """Build pass `j`'s shuffled copy or subset mask from the shared seed."""
        n = self.n
        kind = int(self.kind[j])
        if kind == BLOCK:
            if shuffle_block:
                assert seed is not None
                perm = shuffle.permutation(n, shuffle.pass_seed(seed, j))
                r = self._add_row()
                _gather_packed(self.rows[0], perm, self.rows[r])
                self.rowi[j] = r
                if self.keep_inverse:
                    p = self._add_perm()
                    self.perms[p] = perm
                    self.poss[p] = shuffle.inverse(perm)
                    self.prow[j] = p
            else:
                self.rowi[j] = 0
        else:
            assert seed is not None
            m = self._add_mask()
            self.masks[m] = shuffle.subset_words(n, shuffle.pass_seed(seed, j))
            self.mrow[j] = m
            self.rowi[j] = 0
        self.started = j + 1

    def bits(self) -> NDArray[np.uint8]:
        """The frame (row 0) as one uint8 per bit."""
        return unpack_bits(self.rows[0], self.n)

    def _add_row(self) -> int:
        if self.n_rows == self.rows.shape[0]:
            self.rows = _grown(self.rows, self.n_rows)
        self.n_rows += 1
        return self.n_rows - 1

    def _add_mask(self) -> int:
        if self.n_masks == 0 and self.masks.shape[1] != self.rows.shape[1]:
            self.masks = np.empty((self.mask_capacity, self.rows.shape[1]), dtype=np.uint64)
        elif self.n_masks == self.masks.shape[0]:
            self.masks = _grown(self.masks, self.n_masks)
        self.n_masks += 1
        return self.n_masks - 1

    def _add_perm(self) -> int:
        if self.n_perms == 0 and self.perms.shape[1] != self.n:
            self.perms = np.empty((2, self.n), dtype=np.int32)
            self.poss = np.empty((2, self.n), dtype=np.int32)
        elif self.n_perms == self.perms.shape[0]:
            self.perms = _grown(self.perms, self.n_perms)
            self.poss = _grown(self.poss, self.n_perms)
        self.n_perms += 1
        return self.n_perms - 1


def _grown(a: np.ndarray, used: int) -> np.ndarray:
    b = np.empty((2 * a.shape[0], a.shape[1]), dtype=a.dtype)
    b[:used] = a[:used]
    return b

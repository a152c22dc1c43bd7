"""Big per-block arrays reused across blocks: shuffled copies, permutations, subset masks, tree states.

Why: a page the process touches for the first time costs a fault and a clear of 4 KiB, 10-14 µs each
on the microVMs measured (a fresh 4 MB array: ~10 ms to fill, 0.3 ms once warm); a 1e6-bit block
touched ~7000 fresh pages, half of its Cascade time. Arrays go back to the pool when their block ends.
Tree states come back zeroed (the kernels clear what they wrote, `kernels.clear_trees`). The pool
keeps at most `max_free_bytes` of free arrays (oldest dropped first), so memory stays bounded by
what the blocks in flight use plus that cap. Thread-safe: the node may reconcile from several threads.
"""

from __future__ import annotations

import mmap
import threading
from collections import OrderedDict

import numpy as np
from numpy.typing import DTypeLike, NDArray

__all__ = ["POOL", "ArrayPool", "tree_state"]

_PAGE = 4096


def tree_state(size: int) -> NDArray[np.int8]:
    """Zeroed int8 parity-tree state of `size` slots, backed by an anonymous mapping paged in 4 KiB at a
    time. The trees of half-frame passes span megabytes of which a search touches a few pages; numpy
    would advise huge pages for so large an array, and the kernel would then clear (and, when memory
    is fragmented, compact) 2 MiB for every tree a search enters: up to 15 ms per pass measured."""
    if size <= 0:
        return np.zeros(0, dtype=np.int8)
    return np.frombuffer(mmap.mmap(-1, size), dtype=np.int8)


class ArrayPool:
    """Free arrays by (shape, dtype), handed out with undefined contents (`take`) or, for tree states,
    zeroed (`take_state`); `give` / `give_state` return them."""

    def __init__(self, max_free_bytes: int = 64 << 20) -> None:
        self.max_free_bytes = max_free_bytes
        self._lock = threading.Lock()
        # key -> list of (array, bytes charged); an OrderedDict of ids keeps the eviction order
        self._free: dict[tuple[object, ...], list[tuple[np.ndarray, int]]] = {}
        self._order: OrderedDict[int, tuple[tuple[object, ...], np.ndarray]] = OrderedDict()
        self.free_bytes = 0

    def take(self, shape: tuple[int, ...], dtype: DTypeLike) -> np.ndarray:
        """An array of `shape` and `dtype` whose contents are undefined."""
        dt = np.dtype(dtype)
        got = self._pop(("a", tuple(shape), dt.str))
        return got if got is not None else np.empty(shape, dtype=dt)

    def give(self, a: np.ndarray) -> None:
        """Return an array from `take` (the caller no longer uses it)."""
        self._push(("a", a.shape, a.dtype.str), a, a.nbytes)

    def take_state(self, size: int) -> tuple[NDArray[np.int8], int]:
        """A zeroed int8 tree state of `size` slots (see `tree_state`) and the bytes of it already paged
        in by earlier blocks (an estimate, carried on to `give_state`)."""
        with self._lock:
            lst = self._free.get(("s", size))
            if lst:
                a, charge = lst.pop()
                self._order.pop(id(a), None)
                self.free_bytes -= charge
                return a, charge
        return tree_state(size), 0

    def give_state(self, state: NDArray[np.int8], resident_bytes: int) -> None:
        """Return a tree state that the caller has cleared back to zeros; `resident_bytes` estimates the
        pages it holds (a state whose half-frame trees were entered on many pages is dropped rather
        than kept: its mapping would hold them all)."""
        if state.size == 0 or resident_bytes > self.max_free_bytes // 4:
            return
        self._push(("s", state.size), state, resident_bytes)

    def clear(self) -> None:
        """Drop every free array."""
        with self._lock:
            self._free.clear()
            self._order.clear()
            self.free_bytes = 0

    def _pop(self, key: tuple[object, ...]) -> np.ndarray | None:
        with self._lock:
            lst = self._free.get(key)
            if not lst:
                return None
            a, charge = lst.pop()
            self._order.pop(id(a), None)
            self.free_bytes -= charge
            return a

    def _push(self, key: tuple[object, ...], a: np.ndarray, charge: int) -> None:
        with self._lock:
            if charge > self.max_free_bytes:
                return
            self._free.setdefault(key, []).append((a, charge))
            self._order[id(a)] = (key, a)
            self.free_bytes += charge
            while self.free_bytes > self.max_free_bytes:
                _, (okey, old) = self._order.popitem(last=False)
                lst = self._free[okey]
                for i, (b, c) in enumerate(lst):
                    if b is old:
                        del lst[i]
                        self.free_bytes -= c
                        break


POOL = ArrayPool()

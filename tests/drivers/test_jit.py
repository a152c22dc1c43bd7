"""The project's numba decorator: its flags, inlining and the runtime-free variant."""

from __future__ import annotations

import numpy as np
import pytest
from numba.core.errors import TypingError

from drivers.jit import KERNEL_FLAGS, kernel


def test_kernels_release_the_gil_and_cache() -> None:
    assert KERNEL_FLAGS["nogil"] and KERNEL_FLAGS["cache"]


def test_a_kernel_without_refcounts_takes_arrays_from_python_and_from_a_kernel() -> None:
    @kernel(refcounts=False)
    def prefix_sums(a: np.ndarray, out: np.ndarray) -> int:
        s = 0
        for i in range(a.size):
            s += a[i]
            out[i] = s
        return s

    @kernel
    def caller(n: int) -> tuple[int, np.ndarray]:
        out = np.empty(n, dtype=np.int64)  # the caller allocates, the runtime-free kernel fills
        return prefix_sums(np.arange(n), out), out

    out = np.empty(5, dtype=np.int64)
    assert prefix_sums(np.arange(5), out) == 10 and out.tolist() == [0, 1, 3, 6, 10]
    total, filled = caller(6)
    assert total == 15 and filled.tolist() == [0, 1, 3, 6, 10, 15]


def test_a_kernel_without_refcounts_cannot_allocate() -> None:
    @kernel(refcounts=False)
    def allocates(n: int) -> np.ndarray:
        return np.zeros(n)

    with pytest.raises(TypingError, match="zeros"):  # numpy allocation needs numba's runtime
        allocates(3)

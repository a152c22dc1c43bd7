"""Sorting kernels for tag streams that arrive almost in order (jitter swaps neighbours only)."""

from __future__ import annotations

from drivers.jit import kernel


@kernel
def nearly_sorted(key, a, b):  # pragma: no cover - numba
    """Stable insertion sort of `key` in place, moving `a` and `b` along: linear for nearly sorted
    input (the mock's tag times, a real tagger's slot numbers)."""
    for i in range(1, key.size):
        ki = key[i]
        if key[i - 1] <= ki:
            continue
        ai = a[i]
        bi = b[i]
        j = i - 1
        while j >= 0 and key[j] > ki:
            key[j + 1] = key[j]
            a[j + 1] = a[j]
            b[j + 1] = b[j]
            j -= 1
        key[j + 1] = ki
        a[j + 1] = ai
        b[j + 1] = bi

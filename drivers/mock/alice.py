"""Alice's source pattern: basis, bit and intensity class of any slot from (seed, slot).

Counter-based: slot `s` gets `hash64(key, s)` and `hash64(key ^ c, s)`; the basis is Z (0) when
the first word's uniform is below `p_z`, the bit is the second word's lowest bit, and the
intensity class the first `k` whose cumulative probability exceeds the second word's uniform.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from drivers.mock.counter import STREAM_ALICE, derive_key, hash64, unit
from postprocessing._numba import KERNEL, njit

_SECOND = np.uint64(0x5851F42D4C957F2D)
_ONE = np.uint64(1)


@njit(**KERNEL)
def alice_state(key: np.uint64, slot: np.int64, p_z: float, class_cdf: np.ndarray) -> tuple[int, int, int]:
    """(basis, bit, intensity class) of one slot."""
    c = np.uint64(slot)
    h1 = hash64(key, c)
    h2 = hash64(key ^ _SECOND, c)
    basis = np.int64(0) if unit(h1) < p_z else np.int64(1)
    bit = np.int64(h2 & _ONE)
    u = unit(h2)
    k = np.int64(0)
    last = class_cdf.size - 1
    while k < last and u >= class_cdf[k]:
        k += 1
    return basis, bit, k


@njit(**KERNEL)
def _states_kernel(key, slots, p_z, class_cdf, basis, bit, intensity):  # pragma: no cover - numba
    for i in range(slots.size):
        b, x, k = alice_state(key, slots[i], p_z, class_cdf)
        basis[i] = b
        bit[i] = x
        intensity[i] = k


def class_cdf(class_probabilities: tuple[float, ...]) -> NDArray[np.float64]:
    """Cumulative class probabilities, the last forced to exactly 1."""
    cdf = np.cumsum(np.asarray(class_probabilities, dtype=np.float64))
    cdf[-1] = 1.0
    return cdf


def alice_states(
    seed: int, slots: NDArray[np.int64], p_z: float, class_probabilities: tuple[float, ...]
) -> tuple[NDArray[np.uint8], NDArray[np.uint8], NDArray[np.uint8]]:
    """Basis, bit and intensity class (uint8 each) of the given slots (any order, repeats allowed)."""
    slots = np.ascontiguousarray(slots)
    if slots.ndim != 1 or slots.dtype != np.int64:
        raise ValueError(f"slots must be a 1-D int64 array, got {slots.dtype}{slots.shape}")
    if slots.size and slots.min() < 0:
        raise ValueError("slots must be >= 0")
    if not 0.0 <= p_z <= 1.0:
        raise ValueError(f"p_z must be in [0, 1], got {p_z}")
    n = slots.size
    basis = np.empty(n, np.uint8)
    bit = np.empty(n, np.uint8)
    intensity = np.empty(n, np.uint8)
    _states_kernel(derive_key(seed, STREAM_ALICE), slots, float(p_z), class_cdf(class_probabilities),
                   basis, bit, intensity)
    return basis, bit, intensity

"""Alice's source pattern: basis, bit and intensity class of any slot from (seed, slot).

Counter-based: slot `s` gets one word `h = hash64(key, s)`, cut into independent fields: the bit
is bit 0, the intensity class the first `k` whose cumulative probability exceeds the uniform of
bits 1-31, and the basis is Z (0) when the uniform of bits 32-63 is below `p_z` (probabilities
resolved to 2**-31, plenty for a mock source).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from drivers.jit import kernel
from drivers.mock.counter import STREAM_ALICE, derive_key, hash64

_ONE = np.uint64(1)
_S32 = np.uint64(32)
_LOW31 = np.uint64(0x7FFFFFFF)
_TO_UNIT32 = 1.0 / 4294967296.0
_TO_UNIT31 = 1.0 / 2147483648.0


@kernel
def alice_state(
    key: np.uint64, slot: np.int64, p_z: float, class_cdf: np.ndarray
) -> tuple[np.int64, np.int64, np.int64]:
    """(basis, bit, intensity class) of one slot."""
    h = hash64(key, np.uint64(slot))
    # branch-free: these fields are random, so branches on them would mispredict
    basis = np.int64(float(np.int64(h >> _S32)) * _TO_UNIT32 >= p_z)
    bit = np.int64(h & _ONE)
    u = float(np.int64((h >> _ONE) & _LOW31)) * _TO_UNIT31
    k = np.int64(0)
    for j in range(class_cdf.size - 1):
        k += np.int64(u >= class_cdf[j])
    return basis, bit, k


@kernel
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
    _states_kernel(
        derive_key(seed, STREAM_ALICE), slots, float(p_z), class_cdf(class_probabilities), basis, bit, intensity
    )
    return basis, bit, intensity

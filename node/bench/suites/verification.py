"""Bench of the verification hash (128-bit GF(2^64) polynomial tag) against a numpy-vectorised version.

The baseline computes the same tag the straightforward numpy way: all powers k^i by vectorised
doubling, the products w_j k^(L+2-j) by a 64-step shift-and-XOR carry-less multiply over whole
arrays, one vectorised reduction, and an XOR reduction. The test suite checks it equals the C tag.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import numpy as np
from numpy.typing import NDArray

from node.bench.core import BenchCase, BenchProfile

STAGE = "verification-hash"
_ONE = np.uint64(1)


def _clmul_arrays(a: NDArray[np.uint64], b: NDArray[np.uint64]) -> tuple[NDArray[np.uint64], NDArray[np.uint64]]:
    """Carry-less products of two arrays element-wise, as (lo, hi) words."""
    lo = np.zeros_like(a)
    hi = np.zeros_like(a)
    for i in range(64):
        mask = np.uint64(0) - ((b >> np.uint64(i)) & _ONE)
        term = a & mask
        lo ^= term << np.uint64(i)
        if i:
            hi ^= term >> np.uint64(64 - i)
    return lo, hi


def _reduce_arrays(lo: NDArray[np.uint64], hi: NDArray[np.uint64]) -> NDArray[np.uint64]:
    """(hi z^64 + lo) mod z^64 + z^4 + z^3 + z + 1, element-wise."""
    u = np.uint64
    spill = (hi >> u(60)) ^ (hi >> u(61)) ^ (hi >> u(63))
    r = hi ^ (hi << u(1)) ^ (hi << u(3)) ^ (hi << u(4))
    r ^= spill ^ (spill << u(1)) ^ (spill << u(3)) ^ (spill << u(4))
    return lo ^ r


def _gf_mul_arrays(a: NDArray[np.uint64], b: NDArray[np.uint64]) -> NDArray[np.uint64]:
    return _reduce_arrays(*_clmul_arrays(a, b))


def numpy_polyhash(words: NDArray[np.uint64], n_bits: int, key: int) -> int:
    """sum_j w_j k^(L+2-j) + n_bits k over GF(2^64), vectorised with numpy (the bench baseline)."""
    m = words.size + 1  # coefficients: the words, then the bit length
    coeffs = np.empty(m, dtype=np.uint64)
    coeffs[:-1] = words
    coeffs[-1] = np.uint64(n_bits)
    powers = np.empty(m, dtype=np.uint64)  # powers[i] = k^(i+1)
    powers[0] = np.uint64(key)
    filled = 1
    while filled < m:
        step = min(filled, m - filled)
        top = np.full(step, powers[filled - 1], dtype=np.uint64)  # k^filled
        powers[filled : filled + step] = _gf_mul_arrays(powers[:step], top)
        filled += step
    terms = _gf_mul_arrays(coeffs, powers[::-1].copy())
    return int(np.bitwise_xor.reduce(terms))


def numpy_tag(words: NDArray[np.uint64], n_bits: int, seed: bytes) -> bytes:
    """The verification tag computed by `numpy_polyhash`, one word per 8-byte key of the seed."""
    keys = [int.from_bytes(seed[i : i + 8], "little") for i in range(0, len(seed), 8)]
    return b"".join(numpy_polyhash(words, n_bits, k).to_bytes(8, "little") for k in keys)


def _setup(n: int) -> dict[str, Any]:
    from postprocessing.bits import pack_bits

    rng = np.random.default_rng(n)
    # A fixed seed is fine here: these are bench inputs, not a real verification.
    return {"n": n, "words": pack_bits(rng.integers(0, 2, n, dtype=np.uint8)), "seed": bytes(range(1, 17))}


def _run(state: dict[str, Any]) -> dict[str, Any]:
    from postprocessing.verification import verification_tag

    verification_tag(state["words"], state["n"], state["seed"])
    return {}


def _reference(state: dict[str, Any]) -> dict[str, Any]:
    numpy_tag(state["words"], state["n"], state["seed"])
    return {}


def cases(profile: BenchProfile) -> list[BenchCase]:
    """One row per size: a 128-bit tag of an n-bit key, Mbit/s of key hashed."""
    from postprocessing.verification import epsilon_cor

    return [
        BenchCase(
            stage=STAGE,
            n=n,
            setup=partial(_setup, n),
            run=_run,
            reference=_reference if n <= 10_000_000 else None,
            unit="Mbit/s",
            params={"tag_bits": 128, "epsilon_cor": epsilon_cor(n, 128)},
            reference_name="numpy-vectorised-polyhash" if n <= 10_000_000 else None,
            reference_max_runs=1 if (profile.quick or n >= 10_000_000) else 3,
        )
        for n in profile.sizes
    ]

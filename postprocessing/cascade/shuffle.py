"""Seed-derived shuffles: both parties expand the exchanged seeds into the same permutations and
subset masks, so no permutation ever travels on the channel.

Per pass, a 64-bit stream seed is SHA-256(shared seed || pass index); the stream is splitmix64.
A BLOCK pass's order is a Fisher-Yates permutation drawn from that stream; a HALF/BICONF pass's
subset is the stream's bits, least significant first.
"""

from __future__ import annotations

import hashlib
import secrets

import numpy as np
from numpy.typing import NDArray

from drivers.jit import kernel

__all__ = [
    "SEED_BYTES",
    "draw_seed",
    "shared_seed",
    "pass_seed",
    "permutation",
    "inverse",
    "subset_words",
    "subset_mask",
]

SEED_BYTES = 16

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


def draw_seed() -> bytes:
    """A fresh shuffle-seed contribution from the system's CSPRNG."""
    return secrets.token_bytes(SEED_BYTES)


def shared_seed(bob_seed: bytes, alice_seed: bytes) -> bytes:
    """The shuffle seed both parties derive from their two contributions (neither alone picks it)."""
    for name, s in (("bob_seed", bob_seed), ("alice_seed", alice_seed)):
        if not isinstance(s, bytes | bytearray) or len(s) != SEED_BYTES:
            raise ValueError(f"{name} must be {SEED_BYTES} bytes")
    return hashlib.sha256(b"qkdnode/cascade/shuffle\x00" + bytes(bob_seed) + bytes(alice_seed)).digest()


def pass_seed(seed: bytes, pass_index: int) -> int:
    """The 64-bit splitmix64 stream seed of pass `pass_index`."""
    if pass_index < 0:
        raise ValueError(f"pass_index must be >= 0, got {pass_index}")
    digest = hashlib.sha256(bytes(seed) + pass_index.to_bytes(4, "little")).digest()
    return int.from_bytes(digest[:8], "little")


@kernel
def _splitmix(state: np.uint64) -> tuple[np.uint64, np.uint64]:
    state = state + _GOLDEN
    z = state
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    return state, z ^ (z >> np.uint64(31))


@kernel
def _permutation_kernel(perm: NDArray[np.int32], seed: np.uint64) -> None:
    n = perm.size
    for i in range(n):
        perm[i] = i
    s = seed
    for i in range(n - 1, 0, -1):
        s, z = _splitmix(s)
        # Lemire's multiply-shift maps the top 32 bits onto [0, i]; n < 2**31 so the bias is < 2**-1
        # of one part in 2**32 per draw, irrelevant for spreading errors over blocks.
        j = np.int64(((z >> np.uint64(32)) * np.uint64(i + 1)) >> np.uint64(32))
        t = perm[i]
        perm[i] = perm[j]
        perm[j] = t


@kernel
def _inverse_kernel(perm: NDArray[np.int32]) -> NDArray[np.int32]:
    pos = np.empty_like(perm)
    for i in range(perm.size):
        pos[perm[i]] = i
    return pos


@kernel
def _mask_words_kernel(n: int, seed: np.uint64, out: NDArray[np.uint64]) -> None:
    nw = (n + 63) >> 6
    s = seed
    for w in range(nw):
        s, z = _splitmix(s)
        out[w] = z
    tail = n & 63
    if tail:
        out[nw - 1] &= (np.uint64(1) << np.uint64(tail)) - np.uint64(1)


def _check_n(n: int) -> None:
    if not isinstance(n, int | np.integer) or not 0 < n < 2**31:
        raise ValueError(f"n must be an int in [1, 2**31), got {n!r}")


def _check_seed(seed: int) -> np.uint64:
    if not isinstance(seed, int | np.integer) or not 0 <= int(seed) < 2**64:
        raise ValueError(f"seed must be an int in [0, 2**64), got {seed!r}")
    return np.uint64(seed)


def permutation(n: int, seed: int, out: NDArray[np.int32] | None = None) -> NDArray[np.int32]:
    """Pass order of a BLOCK pass: `perm[q]` is the frame position at shuffled position `q` (written
    into `out`, an int32 array of n, where given: a reused buffer saves the fresh pages)."""
    _check_n(n)
    perm = _out_array(out, (int(n),), np.int32)
    _permutation_kernel(perm, _check_seed(seed))
    return perm


def _out_array(out: np.ndarray | None, shape: tuple[int, ...], dtype: type) -> np.ndarray:
    if out is None:
        return np.empty(shape, dtype=dtype)
    if not isinstance(out, np.ndarray) or out.dtype != dtype or out.shape != shape or not out.flags.c_contiguous:
        raise ValueError(f"out must be a contiguous {np.dtype(dtype)} array of shape {shape}")
    return out


def inverse(perm: NDArray[np.int32]) -> NDArray[np.int32]:
    """Inverse permutation: `pos[perm[q]] == q`."""
    if not isinstance(perm, np.ndarray) or perm.dtype != np.int32 or perm.ndim != 1:
        raise ValueError("perm must be a one-dimensional int32 array")
    return _inverse_kernel(perm)


def subset_words(n: int, seed: int, out: NDArray[np.uint64] | None = None) -> NDArray[np.uint64]:
    """The random subset of a HALF or BICONF pass as packed bits (DESIGN §3): position i is a member
    iff bit i is set; each splitmix64 output is one word (written into `out` where given)."""
    _check_n(n)
    words = _out_array(out, ((int(n) + 63) // 64,), np.uint64)
    _mask_words_kernel(int(n), _check_seed(seed), words)
    return words


def subset_mask(n: int, seed: int) -> NDArray[np.uint8]:
    """The same subset as one uint8 (0/1) per frame position."""
    words = subset_words(n, seed)
    return (
        np.unpackbits(words.view(np.uint8), count=n, bitorder="little")
        if np.little_endian
        else np.unpackbits(words.byteswap().view(np.uint8), count=n, bitorder="little")
    )

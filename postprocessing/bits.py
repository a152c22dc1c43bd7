"""The bit layer: packed keys (DESIGN §3) and the operations every stage needs on them.

Packed bits are `uint64` words, bit `i` of the sequence at word `i >> 6`, position `i & 63`
(least significant first); unused high bits of the last word are zero. Functions named `*_bits`
take one `uint8` (0/1) per bit; functions named `*_words` take packed words.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
from numpy.typing import NDArray

from drivers.jit import kernel

WORD_BITS = 64

__all__ = [
    "WORD_BITS",
    "n_words",
    "check_bits",
    "check_words",
    "pack_bits",
    "unpack_bits",
    "popcount_words",
    "parity_words",
    "parity_bits",
    "xor_words",
    "bit_errors",
    "bit_errors_words",
    "random_subset",
]


def n_words(n_bits: int) -> int:
    """Number of 64-bit words that hold `n_bits` packed bits."""
    return (n_bits + WORD_BITS - 1) // WORD_BITS


def _check_flat(a: object, name: str, dtype: type[np.generic], holds: str, why: str) -> NDArray[Any]:
    """`a` if it is a 1-D C-contiguous numpy array of `dtype`; a ValueError naming what is wrong otherwise."""
    kind = np.dtype(dtype).name
    if not isinstance(a, np.ndarray):
        raise ValueError(f"{name} must be a numpy {kind} array {holds}, got {type(a).__name__}")
    if a.dtype != dtype:
        raise ValueError(f"{name} must have dtype {kind} ({why}), got {a.dtype}")
    if a.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {a.shape}")
    if not a.flags.c_contiguous:
        raise ValueError(f"{name} must be C-contiguous; pass np.ascontiguousarray({name})")
    return a


def check_bits(bits: object, name: str, length: int | None = None) -> NDArray[np.uint8]:
    """Validate a one-`uint8`-per-bit array (C-contiguous, 1-D, values 0/1) and return it."""
    bits = _check_flat(bits, name, np.uint8, "of 0/1 values", "one 0/1 value per bit")
    if length is not None and bits.size != length:
        raise ValueError(f"{name} must hold exactly {length} bits, got {bits.size}")
    if bits.size and _max_u8(bits) > 1:
        raise ValueError(f"{name} must hold only 0 and 1, found a value above 1")
    return bits


def check_words(words: object, name: str, n_bits: int) -> NDArray[np.uint64]:
    """Validate packed words for `n_bits` bits (dtype, shape, contiguity, zero padding) and return them."""
    if n_bits < 0:
        raise ValueError(f"the bit length of {name} must be >= 0, got {n_bits}")
    words = _check_flat(words, name, np.uint64, "of packed bits", "packed bits, DESIGN §3")
    need = n_words(n_bits)
    if words.size != need:
        raise ValueError(f"{name} must hold {need} words for {n_bits} bits, got {words.size}")
    tail = n_bits % WORD_BITS
    if tail and int(words[-1]) >> tail:
        raise ValueError(
            f"{name} has padding bits set above bit {n_bits - 1}; unused high bits of the last word must be zero"
        )
    return words


@kernel
def _max_u8(a: NDArray[np.uint8]) -> int:
    m = 0
    for v in a:
        if v > m:
            m = v
    return m


def pack_bits(bits: NDArray[np.uint8]) -> NDArray[np.uint64]:
    """Pack one-`uint8`-per-bit 0/1 values into `uint64` words (DESIGN §3 order, zero padding)."""
    check_bits(bits, "bits")
    n = bits.size
    out = np.zeros(n_words(n), dtype=np.uint64)
    packed = np.packbits(bits, bitorder="little")
    out.view(np.uint8)[: packed.size] = packed
    if _BIG_ENDIAN:
        out.byteswap(inplace=True)
    return out


def unpack_bits(words: NDArray[np.uint64], n_bits: int) -> NDArray[np.uint8]:
    """Unpack `n_bits` bits from packed words into one `uint8` (0/1) per bit."""
    check_words(words, "words", n_bits)
    w = words.byteswap() if _BIG_ENDIAN else words
    return np.unpackbits(w.view(np.uint8), count=n_bits, bitorder="little")


_BIG_ENDIAN = np.little_endian is False


def popcount_words(words: NDArray[np.uint64]) -> int:
    """Number of set bits in packed words."""
    return int(np.bitwise_count(words).sum(dtype=np.int64))


def parity_words(words: NDArray[np.uint64]) -> int:
    """Parity (XOR of all bits) of packed words."""
    if words.size == 0:
        return 0
    return int(_popcount_parity(np.bitwise_xor.reduce(words)))


def _popcount_parity(word: np.uint64) -> int:
    return int(np.bitwise_count(np.uint64(word))) & 1


def parity_bits(bits: NDArray[np.uint8]) -> int:
    """Parity of one-`uint8`-per-bit values."""
    check_bits(bits, "bits")
    return int(np.bitwise_xor.reduce(bits)) & 1 if bits.size else 0


def xor_words(a: NDArray[np.uint64], b: NDArray[np.uint64]) -> NDArray[np.uint64]:
    """Bitwise XOR of two packed keys of equal length."""
    if a.shape != b.shape or a.dtype != np.uint64 or b.dtype != np.uint64:
        raise ValueError(f"a and b must be uint64 arrays of equal shape, got {a.dtype}{a.shape} and {b.dtype}{b.shape}")
    return np.bitwise_xor(a, b)


def bit_errors_words(a: NDArray[np.uint64], b: NDArray[np.uint64]) -> int:
    """Number of positions where two packed keys differ."""
    if a.shape != b.shape or a.dtype != np.uint64 or b.dtype != np.uint64:
        raise ValueError(f"a and b must be uint64 arrays of equal shape, got {a.dtype}{a.shape} and {b.dtype}{b.shape}")
    return _xor_popcount(a, b)


@kernel
def _xor_popcount_kernel(a: NDArray[np.uint64], b: NDArray[np.uint64]) -> int:
    total = 0
    for i in range(a.size):
        x = a[i] ^ b[i]
        # SWAR popcount; numba lowers this to a handful of integer ops
        x = x - ((x >> np.uint64(1)) & np.uint64(0x5555555555555555))
        x = (x & np.uint64(0x3333333333333333)) + ((x >> np.uint64(2)) & np.uint64(0x3333333333333333))
        x = (x + (x >> np.uint64(4))) & np.uint64(0x0F0F0F0F0F0F0F0F)
        total += (x * np.uint64(0x0101010101010101)) >> np.uint64(56)
    return total


def _xor_popcount(a: NDArray[np.uint64], b: NDArray[np.uint64]) -> int:
    return int(_xor_popcount_kernel(a, b))


def bit_errors(a: NDArray[np.uint8], b: NDArray[np.uint8]) -> int:
    """Number of positions where two one-`uint8`-per-bit keys differ."""
    check_bits(a, "a")
    check_bits(b, "b", length=a.size)
    return int(np.count_nonzero(a != b))


def random_subset(n: int, k: int, rng: np.random.Generator | None = None) -> NDArray[np.int64]:
    """Sorted positions of `k` distinct elements drawn uniformly from `range(n)`.

    Used to pick the bits disclosed for parameter estimation. Without `rng`, the choice is seeded
    from `os.urandom` so nobody can predict it; tests and reproducible runs pass a `Generator`.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if not 0 <= k <= n:
        raise ValueError(f"k must be in [0, n={n}], got {k}")
    if rng is None:
        rng = np.random.Generator(np.random.PCG64(int.from_bytes(os.urandom(16), "little")))
    idx = rng.choice(n, size=k, replace=False, shuffle=False)
    idx = np.asarray(idx, dtype=np.int64)
    idx.sort()
    return idx

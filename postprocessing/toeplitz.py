"""Toeplitz hashing for privacy amplification (DESIGN §3).

For an input key `x` of `n` bits and a seed `s` of `n + l - 1` bits, the output has `l` bits
`y[i] = XOR_j s[i - j + n - 1] & x[j]` (0 <= i < l, 0 <= j < n): the bits [n-1, n-1+l) of the
carry-less product S(z)·X(z). A uniformly random seed makes this a two-universal family, which is
what the leftover hash lemma needs. `l = 0` is allowed and gives an empty output (then the seed has
n - 1 bits); `l >= n` is refused.

The production kernel is C (csrc/toeplitz.c): a word-level middle product by transposed Karatsuba
that computes only the l output bits, with PCLMULQDQ / VPCLMULQDQ chosen at run time and a portable
fallback (`QKDNODE_C_PATH=portable` forces it; `postprocessing._cbackend.active_paths()` names the
path in use). Optionally several threads share the work. `toeplitz_hash_fft` is the float64 FFT
reference the benchmark compares against. The seed may be public (Alice sends it to Bob); draw it
with `draw_seed_words`.
"""

from __future__ import annotations

import secrets

import numpy as np
from numpy.typing import NDArray

from postprocessing import _cbackend
from postprocessing.bits import check_bits, check_words, n_words, pack_bits, unpack_bits

__all__ = ["toeplitz_hash", "toeplitz_hash_words", "toeplitz_hash_fft", "seed_bits", "draw_seed_words"]


def seed_bits(n: int, l: int) -> int:
    """Number of seed bits a Toeplitz hash from `n` to `l` bits needs: n + l - 1."""
    _check_lengths(n, l)
    return n + l - 1


def draw_seed_words(n: int, l: int) -> NDArray[np.uint64]:
    """A fresh uniformly random seed for hashing `n` bits to `l`, packed (DESIGN §3), from `secrets`."""
    bits = seed_bits(n, l)
    words = n_words(bits)
    seed = np.frombuffer(secrets.token_bytes(8 * words), dtype="<u8").astype(np.uint64)
    if bits % 64:
        seed[-1] &= np.uint64((1 << (bits % 64)) - 1)
    return seed


def _check_lengths(n: object, l: object) -> None:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not 1 <= n <= _cbackend.MAX_BITS:
        raise ValueError(f"n (input length in bits) must be an integer in [1, 2^40], got {n!r}")
    if isinstance(l, bool) or not isinstance(l, (int, np.integer)) or not 0 <= l < n:
        raise ValueError(f"l (output length in bits) must be an integer in [0, n-1] = [0, {int(n) - 1}], got {l!r}")


def toeplitz_hash_words(
    x_words: NDArray[np.uint64], n: int, seed_words: NDArray[np.uint64], l: int, *, threads: int = 1
) -> NDArray[np.uint64]:
    """Toeplitz hash of packed bits: `n` bits in `x_words`, `n + l - 1` in `seed_words`; `l` packed bits out.

    Arrays are packed per DESIGN §3 (uint64, C-contiguous, unused high bits of the last word zero).
    `threads` > 1 shares the work among that many threads (worth it for n of about 1e6 and more).
    """
    _cbackend.check_threads(threads)
    _check_lengths(n, l)
    n, l = int(n), int(l)
    check_words(x_words, "x_words", n)
    check_words(seed_words, "seed_words", n + l - 1)
    return _cbackend.toeplitz_words(x_words, n, seed_words, l, threads=threads)


def toeplitz_hash(x: NDArray[np.uint8], seed: NDArray[np.uint8], l: int, *, threads: int = 1) -> NDArray[np.uint8]:
    """Toeplitz hash of one-`uint8`-per-bit arrays: `x` (n bits), `seed` (n + l - 1 bits); `l` bits out."""
    _cbackend.check_threads(threads)
    check_bits(x, "x")
    _check_lengths(x.size, l)
    n, l = x.size, int(l)
    check_bits(seed, "seed", length=n + l - 1)
    y = toeplitz_hash_words(pack_bits(x), n, pack_bits(seed), l, threads=threads)
    return unpack_bits(y, l)


def _fast_length(m: int) -> int:
    """Smallest 2^a 3^b 5^c >= m (the FFT lengths pocketfft handles fastest)."""
    best = 1 << max(0, (m - 1).bit_length())
    p5 = 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            q = p35
            while q < m:
                q *= 2
            best = min(best, q)
            p35 *= 3
        p5 *= 5
    return best


def toeplitz_hash_fft(x: NDArray[np.uint8], seed: NDArray[np.uint8], l: int) -> NDArray[np.uint8]:
    """Reference: the same hash by numpy float64 FFT convolution, exact by rounding.

    y is the window [n-1, n-1+l) of the linear convolution s * x. A cyclic convolution of length
    N >= n + l - 1 suffices: the terms that wrap around land on indices below n - 1, outside the
    window. The integer sums are at most n; a float64 FFT of these lengths is accurate to far below
    0.5 (checked on every call), so rounding recovers them exactly and their parity is the bit.
    """
    check_bits(x, "x")
    _check_lengths(x.size, l)
    n, l = x.size, int(l)
    check_bits(seed, "seed", length=n + l - 1)
    if l == 0:
        return np.zeros(0, dtype=np.uint8)
    size = _fast_length(n + l - 1)
    spectrum = np.fft.rfft(seed.astype(np.float64), size)
    spectrum *= np.fft.rfft(x.astype(np.float64), size)
    window = np.fft.irfft(spectrum, size)[n - 1 : n - 1 + l]
    del spectrum
    counts = np.rint(window)
    if l and float(np.max(np.abs(window - counts))) >= 0.25:
        raise ArithmeticError("float64 FFT rounding error too large for an exact Toeplitz hash")
    return (counts.astype(np.int64) & 1).astype(np.uint8)

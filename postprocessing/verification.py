"""Verification hash: after error correction both parties compare a short universal hash of their keys.

Construction: polynomial evaluation over GF(2^64) = GF(2)[z] / (z^64 + z^4 + z^3 + z + 1). The
seed is `tag_bits / 64` independent uniform field elements k_1, k_2, ...; for a key of L packed
words w_1..w_L (DESIGN §3) and bit length n, tag word i is

    h_{k_i}(w) = w_1 k_i^(L+1) + w_2 k_i^L + ... + w_L k_i^2 + n k_i     (Horner, csrc/polyhash.c).

If two keys differ (in content or in length) the difference of their polynomials is nonzero, of
degree at most L + 1, with at most L + 1 roots; so the tags of one key word collide with probability
at most (L+1)/2^64 over a uniform k_i, and all words at once with probability

    epsilon_cor = ((L + 1) / 2^64) ** (tag_bits / 64).

This holds for any two keys fixed before the seed is drawn, which is the case after error
correction: draw the seed afterwards, from `secrets`, and send it with the tag. A 128-bit tag for
a 10^8-bit key gives epsilon_cor < 2^-86.
"""

from __future__ import annotations

import hmac
import secrets

import numpy as np
from numpy.typing import NDArray

from postprocessing import _cbackend
from postprocessing.bits import check_bits, check_words, pack_bits

__all__ = [
    "TAG_BITS_ALLOWED",
    "draw_seed",
    "verification_tag",
    "verification_tag_bits",
    "epsilon_cor",
    "tags_match",
]

TAG_BITS_ALLOWED = (64, 128, 192, 256)


def _check_tag_bits(tag_bits: object) -> int:
    if isinstance(tag_bits, bool) or not isinstance(tag_bits, (int, np.integer)) or tag_bits not in TAG_BITS_ALLOWED:
        raise ValueError(f"tag_bits must be one of {TAG_BITS_ALLOWED}, got {tag_bits!r}")
    return int(tag_bits)


def draw_seed(tag_bits: int = 128) -> bytes:
    """A fresh verification seed for tags of `tag_bits` bits: tag_bits/8 bytes from `secrets`."""
    return secrets.token_bytes(_check_tag_bits(tag_bits) // 8)


def _keys(seed: object) -> NDArray[np.uint64]:
    if not isinstance(seed, (bytes, bytearray)):
        raise ValueError(f"seed must be bytes from draw_seed(), got {type(seed).__name__}")
    if len(seed) * 8 not in TAG_BITS_ALLOWED:
        raise ValueError(
            f"seed must be {[b // 8 for b in TAG_BITS_ALLOWED]} bytes long (a tag of {TAG_BITS_ALLOWED} bits), "
            f"got {len(seed)} bytes"
        )
    return np.frombuffer(bytes(seed), dtype="<u8").astype(np.uint64)


def verification_tag(words: NDArray[np.uint64], n_bits: int, seed: bytes) -> bytes:
    """Tag (len(seed) bytes) of a packed key of `n_bits` bits under `seed`; compare with `tags_match`."""
    if isinstance(n_bits, bool) or not isinstance(n_bits, (int, np.integer)) or not 0 <= n_bits <= _cbackend.MAX_BITS:
        raise ValueError(f"n_bits must be an integer in [0, 2^40], got {n_bits!r}")
    check_words(words, "words", int(n_bits))
    keys = _keys(seed)
    tags = _cbackend.polyhash_words(words, int(n_bits), keys)
    return tags.astype("<u8").tobytes()


def verification_tag_bits(bits: NDArray[np.uint8], seed: bytes) -> bytes:
    """Tag of a one-`uint8`-per-bit key under `seed` (the same tag as its packed form gives)."""
    check_bits(bits, "bits")
    return verification_tag(pack_bits(bits), bits.size, seed)


def epsilon_cor(n_bits: int, tag_bits: int = 128) -> float:
    """Probability that two different keys of at most `n_bits` bits get equal tags: ((L+1)/2^64)^(tag_bits/64)."""
    if isinstance(n_bits, bool) or not isinstance(n_bits, (int, np.integer)) or not 0 <= n_bits <= _cbackend.MAX_BITS:
        raise ValueError(f"n_bits must be an integer in [0, 2^40], got {n_bits!r}")
    tag_bits = _check_tag_bits(tag_bits)
    words = (int(n_bits) + 63) // 64
    return float(((words + 1) / 2.0**64) ** (tag_bits // 64))


def tags_match(a: bytes, b: bytes) -> bool:
    """Whether two tags are equal, in time independent of where they differ."""
    if not isinstance(a, (bytes, bytearray)) or not isinstance(b, (bytes, bytearray)):
        raise ValueError("a and b must be bytes (verification tags)")
    return hmac.compare_digest(bytes(a), bytes(b))

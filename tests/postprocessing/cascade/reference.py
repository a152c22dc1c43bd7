"""Slow, obviously-correct references for the Cascade kernels (pure Python, one bit at a time)."""

from __future__ import annotations

import hashlib

MASK64 = (1 << 64) - 1


def splitmix64(state: int) -> tuple[int, int]:
    state = (state + 0x9E3779B97F4A7C15) & MASK64
    z = state
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
    return state, z ^ (z >> 31)


def permutation(n: int, seed: int) -> list[int]:
    perm = list(range(n))
    s = seed
    for i in range(n - 1, 0, -1):
        s, z = splitmix64(s)
        j = ((z >> 32) * (i + 1)) >> 32
        perm[i], perm[j] = perm[j], perm[i]
    return perm


def subset_mask(n: int, seed: int) -> list[int]:
    out: list[int] = []
    s = seed
    while len(out) < n:
        s, z = splitmix64(s)
        out.extend((z >> b) & 1 for b in range(64))
    return out[:n]


def pass_seed(seed: bytes, j: int) -> int:
    return int.from_bytes(hashlib.sha256(seed + j.to_bytes(4, "little")).digest()[:8], "little")


def block_parities(bits: list[int], k: int) -> list[int]:
    return [sum(bits[s : s + k]) % 2 for s in range(0, len(bits), k)]


def node_range(length: int, v: int) -> tuple[int, int]:
    """Walk from the root: each bit of v below its leading one picks the left (0) or right (1) half,
    the left half holding ceil(len/2) positions."""
    path = bin(v)[3:]
    lo, hi = 0, length
    for step in path:
        if hi - lo <= 1:
            return lo, lo
        mid = lo + (hi - lo + 1) // 2
        lo, hi = (mid, hi) if step == "1" else (lo, mid)
    return lo, hi


def binary_search(alice: list[int], bob: list[int]) -> tuple[int, int]:
    """Position of one error in a block of odd error parity, and the parity bits Alice revealed."""
    lo, hi = 0, len(alice)
    asked = 0
    while hi - lo > 1:
        mid = lo + (hi - lo + 1) // 2
        asked += 1
        if sum(alice[lo:mid]) % 2 != sum(bob[lo:mid]) % 2:
            hi = mid
        else:
            lo = mid
    return lo, asked

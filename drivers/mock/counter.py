"""Counter-based randomness for the mock hardware: a keyed 64-bit hash of (key, counter).

Any draw is a pure function of its key and counter, so Alice's state of slot `s` can be
recomputed from (seed, s) without storing the sequence, and a simulation chunk's draws do not
depend on how earlier chunks were cut. Seeded and reproducible: mock hardware and tests only,
never key material (DESIGN §3).
"""

from __future__ import annotations

import numpy as np

from drivers.jit import kernel

GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_S30 = np.uint64(30)
_S27 = np.uint64(27)
_S31 = np.uint64(31)
_S11 = np.uint64(11)
_TO_UNIT = 1.0 / 9007199254740992.0  # 2**-53

# Independent streams derived from one seed (xor-ed into the key).
STREAM_ALICE = np.uint64(0x243F6A8885A308D3)
STREAM_EVE = np.uint64(0x13198A2E03707344)
STREAM_BOB = np.uint64(0xA4093822299F31D0)
STREAM_DARK = np.uint64(0x082EFA98EC4E6C89)


@kernel
def mix64(z: np.uint64) -> np.uint64:
    """The SplitMix64 finaliser: a bijective avalanche mix of 64 bits."""
    z = (z ^ (z >> _S30)) * _M1
    z = (z ^ (z >> _S27)) * _M2
    return z ^ (z >> _S31)


@kernel
def hash64(key: np.uint64, counter: np.uint64) -> np.uint64:
    """Keyed hash of a counter: two mixing rounds with the key injected between them."""
    return mix64(mix64(counter * GOLDEN + key) ^ key)


@kernel
def unit(h: np.uint64) -> float:
    """The top 53 bits of `h` as a double in [0, 1)."""
    return float(np.int64(h >> _S11)) * _TO_UNIT


def derive_key(seed: int, stream: np.uint64) -> np.uint64:
    """The 64-bit key of one stream of a seed (Python side, for passing into kernels)."""
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    s = np.uint64(int(seed) & 0xFFFFFFFFFFFFFFFF)
    return np.uint64(_mix64_py(int(s) ^ int(stream)))


def _mix64_py(z: int) -> int:
    mask = 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
    return z ^ (z >> 31)


def hash64_py(key: int | np.integer, counter: int | np.integer) -> np.uint64:
    """`hash64` evaluated in Python (for deriving sub-keys outside kernels)."""
    mask = 0xFFFFFFFFFFFFFFFF
    key = int(key) & mask
    return np.uint64(_mix64_py(_mix64_py((int(counter) * int(GOLDEN) + key) & mask) ^ key))

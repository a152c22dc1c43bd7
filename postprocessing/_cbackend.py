"""Thin typed binding over the C core (`postprocessing._ccore`) for the carry-less kernels.

Every length, dtype, contiguity and padding condition is checked here before C sees a pointer, and
every return code is checked after. The kernel path (PCLMULQDQ, VPCLMULQDQ, portable) is chosen
per call: explicitly, or from the environment variable `QKDNODE_C_PATH` (`auto`, `portable`,
`pclmul`, `vpclmulqdq`; default `auto`), so the test suite can run on every path.
"""

from __future__ import annotations

import os

import numpy as np
from numpy.typing import NDArray

from postprocessing._ccore import ffi, lib

ENV_VAR = "QKDNODE_C_PATH"

_PATH_CODES: dict[str, int] = {
    "auto": lib.QKD_PATH_AUTO,
    "portable": lib.QKD_PATH_PORTABLE,
    "pclmul": lib.QKD_PATH_PCLMUL,
    "vpclmulqdq": lib.QKD_PATH_VPCLMUL,
}
_CODE_NAMES = {code: name for name, code in _PATH_CODES.items() if name != "auto"}

# Largest input the binding passes to C (2^40 bits); the kernels are tested up to 2^27.
MAX_BITS = 1 << 40
MAX_THREADS = int(lib.QKD_MAX_THREADS)

__all__ = [
    "ENV_VAR",
    "MAX_BITS",
    "MAX_THREADS",
    "check_threads",
    "available_paths",
    "resolve_path",
    "active_paths",
    "toeplitz_words",
    "polyhash_words",
]


def available_paths() -> list[str]:
    """The kernel paths this CPU can run, slowest first (always includes "portable")."""
    return [name for name, code in _PATH_CODES.items() if name != "auto" and lib.qkd_resolve_path(code) == code]


def resolve_path(path: str | None = None) -> str:
    """The concrete path a call will use: `path`, else `$QKDNODE_C_PATH`, else "auto" -> the fastest."""
    requested = path if path is not None else os.environ.get(ENV_VAR, "auto").strip().lower() or "auto"
    source = "path" if path is not None else ENV_VAR
    if requested not in _PATH_CODES:
        raise ValueError(f"{source} must be one of {sorted(_PATH_CODES)}, got {requested!r}")
    code = lib.qkd_resolve_path(_PATH_CODES[requested])
    if code < 0:
        raise ValueError(f"{source}={requested!r} is not supported by this CPU; available: {available_paths()}")
    return _CODE_NAMES[code]


def active_paths() -> dict[str, str]:
    """Which kernel each stage runs under the current setting, e.g. {"toeplitz": "vpclmulqdq-karatsuba"}."""
    path = resolve_path()
    polyhash = "portable" if path == "portable" else "pclmul-4way"
    return {"toeplitz": f"{path}-karatsuba", "polyhash": polyhash}


def _check_words(a: object, name: str, n_bits: int) -> NDArray[np.uint64]:
    if not isinstance(a, np.ndarray) or a.dtype != np.uint64 or a.ndim != 1:
        got = f"{a.dtype}{a.shape}" if isinstance(a, np.ndarray) else type(a).__name__
        raise ValueError(f"{name} must be a 1-D numpy uint64 array of packed bits, got {got}")
    if not a.flags.c_contiguous:
        raise ValueError(f"{name} must be C-contiguous; pass np.ascontiguousarray({name})")
    need = (n_bits + 63) // 64
    if a.size != need:
        raise ValueError(f"{name} must hold {need} words for {n_bits} bits, got {a.size}")
    tail = n_bits & 63
    if tail and int(a[-1]) >> tail:
        raise ValueError(f"{name} has padding bits set above bit {n_bits - 1}; they must be zero")
    return a


def _ptr(a: NDArray[np.uint64]) -> object:
    return ffi.cast("uint64_t *", a.ctypes.data)


def _raise_for(rc: int, what: str) -> None:
    if rc == lib.QKD_OK:
        return
    if rc == lib.QKD_ENOMEM:
        raise MemoryError(f"{what}: the C kernel could not allocate its work space")
    if rc == lib.QKD_ENOPATH:
        raise ValueError(f"{what}: kernel path not available on this CPU; available: {available_paths()}")
    raise ValueError(f"{what}: the C kernel rejected its arguments (code {rc})")


def check_threads(threads: object) -> int:
    """Validate a thread count for the C kernels: an integer in [1, MAX_THREADS]."""
    if isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or not 1 <= threads <= MAX_THREADS:
        raise ValueError(f"threads must be an integer in [1, {MAX_THREADS}], got {threads!r}")
    return int(threads)


def toeplitz_words(
    x: NDArray[np.uint64],
    n: int,
    seed: NDArray[np.uint64],
    l: int,
    path: str | None = None,
    threads: int = 1,
) -> NDArray[np.uint64]:
    """Packed Toeplitz hash (DESIGN §3) of `n` bits of `x` with `n + l - 1` seed bits; `l` bits out.

    `threads` threads share the tiles of the product (the C call releases the GIL).
    """
    threads = check_threads(threads)
    if not isinstance(n, (int, np.integer)) or not 1 <= n <= MAX_BITS:
        raise ValueError(f"n must be an integer in [1, 2^40], got {n!r}")
    if not isinstance(l, (int, np.integer)) or not 0 <= l < n:
        raise ValueError(f"l must be an integer in [0, n-1] = [0, {n - 1}], got {l!r}")
    n, l = int(n), int(l)
    _check_words(x, "x", n)
    _check_words(seed, "seed", n + l - 1)
    code = _PATH_CODES[resolve_path(path)]
    y = np.zeros((l + 63) // 64, dtype=np.uint64)
    if l == 0:
        return y
    _raise_for(lib.qkd_toeplitz_words(_ptr(x), n, _ptr(seed), l, _ptr(y), code, threads), "toeplitz")
    return y


def polyhash_words(
    words: NDArray[np.uint64], n_bits: int, keys: NDArray[np.uint64], path: str | None = None
) -> NDArray[np.uint64]:
    """One GF(2^64) polynomial-hash word per key over `n_bits` packed bits (see csrc/polyhash.h)."""
    if not isinstance(n_bits, (int, np.integer)) or not 0 <= n_bits <= MAX_BITS:
        raise ValueError(f"n_bits must be an integer in [0, 2^40], got {n_bits!r}")
    n_bits = int(n_bits)
    _check_words(words, "words", n_bits)
    if not isinstance(keys, np.ndarray) or keys.dtype != np.uint64 or keys.ndim != 1 or keys.size == 0:
        raise ValueError("keys must be a non-empty 1-D numpy uint64 array")
    if not keys.flags.c_contiguous:
        raise ValueError("keys must be C-contiguous")
    code = _PATH_CODES[resolve_path(path)]
    tags = np.zeros(keys.size, dtype=np.uint64)
    _raise_for(lib.qkd_polyhash(_ptr(words), words.size, n_bits, _ptr(keys), keys.size, _ptr(tags), code), "polyhash")
    return tags

"""numba flags in one place: every kernel is `@njit(**KERNEL)` so they all release the GIL and
cache their machine code beside the source (the second run starts fast)."""

from __future__ import annotations

from numba import njit

KERNEL = {"nogil": True, "cache": True, "boundscheck": False}

__all__ = ["KERNEL", "njit"]

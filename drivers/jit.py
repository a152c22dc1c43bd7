"""numba flags in one place, at the bottom layer so the mock hardware, the record decoders and the
post-processing kernels share them: every kernel is `@kernel`, which releases the GIL and caches its
machine code beside the source (the second run starts fast)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, TypeVar, cast, overload

from numba import njit

KERNEL_FLAGS: dict[str, Any] = {"nogil": True, "cache": True, "boundscheck": False}

F = TypeVar("F", bound=Callable[..., Any])

__all__ = ["KERNEL_FLAGS", "kernel"]


@overload
def kernel(fn: F, /) -> F: ...
@overload
def kernel(*, inline: Literal["never", "always"] = "never", refcounts: bool = True) -> Callable[[F], F]: ...
def kernel(
    fn: F | None = None, /, *, inline: Literal["never", "always"] = "never", refcounts: bool = True
) -> F | Callable[[F], F]:
    """Compile `fn` with the project's numba flags; typed as `fn` itself so callers keep its
    signature. `@kernel(inline="always")` inlines it into the kernels that call it.
    `@kernel(refcounts=False)` compiles it without numba's runtime: it may not allocate arrays, and
    the arrays it is given carry no atomic reference-count updates (a hot loop's own cost where
    numba cannot prune them); its caller keeps them alive."""
    if fn is not None:
        return cast(F, njit(fn, **KERNEL_FLAGS))

    flags: dict[str, Any] = {**KERNEL_FLAGS, "inline": inline}
    if not refcounts:
        flags["_nrt"] = False  # numba's own option (not in its type stubs)

    def decorate(f: F) -> F:
        return cast(F, njit(f, **flags))

    return decorate

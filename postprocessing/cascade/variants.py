"""Cascade variants as data (Martinez-Mateo, Pacher, Peev et al., arXiv:1407.3257).

A variant is a schedule of passes: each pass is a block-size rule evaluated on the frame length
and the QBER estimate. Passes whose blocks are half the frame ("half" passes) split the frame into a
seed-derived random subset and its complement; BICONF passes reveal only the subset's parity and
repeat until a streak of passes finds no error.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = [
    "Variant",
    "PassSpec",
    "VARIANTS",
    "DEFAULT_VARIANT",
    "get_variant",
    "default_variant",
    "BLOCK",
    "HALF",
    "BICONF",
]

BLOCK = 0  # contiguous blocks of k bits in the pass's shuffled order
HALF = 1  # two blocks: a random subset of the frame and its complement
BICONF = 2  # one block: a random subset of the frame (its complement is not asked)

_MIN_QBER = 1e-5


@dataclass(frozen=True)
class PassSpec:
    """One pass of a schedule: its kind (BLOCK, HALF or BICONF) and its block size in bits."""

    kind: int
    block_size: int


@dataclass(frozen=True)
class Variant:
    """A Cascade variant: block-size rules of its first passes, then its later passes.

    `rules` gives the first passes as (rule, parameter) pairs:
      ("alpha", a)     k = ceil(a / Q)                     (Brassard-Salvail style)
      ("pow2", c)      k = 2**ceil(log2(1/Q) - c)          (power of two near 1/Q)
      ("mid", c)       k = 2**ceil((log2(1/Q) - 0.5 + c)/2) (option 8's second pass)
      ("times", m)     k = m * previous block size
      ("const", k)     k fixed
    followed by `half_passes` HALF passes, then (if `biconf_streak`) BICONF passes until
    `biconf_streak` consecutive ones find no error (at most `max_passes` passes in all).
    """

    name: str
    rules: tuple[tuple[str, float], ...]
    half_passes: int = 0
    biconf_streak: int = 0
    max_passes: int = 64
    shuffle_first_pass: bool = False

    def first_passes(self, n: int, qber: float) -> list[PassSpec]:
        """The fixed passes of this variant for a frame of `n` bits at QBER estimate `qber`."""
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        if not 0.0 <= qber < 0.5:
            raise ValueError(f"qber must be in [0, 0.5), got {qber}")
        q = max(qber, _MIN_QBER)
        out: list[PassSpec] = []
        prev = 0
        for rule, par in self.rules:
            if rule == "alpha":
                k = math.ceil(par / q)
            elif rule == "pow2":
                k = 2 ** math.ceil(math.log2(1.0 / q) - par)
            elif rule == "mid":
                k = 2 ** math.ceil((math.log2(1.0 / q) - 0.5 + par) / 2.0)
            elif rule == "times":
                k = int(par * prev)
            elif rule == "const":
                k = int(par)
            else:  # pragma: no cover - variants are defined below
                raise ValueError(f"unknown block-size rule {rule!r}")
            k = min(max(k, 2), n)
            prev = k
            out.append(PassSpec(BLOCK, k))
        out.extend(PassSpec(HALF, n) for _ in range(self.half_passes))
        return out


VARIANTS: dict[str, Variant] = {
    v.name: v
    for v in (
        # Brassard & Salvail: 4 passes, k1 = 0.73/Q, doubling.
        Variant("original", (("alpha", 0.73), ("times", 2), ("times", 2), ("times", 2))),
        # Yan et al.: k1 = 0.8/Q, k2 = 5 k1, then half-frame passes up to 10 passes.
        Variant("yanetal", (("alpha", 0.80), ("times", 5)), half_passes=8),
        # Yan et al.'s first two passes with 16 half-frame passes (18 in all): the 8 more halves each
        # catch a surviving error pair with probability 1/2. On a 1e6-bit block at Q = 1.4 % the residual
        # frame error rate fell from ~3e-3 (24 in 8,000 runs of yanetal) to 0 in 1,000, and at 4e6 / 1.3 %
        # from 1 to 0 in 150, for f +0.0002 and the same CPU within noise (an error-free half pass costs
        # two parities and no search).
        Variant("yanetal16", (("alpha", 0.80), ("times", 5)), half_passes=16),
        # Demystifying option 7: k1 = 2^ceil(log2 1/Q), k2 = 4 k1, then half-frame passes (14 in all).
        Variant("option7", (("pow2", 0.0), ("times", 4)), half_passes=12),
        # Demystifying option 8: k1 = 2^ceil(alpha), k2 = 2^ceil((alpha+12)/2), k3 = 4096, then halves.
        Variant("option8", (("pow2", 0.5), ("mid", 12.0), ("const", 4096)), half_passes=11),
        # Cascade with BICONF: 2 passes (0.92/Q, 3x), then BICONF until 10 error-free ones in a row.
        Variant("biconf", (("alpha", 0.92), ("times", 3)), biconf_streak=10),
    )
}

# Picked by measurement (`qkdnode bench --stage cascade --full`: mean f over 10 frames with exactly
# round(Q n) errors, Q in {1, 2, 5} %; round trips; CPU throughput), by frame length:
#  - below 5e4 bits BICONF: f 1.07-1.09 at 1e4, where option 7/8 reach 1.13-1.17 at Q = 1 %;
#  - up to 5e5 bits option 7: f 1.04-1.05 at 1e5 (BICONF 1.074 at Q = 5 %), 250-370 round trips;
#  - above, Yan et al.: f 1.05-1.06 at 1e6 with ~200 round trips and the best throughput, where
#    option 7 (f 1.03-1.05) needs 390-470 round trips on average and over 500 for some frames;
#    with 16 half passes (yanetal16), since Yan et al.'s 8 leave ~3e-3 of 1e6-bit blocks with an
#    error pair that only verification catches (the block then yields no key).
DEFAULT_VARIANT = "auto"
AUTO_POLICY: tuple[tuple[int | None, str], ...] = ((50_000, "biconf"), (500_000, "option7"), (None, "yanetal16"))


def default_variant(n: int) -> Variant:
    """The variant `auto` picks for a frame of `n` bits (AUTO_POLICY: first bound above n)."""
    for bound, name in AUTO_POLICY:
        if bound is None or n < bound:
            return VARIANTS[name]
    raise AssertionError("AUTO_POLICY ends with an unbounded entry")  # pragma: no cover


def get_variant(variant: str | Variant | None, n: int | None = None) -> Variant | None:
    """The variant named `variant`, or `variant` itself; None or "auto": the default for `n` bits
    (None while `n` is not known)."""
    if variant is None or variant == "auto":
        return None if n is None else default_variant(n)
    if isinstance(variant, Variant):
        return variant
    try:
        return VARIANTS[variant]
    except (KeyError, TypeError):
        raise ValueError(f"variant must be one of {sorted(VARIANTS)} or a Variant, got {variant!r}") from None

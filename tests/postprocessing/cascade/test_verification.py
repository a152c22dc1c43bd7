"""Cascade followed by the verification hash: equal keys exactly when the tags match."""

from __future__ import annotations

import numpy as np

from postprocessing.cascade import Variant, reconcile_many_loopback
from postprocessing.verification import draw_seed, tags_match, verification_tag_bits
from tests.postprocessing.cascade.test_reconcile import frame

# Two passes only: leaves errors in some 1e4-bit frames at 5 % so the tags have something to catch.
WEAK = Variant("two-pass", (("alpha", 0.73), ("times", 2)))


def test_tags_match_exactly_when_keys_are_equal_after_cascade() -> None:
    frames = [frame(10_000, 0.05, 500 + s) for s in range(40)]
    residual = 0
    for variant in (WEAK, None):
        outcomes = reconcile_many_loopback(frames, 0.05, variant=variant, max_in_flight=8)
        for (alice, _), out in zip(frames, outcomes):
            assert out.error is None and out.bits is not None
            seed = draw_seed()
            equal = np.array_equal(alice, out.bits)
            assert tags_match(verification_tag_bits(alice, seed), verification_tag_bits(out.bits, seed)) == equal
            residual += not equal
    assert residual > 0, "no frame kept errors: the tags were never tested against a wrong key"

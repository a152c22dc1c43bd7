"""Both roles in one thread over the in-process channel: for tests, benchmarks and simulations."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from postprocessing.bits import check_bits
from postprocessing.cascade.channel import LoopbackLink
from postprocessing.cascade.reconciler import CascadeOutcome, CascadeReconciler
from postprocessing.cascade.responder import CascadeResponder
from postprocessing.cascade.stats import CascadeStats
from postprocessing.cascade.variants import Variant

__all__ = ["reconcile_loopback", "reconcile_many_loopback"]


def reconcile_many_loopback(
    frames: Sequence[tuple[NDArray[np.uint8], NDArray[np.uint8]]],
    qber: float,
    variant: str | Variant | None = None,
    latency_s: float = 0.0,
    max_in_flight: int = 4,
    timeout_s: float = 10.0,
) -> list[CascadeOutcome]:
    """Reconcile `(alice_bits, bob_bits)` frames with up to `max_in_flight` blocks in flight over one
    loopback channel of round-trip time `latency_s`; block ids are the frame indices."""
    link = LoopbackLink(latency_s)
    responder = CascadeResponder(link.alice, timeout_s=timeout_s)
    link.serve(1, responder.serve_pending)
    errors = []
    for i, (alice_bits, bob_bits) in enumerate(frames):
        check_bits(alice_bits, "alice_bits")
        check_bits(bob_bits, "bob_bits", length=alice_bits.size)
        responder.add_block(i, alice_bits)
        errors.append(int(np.count_nonzero(alice_bits != bob_bits)))
    reconciler = CascadeReconciler(link.bob, variant, timeout_s=timeout_s, max_in_flight=max_in_flight)
    outcomes = reconciler.reconcile_many([(i, bob, qber) for i, (_, bob) in enumerate(frames)])
    link.drain()  # Alice takes the DONE messages and frees her blocks
    for o, e in zip(outcomes, errors):
        o.stats.actual_errors = e
    return outcomes


def reconcile_loopback(
    alice_bits: NDArray[np.uint8],
    bob_bits: NDArray[np.uint8],
    qber: float,
    variant: str | Variant | None = None,
    latency_s: float = 0.0,
) -> tuple[NDArray[np.uint8], CascadeStats]:
    """Run Bob and Alice over the in-process channel on one frame (one uint8 0/1 per bit each);
    returns Bob's corrected frame and the block's statistics. Raises ProtocolError if it fails."""
    out = reconcile_many_loopback([(alice_bits, bob_bits)], qber, variant, latency_s, max_in_flight=1)[0]
    if out.error is not None:
        raise out.error
    assert out.bits is not None
    return out.bits, out.stats

"""Bench rows for Cascade: each variant at n in {1e4, 1e5, 1e6} and QBER in {1, 2, 5} %, over frames
with exactly round(Q n) random errors, both roles in one thread on the loopback channel; plus a row
with 1 ms round-trip time and several blocks in flight, timed against the zero-latency run."""

from __future__ import annotations

import statistics
import time
from typing import Any

import numpy as np

from node.bench.core import BenchCase, BenchProfile
from postprocessing.cascade import DEFAULT_VARIANT, VARIANTS, reconcile_many_loopback

SIZES = (10_000, 100_000, 1_000_000)
QBERS = (0.01, 0.02, 0.05)
FRAMES = 10
IN_FLIGHT = 8


def make_frames(n: int, qber: float, count: int, seed: int = 11) -> list[tuple[np.ndarray, np.ndarray]]:
    """`count` frames (alice, bob) of n random bits, Bob's with exactly round(qber n) errors."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        alice = rng.integers(0, 2, n, dtype=np.uint8)
        bob = alice.copy()
        bob[rng.choice(n, round(qber * n), replace=False)] ^= 1
        out.append((alice, bob))
    return out


def _figures(frames: list, outcomes: list) -> dict[str, Any]:
    stats = [o.stats for o in outcomes]
    residual = sum(o.error is not None or not np.array_equal(a, o.bits) for (a, _), o in zip(frames, outcomes))
    return {
        "f": round(float(np.mean([s.efficiency for s in stats])), 4),
        "f_max": round(float(np.max([s.efficiency for s in stats])), 4),
        "leaked_bits": round(float(np.mean([s.leaked_bits for s in stats])), 1),
        "round_trips": round(float(np.mean([s.round_trips for s in stats])), 1),
        "round_trips_max": int(np.max([s.round_trips for s in stats])),
        "messages": round(float(np.mean([s.messages for s in stats])), 1),
        "kbytes_on_wire": round(float(np.mean([s.bytes_on_wire for s in stats])) / 1e3, 1),
        "residual_frames": f"{residual}/{len(frames)}",
    }


def _case(variant: str, n: int, qber: float, frames: int, max_runs: int | None) -> BenchCase:
    cpus: list[float] = []

    def run(state: list) -> dict[str, Any]:
        c0 = time.process_time()
        out = reconcile_many_loopback(state, qber, variant=variant, max_in_flight=1)
        cpus.append(time.process_time() - c0)
        # CPU time of this process (the wall-clock rate suffers when other jobs share the cores), the
        # median over the timed runs (the first run warms up): the row keeps the last run's figures
        cpu = statistics.median(cpus[1:] or cpus)
        return _figures(state, out) | {"cpu_mbit_s": round(n * frames / cpu / 1e6, 2) if cpu > 0 else None}

    return BenchCase(
        stage=f"cascade-{variant}",
        n=n,
        setup=lambda: make_frames(n, qber, frames),
        run=run,
        items=n * frames,
        params={"qber": qber, "frames": frames, "latency": "none, 1 block at a time"},
        max_runs=max_runs,
    )


def _latency_case(variant: str, n: int, qber: float, frames: int, rtt_s: float) -> BenchCase:
    def run(state: list) -> dict[str, Any]:
        out = reconcile_many_loopback(state, qber, variant=variant, latency_s=rtt_s, max_in_flight=IN_FLIGHT)
        return _figures(state, out)

    def reference(state: list) -> None:
        reconcile_many_loopback(state, qber, variant=variant, max_in_flight=1)

    return BenchCase(
        stage=f"cascade-{variant}-rtt",
        n=n,
        setup=lambda: make_frames(n, qber, frames),
        run=run,
        reference=reference,
        reference_name="no latency, 1 block at a time",
        items=n * frames,
        params={"qber": qber, "frames": frames, "rtt_ms": rtt_s * 1e3, "in_flight": IN_FLIGHT},
        max_runs=2,
        reference_max_runs=2,
    )


def cases(profile: BenchProfile) -> list[BenchCase]:
    """Quick: the default variant at 1e5 and 1e6, Q = 2 %. Default: the default variant over the whole
    n x Q grid, the others at n = 1e5, Q = 2 %, and the 1 ms row. Full: every variant over the grid."""
    d = DEFAULT_VARIANT
    if profile.quick:
        return [_case(d, 100_000, 0.02, FRAMES, 2), _case(d, 1_000_000, 0.02, 1, 2)]
    out = []
    variants = [d] + sorted(VARIANTS) if profile.full else [d]
    for variant in variants:
        for n in SIZES:
            for q in QBERS:
                out.append(_case(variant, n, q, FRAMES, 3 if n >= 1_000_000 else None))
    if not profile.full:
        out.extend(_case(v, 100_000, 0.02, FRAMES, None) for v in sorted(VARIANTS) if v != d)
    out.append(_latency_case(d, 1_000_000, 0.02, IN_FLIGHT, 0.001))
    return out


def machine_info() -> dict[str, Any]:
    """Which Cascade variant is the default."""
    return {"cascade_default_variant": DEFAULT_VARIANT}

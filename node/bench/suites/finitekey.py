"""Bench of the finite-key bounds (one call per block: cost independent of the block size) and of
one optimisation of the protocol settings. The figure per row is the key-block throughput the bound
could sustain: n bits / time of one call (each timed run makes `_CALLS` calls). No reference: the
bounds are closed formulas, held to an appendix-form re-derivation in the tests."""

from __future__ import annotations

from typing import Any

import numpy as np

from node.bench.core import BenchCase, BenchProfile

STAGE = "finitekey"
_CALLS = 100


def _block(protocol: str, n: int) -> tuple[Any, float]:
    from postprocessing.finitekey import PRESETS, DecoyStatistics, ProtocolSettings, expected_block

    if protocol == "lim2014":
        settings = ProtocolSettings((0.45, 0.17, 2e-4), (0.6, 0.25, 0.15), 0.75)
    else:
        settings = ProtocolSettings((0.45, 0.12), (0.6, 0.4), 0.75)
    b = expected_block(PRESETS[protocol], settings, 50.0, n)
    stats = DecoyStatistics(
        settings.intensities, settings.probabilities, np.round(b.stats.detections), np.round(b.stats.errors)
    )
    return stats, b.lambda_ec


def cases(profile: BenchProfile) -> list[BenchCase]:
    """finitekey.<protocol> at each size, and finitekey.optimise once at n = 1e7."""
    from postprocessing.finitekey import PRESETS, finite_key_length, optimise

    out: list[BenchCase] = []
    for protocol in ("lim2014", "rusca2018"):
        for n in profile.sizes:

            def setup(protocol: str = protocol, n: int = n) -> Any:
                return _block(protocol, n)

            def run(state: Any, protocol: str = protocol) -> dict[str, Any]:
                stats, leak = state
                for _ in range(_CALLS):
                    r = finite_key_length(protocol, stats, leak, 1e-15, 1e-10)
                return {"key_length": r.length}

            out.append(
                BenchCase(
                    stage=f"{STAGE}.{protocol}",
                    n=n,
                    setup=setup,
                    run=run,
                    items=_CALLS * 1000,
                    unit="k bounds/s",  # finite-key lengths computed for a block of n, per second
                    params={"distance_km": 50.0},
                    max_runs=3 if profile.quick else 10,
                )
            )
    n = 10_000_000

    def run_optimise(_: Any) -> dict[str, Any]:
        point = optimise("lim2014", PRESETS["lim2014"], 100.0, n)
        return {"key_rate_per_pulse": point.key_rate_per_pulse}

    out.append(
        BenchCase(
            stage=f"{STAGE}.optimise",
            n=n,
            setup=lambda: None,
            run=run_optimise,
            unit="point/s",
            items=1_000_000,  # optimised (distance, block) points per second
            params={"protocol": "lim2014", "distance_km": 100.0},
            max_runs=1 if profile.quick else 3,
        )
    )
    return out

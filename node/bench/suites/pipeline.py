"""Bench row for the whole link pipeline: both node daemons on the mock link, as fast as it runs.

Not in `--quick` (a few blocks take tens of seconds). The rate is the sustained sifted-key rate
between the first and the last block; `secret_vs_ideal` compares the mean finite-key length of
the blocks with what the link model expects for the same physics (Bob's common dead time
included), settings and measured f_EC; `dead_time_discarded` is the share of detector clicks the
common dead time removed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from node.bench.core import BenchCase, BenchProfile

MOCK_25KM = {
    "seed": 2026,
    "fibre_length_km": 25.0,
    "p_z": 0.8,
    "bob_p_z": 0.8,
    "intensities": [0.5, 0.15, 0.0],
    "class_probabilities": [0.6, 0.3, 0.1],
    "block_s": 5e-3,
}


def link_rate_case(
    stage: str,
    n: int,
    setup: Callable[[], dict[str, Any]],
    run: Callable[[dict[str, Any]], dict[str, Any]],
    params: dict[str, Any],
) -> BenchCase:
    """A row of sifted Mbit/s through a whole link at 25 km: one timed run (each takes tens of
    seconds), no warm-up; `params` are added after the distance."""
    return BenchCase(
        stage=stage,
        n=n,
        setup=setup,
        run=run,
        unit="Mbit/s sifted",
        max_runs=1,
        warmup=False,
        params={"distance_km": 25.0, **params},
    )


def _run(state: dict[str, Any]) -> dict[str, Any]:
    from node.runtime.loopback import pipeline_figures

    fig = pipeline_figures(MOCK_25KM, state["block_bits"], state["blocks"])
    return {"mbit_per_s": fig.get("sifted_mbit_per_s", 0.0), **fig}


def cases(profile: BenchProfile) -> list[BenchCase]:
    """One row per block size (1e6 and 4e6); none in --quick."""
    if profile.quick:
        return []
    sizes = [1_000_000, 4_000_000]
    out = []
    for n in sizes:
        blocks = 6 if n <= 1_000_000 else 4

        def setup(n: int = n, blocks: int = blocks) -> dict[str, Any]:
            return {"block_bits": n, "blocks": blocks}

        out.append(link_rate_case("link-pipeline", n, setup, _run, {"blocks": blocks}))
    return out

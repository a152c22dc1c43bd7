"""Bench rows for the node's own capacity: both nodes and both key managers fed by the replay source.

`link-capacity` is the sustained sifted-key rate through the whole node pipeline (sifting, Cascade,
verification, finite key, privacy amplification, delivery to both key managers) with the simulator
out of the way: the mock link at 25 km is recorded once (not timed) and replayed as fast as the
nodes take it. The row adds the secret Mbit/s, f, each process's peak RSS and the worker count.
Not in `--quick` (each row runs four processes for tens of seconds).
"""

from __future__ import annotations

from typing import Any

from node.bench.core import BenchCase, BenchProfile
from node.bench.suites.pipeline import MOCK_25KM, link_rate_case

WORKER_COUNTS = (1,)  # distillation workers per node measured (node.runtime.workers not landed yet)


def _run(state: dict[str, Any]) -> dict[str, Any]:
    from node.runtime.capacity import capacity_figures

    fig = capacity_figures(MOCK_25KM, state["block_bits"], state["blocks"])
    return {"mbit_per_s": fig.get("sifted_mbit_per_s", 0.0), "workers": state["workers"], **fig}


def cases(profile: BenchProfile) -> list[BenchCase]:
    """One row per block size (1e6, 4e6) and worker count; none in --quick."""
    if profile.quick:
        return []
    out = []
    for n, blocks in ((1_000_000, 6), (4_000_000, 4)):
        for workers in WORKER_COUNTS:

            def setup(n: int = n, blocks: int = blocks, workers: int = workers) -> dict[str, Any]:
                return {"block_bits": n, "blocks": blocks, "workers": workers}

            params = {"blocks": blocks, "workers": workers, "source": "replay"}
            out.append(link_rate_case("link-capacity", n, setup, _run, params))
    return out

"""Bench rows for the node's own capacity: both nodes and both key managers fed by the replay source.

`link-capacity` is the sustained sifted-key rate through the whole node pipeline (sifting, Cascade,
verification, finite key, privacy amplification, delivery to both key managers) with the simulator
out of the way: the mock link at 25 km is recorded once (not timed) and replayed as fast as the
nodes take it. The row adds the secret Mbit/s, f, each process's peak RSS, its CPU per sifted Mbit
and each node thread's (`thread_cpu_s_per_sifted_mbit`), the capacity model's rate for this machine
(`model_here`) and for one node per 16-core server (`projection_16_cores`, node.runtime.capacitymodel)
and the worker count; one row per block size and worker count (1, 2, 4, ... up to the usable
cores, where the node knows `[link] workers`). Not in `--quick` (each row runs four processes for
tens of seconds). `--sizes` replaces the block sizes 1e6 and 4e6.
"""

from __future__ import annotations

import os
from typing import Any

from node.bench.core import BenchCase, BenchProfile
from node.bench.suites.pipeline import MOCK_25KM, link_rate_case

BLOCKS = {1_000_000: 6, 4_000_000: 4}  # blocks per row by block size (3 for any other size)


def usable_cores() -> int:
    """The cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def worker_counts() -> tuple[int, ...]:
    """Distillation workers per node to measure: 1, 2, 4, ... up to the usable cores (at least 1 and
    2); only 1 where the node's config does not know `[link] workers` yet."""
    from node.runtime.capacity import node_knows_workers

    if not node_knows_workers():
        return (1,)
    cores = usable_cores()
    counts = [1, 2]
    while counts[-1] * 2 <= cores:
        counts.append(counts[-1] * 2)
    return tuple(counts)


def _run(state: dict[str, Any]) -> dict[str, Any]:
    from node.runtime.capacity import capacity_figures
    from node.runtime.capacitymodel import model_figures

    fig = capacity_figures(MOCK_25KM, state["block_bits"], state["blocks"], state["workers"])
    fig.update(model_figures(fig, state["workers"], usable_cores()))
    return {"mbit_per_s": fig.get("sifted_mbit_per_s", 0.0), "workers": state["workers"], **fig}


def cases(profile: BenchProfile) -> list[BenchCase]:
    """One row per block size (1e6, 4e6 or --sizes) and worker count; none in --quick."""
    if profile.quick:
        return []
    sizes = profile.sizes if profile.explicit_sizes else tuple(BLOCKS)
    out = []
    for n in sizes:
        blocks = BLOCKS.get(n, 3)
        for workers in worker_counts():

            def setup(n: int = n, blocks: int = blocks, workers: int = workers) -> dict[str, Any]:
                return {"block_bits": n, "blocks": blocks, "workers": workers}

            params = {"blocks": blocks, "workers": workers, "source": "replay"}
            out.append(link_rate_case("link-capacity", n, setup, _run, params))
    return out

"""Bench row `link-soak`: the link runs for `--duration` seconds (default 600) and the row shows each
process's RSS over the run, so "memory does not grow" is a measured figure, not a hope.

Both nodes and both key managers run as processes on the mock link at 25 km fed live (the replay
cannot cover ten minutes, see `node.runtime.capacity.soak_figures`); the row's `rss` gives, per
process, the first, median, last and largest RSS after a warm-up of a fifth of the run and the
least-squares slope in MB per minute. Run only when `--stage link-soak` names it in full (it takes
the whole duration); `--sizes` gives the block sizes (default 4e6). Both nodes run the worker count
a deployment gets by default (`[link] workers` unset: one per usable core, at most 8), so the row
holds the blocks in flight a node holds in service.
"""

from __future__ import annotations

from typing import Any

from node.bench.core import BenchCase, BenchProfile
from node.bench.suites.pipeline import MOCK_25KM, link_rate_case

STAGE = "link-soak"
ON_REQUEST_STAGES = (STAGE,)
DEFAULT_BLOCK_BITS = 4_000_000


def _run(state: dict[str, Any]) -> dict[str, Any]:
    from node.runtime.capacity import soak_figures

    fig = soak_figures(MOCK_25KM, state["block_bits"], state["duration_s"], state["workers"])
    return {"mbit_per_s": fig.get("sifted_mbit_per_s", 0.0), "workers": state["workers"], **fig}


def cases(profile: BenchProfile) -> list[BenchCase]:
    """One row per block size (--sizes, default 4e6), only when --stage link-soak asks for it."""
    if STAGE not in profile.stages:
        return []
    from node.runtime.config import default_workers

    workers = default_workers()
    sizes = profile.sizes if profile.explicit_sizes else (DEFAULT_BLOCK_BITS,)
    out = []
    for n in sizes:

        def setup(n: int = n) -> dict[str, Any]:
            return {"block_bits": n, "duration_s": profile.duration_s, "workers": workers}

        params = {"duration_s": profile.duration_s, "workers": workers, "source": "mock"}
        out.append(link_rate_case(STAGE, n, setup, _run, params))
    return out

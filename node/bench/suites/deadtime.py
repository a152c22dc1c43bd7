"""Bench row for Bob's common dead-time filter: `dead-time` times `common_dead_time_mask` over the
clicks of all detectors against the same rule as a plain numpy expression (without the coincidence
window, which numpy cannot express without a loop)."""

from __future__ import annotations

from typing import Any

import numpy as np

from node.bench.core import BenchCase, BenchProfile
from postprocessing.deadtime import common_dead_time_mask

DEAD_TIME_PS = 60_000  # 50 ns detectors + 10 ns margin


def _setup(n: int) -> Any:
    def setup() -> dict[str, Any]:
        # clicks at ~20 MHz in total: a few per dead time, so both branches of the rule are taken
        gaps = np.random.default_rng(5).exponential(50_000.0, n).astype(np.int64) + 1
        return {"t": np.cumsum(gaps)}

    return setup


def _numpy_mask(state: dict[str, Any]) -> None:
    t = state["t"]
    keep = np.empty(t.size, np.bool_)
    keep[0] = True
    np.greater_equal(np.diff(t), DEAD_TIME_PS, out=keep[1:])


def _run(state: dict[str, Any]) -> dict[str, Any]:
    keep = common_dead_time_mask(state["t"], DEAD_TIME_PS, coincidence_ps=400)
    return {"discarded_fraction": round(1.0 - float(keep.mean()), 4)}


def cases(profile: BenchProfile) -> list[BenchCase]:
    """`dead-time` at the profile's sizes (clicks of all detectors)."""
    return [
        BenchCase(
            stage="dead-time",
            n=n,
            setup=_setup(n),
            run=_run,
            reference=_numpy_mask,
            unit="Mclick/s",
            params={"dead_time_ps": DEAD_TIME_PS, "coincidence_ps": 400},
            reference_name="numpy diff >= dead time",
            reference_max_runs=3,
        )
        for n in profile.sizes
    ]

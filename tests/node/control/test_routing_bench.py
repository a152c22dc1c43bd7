"""The routing bench rows run and report figures that make sense (small grid only)."""

from __future__ import annotations

from node.bench.core import BenchProfile
from node.bench.suites.routing import cases, grid


def test_grid_has_the_right_number_of_links() -> None:
    links, nodes = grid(4)
    assert len(nodes) == 16 and len(links) == 2 * 4 * 3


def test_quick_cases_run_and_reroute_every_relay_that_crossed_the_failed_link() -> None:
    rows = [c for c in cases(BenchProfile(sizes=(), quick=True)) if c.n == 25]
    assert {c.stage for c in rows} == {"routing.choose", "routing.reroute"}
    for case in rows:
        out = case.run(case.setup())
        assert out is not None
        if case.stage == "routing.reroute":
            assert out["relays_crossing"] > 0 and out["rerouted"] == out["relays_crossing"]
        else:
            assert 1 <= out["mean_hops"] <= 8

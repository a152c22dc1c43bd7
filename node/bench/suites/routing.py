"""Bench rows for the QKDN controller: relay route choice on square grids of 25, 100 and 400 nodes,
and the controller's reaction to a link failure (rerouting every relay in flight that crossed it)."""

from __future__ import annotations

import random
import time
from collections import Counter
from typing import Any

from node.bench.core import BenchCase, BenchProfile
from node.control.controller import RelayController
from node.control.routing import LinkState, choose_route

ROUTES = 50
RELAYS = 200
REQUEST_BITS = 256


def grid(side: int, key_bits: int = 10**9) -> tuple[list[LinkState], list[str]]:
    """A side x side grid of nodes, each joined to its right and lower neighbours."""
    links, nodes = [], []
    for i in range(side):
        for j in range(side):
            n = f"n{i}_{j}"
            nodes.append(n)
            if i + 1 < side:
                links.append(LinkState(f"{n}-v", n, f"n{i + 1}_{j}", True, key_bits, 1000.0))
            if j + 1 < side:
                links.append(LinkState(f"{n}-h", n, f"n{i}_{j + 1}", True, key_bits, 1000.0))
    return links, nodes


def _pairs(nodes: list[str], count: int) -> list[tuple[str, str]]:
    rng = random.Random(7)  # which node pairs to route: not a secret
    return [tuple(rng.sample(nodes, 2)) for _ in range(count)]  # type: ignore[misc]


def _choose_case(side: int) -> BenchCase:
    def setup() -> tuple[list[LinkState], list[tuple[str, str]]]:
        links, nodes = grid(side)
        return links, _pairs(nodes, ROUTES)

    def run(state: tuple[list[LinkState], list[tuple[str, str]]]) -> dict[str, Any]:
        links, pairs = state
        hops = [r.hops for a, b in pairs if (r := choose_route(links, a, b, REQUEST_BITS)) is not None]
        return {"mean_hops": round(sum(hops) / len(hops), 2)}

    return BenchCase(
        stage="routing.choose",
        n=side * side,
        setup=setup,
        run=run,
        unit="kroute/s",
        items=ROUTES * 1000,
        params={"network": f"{side}x{side} grid", "routes": ROUTES},
    )


def _reroute_case(side: int) -> BenchCase:
    def setup() -> tuple[list[LinkState], list[tuple[str, str]]]:
        links, nodes = grid(side)
        return links, _pairs(nodes, RELAYS)

    def run(state: tuple[list[LinkState], list[tuple[str, str]]]) -> dict[str, Any]:
        links, pairs = state
        ctl = RelayController(links)
        for k, (a, b) in enumerate(pairs):
            ctl.start_relay(f"r{k}", a, b, REQUEST_BITS)
        busiest, crossing = Counter(lk for r in ctl.in_flight().values() for lk in r.route.links).most_common(1)[0]
        t0 = time.perf_counter()
        reroutes = ctl.link_down(busiest)
        dt = time.perf_counter() - t0
        return {
            "relays_crossing": crossing,
            "rerouted": sum(r.new_route is not None for r in reroutes),
            "fail_to_reroutes_ms": round(dt * 1e3, 2),
        }

    return BenchCase(
        stage="routing.reroute",
        n=side * side,
        setup=setup,
        run=run,
        unit="krelay/s",
        items=RELAYS * 1000,
        params={
            "network": f"{side}x{side} grid",
            "relays": RELAYS,
            "timed": "start all relays, then fail the busiest link",
        },
    )


def cases(profile: BenchProfile) -> list[BenchCase]:
    """Grids of 25 and 100 nodes (400 too unless quick)."""
    sides = (5, 10) if profile.quick else (5, 10, 20)
    return [_choose_case(s) for s in sides] + [_reroute_case(s) for s in sides]

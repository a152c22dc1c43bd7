"""Relay routing: feasibility, optimality against a brute-force search, rerouting, determinism."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from node.control.routing import (
    LinkState,
    Route,
    choose_route,
    consume,
    hop_cost,
    hop_usable,
    link_states_from_topology,
    reroute,
    route_is_feasible,
)
from node.control.topology import example_topology

NODES = "ABCDEF"


def all_simple_routes(
    links: list[LinkState],
    source: str,
    destination: str,
    request: int,
    reserve: int,
    horizon: float,
    avoid: frozenset[str] = frozenset(),
) -> list[Route]:
    """Reference: every simple path of usable links, by depth-first enumeration."""
    usable = [lk for lk in links if lk.link_id not in avoid and hop_usable(lk, request, reserve)]
    out: list[Route] = []

    def walk(nodes: tuple[str, ...], path: tuple[str, ...], cost: float) -> None:
        if nodes[-1] == destination:
            out.append(Route(nodes, path, cost))
            return
        for lk in usable:
            if nodes[-1] in (lk.a, lk.b):
                nxt = lk.other_end(nodes[-1])
                if nxt not in nodes:
                    walk(
                        nodes + (nxt,),
                        path + (lk.link_id,),
                        cost + hop_cost(lk, request, reserve_bits=reserve, horizon_s=horizon),
                    )

    walk((source,), (), 0.0)
    return out


@st.composite
def networks(draw: st.DrawFn) -> tuple[list[LinkState], str, str, int, int]:
    n = draw(st.integers(3, 6))
    names = NODES[:n]
    pairs = draw(
        st.lists(st.sampled_from(list(itertools.combinations(names, 2))), min_size=1, max_size=12, unique=True)
    )
    links = [
        LinkState(
            f"{a}{b}",
            a,
            b,
            draw(st.booleans() | st.just(True)),
            draw(st.integers(0, 5000)),
            draw(st.sampled_from([0.0, 10.0, 1000.0])),
        )
        for a, b in pairs
    ]
    source, destination = draw(
        st.lists(st.sampled_from(sorted({x for p in pairs for x in p})), min_size=2, max_size=2, unique=True)
    )
    return links, source, destination, draw(st.integers(1, 3000)), draw(st.integers(0, 500))


def assert_valid(route: Route, links: list[LinkState], request: int, reserve: int) -> None:
    index = {lk.link_id: lk for lk in links}
    assert len(set(route.nodes)) == len(route.nodes), "route revisits a node"
    assert len(route.links) == len(route.nodes) - 1
    for (u, v), link_id in zip(zip(route.nodes, route.nodes[1:]), route.links):
        lk = index[link_id]
        assert {lk.a, lk.b} == {u, v}
        assert lk.up and lk.key_bits >= request + reserve
    assert route_is_feasible(route, links, request, reserve_bits=reserve)


@given(networks(), st.sampled_from([0.0, 10.0]))
def test_chosen_route_is_a_simple_path_of_up_links_holding_enough_key_and_the_cheapest(net, horizon) -> None:
    links, src, dst, request, reserve = net
    route = choose_route(links, src, dst, request, reserve_bits=reserve, horizon_s=horizon)
    reference = all_simple_routes(links, src, dst, request, reserve, horizon)
    if not reference:
        assert route is None
        return
    assert route is not None
    assert route.nodes[0] == src and route.nodes[-1] == dst
    assert_valid(route, links, request, reserve)
    assert route.cost == pytest.approx(min(r.cost for r in reference), rel=1e-12)


@given(networks(), st.integers(1, 4))
def test_hop_limit_gives_the_cheapest_route_within_it(net, max_hops) -> None:
    links, src, dst, request, reserve = net
    route = choose_route(links, src, dst, request, reserve_bits=reserve, max_hops=max_hops)
    reference = [r for r in all_simple_routes(links, src, dst, request, reserve, 10.0) if r.hops <= max_hops]
    if not reference:
        assert route is None
    else:
        assert route is not None and route.hops <= max_hops
        assert route.cost == pytest.approx(min(r.cost for r in reference), rel=1e-12)


@given(networks(), st.data())
def test_no_route_when_the_graph_is_cut(net, data) -> None:
    links, src, dst, request, reserve = net
    # Any cut: a side holding the source but not the destination; every link across it goes down.
    others = sorted({n for lk in links for n in (lk.a, lk.b)} - {src, dst})
    side = {src} | set(data.draw(st.lists(st.sampled_from(others), unique=True) if others else st.just([])))
    cut = [
        LinkState(lk.link_id, lk.a, lk.b, lk.up and ((lk.a in side) == (lk.b in side)), lk.key_bits, lk.key_rate_bps)
        for lk in links
    ]
    assert choose_route(cut, src, dst, request, reserve_bits=reserve) is None


@given(networks(), st.data())
def test_rerouting_avoids_the_failed_link(net, data) -> None:
    links, src, dst, request, reserve = net
    route = choose_route(links, src, dst, request, reserve_bits=reserve)
    if route is None:
        return
    failed = data.draw(st.sampled_from(route.links))
    down = [
        LinkState(lk.link_id, lk.a, lk.b, lk.up and lk.link_id != failed, lk.key_bits, lk.key_rate_bps) for lk in links
    ]
    new = reroute(route, down, request, reserve_bits=reserve, failed_links=[failed])
    if new is None:
        assert not all_simple_routes(down, src, dst, request, reserve, 10.0)
    else:
        assert failed not in new.links and (new.nodes[0], new.nodes[-1]) == (src, dst)
        assert_valid(new, down, request, reserve)


@given(networks())
def test_same_snapshot_gives_the_same_route_whatever_the_link_order(net) -> None:
    links, src, dst, request, reserve = net
    assert choose_route(links, src, dst, request, reserve_bits=reserve) == choose_route(
        list(reversed(links)), src, dst, request, reserve_bits=reserve
    )


def test_ring_relay_takes_the_short_way_then_the_other_way_when_a_link_goes_down() -> None:
    links = link_states_from_topology(example_topology("ring5"), key_bits=100_000, key_rate_bps=1000)
    route = choose_route(links, "A", "C", 256)
    assert route is not None and route.nodes == ("A", "B", "C") and route.links == ("AB", "BC")
    down = [LinkState(lk.link_id, lk.a, lk.b, lk.link_id != "BC", lk.key_bits, lk.key_rate_bps) for lk in links]
    assert not route_is_feasible(route, down, 256)
    new = reroute(route, down, 256)
    assert new is not None and new.nodes == ("A", "E", "D", "C")


def test_a_link_running_dry_moves_relays_to_the_longer_route() -> None:
    links = link_states_from_topology(example_topology("ring5"), key_bits=10_000)
    route = choose_route(links, "A", "C", 1000)
    assert route is not None and route.hops == 2
    while route is not None and route.hops == 2:
        links = consume(links, route, 1000)
        route = reroute(route, links, 1000)
    assert route is not None and route.nodes == ("A", "E", "D", "C")
    assert all(lk.key_bits >= 0 for lk in links)


def test_a_nearly_dry_short_route_loses_to_a_plentiful_longer_one() -> None:
    links = [
        LinkState("AB", "A", "B", True, 1000),
        LinkState("BC", "B", "C", True, 1000),
        LinkState("AD", "A", "D", True, 10**9),
        LinkState("DE", "D", "E", True, 10**9),
        LinkState("EC", "E", "C", True, 10**9),
    ]
    route = choose_route(links, "A", "C", 1000)
    assert route is not None and route.links == ("AD", "DE", "EC")
    route = choose_route(links, "A", "C", 100)
    assert route is not None and route.links == ("AB", "BC")


def test_key_rate_counts_toward_headroom() -> None:
    slow = LinkState("L", "A", "B", True, 2000, 0.0)
    fast = LinkState("L", "A", "B", True, 2000, 1e6)
    assert hop_cost(fast, 1000) < hop_cost(slow, 1000) <= 2.0
    assert hop_cost(slow, 2000) == 2.0


def test_reroute_keeps_a_route_that_is_still_feasible() -> None:
    links = link_states_from_topology(example_topology("line3"), key_bits=5000)
    route = choose_route(links, "A", "C", 100)
    assert route is not None and reroute(route, links, 100) is route


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"source": "X", "destination": "C", "request_bits": 1}, "source"),
        ({"source": "A", "destination": "A", "request_bits": 1}, "destination"),
        ({"source": "A", "destination": "C", "request_bits": 0}, "request_bits"),
        ({"source": "A", "destination": "C", "request_bits": 1, "reserve_bits": -1}, "reserve_bits"),
        ({"source": "A", "destination": "C", "request_bits": 1, "horizon_s": float("nan")}, "horizon_s"),
        ({"source": "A", "destination": "C", "request_bits": 1, "max_hops": 0}, "max_hops"),
    ],
)
def test_bad_requests_raise_value_error_naming_the_argument(kwargs, match) -> None:
    links = link_states_from_topology(example_topology("line3"), key_bits=5000)
    with pytest.raises(ValueError, match=match):
        choose_route(links, **kwargs)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"link_id": "", "a": "A", "b": "B"}, "link_id"),
        ({"link_id": "L", "a": "A", "b": "A"}, "a, b"),
        ({"link_id": "L", "a": "A", "b": "B", "key_bits": -1}, "key_bits"),
        ({"link_id": "L", "a": "A", "b": "B", "key_rate_bps": float("inf")}, "key_rate_bps"),
    ],
)
def test_bad_link_states_raise_value_error(kwargs, match) -> None:
    with pytest.raises(ValueError, match=match):
        LinkState(**kwargs)


def test_duplicate_link_ids_in_a_snapshot_are_rejected() -> None:
    with pytest.raises(ValueError, match="appears twice"):
        choose_route([LinkState("L", "A", "B", True, 9), LinkState("L", "B", "C", True, 9)], "A", "C", 1)


def test_consume_refuses_to_overdraw_a_link() -> None:
    links = [LinkState("AB", "A", "B", True, 50)]
    with pytest.raises(ValueError, match="cannot give"):
        consume(links, Route(("A", "B"), ("AB",), 1.0), 51)

"""Relay controller: reservations never over-commit a link; relays in flight reroute around failures."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from node.control.controller import RelayController
from node.control.routing import LinkState, link_states_from_topology
from node.control.topology import example_topology


def ring(key_bits: int = 10_000, **kwargs) -> RelayController:
    return RelayController(link_states_from_topology(example_topology("ring5"), key_bits=key_bits), **kwargs)


def check_invariants(ctl: RelayController, destinations: dict[str, str]) -> None:
    links = {lk.link_id: lk for lk in ctl.snapshot(net_of_reservations=False)}
    for lk in links.values():
        assert ctl.reserved_bits(lk.link_id) <= lk.key_bits - ctl.reserve_bits or ctl.reserved_bits(lk.link_id) == 0
    for relay in ctl.in_flight().values():
        assert len(set(relay.path)) == len(relay.path), "relay path loops"
        assert relay.route.nodes[-1] == destinations[relay.relay_id]
        for (u, v), lid in zip(zip(relay.route.nodes, relay.route.nodes[1:]), relay.route.links):
            assert {links[lid].a, links[lid].b} == {u, v}
        assert all(links[lid].up for lid in relay.pending_links)


def test_a_relay_reserves_its_key_on_every_hop_until_each_hop_is_done() -> None:
    ctl = ring()
    route = ctl.start_relay("r1", "A", "C", 1000)
    assert route is not None and route.links == ("AB", "BC")
    assert ctl.reserved_bits("AB") == ctl.reserved_bits("BC") == 1000
    ctl.hop_done("r1", "AB")
    assert ctl.reserved_bits("AB") == 0 and ctl.reserved_bits("BC") == 1000
    ctl.hop_done("r1", "BC")
    assert ctl.reserved_bits("BC") == 0
    assert ctl.finish_relay("r1").at_node == "C" and ctl.in_flight() == {}


def test_concurrent_relays_never_count_on_the_same_link_key() -> None:
    ctl = ring(key_bits=2500)
    routes = [ctl.start_relay(f"r{i}", "A", "C", 1000) for i in range(6)]
    # AB, BC carry two relays (2 x 1000 <= 2500), then the long way E-D carries two more, then none
    assert [r.hops if r else None for r in routes] == [2, 2, 3, 3, None, None]
    for lid in ("AB", "BC", "EA", "DE", "CD"):
        assert ctl.reserved_bits(lid) <= 2500


def test_a_failed_link_moves_relays_in_flight_to_the_other_way() -> None:
    ctl = ring()
    ctl.start_relay("r1", "A", "C", 1000)
    ctl.start_relay("r2", "A", "C", 1000)
    ctl.hop_done("r2", "AB")  # r2 is at B
    reroutes = {r.relay_id: r for r in ctl.link_down("BC")}
    assert reroutes["r1"].from_node == "A" and reroutes["r1"].new_route is not None
    assert reroutes["r1"].new_route.nodes == ("A", "E", "D", "C")
    # r2 is at B: it cannot go back through A (the key must not loop), and B's only other link is down
    assert reroutes["r2"].from_node == "B" and reroutes["r2"].new_route is None
    assert set(ctl.in_flight()) == {"r1"} and ctl.reserved_bits("BC") == 0
    assert ctl.in_flight()["r1"].path == ("A", "E", "D", "C")


def test_a_relay_part_way_keeps_its_travelled_path_after_a_reroute() -> None:
    links = [
        LinkState("AB", "A", "B", True, 5000),
        LinkState("BC", "B", "C", True, 5000),
        LinkState("BD", "B", "D", True, 5000),
        LinkState("DC", "D", "C", True, 5000),
    ]
    ctl = RelayController(links)
    route = ctl.start_relay("r", "A", "C", 100)
    assert route is not None and route.nodes == ("A", "B", "C")
    ctl.hop_done("r", "AB")
    (reroute,) = ctl.link_down("BC")
    assert reroute.from_node == "B" and reroute.new_route is not None
    assert reroute.new_route.nodes == ("B", "D", "C")
    assert ctl.in_flight()["r"].path == ("A", "B", "D", "C")


def test_a_pool_running_below_its_reservations_reroutes_the_newest_relay() -> None:
    ctl = ring(key_bits=5000)
    ctl.start_relay("old", "A", "C", 2000)
    ctl.start_relay("new", "A", "C", 2000)
    assert ctl.in_flight()["new"].route.links == ("AB", "BC")
    reroutes = ctl.update_link("BC", key_bits=3000)  # another user drew key: only one relay still fits
    assert [r.relay_id for r in reroutes] == ["new"]
    assert ctl.in_flight()["new"].route.nodes == ("A", "E", "D", "C")
    assert ctl.in_flight()["old"].route.links == ("AB", "BC")


def test_a_link_coming_back_is_used_again() -> None:
    ctl = ring()
    ctl.link_down("AB")
    detour = ctl.route("A", "C", 100)
    assert detour is not None and detour.nodes == ("A", "E", "D", "C")
    assert ctl.update_link("AB", up=True) == []
    direct = ctl.route("A", "C", 100)
    assert direct is not None and direct.nodes == ("A", "B", "C")


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda c: c.update_link("XY", up=False), "link_id: 'XY' is not a known link"),
        (lambda c: c.start_relay("", "A", "C", 1), "relay_id"),
        (lambda c: c.hop_done("nope", "AB"), "relay_id: 'nope' is not in flight"),
        (lambda c: c.finish_relay("nope"), "relay_id"),
        (lambda c: c.update_link("AB", key_bits=-5), "key_bits"),
    ],
)
def test_bad_calls_raise_value_error_naming_the_argument(call, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        call(ring())


def test_hops_must_be_reported_in_order_and_relay_ids_are_unique() -> None:
    ctl = ring()
    ctl.start_relay("r", "A", "C", 10)
    with pytest.raises(ValueError, match="expects its next hop on AB"):
        ctl.hop_done("r", "BC")
    with pytest.raises(ValueError, match="already in flight"):
        ctl.start_relay("r", "A", "D", 10)


operations = st.lists(
    st.one_of(
        st.tuples(st.just("start"), st.sampled_from("ABCDE"), st.sampled_from("ABCDE"), st.integers(1, 4000)),
        st.tuples(st.just("hop"), st.integers(0, 20)),
        st.tuples(st.just("finish"), st.integers(0, 20)),
        st.tuples(st.just("down"), st.sampled_from(["AB", "BC", "CD", "DE", "EA"])),
        st.tuples(st.just("up"), st.sampled_from(["AB", "BC", "CD", "DE", "EA"])),
        st.tuples(st.just("pool"), st.sampled_from(["AB", "BC", "CD", "DE", "EA"]), st.integers(0, 12_000)),
    ),
    max_size=40,
)


@given(operations, st.integers(0, 500))
def test_any_sequence_of_events_keeps_reservations_covered_and_routes_valid(ops, reserve) -> None:
    ctl = ring(key_bits=8000, reserve_bits=reserve)
    destinations: dict[str, str] = {}
    n = 0
    for op in ops:
        ids = sorted(ctl.in_flight())
        if op[0] == "start" and op[1] != op[2]:
            n += 1
            if ctl.start_relay(f"r{n}", op[1], op[2], op[3]) is not None:
                destinations[f"r{n}"] = op[2]
        elif op[0] in ("hop", "finish") and ids:
            relay = ctl.in_flight()[ids[op[1] % len(ids)]]
            if op[0] == "finish" or not relay.pending_links:
                ctl.finish_relay(relay.relay_id)
            else:
                ctl.hop_done(relay.relay_id, relay.pending_links[0])
        elif op[0] in ("down", "up", "pool"):
            before = ctl.in_flight()
            if op[0] == "pool":
                reroutes = ctl.update_link(op[1], key_bits=op[2])
            else:
                reroutes = ctl.update_link(op[1], up=op[0] == "up")
            for r in reroutes:
                assert r.relay_id in before and r.from_node == before[r.relay_id].at_node
                if r.new_route is None:
                    assert r.relay_id not in ctl.in_flight()
                else:
                    assert r.new_route.nodes[0] == r.from_node and (op[0] != "down" or op[1] not in r.new_route.links)
        check_invariants(ctl, destinations)

"""A key manager's control plane: a relay keeps its planned route while the next hop is usable,
is rerouted around failed links otherwise, and relays in flight never count on the same link key."""

from __future__ import annotations

from node.control.plane import ControlPlane


def square(bits: int = 1000) -> ControlPlane:
    """Node A of the square A-B-C-D-A, every link holding `bits` at both ends."""
    plane = ControlPlane("A", {"B": "AB", "D": "DA"}, ["SAE_A"])
    plane.lsdb.originate({"B": bits, "D": bits})
    ring = {"B": [("A", "AB"), ("C", "BC")], "C": [("B", "BC"), ("D", "CD")], "D": [("C", "CD"), ("A", "DA")]}
    plane.merge(
        {
            "lsdb": {
                n: {
                    "seq": 1,
                    "saes": [f"SAE_{n}"],
                    "links": [{"peer": p, "link": lk, "up": True, "bits": bits} for p, lk in links],
                }
                for n, links in ring.items()
            }
        }
    )
    return plane


def test_a_relay_keeps_its_planned_route_while_the_next_hop_is_usable():
    plane = square()
    decision = plane.next_route("C", 100, ["A", "D", "C"], set(), retry=False)
    assert decision is not None and decision.nodes == ("A", "D", "C") and not decision.rerouted


def test_a_relay_whose_planned_next_hop_is_down_is_rerouted():
    plane = square()
    plane.set_link_up("D", False)
    decision = plane.next_route("C", 100, ["A", "D", "C"], set(), retry=False)
    assert decision is not None and decision.nodes == ("A", "B", "C") and decision.rerouted


def test_a_retry_avoids_the_links_that_failed_and_none_left_means_no_route():
    plane = square()
    decision = plane.next_route("C", 100, None, {"AB"}, retry=True)
    assert decision is not None and decision.nodes == ("A", "D", "C") and decision.rerouted
    assert plane.next_route("C", 100, None, {"AB", "DA"}, retry=True) is None


def test_relays_in_flight_never_count_on_the_same_link_key_and_release_frees_it():
    plane = square(bits=1000)
    first = plane.next_route("C", 600, None, set(), retry=False)
    assert first is not None
    ticket = plane.reserve("r1", first.nodes, 600)
    second = plane.next_route("C", 600, None, set(), retry=False)
    assert second is not None and set(second.nodes[1:2]) != set(first.nodes[1:2])  # the other way round
    ticket2 = plane.reserve("r2", second.nodes, 600)
    assert plane.route("C", 600) is None  # both ways are spoken for
    plane.release(ticket)
    plane.release(ticket2)
    assert plane.route("C", 600) is not None

"""QKDN control layer (ITU-T Y.3802): the network's topology and the routing of key relay over it.

`topology` (the network's TOML description), `routing` (routes over a snapshot of links),
`controller` (reservations and rerouting of relays in flight), `linkstate` (a key manager's
link-state database) and `plane` (the control plane each key manager runs: gossip, routes,
reservations, reroute decisions); `sdn` (ETSI GS QKD 015 over RESTCONF).
"""

from __future__ import annotations

from node.control.controller import Relay, RelayController, Reroute
from node.control.linkstate import LinkStateDb
from node.control.plane import ControlPlane, RouteDecision
from node.control.routing import (
    LinkState,
    Route,
    choose_route,
    hop_cost,
    reroute,
    route_is_feasible,
)
from node.control.topology import (
    EXAMPLES,
    LinkSpec,
    NodeSpec,
    Topology,
    example_topology,
    load_topology,
)

__all__ = [
    "EXAMPLES",
    "ControlPlane",
    "LinkSpec",
    "LinkState",
    "LinkStateDb",
    "NodeSpec",
    "Relay",
    "RelayController",
    "Reroute",
    "Route",
    "RouteDecision",
    "Topology",
    "choose_route",
    "example_topology",
    "hop_cost",
    "load_topology",
    "reroute",
    "route_is_feasible",
]

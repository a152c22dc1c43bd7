"""QKDN control layer (ITU-T Y.3802): the network's topology and the routing of key relay over it."""

from __future__ import annotations

from node.control.controller import Relay, RelayController, Reroute
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

__all__ = ["EXAMPLES", "LinkSpec", "LinkState", "NodeSpec", "Relay", "RelayController", "Reroute", "Route", "Topology", "choose_route",
           "example_topology", "hop_cost", "load_topology", "reroute", "route_is_feasible"]

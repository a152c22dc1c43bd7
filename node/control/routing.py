"""Routes for trusted-node key relay (ITU-T Y.3803/Y.3804): pure functions over a snapshot of the
network's links, so the controller can recompute a route whenever a link goes down or runs dry.

Feasibility: a route is a simple path of links that are up and each hold at least
``request_bits + reserve_bits`` of key (every hop consumes ``request_bits`` as a one-time pad;
``reserve_bits`` stays for the link's own authentication).

Metric: each hop costs ``1 + request / (headroom + request)``, where
``headroom = key_bits - reserve_bits - request_bits + key_rate_bps * horizon_s`` is what the link
holds after the relay plus what it distils over the horizon. A hop thus costs between 1 (plenty of
key) and 2 (the relay would empty it with no key coming): fewer hops win, but a route one hop
longer is taken when the shorter one would drain its links. Ties go to the fewer hops, then to the
lexicographically smallest node sequence, so the same snapshot always gives the same route.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from node.control.topology import Topology


@dataclass(frozen=True)
class LinkState:
    """One QKD link as the controller sees it now: its ends, whether it is up, the key its pool holds
    for relaying (bits, the same at both ends) and the rate at which it distils key."""

    link_id: str
    a: str
    b: str
    up: bool = True
    key_bits: int = 0
    key_rate_bps: float = 0.0

    def __post_init__(self) -> None:
        if not self.link_id or not isinstance(self.link_id, str):
            raise ValueError(f"link_id: must be a non-empty str, got {self.link_id!r}")
        if not (isinstance(self.a, str) and isinstance(self.b, str) and self.a and self.b and self.a != self.b):
            raise ValueError(f"a, b: must be two different node names, got {self.a!r}, {self.b!r}")
        if isinstance(self.key_bits, bool) or not isinstance(self.key_bits, int) or self.key_bits < 0:
            raise ValueError(f"key_bits: must be an int >= 0, got {self.key_bits!r}")
        if not (
            isinstance(self.key_rate_bps, (int, float)) and math.isfinite(self.key_rate_bps) and self.key_rate_bps >= 0
        ):
            raise ValueError(f"key_rate_bps: must be a finite number >= 0, got {self.key_rate_bps!r}")

    def other_end(self, node: str) -> str:
        """The node at the other end from `node`."""
        return self.b if node == self.a else self.a


@dataclass(frozen=True)
class Route:
    """A relay route: the nodes from source to destination and the link used for each hop."""

    nodes: tuple[str, ...]
    links: tuple[str, ...]
    cost: float

    @property
    def hops(self) -> int:
        """Number of links the key crosses."""
        return len(self.links)

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready view (the 014 extension field carries the path)."""
        return {"nodes": list(self.nodes), "links": list(self.links), "cost": self.cost}


def link_states_from_topology(topology: Topology, key_bits: int = 0, key_rate_bps: float = 0.0) -> list[LinkState]:
    """A snapshot with every link of `topology` up and holding the same key (a starting point)."""
    return [LinkState(lk.id, lk.a, lk.b, True, key_bits, key_rate_bps) for lk in topology.links]


def _check_request(request_bits: int, reserve_bits: int, horizon_s: float) -> None:
    if isinstance(request_bits, bool) or not isinstance(request_bits, int) or request_bits < 1:
        raise ValueError(f"request_bits: must be an int >= 1, got {request_bits!r}")
    if isinstance(reserve_bits, bool) or not isinstance(reserve_bits, int) or reserve_bits < 0:
        raise ValueError(f"reserve_bits: must be an int >= 0, got {reserve_bits!r}")
    if not (isinstance(horizon_s, (int, float)) and math.isfinite(horizon_s) and horizon_s >= 0):
        raise ValueError(f"horizon_s: must be a finite number >= 0, got {horizon_s!r}")


def _index(links: Iterable[LinkState]) -> dict[str, LinkState]:
    out: dict[str, LinkState] = {}
    for lk in links:
        if not isinstance(lk, LinkState):
            raise ValueError(f"links: must hold LinkState, got {type(lk).__name__}")
        if lk.link_id in out:
            raise ValueError(f"links: link id {lk.link_id!r} appears twice")
        out[lk.link_id] = lk
    return out


def hop_usable(link: LinkState, request_bits: int, reserve_bits: int = 0) -> bool:
    """Whether one relay of `request_bits` may cross `link` now."""
    return link.up and link.key_bits >= request_bits + reserve_bits


def hop_cost(link: LinkState, request_bits: int, *, reserve_bits: int = 0, horizon_s: float = 10.0) -> float:
    """The cost of crossing a usable `link` (module docstring): 1 plus up to 1 as it nears dry."""
    headroom = link.key_bits - reserve_bits - request_bits + link.key_rate_bps * horizon_s
    return 1.0 + request_bits / (headroom + request_bits)


def choose_route(
    links: Sequence[LinkState],
    source: str,
    destination: str,
    request_bits: int,
    *,
    reserve_bits: int = 0,
    horizon_s: float = 10.0,
    avoid_links: Iterable[str] = (),
    max_hops: int | None = None,
) -> Route | None:
    """The cheapest feasible relay route from `source` to `destination` for `request_bits` of key,
    or None when none exists (the graph of usable links is cut). Links in `avoid_links` are not used."""
    _check_request(request_bits, reserve_bits, horizon_s)
    if max_hops is not None and (isinstance(max_hops, bool) or not isinstance(max_hops, int) or max_hops < 1):
        raise ValueError(f"max_hops: must be an int >= 1 or None, got {max_hops!r}")
    index = _index(links)
    known = {n for lk in index.values() for n in (lk.a, lk.b)}
    for what, node in (("source", source), ("destination", destination)):
        if node not in known:
            raise ValueError(f"{what}: {node!r} is not an end of any link; nodes: {', '.join(sorted(known))}")
    if source == destination:
        raise ValueError(f"destination: must differ from source, both are {source!r}")
    avoid = set(avoid_links)
    adjacency: dict[str, list[tuple[str, str, float]]] = {}
    for lk in index.values():
        if lk.link_id in avoid or not hop_usable(lk, request_bits, reserve_bits):
            continue
        cost = hop_cost(lk, request_bits, reserve_bits=reserve_bits, horizon_s=horizon_s)
        adjacency.setdefault(lk.a, []).append((lk.b, lk.link_id, cost))
        adjacency.setdefault(lk.b, []).append((lk.a, lk.link_id, cost))
    # Dijkstra over labels (cost, hops, node path, link path); a label is settled once per node. The
    # ordering of labels makes the result deterministic; paths stay simple since costs are positive.
    heap: list[tuple[float, int, tuple[str, ...], tuple[str, ...]]] = [(0.0, 0, (source,), ())]
    # With a hop limit, a node is settled once per hop count: a dearer route with fewer hops may be
    # the only one that still reaches the destination in time.
    settled: set[object] = set()
    while heap:
        cost, hops, nodes, path = heapq.heappop(heap)
        node = nodes[-1]
        label = node if max_hops is None else (node, hops)
        if label in settled:
            continue
        settled.add(label)
        if node == destination:
            return Route(nodes, path, cost)
        if max_hops is not None and hops >= max_hops:
            continue
        for nxt, link_id, c in adjacency.get(node, ()):
            if nxt not in nodes:
                heapq.heappush(heap, (cost + c, hops + 1, nodes + (nxt,), path + (link_id,)))
    return None


def route_is_feasible(route: Route, links: Sequence[LinkState], request_bits: int, *, reserve_bits: int = 0) -> bool:
    """Whether `route` can still carry `request_bits` over the snapshot `links` (every hop known,
    up, joining the route's nodes and holding enough key)."""
    _check_request(request_bits, reserve_bits, 0.0)
    index = _index(links)
    if len(route.nodes) != len(route.links) + 1 or len(set(route.nodes)) != len(route.nodes):
        return False
    for (u, v), link_id in zip(zip(route.nodes, route.nodes[1:]), route.links):
        lk = index.get(link_id)
        if lk is None or {lk.a, lk.b} != {u, v} or not hop_usable(lk, request_bits, reserve_bits):
            return False
    return True


def reroute(
    route: Route,
    links: Sequence[LinkState],
    request_bits: int,
    *,
    reserve_bits: int = 0,
    horizon_s: float = 10.0,
    failed_links: Iterable[str] = (),
) -> Route | None:
    """Keep `route` if it is still feasible and uses none of `failed_links`; otherwise the best route
    between the same ends avoiding `failed_links` (None if the network is cut)."""
    failed = set(failed_links)
    if not failed.intersection(route.links) and route_is_feasible(
        route, links, request_bits, reserve_bits=reserve_bits
    ):
        return route
    return choose_route(
        links,
        route.nodes[0],
        route.nodes[-1],
        request_bits,
        reserve_bits=reserve_bits,
        horizon_s=horizon_s,
        avoid_links=failed,
    )


def consume(links: Sequence[LinkState], route: Route, request_bits: int) -> list[LinkState]:
    """The snapshot after relaying `request_bits` along `route`: each hop's pool loses them.
    Raises ValueError if a hop does not hold them (the caller must check feasibility first)."""
    index = _index(links)
    out = dict(index)
    for link_id in route.links:
        lk = out.get(link_id)
        if lk is None or lk.key_bits < request_bits:
            raise ValueError(f"route: link {link_id!r} cannot give {request_bits} bits")
        out[link_id] = LinkState(lk.link_id, lk.a, lk.b, lk.up, lk.key_bits - request_bits, lk.key_rate_bps)
    return [out[lk.link_id] for lk in links]

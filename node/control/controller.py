"""Relay bookkeeping of the QKDN control layer: link states, routes for new relays with their key
reserved on every hop, and rerouting of relays in flight when a link goes down or its pool falls
below what was promised (ITU-T Y.3804 control, resilience by rerouting).

Thread-safe; pure bookkeeping (no sockets). Wiring: every key manager's control plane
(`node.control.plane.ControlPlane`) owns one, fed with the links of its link-state database
(`sync_links`); it routes the relays that KM originates or reroutes with `route` and `reserve`, and
releases them with `finish_relay` once the relay is stored or has failed (the relay itself travels
hop by hop, see `node.keymanager.relay`). A central controller over a static network (the routing
bench, tests) uses the same calls with `start_relay`, `hop_done` and `update_link`.

Reservations: a relay of ``bits`` reserves ``bits`` on each hop still ahead of it. A new relay may
use a link only if ``key_bits - reserved - reserve_bits >= bits``, so concurrent relays never count
on the same link key. When a hop is done the key manager's pool has spent the key, so its
reservation is released (report the pool's new size with `update_link`).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass, replace

from node.control.routing import LinkState, Route, choose_route


@dataclass(frozen=True)
class Relay:
    """A relay in flight: its route, how far it has come (hops done) and the key per hop."""

    relay_id: str
    bits: int
    route: Route
    hops_done: int = 0
    started: int = 0
    travelled: tuple[str, ...] = ()
    """Nodes crossed on earlier routes, before `route` began (after a reroute)."""

    @property
    def at_node(self) -> str:
        """The node holding the key now (the last node reached)."""
        return self.route.nodes[self.hops_done]

    @property
    def path(self) -> tuple[str, ...]:
        """The whole path the key takes: earlier routes' nodes, then this route's."""
        return self.travelled + self.route.nodes

    @property
    def pending_links(self) -> tuple[str, ...]:
        """Links still to cross."""
        return self.route.links[self.hops_done :]


@dataclass(frozen=True)
class Reroute:
    """A relay moved off its route: from the node it has reached, a new route for the rest (None when
    the network is cut: the relay must fail and its key be discarded)."""

    relay_id: str
    old_route: Route
    from_node: str
    new_route: Route | None


class RelayController:
    """Link states, relays in flight and their reservations for one QKD network."""

    def __init__(self, links: Iterable[LinkState] = (), *, reserve_bits: int = 0, horizon_s: float = 10.0) -> None:
        self._links: dict[str, LinkState] = {}
        for lk in links:
            if lk.link_id in self._links:
                raise ValueError(f"links: link id {lk.link_id!r} appears twice")
            self._links[lk.link_id] = lk
        if isinstance(reserve_bits, bool) or not isinstance(reserve_bits, int) or reserve_bits < 0:
            raise ValueError(f"reserve_bits: must be an int >= 0, got {reserve_bits!r}")
        self.reserve_bits = reserve_bits
        self.horizon_s = horizon_s
        self._relays: dict[str, Relay] = {}
        self._counter = 0
        self._lock = threading.Lock()

    # -- link reports ------------------------------------------------------------------------------
    def update_link(
        self, link_id: str, *, up: bool | None = None, key_bits: int | None = None, key_rate_bps: float | None = None
    ) -> list[Reroute]:
        """Record a link's new state; returns the reroutes this forces on relays in flight."""
        with self._lock:
            old = self._links.get(link_id)
            if old is None:
                raise ValueError(f"link_id: {link_id!r} is not a known link; links: {', '.join(sorted(self._links))}")
            self._links[link_id] = LinkState(
                old.link_id,
                old.a,
                old.b,
                old.up if up is None else bool(up),
                old.key_bits if key_bits is None else key_bits,
                old.key_rate_bps if key_rate_bps is None else key_rate_bps,
            )
            return self._repair_locked()

    def sync_links(self, links: Iterable[LinkState]) -> list[Reroute]:
        """Replace the link table with a fresh view (a key manager's link-state database); a link
        gone from it that a relay in flight still counts on stays known, as down. Returns the
        reroutes this forces on relays in flight."""
        fresh: dict[str, LinkState] = {}
        for lk in links:
            if lk.link_id in fresh:
                raise ValueError(f"links: link id {lk.link_id!r} appears twice")
            fresh[lk.link_id] = lk
        with self._lock:
            for relay in self._relays.values():
                for lid in relay.pending_links:
                    if lid not in fresh and lid in self._links:
                        fresh[lid] = replace(self._links[lid], up=False)
            self._links = fresh
            return self._repair_locked()

    def link_down(self, link_id: str) -> list[Reroute]:
        """A link failed: the reroutes of the relays that were to cross it."""
        return self.update_link(link_id, up=False)

    def snapshot(self, *, net_of_reservations: bool = True) -> list[LinkState]:
        """The links now; by default with every pool reduced by the key reserved on it."""
        with self._lock:
            return self._snapshot_locked(net_of_reservations)

    def reserved_bits(self, link_id: str) -> int:
        """Key reserved on `link_id` by relays in flight."""
        with self._lock:
            return self._reserved_locked().get(link_id, 0)

    # -- relays --------------------------------------------------------------------------------------
    def route(
        self, source: str, destination: str, bits: int, *, avoid_links: Iterable[str] = (), max_hops: int | None = None
    ) -> Route | None:
        """The route a new relay would take now (nothing reserved), avoiding `avoid_links`; None if
        there is none (also when `source` or `destination` is on no known link)."""
        with self._lock:
            return self._choose(self._snapshot_locked(True), source, destination, bits, avoid_links, max_hops)

    def reserve(self, relay_id: str, route: Route, bits: int) -> Relay:
        """Reserve `bits` on every hop of `route` for relay `relay_id` (a route chosen with `route`,
        or one the relay carried), until `finish_relay`."""
        if not isinstance(relay_id, str) or not relay_id:
            raise ValueError(f"relay_id: must be a non-empty str, got {relay_id!r}")
        with self._lock:
            return self._reserve_locked(relay_id, route, bits)

    def _reserve_locked(self, relay_id: str, route: Route, bits: int) -> Relay:
        if relay_id in self._relays:
            raise ValueError(f"relay_id: {relay_id!r} is already in flight")
        unknown = [lid for lid in route.links if lid not in self._links]
        if unknown:
            raise ValueError(f"route: link {unknown[0]!r} is not a known link")
        self._counter += 1
        relay = Relay(relay_id, bits, route, 0, self._counter)
        self._relays[relay_id] = relay
        return relay

    def start_relay(self, relay_id: str, source: str, destination: str, bits: int) -> Route | None:
        """Choose a route for a new relay and reserve its key on every hop; None if there is no route."""
        if not isinstance(relay_id, str) or not relay_id:
            raise ValueError(f"relay_id: must be a non-empty str, got {relay_id!r}")
        with self._lock:
            if relay_id in self._relays:
                raise ValueError(f"relay_id: {relay_id!r} is already in flight")
            route = choose_route(
                self._snapshot_locked(True),
                source,
                destination,
                bits,
                reserve_bits=self.reserve_bits,
                horizon_s=self.horizon_s,
            )
            if route is not None:
                self._reserve_locked(relay_id, route, bits)
            return route

    def hop_done(self, relay_id: str, link_id: str) -> Relay:
        """The relay crossed its next hop, `link_id` (its key is spent): the reservation is released."""
        with self._lock:
            relay = self._relay_locked(relay_id)
            pending = relay.pending_links
            if not pending or pending[0] != link_id:
                raise ValueError(
                    f"link_id: relay {relay_id!r} expects its next hop on "
                    f"{pending[0] if pending else 'no link (it has arrived)'}, got {link_id!r}"
                )
            relay = replace(relay, hops_done=relay.hops_done + 1)
            self._relays[relay_id] = relay
            return relay

    def finish_relay(self, relay_id: str) -> Relay:
        """The relay ended (delivered or failed): its remaining reservations are released."""
        with self._lock:
            return self._relays.pop(relay_id) if relay_id in self._relays else self._relay_locked(relay_id)

    def in_flight(self) -> dict[str, Relay]:
        """Relays in flight by id."""
        with self._lock:
            return dict(self._relays)

    # -- internals ---------------------------------------------------------------------------------
    def _relay_locked(self, relay_id: str) -> Relay:
        relay = self._relays.get(relay_id)
        if relay is None:
            raise ValueError(f"relay_id: {relay_id!r} is not in flight")
        return relay

    def _reserved_locked(self, exclude: str | None = None) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in self._relays.values():
            if r.relay_id != exclude:
                for link_id in r.pending_links:
                    out[link_id] = out.get(link_id, 0) + r.bits
        return out

    def _snapshot_locked(self, net: bool, exclude: str | None = None) -> list[LinkState]:
        reserved = self._reserved_locked(exclude) if net else {}
        return [
            replace(lk, key_bits=max(0, lk.key_bits - reserved[lk.link_id])) if reserved.get(lk.link_id) else lk
            for lk in self._links.values()
        ]

    def _repair_locked(self) -> list[Reroute]:
        """Reroute relays whose pending hops are down or over-committed, newest relay first, until
        every reservation is covered by its link's pool. A rerouted relay fits the links it now uses,
        so each relay moves at most once per call."""
        out: list[Reroute] = []
        for _ in range(len(self._relays) + 1):
            reserved = self._reserved_locked()
            victims = [r for r in self._relays.values() if not self._relay_ok_locked(r, reserved)]
            if not victims:
                break
            relay = max(victims, key=lambda r: r.started)
            del self._relays[relay.relay_id]
            failed = [lid for lid in relay.pending_links if not self._links[lid].up]
            new = self._route_rest_locked(relay, failed)
            if new is not None:
                travelled = relay.travelled + relay.route.nodes[: relay.hops_done]
                self._relays[relay.relay_id] = Relay(relay.relay_id, relay.bits, new, 0, relay.started, travelled)
            out.append(Reroute(relay.relay_id, relay.route, relay.at_node, new))
        return out

    def _relay_ok_locked(self, relay: Relay, reserved: dict[str, int]) -> bool:
        for lid in relay.pending_links:
            lk = self._links[lid]
            if not lk.up or lk.key_bits - self.reserve_bits < reserved.get(lid, 0):
                return False
        return True

    def _route_rest_locked(self, relay: Relay, failed: list[str]) -> Route | None:
        """A route from where the relay is to its destination that crosses no node it has crossed
        (the key must not loop) and none of `failed`; None if there is none."""
        source, destination = relay.at_node, relay.route.nodes[-1]
        if source == destination:
            return None
        crossed = set(relay.travelled + relay.route.nodes[: relay.hops_done])
        links = [lk for lk in self._snapshot_locked(True) if not ({lk.a, lk.b} & crossed)]
        return self._choose(links, source, destination, relay.bits, failed)

    def _choose(
        self,
        links: list[LinkState],
        source: str,
        destination: str,
        bits: int,
        avoid_links: Iterable[str],
        max_hops: int | None = None,
    ) -> Route | None:
        """`choose_route` over `links` with this controller's reserve and horizon; None at once when
        `source` or `destination` is on none of `links`."""
        ends = {n for lk in links for n in (lk.a, lk.b)}
        if source not in ends or destination not in ends:
            return None
        return choose_route(
            links,
            source,
            destination,
            bits,
            reserve_bits=self.reserve_bits,
            horizon_s=self.horizon_s,
            avoid_links=avoid_links,
            max_hops=max_hops,
        )


__all__ = ["Relay", "RelayController", "Reroute"]

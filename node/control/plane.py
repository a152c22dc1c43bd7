"""The control plane of one key manager for trusted-node relay (ITU-T Y.3804): its link-state
database and the gossip that floods it, routes, reservations of the relays it routes, and the
decision where a relay goes on from this KM (its planned route, or a reroute).

Gossip. Every `gossip_interval_s` the KM refreshes its own entry (the relay pad it can draw per
link, from the key store) and sends the whole database to every neighbour (`LINK_STATE` on the
authenticated KM link; the key manager supplies the sending). See `linkstate` for the database.

Routes. `node.control.routing.choose_route` over the database's links (fewest hops, longer when
short ones run dry), net of the key reserved by relays this KM routes and that are still in flight
(`controller.RelayController`), so concurrent relays from here never count on the same link key.

Rerouting. A relay carries its planned route. A hop keeps it while the planned next hop's link is
usable here; otherwise, and after a next hop failed (dry, down, or no answer), it takes the best
route from here avoiding the links that failed (`next_route`).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from node.control.controller import RelayController
from node.control.linkstate import LinkStateDb
from node.control.routing import LinkState, Route

log = logging.getLogger(__name__)

MAX_HOPS = 8


def link_id_of(kme_a: str, kme_b: str, configured: tuple[str, ...] = ()) -> str:
    """The routing ID of the KM link between two KMs: the first QKD link configured for it, else 'a~b'."""
    return configured[0] if configured else "~".join(sorted((kme_a, kme_b)))


@dataclass(frozen=True)
class RouteDecision:
    """Where a relay goes on from this KM: the nodes from here to its destination, and whether
    that is a reroute (not the route it carried, or a retry after a failed next hop)."""

    nodes: tuple[str, ...]
    rerouted: bool


class ControlPlane:
    """This KM's view of the QKD network, and its routing decisions for relays (event-loop thread)."""

    def __init__(
        self,
        me: str,
        link_ids: Mapping[str, str],
        saes: Sequence[str],
        *,
        gossip_interval_s: float = 0.5,
        stale_s: float = 3.0,
        alarm: Callable[[str, str, str], None] | None = None,
    ) -> None:
        self.me = me
        self.lsdb = LinkStateDb(me, link_ids, saes, stale_s=stale_s)
        self.controller = RelayController()
        self.gossip_interval_s = gossip_interval_s
        self._alarm = alarm or (lambda sev, src, text: None)

    # -- this KM's links -------------------------------------------------------------------------

    @property
    def link_ids(self) -> dict[str, str]:
        """Neighbour KME ID -> routing ID of the link to it."""
        return self.lsdb.link_ids

    @property
    def admin_down(self) -> set[str]:
        """Neighbours whose link was declared down here."""
        return self.lsdb.admin_down

    def link_usable(self, peer: str) -> bool:
        """Whether this KM may relay over its link to `peer` now."""
        return self.lsdb.link_usable(peer)

    def set_link_up(self, peer: str, up: bool) -> None:
        """Declare the link to `peer` up or down (its QKD link failed, or the operator took it down)."""
        self.lsdb.set_admin(peer, up)
        if not up:
            self._alarm("major", f"link:{self.link_ids[peer]}", f"link to {peer} is down: relays avoid it")
        self.lsdb.originate()

    def set_link_skr(self, peer: str, bits_per_s: int) -> None:
        """The metered secret key rate of the link to `peer` (reported in this KM's entry)."""
        self.lsdb.link_skr[peer] = bits_per_s

    # -- gossip ----------------------------------------------------------------------------------

    async def gossip_loop(
        self, pad_bits: Callable[[str], Awaitable[int]], send: Callable[[str, bytes, float], Awaitable[bool]]
    ) -> None:
        """Refresh this KM's entry (`pad_bits(peer)`: relay pad bits this KM can draw towards
        `peer`) and send the database to every neighbour (`send(peer, payload, timeout_s)`: whether
        it answered), periodically; a neighbour that stops answering becomes unreachable."""
        while True:
            try:
                self.lsdb.originate({p: await pad_bits(p) for p in self.link_ids})
                payload = json.dumps(self.lsdb.document(), separators=(",", ":")).encode()
                timeout_s = max(1.0, 2 * self.gossip_interval_s)
                answered = await asyncio.gather(*(send(p, payload, timeout_s) for p in self.link_ids))
                for peer, ok in zip(self.link_ids, answered):
                    if self.lsdb.exchange_answered(peer, ok):
                        self._alarm("major", f"link:{self.link_ids[peer]}", f"peer KM {peer} does not answer")
            except Exception:
                log.exception("link-state gossip failed")
            await asyncio.sleep(self.gossip_interval_s)

    def merge(self, doc: Mapping[str, Any]) -> int:
        """A neighbour's `LINK_STATE` document: merge its database; how many entries were new."""
        return self.lsdb.merge(doc.get("lsdb"))

    # -- the network as seen from here -----------------------------------------------------------

    def snapshot(self) -> list[LinkState]:
        """The links as this KM sees them now (own links first-hand, the rest from the database)."""
        return self.lsdb.snapshot()

    def kme_of_sae(self, sae_id: str) -> str | None:
        """The KM serving `sae_id` according to the link-state database (any KM of the network)."""
        return self.lsdb.kme_of_sae(sae_id)

    def known_kmes(self) -> set[str]:
        """Every KM in the link-state database."""
        return self.lsdb.known_kmes()

    # -- routing ---------------------------------------------------------------------------------

    def route(self, dest: str, bits: int, avoid: Iterable[str] = frozenset()) -> Route | None:
        """The best relay route from here to `dest` for `bits` of key, avoiding links `avoid`, net
        of the key reserved by relays in flight from here; None if there is none."""
        self._sync()
        return self.controller.route(self.me, dest, bits, avoid_links=avoid, max_hops=MAX_HOPS)

    def _sync(self) -> None:
        self.controller.sync_links(self.snapshot())

    def next_route(
        self, dest: str, bits: int, planned: Sequence[str] | None, avoid: Iterable[str], retry: bool
    ) -> RouteDecision | None:
        """Where a relay goes on from here: its `planned` route (from this KM) while the planned next
        hop is usable here and this is not a `retry`; else the best route avoiding `avoid` (a
        reroute when there was a plan or a failed try). None: no route with enough key."""
        self._sync()  # the links `reserve` will count on
        if planned is not None and not retry and len(planned) >= 2 and self.link_usable(planned[1]):
            return RouteDecision(tuple(planned), False)
        route = self.controller.route(self.me, dest, bits, avoid_links=avoid, max_hops=MAX_HOPS)
        if route is None:
            return None
        return RouteDecision(route.nodes, planned is not None or retry)

    def reserve(self, relay_id: str, nodes: Sequence[str], bits: int) -> str:
        """Reserve `bits` on every hop of `nodes` (as decided by `next_route`, on the links known
        then) while this KM forwards a relay; returns the reservation's ID for `release` (one relay
        may hold several over retries)."""
        links = {frozenset((lk.a, lk.b)): lk.link_id for lk in self.controller.snapshot(net_of_reservations=False)}
        hops = [links.get(frozenset(pair)) for pair in itertools.pairwise(nodes)]
        ticket = f"{relay_id}/{uuid.uuid4()}"
        if hops and all(h is not None for h in hops):
            self.controller.reserve(ticket, Route(tuple(nodes), tuple(h for h in hops if h is not None), 0.0), bits)
        return ticket

    def release(self, ticket: str) -> None:
        """The relay held by `ticket` left this KM for good (stored downstream, or failed here)."""
        if ticket in self.controller.in_flight():
            self.controller.finish_relay(ticket)

"""Trusted-node key relay (ITU-T Y.3803), hop by hop, and the link-state gossip that routes it.

Link state. Every `gossip_interval_s` each KM sends its neighbours (`LINK_STATE`, on the
authenticated KM link) its link-state database: per KM (origin) a sequence number, its SAEs, and per
link to a neighbour whether it is up and how many bits of relay pad that KM can still draw on it.
A KM keeps the newest entry per origin, so the database floods the network in at most `diameter`
rounds. A neighbour that leaves `MISSES_DOWN` exchanges in a row unanswered counts as unreachable
(its link down) until it answers again. A link is up for routing when every fresh report of it says
so (an entry older than `stale_s` counts as down); its key is the least any end reports. The route is chosen with
`node.control.routing.choose_route` (fewest hops, longer when short ones run dry).

Relay. The source KM draws the keys (`os.urandom`), picks a route and sends `RELAY_FORWARD` to the
first hop: the key bytes XOR a one-time pad drawn from the pool of that link (see `relaystore`),
with the pad's position, the key IDs, the master and slave SAEs, the nodes crossed so far (`trail`)
and the planned rest of the route. Each transit KM consumes the same pad bits, decrypts, re-encrypts
with a fresh pad of its outgoing link and forwards; the destination stores the keys durably and
answers `RELAY_STORED {path}`, which travels back hop by hop; only then the master SAE gets its
answer. A hop whose next link is down, dry or does not answer (within half the time the relay has
left) reroutes the relay from where it is (avoiding the failed links); a relay that cannot go on is voided at that hop and the failure travels
back (each hop marks it void, alarms are raised, the master gets 503). Pads are never reused: a
failed relay's pads stay consumed.

Rejections (alarm, no key): a message with a bad MAC or a replayed sequence number (dropped by the
authenticated link, see `peer`), a route that does not name this KM next after the sender or leads
to an unknown KM, pad bits already used (a replay of a relay), a relay ID already stored with other
keys, a malformed message. The same relay arriving again over another route with fresh pad bits (a
hop gave up waiting and rerouted it) is answered as stored, without storing it twice.
Keys a failed relay left at its destination are never announced to the master: their IDs are
random and known to no SAE, so they cannot be fetched.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
import uuid
from collections.abc import Callable
from collections.abc import Set as AbstractSet
from typing import TYPE_CHECKING, Any

from node.classical import Message
from node.control.routing import LinkState as RouteLink
from node.control.routing import Route, choose_route
from node.keymanager.audit import audit
from node.keymanager.errors import PeerError, PoolExhausted
from node.keymanager.relaystore import PadSlice, RelayStore, xor_bytes

if TYPE_CHECKING:
    from node.keymanager.daemon import KeyManager
    from node.management.metrics import NodeMetrics

log = logging.getLogger(__name__)

MAX_HOPS = 8
MAX_ATTEMPTS = 3
MAX_BATCH_KEYS = 1024
BATCH_DEPTH = 2
HOP_MARGIN_S = 0.05
REROUTE_RESERVE_S = 2.0
MISSES_DOWN = 2  # unanswered link-state exchanges in a row before a peer counts as unreachable


class RelayError(Exception):
    """A relay could not be completed (no route, every route failed, or refused downstream)."""


def link_id_of(kme_a: str, kme_b: str, configured: tuple[str, ...] = ()) -> str:
    """The routing ID of the KM link between two KMs: the first QKD link configured for it, else 'a~b'."""
    return configured[0] if configured else "~".join(sorted((kme_a, kme_b)))


class RelayService:
    """The relay and link-state part of one key manager (runs on the KM's event loop)."""

    def __init__(self, km: KeyManager, *, gossip_interval_s: float = 0.5, stale_s: float = 3.0,
                 timeout_s: float = 6.0, alarm: Callable[[str, str, str], None] | None = None) -> None:
        self.km = km
        self.me = km.kme_id
        self.rstore = RelayStore(km.store)
        self.gossip_interval_s = gossip_interval_s
        self.stale_s = stale_s
        self.timeout_s = timeout_s
        self._alarm = alarm or (lambda sev, src, text: None)
        self.peers = {p.kme_id: p for p in km.config.peers}
        self.link_ids = {p.kme_id: link_id_of(self.me, p.kme_id, p.links) for p in km.config.peers}
        self.admin_down: set[str] = set()
        self.unreachable: set[str] = set()
        self._misses: dict[str, int] = {}
        self.lsdb: dict[str, dict[str, Any]] = {}
        self._seq = time.time_ns()
        self.counters: dict[str, int] = {"originated": 0, "forwarded": 0, "delivered": 0, "rejected": 0,
                                         "failed": 0, "rerouted": 0}
        self.link_key_bits: dict[str, int] = {}
        self.link_skr: dict[str, int] = {}  # per peer: the link's secret key rate (bit/s), when metered
        self.metrics: NodeMetrics | None = None  # set by whoever serves the node's metrics
        self._batches: dict[tuple[str, str, tuple[str, ...], int], list[tuple[int, asyncio.Future[Any]]]] = {}
        self._workers: dict[tuple[str, str, tuple[str, ...], int], set[asyncio.Task[None]]] = {}

    def _count(self, outcome: str, spent: dict[str, int] | None = None) -> None:
        """One relay event at this node, with the link key it consumed here per link (metrics too)."""
        self.counters[outcome] += 1
        if self.metrics is not None:
            self.metrics.record_relay(outcome, link_key_bits=spent)

    def _used(self, link: str, bits: int, spent: dict[str, int]) -> None:
        """Account `bits` of link key consumed as one-time pad on `link` (at this end)."""
        self.link_key_bits[link] = self.link_key_bits.get(link, 0) + bits
        spent[link] = spent.get(link, 0) + bits

    # -- link state ------------------------------------------------------------------------------

    def set_link_up(self, peer: str, up: bool) -> None:
        """Declare the link to `peer` up or down (its QKD link failed, or the operator took it down)."""
        if peer not in self.peers:
            raise ValueError(f"peer must be a configured peer KME ID, got {peer!r}")
        (self.admin_down.discard if up else self.admin_down.add)(peer)
        if not up:
            self._alarm("major", f"link:{self.link_ids[peer]}", f"link to {peer} is down: relays avoid it")
        self._originate_lsa_sync()

    def link_usable(self, peer: str) -> bool:
        """Whether this KM may relay over its link to `peer` now."""
        return peer in self.peers and peer not in self.admin_down and peer not in self.unreachable

    def _originate_lsa_sync(self, bits: dict[str, int] | None = None) -> None:
        old = self.lsdb.get(self.me, {})
        old_bits = {lk["peer"]: lk["bits"] for lk in old.get("links", [])}
        self._seq = max(self._seq + 1, time.time_ns())
        self.lsdb[self.me] = {
            "seq": self._seq, "saes": list(self.km.config.local_saes), "at": time.monotonic(),
            "links": [{"peer": p, "link": self.link_ids[p], "up": self.link_usable(p),
                       "bits": (bits or old_bits).get(p, 0), "skr": self.link_skr.get(p, 0)} for p in self.peers]}

    async def _originate_lsa(self) -> None:
        bits = {p: await self.km.db(self.rstore.pad_bits_available, p) for p in self.peers}
        self._originate_lsa_sync(bits)
        if self.metrics is not None:
            for p in self.peers:
                self.metrics.set_key_pool(p, 8 * await self.km.db(self.km.store.stored_bytes, p))

    async def gossip_loop(self) -> None:
        """Refresh this KM's entry and send the whole database to every neighbour, periodically."""
        while True:
            try:
                await self._originate_lsa()
                doc = {"lsdb": {o: {k: v for k, v in e.items() if k != "at"} for o, e in self.lsdb.items()}}
                await asyncio.gather(*(self._send_lsdb(p, doc) for p in self.peers))
            except Exception:
                log.exception("link-state gossip failed")
            await asyncio.sleep(self.gossip_interval_s)

    async def _send_lsdb(self, peer: str, doc: dict[str, Any]) -> None:
        try:
            await self.km.clients[peer].request("LINK_STATE", {}, timeout_s=max(1.0, 2 * self.gossip_interval_s),
                                                payload=json.dumps(doc, separators=(",", ":")).encode())
        except PeerError:
            self._misses[peer] = self._misses.get(peer, 0) + 1
            if self._misses[peer] >= MISSES_DOWN and peer not in self.unreachable:
                self.unreachable.add(peer)
                self._alarm("major", f"link:{self.link_ids[peer]}", f"peer KM {peer} does not answer")
            return
        self._misses[peer] = 0
        self.unreachable.discard(peer)

    async def on_link_state(self, peer: str, msg: Message) -> tuple[str, dict[str, Any], bytes | None]:
        """Merge a neighbour's link-state database (newest entry per origin wins)."""
        doc = _payload_json(msg, 1)
        lsdb = doc.get("lsdb")
        if not isinstance(lsdb, dict) or len(lsdb) > 4096:
            raise ValueError("LINK_STATE lsdb must be an object of at most 4096 entries")
        now = time.monotonic()
        merged = 0
        for origin, entry in lsdb.items():
            if origin == self.me:
                continue
            _check_lsa(origin, entry)
            old = self.lsdb.get(origin)
            if old is None or entry["seq"] > old["seq"]:
                self.lsdb[origin] = {**entry, "at": now}
                merged += 1
        return "LINK_STATE_ACK", {"merged": merged}, None

    def snapshot(self) -> list[RouteLink]:
        """The links as this KM sees them now (own links first-hand, the rest from the database)."""
        now = time.monotonic()
        reports: dict[str, list[tuple[str, str, bool, int]]] = {}
        for origin, entry in self.lsdb.items():
            fresh = origin == self.me or now - entry["at"] <= self.stale_s
            for lk in entry["links"]:
                up = lk["up"] and fresh
                if origin == self.me:
                    up = self.link_usable(lk["peer"])
                reports.setdefault(lk["link"], []).append((origin, lk["peer"], up, lk["bits"]))
        out = []
        for link_id, reps in sorted(reports.items()):
            origin, peer = reps[0][0], reps[0][1]
            if origin == peer or any({r[0], r[1]} != {origin, peer} for r in reps):
                continue  # inconsistent reports of one link: not used
            out.append(RouteLink(link_id, origin, peer, all(r[2] for r in reps) and len(reps) == 2,
                                 min(r[3] for r in reps)))
        return out

    def kme_of_sae(self, sae_id: str) -> str | None:
        """The KM serving `sae_id` according to the link-state database (any KM of the network)."""
        for origin, entry in self.lsdb.items():
            if origin != self.me and sae_id in entry.get("saes", ()):
                return origin
        return None

    def known_kmes(self) -> set[str]:
        """Every KM in the link-state database."""
        return set(self.lsdb)

    def route(self, dest: str, bits: int, avoid: AbstractSet[str] = frozenset()) -> Route | None:
        """The best relay route from here to `dest` for `bits` of key, avoiding links `avoid`."""
        links = self.snapshot()
        if not any(dest in (lk.a, lk.b) for lk in links) or not any(self.me in (lk.a, lk.b) for lk in links):
            return None
        return choose_route(links, self.me, dest, bits, avoid_links=avoid, max_hops=MAX_HOPS)

    # -- relay -----------------------------------------------------------------------------------

    async def originate(self, master: str, slaves: list[str], number: int, nbytes: int, dest: str,
                        via: list[str] | None = None) -> list[tuple[str, bytes, dict[str, Any]]]:
        """Draw `number` keys of `nbytes`, relay them to KM `dest` and return them with their
        014 key extension, once `dest` stored them. `via`: a planned route (tests), else chosen here.

        Requests for the same (destination, master, slaves, size) that arrive while relays of them
        are in flight are relayed together (up to `MAX_BATCH_KEYS` keys, `BATCH_DEPTH` relays in
        flight), so that one relay message and one commit per hop serve many requests.
        """
        if via is not None:
            return await self._relay(master, slaves, number, nbytes, dest, via)
        group = (dest, master, tuple(slaves), nbytes)
        fut: asyncio.Future[list[tuple[str, bytes, dict[str, Any]]]] = asyncio.get_running_loop().create_future()
        self._batches.setdefault(group, []).append((number, fut))
        workers = self._workers.setdefault(group, set())
        if len(workers) < BATCH_DEPTH:
            task = asyncio.create_task(self._batch_worker(group))
            workers.add(task)
            task.add_done_callback(workers.discard)
        return await fut

    async def _batch_worker(self, group: tuple[str, str, tuple[str, ...], int]) -> None:
        dest, master, slaves, nbytes = group
        queue = self._batches[group]
        while queue:
            batch: list[tuple[int, asyncio.Future[Any]]] = []
            total = 0
            while queue and (not batch or total + queue[0][0] <= MAX_BATCH_KEYS):
                number, fut = queue.pop(0)
                if not fut.done():
                    batch.append((number, fut))
                    total += number
            if not batch:
                continue
            try:
                keys = await self._relay(master, list(slaves), total, nbytes, dest, None)
            except Exception as exc:  # noqa: BLE001 - every request of the batch gets the failure
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(exc)
                continue
            start = 0
            for number, fut in batch:
                if not fut.done():
                    fut.set_result(keys[start:start + number])
                start += number

    async def _relay(self, master: str, slaves: list[str], number: int, nbytes: int, dest: str,
                     via: list[str] | None) -> list[tuple[str, bytes, dict[str, Any]]]:
        """One relay of `number` keys (see `originate`)."""
        relay_id = str(uuid.uuid4())
        keys = os.urandom(number * nbytes)
        key_ids = [str(uuid.UUID(bytes=os.urandom(16), version=4)) for _ in range(number)]
        doc = {"keys": key_ids, "master": master, "slaves": slaves, "size": nbytes}
        spent: dict[str, int] = {}
        try:
            path = await self._forward(relay_id, keys, doc, [self.me], dest, via,
                                       time.monotonic() + self.timeout_s, "source", spent)
        except RelayError as exc:
            self._count("originated", spent)
            self._count("failed")
            await self.km.db(self.rstore.set_relay_state, relay_id, "void")
            self._alarm("major", "relay", f"relay {relay_id} to {dest} failed and was voided: {exc}")
            raise PoolExhausted(f"key relay to {dest} failed: {exc}") from None
        await self.km.db(self.rstore.finish_source, relay_id, key_ids, master, slaves, path)
        self._count("originated", spent)
        audit("relay_originated", kme=self.me, relay=relay_id, path=path, master_SAE_ID=master, slave_SAE_IDs=slaves,
              key_IDs=key_ids, size_bits=8 * nbytes)
        ext = {"relay": {"path": path}}
        return [(k, keys[i * nbytes:(i + 1) * nbytes], ext) for i, k in enumerate(key_ids)]

    async def _forward(self, relay_id: str, plain: bytes, doc: dict[str, Any], trail: list[str], dest: str,
                       planned: list[str] | None, deadline: float, role: str, spent: dict[str, int],
                       last_chance: bool = False) -> list[str]:
        """Send the relay on from here (rerouting around failed next hops); once stored, the path from
        here to the destination."""
        avoid: set[str] = set()
        bits = 8 * len(plain)
        for attempt in range(MAX_ATTEMPTS):
            nodes = planned if attempt == 0 and planned is not None else None
            if nodes is not None and (len(nodes) < 2 or not self.link_usable(nodes[1])):
                nodes = None  # the planned next hop is down here: reroute from this node
            if nodes is None:
                route = self.route(dest, bits, avoid)
                if route is None:
                    raise RelayError("no route with enough key")
                nodes = list(route.nodes)
                if planned is not None or attempt:
                    self._count("rerouted")
                    self._alarm("warning", "relay", f"relay {relay_id} rerouted at {self.me} via {'-'.join(nodes)}")
            nxt = nodes[1]
            link = self.link_ids[nxt]
            if len(trail) >= MAX_HOPS + 1:
                raise RelayError("hop limit reached")
            try:
                slices, pad = await self.km.db(self.rstore.take_pad, nxt, relay_id, len(plain), role, trail)
            except PoolExhausted:
                avoid.add(link)
                continue
            self._used(link, bits, spent)
            left = deadline - time.monotonic()
            if left <= 2 * HOP_MARGIN_S:
                raise RelayError("relay timed out")
            # On its planned route a relay keeps time in reserve to be rerouted once from where it is
            # stuck (a next hop that does not answer); once rerouted, it gets all the time left.
            rerouted = last_chance or attempt > 0 or (planned is not None and nodes is not planned)
            wait = left if rerouted else left - min(REROUTE_RESERVE_S, left / 2)
            body = {**doc, "trail": trail, "route": nodes[1:], "pad": [s.to_json() for s in slices],
                    "ttl_ms": int(1000 * (wait - HOP_MARGIN_S)), "rerouted": rerouted}
            try:
                reply = await self.km.clients[nxt].request(
                    "RELAY_FORWARD", {"relay": relay_id}, timeout_s=wait,
                    payload=[json.dumps(body, separators=(",", ":")).encode(), xor_bytes(plain, pad)])
            except PeerError as exc:
                log.warning("relay %s: hop %s -> %s failed: %s", relay_id, self.me, nxt, exc)
                avoid.add(link)
                continue
            path = reply.header.get("path")
            if not (isinstance(path, list) and all(isinstance(p, str) for p in path) and path[:1] == [nxt]
                    and path[-1] == dest and len(path) <= MAX_HOPS + 1):
                raise RelayError("malformed RELAY_STORED reply")
            return [self.me, *path]
        raise RelayError(f"every route tried failed ({', '.join(sorted(avoid)) or 'none'} avoided)")

    async def on_relay_forward(self, peer: str, msg: Message) -> tuple[str, dict[str, Any], bytes | None]:
        """One hop of a relay arriving from `peer` (see module doc)."""
        relay_id = msg.header.get("relay")
        try:
            doc, ct = _payload_json(msg, 2), msg.frames[1]
            parsed = self._check_forward(peer, relay_id, doc, ct)
        except ValueError as exc:
            self._count("rejected")
            self._alarm("major", "relay", f"relay message from {peer} rejected: {exc}")
            raise
        slices, key_ids, route, trail = parsed
        if not self.link_usable(peer):
            raise ValueError(f"link to {peer} is down at {self.me}")
        dest = route[-1]
        in_link = self.link_ids[peer]
        if dest == self.me:
            try:
                new = await self.km.db(self.rstore.accept_relayed_keys, peer, relay_id, slices, ct, key_ids,
                                       doc["master"], doc["slaves"], trail + [self.me])
            except ValueError as exc:
                self._count("rejected")
                self._alarm("major", "relay", f"relay {relay_id} from {peer} rejected: {exc}")
                raise
            spent: dict[str, int] = {}
            self._used(in_link, 8 * len(ct), spent)
            if new:
                self._count("delivered", spent)
                audit("relay_stored", kme=self.me, relay=relay_id, peer_kme=peer, path=trail + [self.me],
                      key_IDs=key_ids)
            else:
                self._alarm("warning", "relay", f"relay {relay_id} arrived again via {peer}: already stored")
            return "RELAY_STORED", {"path": [self.me]}, None
        try:
            pad = await self.km.db(self.rstore.accept_pad, peer, relay_id, slices, trail)
        except ValueError as exc:
            self._count("rejected")
            self._alarm("major", "relay", f"relay {relay_id} from {peer} rejected: {exc}")
            raise
        spent = {}
        self._used(in_link, 8 * len(ct), spent)
        plain = xor_bytes(ct, pad)
        deadline = time.monotonic() + doc["ttl_ms"] / 1000
        fields = {k: doc[k] for k in ("keys", "master", "slaves", "size")}
        try:
            path = await self._forward(relay_id, plain, fields, trail + [self.me], dest, [self.me] + route[1:],
                                       deadline, "transit", spent, doc.get("rerouted") is True)
        except RelayError as exc:
            self._count("failed", spent)
            await self.km.db(self.rstore.set_relay_state, relay_id, "void")
            self._alarm("major", "relay", f"relay {relay_id} voided at {self.me}: {exc}")
            raise PeerError(f"relay failed at {self.me}: {exc}") from None
        await self.km.db(self.rstore.set_relay_state, relay_id, "done")
        self._count("forwarded", spent)
        audit("relay_forwarded", kme=self.me, relay=relay_id, peer_kme=peer, path=[*trail, *path])
        return "RELAY_STORED", {"path": path}, None

    def _check_forward(self, peer: str, relay_id: Any, doc: dict[str, Any], ct: bytes
                       ) -> tuple[list[PadSlice], list[str], list[str], list[str]]:
        if not isinstance(relay_id, str):
            raise ValueError("relay ID missing")
        try:
            uuid.UUID(relay_id)
        except ValueError:
            raise ValueError("relay ID is not a UUID") from None
        trail, route = doc.get("trail"), doc.get("route")
        for name, v in (("trail", trail), ("route", route)):
            if not (isinstance(v, list) and v and all(isinstance(x, str) and x for x in v)):
                raise ValueError(f"{name} must be a non-empty list of KME IDs")
        assert isinstance(trail, list) and isinstance(route, list)
        if trail[-1] != peer or route[0] != self.me:
            raise ValueError("unknown route: this KM is not the next hop after the sender")
        if len(trail) + len(route) > MAX_HOPS + 2:
            raise ValueError("unknown route: too many hops")
        dest = route[-1]
        if dest != self.me and (dest not in self.known_kmes() or len(route) < 2 or route[1] not in self.peers):
            raise ValueError("unknown route: destination or next hop unknown here")
        keys, size, master, slaves, ttl = (doc.get(k) for k in ("keys", "size", "master", "slaves", "ttl_ms"))
        if not isinstance(doc.get("rerouted", False), bool):
            raise ValueError("rerouted must be true or false")
        if not (isinstance(keys, list) and keys and len(keys) <= 4096 and type(size) is int and size > 0
                and type(ttl) is int and ttl > 0 and isinstance(master, str) and master
                and isinstance(slaves, list) and slaves and all(isinstance(s, str) and s for s in slaves)):
            raise ValueError("RELAY_FORWARD needs keys, size, master, slaves and ttl_ms")
        key_ids = []
        for k in keys:
            try:
                key_ids.append(str(uuid.UUID(k)))
            except (ValueError, TypeError, AttributeError):
                raise ValueError("key IDs must be UUIDs") from None
        if len(set(key_ids)) != len(key_ids) or len(ct) != len(key_ids) * size:
            raise ValueError("ciphertext length must be number of keys times size")
        pad = doc.get("pad")
        if not isinstance(pad, list) or not pad or len(pad) > 1024:
            raise ValueError("pad must be a non-empty list of slices")
        slices = [PadSlice.from_json(s) for s in pad]
        if sum(s.nbytes for s in slices) != len(ct):
            raise ValueError("pad length differs from the ciphertext length")
        if dest == self.me:
            if not all(self.km.is_local_sae(s) for s in slaves):
                raise ValueError("unknown route: slave SAEs are not served here")
            if self.kme_of_sae(master) != trail[0]:
                raise ValueError("unknown route: master SAE is not served by the relay's source")
        return slices, key_ids, route, trail


def _check_lsa(origin: str, entry: Any) -> None:
    if not (isinstance(entry, dict) and type(entry.get("seq")) is int and isinstance(entry.get("links"), list)
            and isinstance(entry.get("saes"), list) and len(entry["links"]) <= 256 and len(entry["saes"]) <= 4096
            and all(isinstance(s, str) for s in entry["saes"])):
        raise ValueError("LINK_STATE entry must hold seq, links and saes")
    for lk in entry["links"]:
        if not (isinstance(lk, dict) and isinstance(lk.get("peer"), str) and isinstance(lk.get("link"), str)
                and lk["peer"] and lk["link"] and lk["peer"] != origin
                and isinstance(lk.get("up"), bool) and type(lk.get("bits")) is int and lk["bits"] >= 0):
            raise ValueError("LINK_STATE link must hold peer (another KM), link, up and bits")


def _payload_json(msg: Message, frames: int) -> dict[str, Any]:
    if len(msg.frames) != frames or not all(isinstance(f, bytes) for f in msg.frames):
        raise ValueError(f"{msg.type} must carry {frames} payload frame(s)")
    try:
        doc = json.loads(msg.frames[0])
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ValueError(f"{msg.type} payload is not valid JSON") from None
    if not isinstance(doc, dict):
        raise ValueError(f"{msg.type} payload must be a JSON object")
    return doc

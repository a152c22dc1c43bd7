"""Trusted-node key relay (ITU-T Y.3803), hop by hop: forwarding and storage at one key manager.

Routing is the control plane's (`node.control.plane.ControlPlane`: link-state database and its
gossip, routes, reservations, reroute decisions); this module carries relays along the routes it
chooses, and sends and answers the control plane's `LINK_STATE` messages on the KM links.

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
import logging
import os
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from node.classical import Message
from node.classical.messages import MessageType
from node.control.plane import MAX_HOPS, ControlPlane
from node.keymanager.audit import audit
from node.keymanager.errors import PeerError, PoolExhausted, RelayFailed
from node.keymanager.payload import json_frame, json_payload
from node.keymanager.records import new_key_id
from node.keymanager.relaystore import PadSlice, RelayStore, xor_bytes
from node.keymanager.store import KeyStore

if TYPE_CHECKING:
    from node.keymanager.peer import PeerClient
    from node.management.metrics import NodeMetrics

log = logging.getLogger(__name__)

T = TypeVar("T")
MAX_ATTEMPTS = 3
MAX_BATCH_KEYS = 1024
BATCH_DEPTH = 2
HOP_MARGIN_S = 0.05
REROUTE_RESERVE_S = 2.0


class RelayHost(Protocol):
    """What the relay needs from its key manager (`daemon.KeyManager`)."""

    kme_id: str

    @property
    def clients(self) -> Mapping[str, PeerClient]: ...

    async def db(self, fn: Callable[..., T], *args: Any) -> T: ...

    def is_local_sae(self, sae_id: str) -> bool: ...


@dataclass(frozen=True)
class Forward:
    """A checked `RELAY_FORWARD`: the pad it names, the relayed keys and where the relay goes."""

    relay_id: str
    slices: list[PadSlice]
    key_ids: list[str]
    route: list[str]
    trail: list[str]
    master: str
    slaves: list[str]
    size: int
    ttl_ms: int
    rerouted: bool

    @property
    def dest(self) -> str:
        """The relay's destination KM."""
        return self.route[-1]


class RelayService:
    """Forwarding and storage of relays at one key manager (runs on the KM's event loop); routing
    and link state are the control plane's (`node.control.plane.ControlPlane`)."""

    def __init__(
        self,
        host: RelayHost,
        store: KeyStore,
        control: ControlPlane,
        *,
        timeout_s: float = 6.0,
        alarm: Callable[[str, str, str], None] | None = None,
    ) -> None:
        self.host = host
        self.me = host.kme_id
        self.control = control
        self.store = store
        self.rstore = RelayStore(store)
        self.timeout_s = timeout_s
        self._alarm = alarm or (lambda sev, src, text: None)
        self.counters: dict[str, int] = {
            "originated": 0,
            "forwarded": 0,
            "delivered": 0,
            "rejected": 0,
            "failed": 0,
            "rerouted": 0,
        }
        self.link_key_bits: dict[str, int] = {}
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

    # -- link state: this KM's side of the control plane's gossip --------------------------------

    async def gossip_loop(self) -> None:
        """Run the control plane's link-state gossip over this KM's peer links."""
        await self.control.gossip_loop(self._pad_bits, self._send_link_state)

    async def _pad_bits(self, peer: str) -> int:
        """Relay pad bits this KM can draw towards `peer` (and the pool's size for the metrics)."""
        bits = await self.host.db(self.rstore.pad_bits_available, peer)
        if self.metrics is not None:
            self.metrics.set_key_pool(peer, 8 * await self.host.db(self.store.stored_bytes, peer))
        return bits

    async def _send_link_state(self, peer: str, payload: bytes, timeout_s: float) -> bool:
        try:
            await self.host.clients[peer].request(MessageType.LINK_STATE, {}, timeout_s=timeout_s, payload=payload)
        except PeerError:
            return False
        return True

    async def on_link_state(self, peer: str, msg: Message) -> tuple[str, dict[str, Any], bytes | None]:
        """Merge a neighbour's link-state database into the control plane's."""
        merged = self.control.merge(json_payload(msg, 1))
        return MessageType.LINK_STATE_ACK, {"merged": merged}, None

    # -- relay -----------------------------------------------------------------------------------

    async def originate(
        self, master: str, slaves: list[str], number: int, nbytes: int, dest: str, via: list[str] | None = None
    ) -> list[tuple[str, bytes, dict[str, Any]]]:
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
                    fut.set_result(keys[start : start + number])
                start += number

    async def _relay(
        self, master: str, slaves: list[str], number: int, nbytes: int, dest: str, via: list[str] | None
    ) -> list[tuple[str, bytes, dict[str, Any]]]:
        """One relay of `number` keys (see `originate`)."""
        relay_id = str(uuid.uuid4())
        keys = os.urandom(number * nbytes)
        key_ids = [new_key_id() for _ in range(number)]
        doc = {"keys": key_ids, "master": master, "slaves": slaves, "size": nbytes}
        spent: dict[str, int] = {}
        try:
            path = await self._forward(
                relay_id, keys, doc, [self.me], dest, via, time.monotonic() + self.timeout_s, "source", spent
            )
        except RelayFailed as exc:
            self._count("originated", spent)
            self._count("failed")
            await self.host.db(self.rstore.set_relay_state, relay_id, "void")
            self._alarm("major", "relay", f"relay {relay_id} to {dest} failed and was voided: {exc}")
            raise RelayFailed(f"key relay to {dest} failed: {exc}") from None
        await self.host.db(self.rstore.finish_source, relay_id, key_ids, master, slaves, path)
        self._count("originated", spent)
        audit(
            "relay_originated",
            kme=self.me,
            relay=relay_id,
            path=path,
            master_SAE_ID=master,
            slave_SAE_IDs=slaves,
            key_IDs=key_ids,
            size_bits=8 * nbytes,
        )
        ext = {"relay": {"path": path}}
        return [(k, keys[i * nbytes : (i + 1) * nbytes], ext) for i, k in enumerate(key_ids)]

    async def _forward(
        self,
        relay_id: str,
        plain: bytes,
        doc: dict[str, Any],
        trail: list[str],
        dest: str,
        planned: list[str] | None,
        deadline: float,
        role: str,
        spent: dict[str, int],
        last_chance: bool = False,
    ) -> list[str]:
        """Send the relay on from here (the control plane reroutes it around failed next hops);
        once stored, the path from here to the destination."""
        avoid: set[str] = set()
        bits = 8 * len(plain)
        for attempt in range(MAX_ATTEMPTS):
            decision = self.control.next_route(dest, bits, planned, avoid, retry=attempt > 0)
            if decision is None:
                raise RelayFailed("no route with enough key")
            if decision.rerouted:
                self._count("rerouted")
                self._alarm(
                    "warning", "relay", f"relay {relay_id} rerouted at {self.me} via {'-'.join(decision.nodes)}"
                )
            if len(trail) >= MAX_HOPS + 1:
                raise RelayFailed("hop limit reached")
            ticket = self.control.reserve(relay_id, decision.nodes, bits)
            try:
                path = await self._send_hop(
                    relay_id,
                    plain,
                    doc,
                    trail,
                    list(decision.nodes),
                    deadline,
                    role,
                    spent,
                    last_chance or decision.rerouted,
                )
            finally:
                self.control.release(ticket)
            if path is not None:
                return path
            avoid.add(self.control.link_ids[decision.nodes[1]])
        raise RelayFailed(f"every route tried failed ({', '.join(sorted(avoid)) or 'none'} avoided)")

    async def _send_hop(
        self,
        relay_id: str,
        plain: bytes,
        doc: dict[str, Any],
        trail: list[str],
        nodes: list[str],
        deadline: float,
        role: str,
        spent: dict[str, int],
        rerouted: bool,
    ) -> list[str] | None:
        """One try to hand the relay to the next hop of `nodes`: draw the pad, encrypt, send, await
        the stored path. None when the next hop is dry or does not answer (try another route)."""
        nxt = nodes[1]
        try:
            slices, pad = await self.host.db(self.rstore.take_pad, nxt, relay_id, len(plain), role, trail)
        except PoolExhausted:
            return None
        self._used(self.control.link_ids[nxt], 8 * len(plain), spent)
        left = deadline - time.monotonic()
        if left <= 2 * HOP_MARGIN_S:
            raise RelayFailed("relay timed out")
        # On its planned route a relay keeps time in reserve to be rerouted once from where it is
        # stuck (a next hop that does not answer); once rerouted, it gets all the time left.
        wait = left if rerouted else left - min(REROUTE_RESERVE_S, left / 2)
        body = {
            **doc,
            "trail": trail,
            "route": nodes[1:],
            "pad": [s.to_json() for s in slices],
            "ttl_ms": int(1000 * (wait - HOP_MARGIN_S)),
            "rerouted": rerouted,
        }
        try:
            reply = await self.host.clients[nxt].request(
                MessageType.RELAY_FORWARD,
                {"relay": relay_id},
                timeout_s=wait,
                payload=[json_frame(body), xor_bytes(plain, pad)],
            )
        except PeerError as exc:
            log.warning("relay %s: hop %s -> %s failed: %s", relay_id, self.me, nxt, exc)
            return None
        path = reply.header.get("path")
        if not (
            isinstance(path, list)
            and all(isinstance(p, str) for p in path)
            and path[:1] == [nxt]
            and path[-1] == nodes[-1]
            and len(path) <= MAX_HOPS + 1
        ):
            raise RelayFailed("malformed RELAY_STORED reply")
        return [self.me, *path]

    async def on_relay_forward(self, peer: str, msg: Message) -> tuple[str, dict[str, Any], bytes | None]:
        """One hop of a relay arriving from `peer` (see module doc): checked, then stored here or
        forwarded."""
        try:
            doc, ct = json_payload(msg, 2), msg.frames[1]
            assert isinstance(ct, bytes)  # _payload_json checked every frame
            fwd = self._check_forward(peer, msg.header.get("relay"), doc, ct)
        except ValueError as exc:
            self._reject(f"relay message from {peer} rejected: {exc}")
            raise
        if not self.control.link_usable(peer):
            raise ValueError(f"link to {peer} is down at {self.me}")
        if fwd.dest == self.me:
            return await self._store_here(peer, fwd, ct)
        return await self._pass_on(peer, fwd, ct)

    def _reject(self, text: str) -> None:
        self._count("rejected")
        self._alarm("major", "relay", text)

    async def _store_here(self, peer: str, fwd: Forward, ct: bytes) -> tuple[str, dict[str, Any], bytes | None]:
        """The destination: consume the pad and store the keys for their slaves (once)."""
        path = [*fwd.trail, self.me]
        try:
            new = await self.host.db(
                self.rstore.accept_relayed_keys,
                peer,
                fwd.relay_id,
                fwd.slices,
                ct,
                fwd.key_ids,
                fwd.master,
                fwd.slaves,
                path,
            )
        except ValueError as exc:
            self._reject(f"relay {fwd.relay_id} from {peer} rejected: {exc}")
            raise
        spent: dict[str, int] = {}
        self._used(self.control.link_ids[peer], 8 * len(ct), spent)
        if new:
            self._count("delivered", spent)
            audit("relay_stored", kme=self.me, relay=fwd.relay_id, peer_kme=peer, path=path, key_IDs=fwd.key_ids)
        else:
            self._alarm("warning", "relay", f"relay {fwd.relay_id} arrived again via {peer}: already stored")
        return MessageType.RELAY_STORED, {"path": [self.me]}, None

    async def _pass_on(self, peer: str, fwd: Forward, ct: bytes) -> tuple[str, dict[str, Any], bytes | None]:
        """A transit hop: consume the incoming pad, decrypt, and forward with a fresh pad."""
        try:
            pad = await self.host.db(self.rstore.accept_pad, peer, fwd.relay_id, fwd.slices, fwd.trail)
        except ValueError as exc:
            self._reject(f"relay {fwd.relay_id} from {peer} rejected: {exc}")
            raise
        spent: dict[str, int] = {}
        self._used(self.control.link_ids[peer], 8 * len(ct), spent)
        deadline = time.monotonic() + fwd.ttl_ms / 1000
        fields = {"keys": fwd.key_ids, "master": fwd.master, "slaves": fwd.slaves, "size": fwd.size}
        try:
            path = await self._forward(
                fwd.relay_id,
                xor_bytes(ct, pad),
                fields,
                [*fwd.trail, self.me],
                fwd.dest,
                [self.me, *fwd.route[1:]],
                deadline,
                "transit",
                spent,
                fwd.rerouted,
            )
        except RelayFailed as exc:
            self._count("failed", spent)
            await self.host.db(self.rstore.set_relay_state, fwd.relay_id, "void")
            self._alarm("major", "relay", f"relay {fwd.relay_id} voided at {self.me}: {exc}")
            raise PeerError(f"relay failed at {self.me}: {exc}") from None
        await self.host.db(self.rstore.set_relay_state, fwd.relay_id, "done")
        self._count("forwarded", spent)
        audit("relay_forwarded", kme=self.me, relay=fwd.relay_id, peer_kme=peer, path=[*fwd.trail, *path])
        return MessageType.RELAY_STORED, {"path": path}, None

    # -- checking a RELAY_FORWARD, step by step --------------------------------------------------

    def _check_forward(self, peer: str, relay_id: Any, doc: dict[str, Any], ct: bytes) -> Forward:
        """Every check of an incoming relay hop, in order; `ValueError` on the first that fails."""
        relay_id = _checked_relay_id(relay_id)
        trail, route = self._checked_route(peer, doc)
        key_ids, size, ttl_ms, master, slaves, rerouted = _checked_keys(doc, ct)
        slices = _checked_pad(doc, ct)
        if route[-1] == self.me:
            self._check_destination(trail, master, slaves)
        return Forward(relay_id, slices, key_ids, route, trail, master, slaves, size, ttl_ms, rerouted)

    def _checked_route(self, peer: str, doc: dict[str, Any]) -> tuple[list[str], list[str]]:
        """The trail so far and the route ahead: this KM next after `peer`, within the hop limit,
        towards a known KM over one of this KM's links."""
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
        if dest != self.me and (
            dest not in self.control.known_kmes() or len(route) < 2 or route[1] not in self.control.link_ids
        ):
            raise ValueError("unknown route: destination or next hop unknown here")
        return trail, route

    def _check_destination(self, trail: list[str], master: str, slaves: list[str]) -> None:
        """At the destination: the slaves are served here, the master by the relay's source."""
        if not all(self.host.is_local_sae(s) for s in slaves):
            raise ValueError("unknown route: slave SAEs are not served here")
        if self.control.kme_of_sae(master) != trail[0]:
            raise ValueError("unknown route: master SAE is not served by the relay's source")


def _checked_relay_id(relay_id: Any) -> str:
    if not isinstance(relay_id, str):
        raise ValueError("relay ID missing")
    try:
        uuid.UUID(relay_id)
    except ValueError:
        raise ValueError("relay ID is not a UUID") from None
    return relay_id


def _checked_keys(doc: dict[str, Any], ct: bytes) -> tuple[list[str], int, int, str, list[str], bool]:
    """The relayed keys' IDs, size, time to live, master and slaves, and the rerouted flag; the
    ciphertext must hold exactly the keys."""
    keys, size, master, slaves, ttl = (doc.get(k) for k in ("keys", "size", "master", "slaves", "ttl_ms"))
    rerouted = doc.get("rerouted", False)
    if not isinstance(rerouted, bool):
        raise ValueError("rerouted must be true or false")
    if not (
        isinstance(keys, list)
        and keys
        and len(keys) <= 4096
        and type(size) is int
        and size > 0
        and type(ttl) is int
        and ttl > 0
        and isinstance(master, str)
        and master
        and isinstance(slaves, list)
        and slaves
        and all(isinstance(s, str) and s for s in slaves)
    ):
        raise ValueError("RELAY_FORWARD needs keys, size, master, slaves and ttl_ms")
    key_ids = []
    for k in keys:
        try:
            key_ids.append(str(uuid.UUID(k)))
        except (ValueError, TypeError, AttributeError):
            raise ValueError("key IDs must be UUIDs") from None
    if len(set(key_ids)) != len(key_ids) or len(ct) != len(key_ids) * size:
        raise ValueError("ciphertext length must be number of keys times size")
    return key_ids, size, ttl, master, slaves, rerouted


def _checked_pad(doc: dict[str, Any], ct: bytes) -> list[PadSlice]:
    """The one-time pad's slices, exactly as long as the ciphertext."""
    pad = doc.get("pad")
    if not isinstance(pad, list) or not pad or len(pad) > 1024:
        raise ValueError("pad must be a non-empty list of slices")
    slices = [PadSlice.from_json(s) for s in pad]
    if sum(s.nbytes for s in slices) != len(ct):
        raise ValueError("pad length differs from the ciphertext length")
    return slices

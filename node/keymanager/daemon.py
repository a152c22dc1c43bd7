"""The key manager process: store, ingest, peer links, ETSI 014 API and reconciliation in one event loop.

Getting keys for a master SAE (per pool, requests are batched so one commit serves many):
1. reserve: key IDs bound to bits of this KM's stripe, committed durably (state reserved);
2. `KEY_ALLOC` to the peer KM, which commits them (reserved, for the named slaves) and acks;
3. deliver: state delivered, committed; only then the answer leaves.
Steps 3 of acked batches and 1 of the next share one commit, and up to `ALLOC_DEPTH` batches may
await the peer's ack at once (a pipeline); the peer handles KEY_ALLOCs in the order they were sent.
If the peer does not ack in time the keys become void (never reused) and the master gets 503; a
restart voids keys left reserved in step 2. Reconciliation later tells the peer which keys are void.

A slave KM that crashes after committing a delivery to its slave SAE but before the answer left
finds those grants at start (`recover_unanswered`); its sync loop tells the master's KM
(`KEYS_UNANSWERED [key IDs]` -> `KEYS_UNANSWERED_ACK {voided}`), which voids the keys (its master
SAE holds a key its partner will never get) and reports them in Get status's `status_extension`.

The KM link's authentication key starts as the pre-shared bootstrap secret and is topped up from
the pool (AUTH_REFILL, see `peer`) when a flow runs low, so the link outlives its bootstrap secret.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import signal
from collections.abc import Awaitable, Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import zmq
import zmq.asyncio

from node.classical import Message
from node.classical.messages import MessageType
from node.control.plane import ControlPlane, link_id_of
from node.keymanager.audit import attach_audit_file, audit, detach_audit_file
from node.keymanager.config import KeyLimits, KmConfig
from node.keymanager.errors import PeerError, PoolExhausted
from node.keymanager.etsi014 import Etsi014Api, KeyEntry, server_ssl_context, start_api
from node.keymanager.ingest import IngestServer
from node.keymanager.payload import json_frame, json_payload
from node.keymanager.peer import PeerClient, PeerServer
from node.keymanager.qosservice import QosService
from node.keymanager.relay import RelayService
from node.keymanager.store import Allocation, KeyBlock, KeyStore, Reserved
from node.keymanager.wire import LinkState, load_secret
from node.management.alarms import AlarmRegistry

log = logging.getLogger(__name__)
T = TypeVar("T")
MAX_BATCH_KEYS = 2048
RECONCILE_PAGE = 2000
ALLOC_DEPTH = 4
ORPHAN_AGE_S = 60.0


@dataclass
class _Pending:
    master: str
    slaves: list[str]
    number: int
    nbytes: int
    future: asyncio.Future[list[tuple[str, bytes]]] = field(repr=False)


class KmService(Protocol):
    """A service that runs beside a key manager and serves it (the SDN agent's RESTCONF server)."""

    @property
    def url(self) -> str: ...

    async def stop(self) -> None: ...


# Starts one service for a started key manager. Whoever starts the KM passes these in (the `km`
# command, the loopback networks), so the key manager never imports the layers that serve it.
ServiceStarter = Callable[["KeyManager"], Awaitable[KmService]]


class KeyManager:
    """One KME: implements the `KeyService` the ETSI 014 API calls, and runs every endpoint."""

    def __init__(self, config: KmConfig, services: Mapping[str, ServiceStarter] | None = None) -> None:
        """`services`: the services to start beside the KM by name; a configuration with [sdn] needs
        `"restconf"` (see `node.control.sdn.service.services_for`)."""
        if config.sdn is not None and "restconf" not in (services or {}):
            raise ValueError(
                f"key manager {config.kme_id}: the configuration has [sdn] but this entry point "
                "does not start the SDN agent; run it with `qkdnode km CONFIG`"
            )
        self.config = config
        self._service_starters = dict(services or {})
        self.services: dict[str, KmService] = {}
        self.kme_id = config.kme_id
        self.limits: KeyLimits = config.keys
        self.store = KeyStore(
            config.database,
            config.kme_id,
            capacity_bytes=config.keys.max_key_count * config.keys.key_size // 8,
            chunk_bytes=config.chunk_bytes,
            scrub_deferred=config.scrub_delay_s > 0,
        )
        self._db = ThreadPoolExecutor(max_workers=1, thread_name_prefix="km-store")
        self._local = set(config.local_saes)
        self._queues: dict[str, list[_Pending]] = {p.kme_id: [] for p in config.peers}
        self._wake: dict[str, asyncio.Event] = {}
        self._blocks_event: asyncio.Event | None = None
        self._confirm_after: dict[str, int] = {}
        self._lost_cache: dict[tuple[str, str], tuple[int, list[str]]] = {}
        self._auth_warned: dict[str, bool] = {}
        self.refill_below = config.auth_refill_below
        self._tasks: list[asyncio.Task[Any]] = []
        self.clients: dict[str, PeerClient] = {}
        self.api_port = 0
        self.alarms = AlarmRegistry()
        self.control = ControlPlane(
            config.kme_id,
            {p.kme_id: link_id_of(config.kme_id, p.kme_id, p.links) for p in config.peers},
            config.local_saes,
            gossip_interval_s=config.relay.gossip_interval_s,
            stale_s=config.relay.stale_s,
            alarm=self._alarm,
        )
        self.relay = RelayService(self, self.store, self.control, timeout_s=config.relay.timeout_s, alarm=self._alarm)
        self.qos: QosService | None = None  # SDN control (node.control.sdn) attaches application QoS here
        self.counters = {
            "keys_delivered_master": 0,
            "keys_delivered_slave": 0,
            "keys_voided": 0,
            "reconcile_unknown": 0,
            "auth_refills": 0,
            # slave side: answers to slave SAEs that a crash or a dropped connection may
            # have lost (the key is never served again); master side: keys voided
            # because the peer reported such a lost answer
            "keys_unanswered": 0,
            "keys_lost_at_peer": 0,
        }

    # -- store access in its own thread -------------------------------------------------------

    async def db(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a store method in the store's thread."""
        return await asyncio.get_running_loop().run_in_executor(self._db, fn, *args)

    # -- KeyService ----------------------------------------------------------------------------

    def is_local_sae(self, sae_id: str) -> bool:
        return sae_id in self._local

    def peer_of_sae(self, sae_id: str) -> str | None:
        """The KM serving `sae_id`: a peer, or (with relay) any KM of the network."""
        peer = self.config.peer_of_sae(sae_id)
        if peer is not None:
            return peer.kme_id
        kme = self.control.kme_of_sae(sae_id) if self.config.relay.enabled else None
        if kme is not None and self.qos is not None and self.qos.relay_target(kme) is None:
            return None  # under SDN control, relayed keys go only where a VIRT link leads
        return kme

    async def stored_key_count(self, peer_kme_id: str) -> int:
        if peer_kme_id not in self._queues:  # relayed: what the best route could carry now
            route = self.control.route(peer_kme_id, self.limits.key_size)
            if route is None:
                return 0
            links = {lk.link_id: lk.key_bits for lk in self.control.snapshot()}
            return min(links[lk] for lk in route.links) // self.limits.key_size
        return await self.db(self.store.stored_key_count, peer_kme_id, self.limits.key_size // 8)

    async def get_keys(self, master: str, slaves: list[str], number: int, nbytes: int) -> Sequence[KeyEntry]:
        if self.qos is None:
            return await self._get_keys(master, slaves, number, nbytes)
        pool = self.peer_of_sae(slaves[0])
        app = await self.qos.admit(master, slaves, number, nbytes, pool) if pool is not None else None
        try:
            keys = await self._get_keys(master, slaves, number, nbytes)
        except BaseException:
            if app is not None:
                self.qos.registry.request_failed(app, 8 * nbytes * number)
            raise
        if app is not None:
            self.qos.registry.delivered(app, len(keys), 8 * nbytes * len(keys))
        return keys

    async def _get_keys(self, master: str, slaves: list[str], number: int, nbytes: int) -> Sequence[KeyEntry]:
        pool = self.peer_of_sae(slaves[0])
        if pool is None:
            raise ValueError("slave SAE is not served by a peer KM")
        if pool not in self._queues:
            virt = self.qos.relay_target(pool) if self.qos is not None else None
            keys = await self.relay.originate(
                master, slaves, number, nbytes, pool, via=list(virt.path) if virt is not None else None
            )
            self.counters["keys_delivered_master"] += len(keys)
            return keys
        fut: asyncio.Future[list[tuple[str, bytes]]] = asyncio.get_running_loop().create_future()
        self._queues[pool].append(_Pending(master, slaves, number, nbytes, fut))
        self._wake[pool].set()
        return await fut

    async def get_keys_with_ids(self, requester: str, master: str, key_ids: list[str]) -> Sequence[KeyEntry]:
        if self.qos is not None:  # keys past their application's ttl are voided first, never served
            await self.qos.fetch_unexpired(requester, master, key_ids)
        if await self.db(self.relay.rstore.holds_relayed, key_ids):
            got = await self.db(self.relay.rstore.fetch, requester, master, key_ids)
            self.counters["keys_delivered_slave"] += len(key_ids)
            return [(k, m, {"relay": {"path": path}}) for k, (m, path) in zip(key_ids, got)]
        material = await self.db(self.store.fetch, requester, master, key_ids)
        self.counters["keys_delivered_slave"] += len(key_ids)
        return list(zip(key_ids, material))

    def _audit_voided(self, event: str, key_ids: list[str], reason: str, **party: str) -> None:
        """A warning audit line for keys that will never be served: this KM, the SAE or peer KM
        concerned (`party`), the key IDs and why."""
        audit(event, logging.WARNING, kme=self.kme_id, **party, key_IDs=key_ids, reason=reason)

    async def answered(self, requester: str, key_ids: list[str], ok: bool) -> None:
        """The answer carrying `key_ids` to slave SAE `requester` was written (`ok`) or could not be."""
        await self.db(self.store.confirm_answered, requester, key_ids, ok)
        if not ok:
            self.counters["keys_unanswered"] += len(key_ids)
            self._audit_voided(
                "keys_unanswered",
                key_ids,
                "the answer could not be written; the keys will not be served again",
                sae=requester,
            )
            if self._blocks_event is not None:
                self._blocks_event.set()  # the sync loop tells the master's KM

    def lost_at_peer(self, pool: str, master_sae: str) -> tuple[int, list[str]]:
        """(count, recent key IDs) of master SAE `master_sae`'s keys voided because the peer lost the
        answer to the slave SAE (read in the API's thread: a separate read of a small table)."""
        return self._lost_cache.get((pool, master_sae), (0, []))

    # -- master side: batched reserve -> KEY_ALLOC -> deliver ---------------------------------

    async def _allocator(self, pool: str) -> None:
        """Pipeline of up to `ALLOC_DEPTH` batches awaiting the peer's ack; each commit settles the
        batches acked since the last one and reserves the requests queued meanwhile."""
        queue, wake, client = self._queues[pool], self._wake[pool], self.clients[pool]
        inflight: list[_Sent] = []
        waker: asyncio.Task[Any] | None = None
        try:
            while True:
                if waker is None or waker.done():
                    waker = asyncio.create_task(wake.wait())
                await _await_ack_or_request(wake, waker, inflight)
                acked = [x for x in inflight if x.ack.done()]
                inflight = [x for x in inflight if not x.ack.done()]
                batch = self._take_batch(queue) if len(inflight) < ALLOC_DEPTH else []
                if not acked and not batch:
                    continue
                results = await self._settle_and_reserve(pool, acked, batch)
                if results is None:
                    continue
                self._answer_masters(acked)
                served = _fail_unserved(batch, results)
                if served:
                    inflight.append(
                        _Sent(
                            served,
                            asyncio.create_task(
                                client.request(MessageType.KEY_ALLOC, {}, payload=_allocations_frame(served))
                            ),
                        )
                    )
                if client.link.messages_left < self.refill_below and self._blocks_event is not None:
                    self._blocks_event.set()  # the sync loop refills the link's authentication key
                if queue:
                    wake.set()
        finally:
            for task in [x.ack for x in inflight] + ([waker] if waker is not None else []):
                task.cancel()

    async def _settle_and_reserve(
        self, pool: str, acked: list[_Sent], batch: list[_Pending]
    ) -> list[Reserved | PoolExhausted] | None:
        """One commit: the keys of acked batches become delivered (void if the peer failed to ack),
        and the new batch's requests are reserved. None (every request concerned failed) if the
        store failed: nothing settled or reserved then."""
        deliver: list[str] = []
        void: list[str] = []
        for sent in acked:
            (void if sent.ack.exception() is not None else deliver).extend(sent.key_ids())
        try:
            results = await self.db(
                self.store.reserve_many, pool, [(p.master, p.slaves, p.number, p.nbytes) for p in batch], deliver, void
            )
        except Exception as exc:  # noqa: BLE001 - the store failed: nothing settled or reserved in this transaction
            log.error("allocation commit failed: %s", exc)
            for p in batch:
                _fail(p.future, exc)
            for sent in acked:
                for p, _ in sent.settled:
                    _fail(p.future, PeerError("key store failure"))
            return None
        self.counters["keys_voided"] += len(void)
        self.counters["keys_delivered_master"] += len(deliver)
        return results

    @staticmethod
    def _answer_masters(acked: list[_Sent]) -> None:
        """Settled batches: their masters get the keys, or the peer's failure (a `PeerError`)."""
        for sent in acked:
            failure = sent.ack.exception()
            for p, r in sent.settled:
                if failure is not None:
                    _fail(p.future, failure if isinstance(failure, PeerError) else PeerError(str(failure)))
                elif not p.future.done():
                    p.future.set_result([(a.key_id, m) for a, m in zip(r.allocations, r.material)])

    @staticmethod
    def _take_batch(queue: list[_Pending]) -> list[_Pending]:
        batch: list[_Pending] = []
        keys = 0
        while queue and (not batch or keys + queue[0].number <= MAX_BATCH_KEYS):
            p = queue.pop(0)
            if not p.future.done():
                batch.append(p)
                keys += p.number
        return batch

    # -- peer requests ---------------------------------------------------------------------------

    async def _on_key_alloc(self, peer: str, msg: Message) -> tuple[str, dict[str, Any], bytes | None]:
        doc = json_payload(msg)
        if not isinstance(doc.get("allocations"), list) or not isinstance(doc.get("retired"), list):
            raise ValueError("KEY_ALLOC payload must be {allocations: [...], retired: [...]}")
        allocs = [Allocation.from_json(a) for a in doc["allocations"]]
        retired = []
        for r in doc["retired"]:
            if not (
                isinstance(r, list) and len(r) == 3 and isinstance(r[0], str) and all(type(v) is int for v in r[1:])
            ):
                raise ValueError("KEY_ALLOC retired entries must be [link_id, block_id, chunk]")
            retired.append((r[0], r[1], r[2]))
        for a in allocs:
            if not all(self.is_local_sae(s) for s in a.slaves):
                raise ValueError("KEY_ALLOC names slave SAEs not served by this KM")
            if self.peer_of_sae(a.master_sae) != peer:
                raise ValueError("KEY_ALLOC names a master SAE not served by the sending KM")
        await self.db(self.store.accept_allocations, peer, allocs, retired)
        return MessageType.KEY_ALLOC_ACK, {"count": len(allocs)}, None

    async def _on_blocks_have(self, peer: str, msg: Message) -> tuple[str, dict[str, Any], bytes | None]:
        blocks = json_payload(msg).get("blocks")
        if not isinstance(blocks, list) or not all(
            isinstance(b, list) and len(b) == 2 and isinstance(b[0], str) and type(b[1]) is int for b in blocks
        ):
            raise ValueError("BLOCKS_HAVE blocks must be a list of [link_id, block_id]")
        held = await self.db(self.store.confirm_blocks, peer, [tuple(b) for b in blocks])
        return MessageType.BLOCKS_HELD, {"count": len(held)}, json_frame({"blocks": [list(b) for b in held]})

    async def _on_reconcile(self, peer: str, msg: Message) -> tuple[str, dict[str, Any], bytes | None]:
        keys = json_payload(msg).get("keys")
        if not isinstance(keys, list) or not all(
            isinstance(k, list) and len(k) == 2 and all(isinstance(v, str) for v in k) for k in keys
        ):
            raise ValueError("RECONCILE keys must be a list of [key_ID, state]")
        states = await self.db(self.store.peer_key_states, [k for k, _ in keys])
        unknown = [k for k, s in keys if k not in states and s == "delivered"]
        void = [k for k, s in keys if s == "void" and states.get(k) == "reserved"]
        voided = await self.db(self.store.void_peer_keys, void) if void else 0
        if unknown:
            log.error("reconciliation with %s: %d delivered key IDs unknown here", peer, len(unknown))
        return (
            MessageType.RECONCILE_REPORT,
            {"unknown": len(unknown), "voided": voided},
            json_frame({"unknown": unknown}),
        )

    async def _on_auth_refill(self, peer: str, msg: Message) -> tuple[str, dict[str, Any], bytes | None]:
        n = msg.header.get("n")
        allocs = json_payload(msg).get("allocations")
        if type(n) is not int or n < 0 or not isinstance(allocs, list) or not allocs:
            raise ValueError("AUTH_REFILL needs an integer n >= 0 and a non-empty allocations list")
        parsed = [Allocation.from_json(a) for a in allocs]
        if sum(a.position.nbytes for a in parsed) % 32:
            raise ValueError("AUTH_REFILL must carry a multiple of 32 bytes")
        material, new = await self.db(self.store.accept_auth_refill, peer, f"{peer}:in", n, parsed)
        if new:
            self.peer_server.links[peer].refill(material)
        return MessageType.AUTH_REFILL_ACK, {"n": n}, None

    async def _refill_auth(self, pool: str) -> None:
        """Top up this KM's request flow to `pool` with key from the pool, once the peer holds it too."""
        client, flow = self.clients[pool], f"{pool}:out"
        pending = [
            (n, allocs, material)
            for n, allocs, material, applied in await self.db(self.store.auth_refills, flow)
            if not applied
        ]
        if not pending:
            if client.link.messages_left >= self.refill_below:
                return
            try:
                await self.db(
                    self.store.reserve_auth_refill, pool, flow, self.config.auth_refill_bytes // self.config.chunk_bytes
                )
            except PoolExhausted:
                log.warning("link to peer KM %s: too little shared key to refill its authentication key", pool)
                return
            pending = [(n, a, m) for n, a, m, applied in await self.db(self.store.auth_refills, flow) if not applied]
        for n, allocs, material in pending:
            await client.request(
                MessageType.AUTH_REFILL, {"n": n}, payload=json_frame({"allocations": [a.to_json() for a in allocs]})
            )
            await self.db(self.store.mark_refill_applied, flow, n)
            client.link.refill(material)
            self.counters["auth_refills"] += 1
            log.info(
                "link to peer KM %s: authentication key refilled (%d messages left)", pool, client.link.messages_left
            )

    def _load_auth_refills(self) -> None:
        """Rebuild each flow's key stream: bootstrap secret, then the refills in order."""
        for p in self.config.peers:
            for _, _, material, applied in self.store.auth_refills(f"{p.kme_id}:out"):
                if applied:
                    self.clients[p.kme_id].link.refill(material)
            for _, _, material, _ in self.store.auth_refills(f"{p.kme_id}:in"):
                self.peer_server.links[p.kme_id].refill(material)

    async def _on_keys_unanswered(self, peer: str, msg: Message) -> tuple[str, dict[str, Any], bytes | None]:
        """Master side: the peer lost answers to its slave SAEs for these keys; void them here."""
        ids = json_payload(msg).get("keys")
        if (
            not isinstance(ids, list)
            or not all(isinstance(k, str) and len(k) <= 64 for k in ids)
            or len(ids) > RECONCILE_PAGE
        ):
            raise ValueError(f"KEYS_UNANSWERED keys must be a list of at most {RECONCILE_PAGE} key IDs")
        voided = await self.db(self.store.void_lost_at_peer, peer, ids)
        if voided:
            self.counters["keys_lost_at_peer"] += len(voided)
            await self._refresh_lost(peer)
            self._audit_voided(
                "keys_lost_at_peer",
                voided,
                "the peer KM may never have answered the slave SAE; the keys are void",
                peer_kme=peer,
            )
            log.warning(
                "peer KM %s lost the answers for %d keys its slave SAEs fetched; they are now void "
                "(reported to the master SAEs in Get status)",
                peer,
                len(voided),
            )
        return MessageType.KEYS_UNANSWERED_ACK, {"voided": len(voided)}, None

    async def _refresh_lost(self, pool: str) -> None:
        masters = {m for p, m in self._lost_cache if p == pool} | set(self._local)
        for m in masters:
            self._lost_cache[(pool, m)] = await self.db(self.store.lost_at_peer, pool, m)

    async def _report_unanswered(self, pool: str) -> None:
        """Slave side: tell the master's KM about answers a crash or a dropped connection may have lost.

        Eve on the KM link (authenticated, not encrypted) learns which key IDs were lost: IDs carry
        no key bits, and those keys are never used by anyone."""
        ids = await self.db(self.store.unreported_unanswered, pool, RECONCILE_PAGE)
        if not ids:
            return
        reply = await self.clients[pool].request(
            MessageType.KEYS_UNANSWERED, {"count": len(ids)}, payload=json_frame({"keys": ids})
        )
        await self.db(self.store.mark_unanswered_reported, ids)
        log.warning(
            "told peer KM %s of %d keys whose answer to a slave SAE may have been lost (%s voided there)",
            pool,
            len(ids),
            reply.header.get("voided"),
        )

    async def _on_key_query(self, peer: str, msg: Message) -> tuple[str, dict[str, Any], bytes | None]:
        ids = json_payload(msg).get("keys")
        if not isinstance(ids, list) or not all(isinstance(k, str) for k in ids) or len(ids) > RECONCILE_PAGE:
            raise ValueError(f"KEY_QUERY keys must be a list of at most {RECONCILE_PAGE} key IDs")
        states = await self.db(self.store.peer_key_states, ids)
        return MessageType.KEY_STATES, {"count": len(states)}, json_frame({"states": states})

    async def _void_orphans(self, pool: str) -> None:
        """Ask the owner about keys it bound long ago that no slave fetched: void those it voided or lost."""
        stale = await self.db(self.store.stale_peer_reservations, pool, ORPHAN_AGE_S, RECONCILE_PAGE)
        if not stale:
            return
        reply = await self.clients[pool].request(
            MessageType.KEY_QUERY, {"count": len(stale)}, payload=json_frame({"keys": stale})
        )
        states = json_payload(reply).get("states")
        if not isinstance(states, dict):
            raise ValueError("KEY_STATES states must be an object")
        orphans = [k for k in stale if states.get(k) in (None, "void")]
        if orphans:
            n = await self.db(self.store.void_peer_keys, orphans)
            self.counters["keys_voided"] += n
            log.warning("reconciliation with %s: voided %d keys the owner voided or never recorded", pool, n)

    async def _confirm_blocks(self, pool: str) -> None:
        pending, self._confirm_after[pool] = await self.db(
            self.store.unconfirmed_blocks, pool, 1000, self._confirm_after.get(pool, 0)
        )
        if not pending:
            return
        reply = await self.clients[pool].request(
            MessageType.BLOCKS_HAVE, {"count": len(pending)}, payload=json_frame({"blocks": [list(b) for b in pending]})
        )
        held = json_payload(reply).get("blocks")
        if isinstance(held, list):
            await self.db(
                self.store.confirm_blocks, pool, [tuple(b) for b in held if isinstance(b, list) and len(b) == 2]
            )

    async def _sync_loop(self, pool: str) -> None:
        """Confirm new blocks as soon as they arrive, and reconcile key IDs periodically."""
        assert self._blocks_event is not None
        after = 0
        loop = asyncio.get_running_loop()
        next_reconcile = loop.time()
        while True:
            try:
                async with asyncio.timeout(min(0.5, self.config.reconcile_interval_s)):
                    await self._blocks_event.wait()
            except TimeoutError:
                pass
            self._blocks_event.clear()
            try:
                await self._refill_auth(pool)
                self._check_auth_key(pool)
                await self._confirm_blocks(pool)
                await self._report_unanswered(pool)
                if loop.time() >= next_reconcile:
                    next_reconcile = loop.time() + self.config.reconcile_interval_s
                    page = await self.db(self.store.own_keys, pool, after, RECONCILE_PAGE)
                    # keys still reserved here are in flight: the page stops before the first of them
                    rows = list(itertools.takewhile(lambda r: r[2] != "reserved", page))
                    if rows:
                        reply = await self.clients[pool].request(
                            MessageType.RECONCILE,
                            {"count": len(rows)},
                            payload=json_frame({"keys": [[k, s] for _, k, s in rows]}),
                        )
                        unknown = reply.header.get("unknown")
                        self.counters["reconcile_unknown"] += unknown if type(unknown) is int else 0
                        after = rows[-1][0]
                    elif not page:
                        after = 0  # all reconciled: start over (cheap insurance against a peer's loss)
                    await self._void_orphans(pool)
            except PeerError as exc:
                log.warning("sync with peer KM %s: %s", pool, exc)
            except Exception:
                log.exception("sync with peer KM %s failed", pool)

    async def _scrubber(self) -> None:
        """Deferred scrubbing: every `scrub_delay_s`, one WAL checkpoint covers all keys served or voided
        since the last (see `store`); what Eve could image from the disk in between is that window."""
        while True:
            await asyncio.sleep(self.config.scrub_delay_s)
            if self.store.scrub_due:
                try:
                    await self.db(self.store.scrub_if_due)
                except Exception as exc:  # noqa: BLE001 - the checkpoint is retried on the next tick
                    log.error("key store WAL checkpoint failed: %s", exc)

    def _alarm(self, severity: str, source: str, text: str) -> None:
        """Raise a transient alarm (relay events, rejected messages); never with key material."""
        self.alarms.raise_alarm(severity, source, text, clear_after_s=300.0)
        audit(
            "alarm",
            logging.WARNING if severity in ("critical", "major") else logging.INFO,
            kme=self.kme_id,
            source=source,
            severity=severity,
            text=text,
        )

    def auth_messages_left(self) -> dict[str, int]:
        """Messages each authenticated flow can still seal (the bootstrap secret is consumed)."""
        left = {f"{p}:out": c.link.messages_left for p, c in self.clients.items()}
        left.update({f"{p}:in": link.messages_left for p, link in self.peer_server.links.items()})
        return left

    def _check_auth_key(self, pool: str) -> None:
        left = min(self.clients[pool].link.messages_left, self.peer_server.links[pool].messages_left)
        if left < self.refill_below // 2 and not self._auth_warned.get(pool):
            log.warning(
                "link to peer KM %s: authentication key for only %d more messages and no refill "
                "yet (too little shared key?)",
                pool,
                left,
            )
            self._auth_warned[pool] = True

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        """Recover the store, bind every endpoint and start the background tasks."""
        cfg = self.config
        voided = await self.db(self.store.recover)
        if voided:
            log.warning("recovery: %d keys reserved but never delivered are now void", voided)
            audit("keys_voided", logging.WARNING, kme=cfg.kme_id, count=voided, reason="reserved at a crash")
        unanswered = await self.db(self.store.recover_unanswered)
        if unanswered:
            log.warning(
                "recovery: %d keys were committed as delivered to slave SAEs but their answers may "
                "not have left before the crash; they will not be served again and the master's KM "
                "is told",
                unanswered,
            )
            audit(
                "keys_unanswered",
                logging.WARNING,
                kme=cfg.kme_id,
                count=unanswered,
                reason="committed as delivered before a crash, answer not known to have left",
            )
        self.counters["keys_unanswered"] = await self.db(self.store.unanswered_count)
        voided = await self.db(self.relay.rstore.recover)
        if voided:
            self._alarm("minor", "relay", f"recovery: {voided} relays cut short by a restart are now void")
        self._blocks_event = asyncio.Event()
        self.ctx = zmq.asyncio.Context()
        self.link_state = LinkState(cfg.database + ".links.json")
        secret = load_secret(cfg.auth_key)
        secrets = {p.kme_id: load_secret(p.auth_key) if p.auth_key else secret for p in cfg.peers}
        self.peer_server = PeerServer(
            self.ctx,
            cfg.kme_id,
            cfg.link_bind,
            secrets,
            self.link_state,
            {
                MessageType.KEY_ALLOC: self._on_key_alloc,
                MessageType.BLOCKS_HAVE: self._on_blocks_have,
                MessageType.RECONCILE: self._on_reconcile,
                MessageType.KEY_QUERY: self._on_key_query,
                MessageType.AUTH_REFILL: self._on_auth_refill,
                MessageType.KEYS_UNANSWERED: self._on_keys_unanswered,
                MessageType.LINK_STATE: self.relay.on_link_state,
                MessageType.RELAY_FORWARD: self.relay.on_relay_forward,
            },
            on_reject=lambda peer, why: self._alarm(
                "major", f"peer:{peer}", f"message from peer KM {peer} rejected: {why}"
            ),
        )
        await self.peer_server.start()
        for p in cfg.peers:
            client = PeerClient(
                self.ctx, cfg.kme_id, p.kme_id, p.connect, secrets[p.kme_id], self.link_state, cfg.peer_timeout_s
            )
            await client.start()
            self.clients[p.kme_id] = client
            self._wake[p.kme_id] = asyncio.Event()
            self._tasks.append(asyncio.create_task(self._allocator(p.kme_id)))
            self._tasks.append(asyncio.create_task(self._sync_loop(p.kme_id)))
        await self.db(self._load_auth_refills)
        for p in cfg.peers:
            await self._refresh_lost(p.kme_id)
            self.counters["keys_lost_at_peer"] += sum(
                n for (pool, _), (n, _) in self._lost_cache.items() if pool == p.kme_id
            )
        if cfg.relay.enabled:
            self._tasks.append(asyncio.create_task(self.relay.gossip_loop()))
        if self.store.scrub_deferred:
            self._tasks.append(asyncio.create_task(self._scrubber()))
        self.ingest = IngestServer(
            self.ctx,
            cfg.ingest_bind,
            {s: load_secret(k) for s, k in cfg.ingest_sources},
            self.link_state,
            cfg.pool_of_link,
            self._commit_blocks,
            self._blocks_event.set,
            on_unknown=lambda m: self._alarm(
                "major", "ingest", f"a QKD source sent a {str(m.type)[:64]}; answered ERROR"
            ),
        )
        await self.ingest.start()
        self.api = Etsi014Api(self, cfg.api.client_max_size, cfg.api.body_timeout_s)
        self.runner, self.api_port = await start_api(
            self.api,
            cfg.api.host,
            cfg.api.port,
            server_ssl_context(cfg.api.cert, cfg.api.key, cfg.api.ca),
            cfg.api.header_timeout_s,
        )
        log.info("KM %s serving ETSI 014 on %s:%d", cfg.kme_id, cfg.api.host, self.api_port)
        for name, start in self._service_starters.items():  # e.g. SDN control over RESTCONF (ETSI GS QKD 015)
            self.services[name] = await start(self)

    async def _commit_blocks(self, blocks: list[KeyBlock]) -> list[str]:
        stored = await self.db(self.store.add_blocks, blocks)
        if self.qos is not None:
            self.qos.on_blocks(blocks)
        return stored

    async def stop(self) -> None:
        """Stop serving, fail pending requests, persist link counters and close the store."""
        await self.runner.cleanup()
        for service in self.services.values():
            await service.stop()
        if self.qos is not None:
            await self.qos.stop()
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.ingest.close()
        for c in self.clients.values():
            await c.close()
        await self.peer_server.close()
        self.ctx.term()
        await self.db(self.store.close)
        self._db.shutdown()

    def endpoints(self) -> dict[str, Any]:
        """Where this KM listens (the bound ports, for port-0 configurations)."""
        out = {"api_port": self.api_port, "ingest": self.ingest.endpoint, "link": self.peer_server.endpoint}
        for name, service in self.services.items():
            out[f"{name}_url"] = service.url
        return out


@dataclass
class _Sent:
    """A batch whose allocations were sent to the peer (`KEY_ALLOC`), and the peer's ack."""

    settled: list[tuple[_Pending, Reserved]]
    ack: asyncio.Task[Any] = field(repr=False)

    def key_ids(self) -> list[str]:
        return [a.key_id for _, r in self.settled for a in r.allocations]


async def _await_ack_or_request(wake: asyncio.Event, waker: asyncio.Task[Any], inflight: list[_Sent]) -> None:
    """Wait for a peer's ack or (while the pipeline has room) a new request (`waker` waits on `wake`)."""
    waiting: list[asyncio.Task[Any]] = [x.ack for x in inflight]
    if len(inflight) < ALLOC_DEPTH:
        waiting.append(waker)
    await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
    if waker.done():
        wake.clear()


def _fail_unserved(batch: list[_Pending], results: list[Reserved | PoolExhausted]) -> list[tuple[_Pending, Reserved]]:
    """Requests the pool could not serve fail (`PoolExhausted`); the others, with their keys."""
    served = []
    for p, res in zip(batch, results):
        if isinstance(res, Exception):
            _fail(p.future, res)
        else:
            served.append((p, res))
    return served


def _allocations_frame(served: list[tuple[_Pending, Reserved]]) -> bytes:
    """The `KEY_ALLOC` payload: key IDs and positions (never bits), and the chunks retired."""
    return json.dumps(
        {
            "allocations": [a.to_json() for _, r in served for a in r.allocations],
            "retired": [list(x) for _, r in served for x in r.retired],
        }
    ).encode()


def _fail(future: asyncio.Future[Any], exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)


async def run_key_manager(
    config: KmConfig,
    ready: Callable[[KeyManager], None] | None = None,
    services: Mapping[str, ServiceStarter] | None = None,
) -> None:
    """Run a key manager until SIGINT/SIGTERM, then shut down gracefully. Its audit trail goes to
    `config.audit_log` (owner-only, beside the key store unless configured elsewhere)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    handler = attach_audit_file(config.audit_log) if config.audit_log else None
    try:
        km = KeyManager(config, services)
        await km.start()
        audit("km_started", kme=config.kme_id, api_port=km.api_port)
        if ready is not None:
            ready(km)
        try:
            await stop.wait()
        finally:
            try:
                async with asyncio.timeout(5):
                    await km.stop()
            except TimeoutError:
                log.error("shutdown timed out")
            audit("km_stopped", kme=config.kme_id)
    finally:
        if handler is not None:
            detach_audit_file(handler)


def main(argv: list[str] | None = None) -> int:
    """`python -m node.keymanager.daemon CONFIG`: what `qkdnode km CONFIG --print-endpoints` does, with
    fewer imports (tests restart KMs often)."""
    import sys

    from node.keymanager.config import load_config

    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m node.keymanager.daemon CONFIG", file=sys.stderr)
        return 2
    logging.basicConfig(level="WARNING", format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        config = load_config(args[0])
    except ValueError as exc:
        print(f"km: error: {exc}", file=sys.stderr)
        return 2
    if config.sdn is not None:  # the SDN agent lives above the key manager; its entry point starts it
        print("km: error: the configuration has [sdn]; run it with `qkdnode km CONFIG`", file=sys.stderr)
        return 2
    asyncio.run(run_key_manager(config, lambda km: print(json.dumps(km.endpoints()), flush=True)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

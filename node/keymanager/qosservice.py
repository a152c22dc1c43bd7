"""The key manager's side of SDN control: application QoS on the ETSI 014 path, key association
links (relay paths the controller opened), link secret key rates, and the ttl sweep.

A `KeyManager` runs without it (`km.qos is None`: no QoS, relay to any KM). Attached, relayed keys
go only to KMs a VIRT link leads to, along that link's path (rerouted by the relay layer only if a
hop on it fails), and every request of a registered application is checked against its QoS.

What Eve learns: each link's metered secret key rate travels in the link-state gossip (`skr`, on the
authenticated KM link), which she could estimate anyway from the volume of the link's classical
traffic; no key bits, key IDs or pad positions are added anywhere.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from node.classical.messages import MessageType
from node.keymanager.errors import PeerError
from node.keymanager.payload import json_frame, json_payload
from node.keymanager.qos import Application, QosRegistry, RateMeter, delivered_before, void_expired, void_own

if TYPE_CHECKING:
    from node.control.plane import ControlPlane
    from node.keymanager.config import KeyLimits
    from node.keymanager.peer import PeerClient
    from node.keymanager.store import KeyBlock, KeyStore

T = TypeVar("T")

log = logging.getLogger(__name__)
SWEEP_INTERVAL_S = 0.25


@dataclass(frozen=True)
class VirtPath:
    """A key association to a KM that is not a neighbour: the KMs the relayed key crosses, this KM
    first and the remote KM last."""

    link_id: str
    path: tuple[str, ...]
    enabled: bool = True
    bandwidth: int | None = None

    @property
    def remote(self) -> str:
        return self.path[-1]


class QosHost(Protocol):
    """What the QoS service needs from its key manager (`daemon.KeyManager`)."""

    kme_id: str
    limits: KeyLimits
    store: KeyStore
    control: ControlPlane

    @property
    def clients(self) -> Mapping[str, PeerClient]: ...

    async def db(self, fn: Callable[..., T], *args: Any) -> T: ...

    def is_local_sae(self, sae_id: str) -> bool: ...

    async def stored_key_count(self, peer_kme_id: str) -> int: ...


class QosService:
    """Attach with `km.qos = QosService(km)`, then `start()` on the KM's loop."""

    def __init__(self, km: QosHost) -> None:
        self.km = km
        self.registry = QosRegistry(km.kme_id)
        self.meter = RateMeter()
        self.virt: dict[str, VirtPath] = {}
        self.qber: dict[str, float] = {}
        self._checked: set[str] = set()
        self._task: asyncio.Task[None] | None = None

    # -- key association links ---------------------------------------------------------------------
    def relay_target(self, kme: str) -> VirtPath | None:
        """The enabled VIRT link leading to KM `kme` (None: relayed keys may not go there)."""
        return next((v for v in self.virt.values() if v.remote == kme and v.enabled), None)

    def link_skr(self, link_id: str) -> float:
        """Secret key rate of a link (bit/s): this KM's own links from its meter, others' from the
        link-state gossip (the lower of the two ends' reports); a VIRT link's is its path's least."""
        if link_id in self.virt:
            path = self.virt[link_id].path
            hops = [self._hop_link(a, b) for a, b in itertools.pairwise(path)]
            return (
                min((self.link_skr(h) for h in hops if h is not None), default=0.0)
                if all(h is not None for h in hops)
                else 0.0
            )
        if link_id in self.km.control.link_ids.values():
            return self.meter.rate(link_id)
        reports = [
            lk.get("skr", 0)
            for e in self.km.control.lsdb.entries.values()
            for lk in e.get("links", ())
            if lk.get("link") == link_id
        ]
        return float(min(reports)) if reports else 0.0

    def _hop_link(self, a: str, b: str) -> str | None:
        if a == self.km.kme_id:
            return self.km.control.link_ids.get(b)
        entry = self.km.control.lsdb.entries.get(a, {})
        return next((lk["link"] for lk in entry.get("links", ()) if lk.get("peer") == b), None)

    def on_blocks(self, blocks: Sequence[KeyBlock]) -> None:
        """Blocks stored: feed the link rate meter and tell the gossip the new rates."""
        for b in blocks:
            self.meter.add(b.link_id, b.length_bits)
            if b.qber is not None:
                self.qber[b.link_id] = float(b.qber)
        for peer, link in self.km.control.link_ids.items():
            self.km.control.set_link_skr(peer, int(self.meter.rate(link)))

    # -- ETSI 014 path -------------------------------------------------------------------------------
    async def admit(self, master: str, slaves: list[str], number: int, nbytes: int, pool: str) -> Application | None:
        """QoS check of a Get key request (raises `QosRefused`)."""
        if self.registry.app_of(master, slaves) is None and not self.registry.reserves(pool):
            return None
        pool_bits: int | None = None
        if pool in self.km.clients:
            pool_bits = 8 * await self.km.db(self.km.store.stored_bytes, pool)
        else:
            pool_bits = 8 * self.km.limits.key_size * await self.km.stored_key_count(pool)
        return self.registry.admit_request(master, slaves, 8 * nbytes * number, pool_bits, pool)

    async def fetch_unexpired(self, requester: str, master: str, key_ids: list[str]) -> None:
        """Before a slave fetches: void the application's keys whose ttl ran out (in the store
        thread, so nothing expired can be served after this)."""
        app = self.registry.app_of(master, [requester])
        if app is None or app.qos.ttl is None:
            return
        n = await self.km.db(void_expired, self.km.store, app.server, app.clients, time.time() - app.qos.ttl)
        self.registry.expired(app, n)

    # -- ttl sweep -----------------------------------------------------------------------------------
    async def sweep_once(self) -> None:
        """Void every application's expired unused keys here; at the master's side, mark void the
        keys the peer reports voided (asked with KEY_QUERY)."""
        now = time.time()
        for app in self.registry.ttl_apps():
            assert app.qos.ttl is not None
            cutoff = now - app.qos.ttl
            n = await self.km.db(void_expired, self.km.store, app.server, app.clients, cutoff)
            self.registry.expired(app, n)
            if app.remote_kme in self.km.clients and self.km.is_local_sae(app.server):
                ids = [
                    k
                    for k in await self.km.db(
                        delivered_before, self.km.store, app.remote_kme, app.server, cutoff - 2 * SWEEP_INTERVAL_S
                    )
                    if k not in self._checked
                ]
                if ids:
                    await self._settle_master_side(app, ids)

    async def _settle_master_side(self, app: Application, ids: list[str]) -> None:
        assert app.remote_kme is not None
        try:
            reply = await self.km.clients[app.remote_kme].request(
                MessageType.KEY_QUERY, {"count": len(ids)}, payload=json_frame({"keys": ids})
            )
        except PeerError:
            return
        states = json_payload(reply).get("states")
        if not isinstance(states, dict):
            return
        void = [k for k in ids if states.get(k) == "void"]
        if void:
            await self.km.db(void_own, self.km.store, void)
        self._checked.update(k for k in ids if states.get(k) in ("void", "delivered"))

    async def _sweep_loop(self) -> None:
        while True:
            try:
                await self.sweep_once()
            except Exception:
                log.exception("QoS ttl sweep failed")
            await asyncio.sleep(SWEEP_INTERVAL_S)

    def start(self) -> None:
        """Start the ttl sweep on the running loop."""
        self._task = asyncio.get_running_loop().create_task(self._sweep_loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def status(self) -> dict[str, Any]:
        return {
            "applications": self.registry.summary(),
            "virt_links": {k: {"path": list(v.path), "enabled": v.enabled} for k, v in self.virt.items()},
        }

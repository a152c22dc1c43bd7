"""A QKD network on loopback from one topology file: one key manager per node, relay between them.

Node `N` gets key manager `KME_N` serving SAE `SAE_N`; every link of the topology is a KM peer
pair with its own pre-shared bootstrap secret (`link_<id>.key`) and its own key pool. All KMs run in
this process, each on its own event-loop thread, and listen on free ports of 127.0.0.1.

Each node also serves its Prometheus metrics (`node.management.metrics`: relays by outcome, link key
consumed by relaying, pool sizes, active alarms) on a free port (`metrics_url`).

Link key source (a stand-in): `feed` sends the *same* fresh random KEY_BLOCK to both KMs of a link
over the authenticated ingest channel, as the two QKD modules of a link would after distillation.
It exercises the KMs exactly as real links do; the node daemons of `qkdnode run` (one per link end)
can replace it by pointing their key-manager endpoint at the KMs' ingest ports (`ingest_endpoint`).
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from node.classical.messages import KeyBlockAck
from node.control.routing import LinkState as RouteLink
from node.control.sdn.service import services_for
from node.control.topology import Topology
from node.keymanager.certs import make_pki
from node.keymanager.config import load_config
from node.keymanager.daemon import KeyManager
from node.keymanager.demo import free_port, km_toml_head
from node.keymanager.ingest import KeyBlockSender
from node.management.metrics import NodeMetrics, close_metrics, serve_metrics
from node.private_files import write_private_file

SECRET_BYTES = 2 << 20


def kme_id(node: str) -> str:
    """The KME ID of node `node`'s key manager."""
    return f"KME_{node}"


def sae_id(node: str) -> str:
    """The SAE ID of the demo application at node `node`."""
    return f"SAE_{node}"


def _secret(path: Path, nbytes: int = SECRET_BYTES) -> None:
    write_private_file(path, os.urandom(nbytes))


def write_network(
    topology: Topology,
    root: str | os.PathLike,
    *,
    gossip_interval_s: float = 0.2,
    stale_s: float = 2.0,
    relay_timeout_s: float = 6.0,
    max_key_count: int = 1_000_000,
    max_key_per_request: int = 128,
) -> dict[str, Path]:
    """Write the PKI, secrets and one KM TOML file per node under `root`; returns the files by node."""
    base = Path(root)
    base.mkdir(parents=True, exist_ok=True)
    nodes = topology.node_names()
    make_pki(base / "pki", [kme_id(n) for n in nodes], [sae_id(n) for n in nodes])
    for lk in topology.links:
        _secret(base / f"link_{lk.id}.key")
    for n in nodes:
        _secret(base / f"ingest_{n}.key", 4096)
    for lk in topology.links:  # one ingest identity per QKD module (link end), for the link daemons
        for n in lk.ends():
            _secret(base / f"ingest_{lk.id}_{n}.key", 4096)
    ports = {(n, k): free_port() for n in nodes for k in ("api", "link", "in")}
    out = {}
    for n in nodes:
        me = kme_id(n)
        peers = []
        for lk in topology.links_of(n):
            other = lk.other_end(n)
            peers.append(f"""[[peers]]
kme_id = "{kme_id(other)}"
connect = "tcp://127.0.0.1:{ports[(other, "link")]}"
links = ["{lk.id}"]
saes = ["{sae_id(other)}"]
auth_key = "link_{lk.id}.key"
""")
        first_link = topology.links_of(n)[0].id if topology.links_of(n) else None
        if first_link is None:
            _secret(base / f"link_none_{n}.key", 64)
        limits = {"max_key_count": max_key_count, "max_key_per_request": max_key_per_request}
        text = (
            km_toml_head(me, f"km_{n}.db", [sae_id(n)], ports[(n, "api")], "pki", limits, ports[(n, "in")])
            + f"""[[ingest.sources]]
id = "link_source_{n}"
auth_key = "ingest_{n}.key"
"""
            + "".join(
                f"""[[ingest.sources]]
id = "qkd_{lk.id}_{n}"
auth_key = "ingest_{lk.id}_{n}.key"
"""
                for lk in topology.links_of(n)
            )
            + f"""
[link]
bind = "tcp://127.0.0.1:{ports[(n, "link")]}"
auth_key = "{f"link_{first_link}.key" if first_link else f"link_none_{n}.key"}"
peer_timeout_s = 2.0
reconcile_interval_s = 1.0
auth_refill_below = 2000
auth_refill_bytes = 16384

[relay]
gossip_interval_s = {gossip_interval_s}
stale_s = {stale_s}
timeout_s = {relay_timeout_s}

"""
            + "\n".join(peers)
        )
        out[n] = base / f"km_{n}.toml"
        out[n].write_text(text)
    return out


class KmThread:
    """A `KeyManager` on its own event loop in a background thread."""

    def __init__(self, config_path: Path) -> None:
        self.config = load_config(config_path)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True, name=f"km-{self.config.kme_id}")
        self.thread.start()
        self.km = KeyManager(self.config, services_for(self.config))
        self.call(self.km.start())

    def call(self, coro: Any, timeout: float = 30.0) -> Any:
        """Run a coroutine on the KM's loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def run(self, fn: Any, *args: Any, timeout: float = 30.0) -> Any:
        """Call a plain function on the KM's loop thread (where its state lives)."""

        async def call() -> Any:
            return fn(*args)

        return self.call(call(), timeout)

    def stop(self) -> None:
        """Stop the KM and its loop."""
        try:
            self.call(self.km.stop())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            self.loop.close()


@dataclass
class LoopbackNetwork:
    """A running loopback network (see module doc). Use `start_network`; `stop()` when done."""

    topology: Topology
    root: Path
    configs: dict[str, Path]
    kms: dict[str, KmThread] = field(default_factory=dict)
    senders: dict[str, KeyBlockSender] = field(default_factory=dict)
    next_block: dict[str, int] = field(default_factory=dict)
    metrics: dict[str, NodeMetrics] = field(default_factory=dict)
    metrics_servers: dict[str, tuple[Any, int]] = field(default_factory=dict)

    # -- addresses and credentials ----------------------------------------------------------------

    def url(self, node: str) -> str:
        """host:port of node `node`'s ETSI 014 API."""
        return f"127.0.0.1:{self.kms[node].km.api_port}"

    def sae_credentials(self, node: str) -> tuple[str, str, str]:
        """(certificate, key, CA) paths of node `node`'s SAE."""
        pki = self.root / "pki"
        return str(pki / f"{sae_id(node)}.pem"), str(pki / f"{sae_id(node)}.key"), str(pki / "ca.pem")

    def metrics_url(self, node: str) -> str:
        """Node `node`'s Prometheus endpoint (relays, link key used by relays, pools, alarms)."""
        return f"http://127.0.0.1:{self.metrics_servers[node][1]}/metrics"

    def ingest_endpoint(self, node: str) -> str:
        """Where node `node`'s KM takes KEY_BLOCKs (for a real QKD module to feed it)."""
        return self.kms[node].config.ingest_bind

    # -- link key source ----------------------------------------------------------------------------

    def feed(self, link_id: str, nbytes: int = 1 << 16, blocks: int = 1, wait: bool = True) -> None:
        """Send identical fresh blocks of `nbytes` to both KMs of `link_id`; with `wait`, until both
        confirmed them (so they serve keys and relay pads)."""
        lk = self.topology.link(link_id)
        for _ in range(blocks):
            key = os.urandom(nbytes)
            bid = self.next_block.get(link_id, 0)
            for n in lk.ends():
                reply = self.senders[n].send_block(link_id, bid, key, qber=0.02)
                if not isinstance(reply, KeyBlockAck):
                    raise RuntimeError(f"KM of node {n} did not acknowledge block {link_id}/{bid}")
            self.next_block[link_id] = bid + 1
        if wait:
            self._wait_confirmed(link_id)

    def feed_all(self, nbytes: int = 1 << 16, blocks: int = 1) -> None:
        """`feed` every link."""
        for lk in self.topology.links:
            self.feed(lk.id, nbytes, blocks, wait=False)
        for lk in self.topology.links:
            self._wait_confirmed(lk.id)

    def _wait_confirmed(self, link_id: str, timeout_s: float = 20.0) -> None:
        want = self.next_block.get(link_id, 0)
        deadline = time.monotonic() + timeout_s
        for n in self.topology.link(link_id).ends():
            while True:
                with sqlite3.connect(self.kms[n].config.database) as db:
                    got = db.execute(
                        "SELECT COUNT(*) FROM blocks WHERE link_id=? AND confirmed=1", (link_id,)
                    ).fetchone()[0]
                if got >= want:
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"blocks of link {link_id} were not confirmed at node {n}")
                time.sleep(0.02)

    # -- control ---------------------------------------------------------------------------------

    def set_link_up(self, link_id: str, up: bool) -> None:
        """Declare a link down (or up again) at both its ends: relays avoid it from then on."""
        lk = self.topology.link(link_id)
        for n in lk.ends():
            self.kms[n].run(self.kms[n].km.control.set_link_up, kme_id(lk.other_end(n)), up)
            if n in self.metrics:
                self.metrics[n].set_link_up(link_id, up)

    def snapshot(self, node: str) -> list[RouteLink]:
        """The links as node `node`'s KM sees them now."""
        return self.kms[node].run(self.kms[node].km.control.snapshot)

    def wait_converged(self, timeout_s: float = 20.0, min_bits: int = 1) -> None:
        """Wait until every KM sees every link of the topology up with at least `min_bits` of pad key."""
        deadline = time.monotonic() + timeout_s
        want = {lk.id for lk in self.topology.links}
        for n in self.kms:
            while True:
                seen = {lk.link_id for lk in self.snapshot(n) if lk.up and lk.key_bits >= min_bits}
                if want <= seen:
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"node {n} sees links {sorted(seen)} of {sorted(want)} usable")
                time.sleep(0.05)

    def stop(self) -> None:
        """Stop every KM and close the link key source."""
        for s in self.senders.values():
            s.close()
        for server, _ in self.metrics_servers.values():
            close_metrics(server)
        self.metrics_servers.clear()
        errors = []
        for km in self.kms.values():
            try:
                km.stop()
            except Exception as exc:  # noqa: BLE001 - stop the others all the same
                errors.append(exc)
        self.kms.clear()
        self.senders.clear()
        if errors:
            raise RuntimeError(f"{len(errors)} key managers did not stop cleanly: {errors[0]}")


def start_network(topology: Topology, root: str | os.PathLike, **options: Any) -> LoopbackNetwork:
    """Write the files (`write_network` options) and start one KM per node."""
    configs = write_network(topology, root, **options)
    net = LoopbackNetwork(topology, Path(root), configs)
    try:
        for n, path in configs.items():
            net.kms[n] = KmThread(path)
            m = NodeMetrics(n)
            for lk in topology.links_of(n):
                m.declare_link(lk.id, lk.other_end(n), "alice" if lk.a == n else "bob")
                m.set_link_up(lk.id, True)
            m.watch_alarms(net.kms[n].km.alarms)
            net.kms[n].km.relay.metrics = m
            net.metrics[n] = m
            net.metrics_servers[n] = serve_metrics(m.registry, alarms=net.kms[n].km.alarms)
            net.senders[n] = KeyBlockSender(
                net.kms[n].config.ingest_bind,
                f"link_source_{n}",
                (Path(root) / f"ingest_{n}.key").read_bytes(),
                Path(root) / f"link_source_{n}.json",
            )
    except BaseException:
        net.stop()
        raise
    return net

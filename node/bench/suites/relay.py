"""Bench rows for trusted-node key relay on loopback networks of key managers (`node.network`).

All KMs run in this process (one event-loop thread each, so they share one interpreter lock) and
the SAE load comes from this process too: absolute figures are a floor for separate KM processes.

- `relay.2hop`: line A-B-C. 16 concurrent keep-alive mTLS clients at KME_A ask for keys shared with
  SAE_C (relayed A-B-C: one-time pad per hop, durable commits at every hop), closed loop; `number`
  keys of 256 bits per request (1 and 64). Rate column: relayed kilo-keys/s. Reference: the same
  requests for SAE_B, the direct peer (no relay).
- `relay.failover`: ring A..E. A steady stream of relayed keys A -> C (A-B-C); link BC is declared
  down; the row is the median time from the failure to the first key delivered to A's master SAE
  after it (the relay rerouted in flight, at B), with the time to the first key on the converged
  route A-E-D-C in the details.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import ssl
import statistics
import tempfile
import threading
import time
from typing import Any

from node.bench.core import BenchCase, BenchProfile

CLIENTS = 16


class _Net:
    """A loopback network per topology, started once and stopped at exit."""

    nets: dict[str, Any] = {}

    @classmethod
    def get(cls, name: str) -> Any:
        if name not in cls.nets:
            from node.control.topology import example_topology
            from node.network.loopback import start_network

            tmp = tempfile.TemporaryDirectory(prefix=f"qkdnode-relay-bench-{name}-")
            net = start_network(
                example_topology(name), tmp.name, gossip_interval_s=0.1, stale_s=1.5, relay_timeout_s=10.0
            )
            net.feed_all(1 << 20, 2)
            net.wait_converged(min_bits=8 * 4096)
            cls.nets[name] = net

            def close(net: Any = net, tmp: Any = tmp) -> None:
                try:
                    net.stop()
                except RuntimeError:  # at interpreter exit the KMs' store threads may be gone already
                    pass
                tmp.cleanup()

            # before the interpreter shuts thread pools down (the KMs' store threads), unlike atexit
            getattr(threading, "_register_atexit", atexit.register)(close)
        return cls.nets[name]


def _ctx(net: Any, node: str) -> ssl.SSLContext:
    cert, key, ca = net.sae_credentials(node)
    ctx = ssl.create_default_context(cafile=ca)
    ctx.load_cert_chain(cert, key)
    return ctx


async def _load(net: Any, src: str, dst: str, requests: int, number: int) -> float:
    """Seconds for `requests` enc_keys calls of `number` keys from CLIENTS keep-alive clients."""
    import aiohttp

    from node.network.loopback import sae_id

    url = f"https://{net.url(src)}/api/v1/keys/{sae_id(dst)}/enc_keys?number={number}&size=256"
    ctx = _ctx(net, src)
    errors = 0

    async def client(session: aiohttp.ClientSession, n: int) -> None:
        nonlocal errors
        for _ in range(n):
            async with session.get(url) as resp:
                await resp.read()
                errors += resp.status != 200

    sessions = [aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1, ssl=ctx)) for _ in range(CLIENTS)]
    try:
        t0 = time.perf_counter()
        await asyncio.gather(*(client(s, requests // CLIENTS) for s in sessions))
        dt = time.perf_counter() - t0
    finally:
        await asyncio.gather(*(s.close() for s in sessions))
    if errors:
        raise RuntimeError(f"{errors} of {requests} key requests failed")
    return dt


def _two_hop_case(number: int, profile: BenchProfile) -> BenchCase:
    requests = (160 if profile.quick else 640) if number == 1 else (32 if profile.quick else 160)
    keys = requests // CLIENTS * CLIENTS * number

    def setup() -> Any:
        net = _Net.get("line3")
        need = 3 * keys * 32 * (4 if not profile.quick else 3)  # bytes of pad per link over all runs
        blocks = need // (1 << 20) + 1
        net.feed("AB", 1 << 20, blocks)
        net.feed("BC", 1 << 20, blocks)
        net.wait_converged(min_bits=8 * 4096)
        return net

    def run(net: Any) -> dict[str, Any]:
        dt = asyncio.run(_load(net, "A", "C", requests, number))
        return {"keys_per_s": keys / dt, "requests_per_s": requests / dt}

    def reference(net: Any) -> None:
        asyncio.run(_load(net, "A", "B", requests, number))

    return BenchCase(
        stage="relay.2hop",
        n=keys,
        setup=setup,
        run=run,
        reference=reference,
        unit="kkeys/s",
        items=keys * 1000,
        reference_name="direct peer (no relay)",
        params={"clients": CLIENTS, "keys_per_request": number, "key_bits": 256, "hops": 2},
        max_runs=2 if profile.quick else 4,
        reference_max_runs=1 if profile.quick else 2,
    )


def _failover_case(profile: BenchProfile) -> BenchCase:
    trials = 2 if profile.quick else 5

    def setup() -> Any:
        return _Net.get("ring5")

    def one_trial(net: Any) -> tuple[float, float]:
        from node.keymanager.saeclient import SaeClient
        from node.network.loopback import kme_id

        master = SaeClient(net.url("A"), *net.sae_credentials("A"))
        for _ in range(3):  # steady state on A-B-C
            code, cont = master.enc_keys("SAE_C")
            if code != 200:
                raise RuntimeError("relay failed before the link failure")
        net.set_link_up("BC", False)
        t0 = time.perf_counter()
        first = converged = None
        while converged is None:
            code, cont = master.enc_keys("SAE_C")
            now = time.perf_counter() - t0
            if code == 200:
                first = now if first is None else first
                if cont["keys"][0]["key_extension"]["relay"]["path"] == [kme_id(n) for n in "AEDC"]:
                    converged = now
            if now > 30:
                raise RuntimeError("no rerouted key within 30 s")
        net.set_link_up("BC", True)
        net.wait_converged(min_bits=8 * 4096)
        assert first is not None  # a converged (rerouted) key is also a first key
        return first, converged

    def run(net: Any) -> dict[str, Any]:
        # the trials fail a link on purpose: its alarms are expected, not news for the bench's reader
        alarms_log = logging.getLogger("node.management.alarms")
        level = alarms_log.level
        alarms_log.setLevel(logging.CRITICAL)
        try:
            results = [one_trial(net) for _ in range(trials)]
        finally:
            alarms_log.setLevel(level)
        first = statistics.median(r[0] for r in results) * 1e3
        conv = statistics.median(r[1] for r in results) * 1e3
        return {
            "mbit_per_s": first,
            "first_rerouted_key_ms": first,
            "first_key_on_converged_route_ms": conv,
            "trials": trials,
        }

    return BenchCase(
        stage="relay.failover",
        n=trials,
        setup=setup,
        run=run,
        unit="ms to 1st rerouted key",
        params={"topology": "ring5", "failed_link": "BC", "gossip_interval_s": 0.1},
        max_runs=1,
        warmup=False,
    )


def cases(profile: BenchProfile) -> list[BenchCase]:
    """Relayed keys per second across 2 hops (1 and 64 keys per request) and link-failure recovery."""
    out = []
    if profile.wants("relay.2hop"):
        out.append(_two_hop_case(1, profile))
        if not profile.quick:
            out.append(_two_hop_case(64, profile))
    if profile.wants("relay.failover"):
        out.append(_failover_case(profile))
    return out

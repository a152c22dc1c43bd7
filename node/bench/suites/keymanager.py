"""Bench rows for the key manager: ETSI 014 enc_keys over mutual TLS, and KEY_BLOCK ingest.

Two KM processes (KME_A, KME_B) run on loopback with their peer link; the load comes from this
process. `km.enc_keys` runs 16 concurrent keep-alive mTLS clients asking KME_A for one 256-bit key
each request, closed loop (as fast as answers come back): the rate column is kilo-requests/s; the
details give req/s, p50/p99 latency, and the p99 latency at a paced offered load of 500 req/s (the
issue's operating point). Its reference is Get status through the same clients (TLS + HTTP + JSON
without any key work). `km.ingest` sends KEY_BLOCKs of n bits to KME_A with up to 32 unacknowledged
(acknowledged after the durable commit): the rate is Mbit/s of key.
"""

from __future__ import annotations

import asyncio
import atexit
import os
import ssl
import statistics
import tempfile
import time
from typing import Any

from node.bench.core import BenchCase, BenchProfile
from node.classical.messages import KeyBlockAck

CLIENTS = 16
PACED_RATE = 500.0
WINDOW = 32


class _Cluster:
    """The two KM processes and their files, started once and stopped at exit."""

    instance: _Cluster | None = None

    def __init__(self) -> None:
        from node.keymanager.demo import write_demo_pair

        self.tmp = tempfile.TemporaryDirectory(prefix="qkdnode-km-bench-")
        self.pair = write_demo_pair(self.tmp.name, max_key_count=200_000_000, max_key_per_request=128)
        self.pair.start()
        self.block = 0
        self._senders: dict[str, Any] = {}
        atexit.register(self.close)

    @classmethod
    def get(cls) -> _Cluster:
        if cls.instance is None:
            cls.instance = cls()
        return cls.instance

    def sender(self, who: str) -> Any:
        from node.keymanager.ingest import KeyBlockSender

        if who not in self._senders:
            self._senders[who] = KeyBlockSender(
                f"tcp://127.0.0.1:{self.pair.ports[who + '_in']}",
                f"node_{who}",
                self.pair.secret(f"ingest_{who}"),
                os.path.join(self.tmp.name, f"sender_{who}.json"),
            )
        return self._senders[who]

    def feed_both(self, nbytes: int) -> None:
        """One identical block to both KMs (key for enc_keys)."""
        key = os.urandom(nbytes)
        for who in "ab":
            reply = self.sender(who).send_block("L1", self.block, key, timeout_s=10)
            if not isinstance(reply, KeyBlockAck):
                raise RuntimeError(f"block refused: {reply.error}")
        self.block += 1

    def close(self) -> None:
        for s in self._senders.values():
            s.close()
        self._senders.clear()
        self.pair.stop()
        self.tmp.cleanup()


def _cpu_s(pid: int) -> float:
    """CPU seconds (user + system) a process has used so far (Linux /proc), 0 where unknown."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def _commit_latency_ms(directory: str, commits: int = 30) -> float:
    """Median time of one durable SQLite commit (WAL, synchronous=FULL) in `directory` right now: each
    enc_keys answer waits for three of them (reserve, the peer's accept, deliver)."""
    import sqlite3

    path = os.path.join(directory, "fsync-probe.db")
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.execute("CREATE TABLE IF NOT EXISTS t(x BLOB)")
        times = []
        for _ in range(commits):
            t0 = time.perf_counter()
            db.execute("BEGIN")
            db.execute("INSERT INTO t VALUES(?)", (bytes(64),))
            db.execute("COMMIT")
            times.append(time.perf_counter() - t0)
    finally:
        db.close()
    return statistics.median(times) * 1e3


def _client_ssl(pair: Any) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=pair.ca)
    ctx.load_cert_chain(*pair.pem("SAE_A"))
    return ctx


async def _load(pair: Any, path: str, total: int, paced_rate: float | None) -> list[float]:
    """Latencies (s) of `total` GETs of `path` from CLIENTS keep-alive sessions; paced or closed loop."""
    import aiohttp

    ctx = _client_ssl(pair)
    url = f"https://127.0.0.1:{pair.ports['a_api']}/api/v1/keys/SAE_B/{path}"
    per_client = total // CLIENTS
    latencies: list[float] = []
    errors = 0

    async def client(i: int, session: aiohttp.ClientSession, t0: float) -> None:
        nonlocal errors
        interval = CLIENTS / paced_rate if paced_rate else 0.0
        for k in range(per_client):
            scheduled = t0 + (k + i / CLIENTS) * interval
            if paced_rate:
                delay = scheduled - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
            start = scheduled if paced_rate else time.perf_counter()
            async with session.get(url) as resp:
                await resp.read()
                if resp.status != 200:
                    errors += 1
            latencies.append(time.perf_counter() - start)

    sessions = [aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1, ssl=ctx)) for _ in range(CLIENTS)]
    try:
        # open the TLS connections first: keep-alive clients, handshakes not timed
        await asyncio.gather(*(s.get(url.replace(path, "status")) for s in sessions))
        t0 = time.perf_counter()
        await asyncio.gather(*(client(i, s, t0) for i, s in enumerate(sessions)))
    finally:
        await asyncio.gather(*(s.close() for s in sessions))
    if errors:
        raise RuntimeError(f"{errors} of {total} requests failed")
    return latencies


def _enc_case(profile: BenchProfile) -> BenchCase:
    total = 400 if profile.quick else 3200
    paced_total = 500 if profile.quick else 2500

    def setup() -> dict[str, Any]:
        cluster = _Cluster.get()
        keys_needed = total * (6 if profile.quick else 10) + paced_total + 2000
        for _ in range(keys_needed * 64 // (1 << 20) + 1):  # each KM allocates from half of every block
            cluster.feed_both(1 << 20)
        asyncio.run(_load(cluster.pair, "enc_keys", min(total, 800), None))  # warm up
        paced = asyncio.run(_load(cluster.pair, "enc_keys", paced_total, PACED_RATE))
        pq = statistics.quantiles(paced, n=100)
        return {"pair": cluster.pair, "paced": {"paced500_p50_ms": pq[49] * 1e3, "paced500_p99_ms": pq[98] * 1e3}}

    def run(state: dict[str, Any]) -> dict[str, Any]:
        pair = state["pair"]
        cpu0 = {w: _cpu_s(p.pid) for w, p in pair.procs.items()}
        own0 = time.process_time()
        t0 = time.perf_counter()
        lat = asyncio.run(_load(pair, "enc_keys", total, None))
        rate = total / (time.perf_counter() - t0)
        q = statistics.quantiles(lat, n=100)
        cpu = {f"kme_{w}_cpu_ms_per_req": (_cpu_s(p.pid) - cpu0[w]) / total * 1e3 for w, p in pair.procs.items()}
        cpu["clients_cpu_ms_per_req"] = (time.process_time() - own0) / total * 1e3
        return {
            "req_per_s": rate,
            "closed_p50_ms": q[49] * 1e3,
            "closed_p99_ms": q[98] * 1e3,
            **state["paced"],
            **cpu,
            "fsync_commit_ms": _commit_latency_ms(_Cluster.get().tmp.name),
            "load_avg_1m": os.getloadavg()[0],
        }

    def reference(state: dict[str, Any]) -> None:
        asyncio.run(_load(state["pair"], "status", total, None))

    return BenchCase(
        stage="km.enc_keys",
        n=total,
        setup=setup,
        run=run,
        reference=reference,
        unit="kreq/s",
        items=total * 1000,
        reference_name="status over the same clients",
        params={"clients": CLIENTS, "key_bits": 256},
        max_runs=2 if profile.quick else 3,
        reference_max_runs=1 if profile.quick else 2,
    )


def _ingest_case(n: int, profile: BenchProfile) -> BenchCase:
    nbytes = n // 8
    blocks = max(4, min(400, (8_000_000 if profile.quick else 80_000_000) // n))

    def setup() -> dict[str, Any]:
        return {"cluster": _Cluster.get(), "keys": [os.urandom(nbytes) for _ in range(4)]}

    def run(state: dict[str, Any]) -> None:
        cluster = state["cluster"]
        first = 1_000_000_000 + cluster.block
        cluster.block += blocks
        batch = [(first + i, state["keys"][i % 4]) for i in range(blocks)]
        replies = cluster.sender("a").send_blocks("L1", batch, window=WINDOW, timeout_s=30)
        if len(replies) != blocks or any(not isinstance(r, KeyBlockAck) for r in replies.values()):
            raise RuntimeError("a block was not acknowledged")

    return BenchCase(
        stage="km.ingest",
        n=n,
        setup=setup,
        run=run,
        unit="Mbit/s",
        items=n * blocks,
        params={"blocks_per_run": blocks, "window": WINDOW},
        max_runs=5,
    )


def cases(profile: BenchProfile) -> list[BenchCase]:
    """The key manager's rows: enc_keys under 16 mTLS clients, and ingest at each block size."""
    out = []
    if profile.wants("km.enc_keys"):
        out.append(_enc_case(profile))
    if profile.wants("km.ingest"):
        sizes = [s for s in profile.sizes if s <= 10_000_000]
        out.extend(_ingest_case(n, profile) for n in (sizes[1:2] if profile.quick else sizes))
    return out

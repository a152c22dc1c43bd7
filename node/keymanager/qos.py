"""Application quality of service (ETSI GS QKD 015 `app_qos`) enforced where keys leave the key
manager: through ETSI GS QKD 014.

- `max_bandwidth` (bit/s): a token bucket per application holding one second of key; a request
  that would overdraw it is refused with 503 and the reason (nothing is consumed).
- `min_bandwidth` (bit/s): reserved on every link backing the application; the registration is
  refused when a link's secret key rate, less what other applications reserved there, is smaller.
- `ttl` (s): a key bound to the application and not fetched by the slave within `ttl` is voided
  (material overwritten) where it waits, and its record is voided at the master's KM too. The check
  runs in the store thread right before every fetch, so an expired key is never served.
- `app_priority`: when the pool runs low, a request is served only if what stays in the pool
  still covers `PRIORITY_HORIZON_S` seconds of the `min_bandwidth` of every higher-priority
  application on that pool.

What Eve learns: nothing new. The QoS figures and per-application counters are metadata the
controller already holds; no key bits or key IDs appear in reasons, metrics or logs.
"""

from __future__ import annotations

import collections
import json
import math
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from node.keymanager.errors import KeyManagerError

if TYPE_CHECKING:
    from node.keymanager.store import KeyStore

PRIORITY_HORIZON_S = 1.0
"""Seconds of higher-priority applications' min_bandwidth that a lower-priority request must leave."""
STATS_PERIOD_S = 10.0
STATS_PERIODS = 6
RATE_WINDOW_S = 30.0
UINT32 = 2**32 - 1


class QosRefused(KeyManagerError):
    """A request or registration refused by QoS; `reason` says why (no key material in it)."""

    def __init__(self, reason: str, code: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code


@dataclass(frozen=True)
class AppQos:
    """The `app_qos` container: bandwidths in bit/s, jitter in ms, ttl in s (None: not asked)."""

    max_bandwidth: int | None = None
    min_bandwidth: int | None = None
    jitter: int | None = None
    ttl: int | None = None

    def __post_init__(self) -> None:
        for name in ("max_bandwidth", "min_bandwidth", "jitter", "ttl"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= UINT32):
                raise ValueError(f"app_qos/{name}: must be an integer in 0..{UINT32}, got {v!r}")
        if (
            self.max_bandwidth is not None
            and self.min_bandwidth is not None
            and self.min_bandwidth > self.max_bandwidth
        ):
            raise ValueError(
                f"app_qos/min_bandwidth ({self.min_bandwidth}) must not exceed max_bandwidth ({self.max_bandwidth})"
            )


class TokenBucket:
    """`rate` tokens per second, at most `rate` held (one second of burst); starts full."""

    def __init__(self, rate: float, clock: Callable[[], float]) -> None:
        self.rate = float(rate)
        self.capacity = float(rate)
        self._clock = clock
        self._level = self.capacity
        self._t = clock()

    def _refill(self) -> None:
        now = self._clock()
        self._level = min(self.capacity, self._level + (now - self._t) * self.rate)
        self._t = now

    def try_take(self, n: float) -> bool:
        """Take `n` tokens if held; False (nothing taken) otherwise."""
        self._refill()
        if n <= self._level:
            self._level -= n
            return True
        return False

    def give_back(self, n: float) -> None:
        """Return tokens of a request that then failed."""
        self._refill()
        self._level = min(self.capacity, self._level + n)


@dataclass
class AppStats:
    """What an application got: bits delivered, refusals by reason, keys expired unused."""

    delivered_bits: int = 0
    delivered_keys: int = 0
    refusals: dict[str, int] = field(default_factory=dict)
    expired_keys: int = 0
    periods: collections.deque[tuple[float, float, int]] = field(
        default_factory=lambda: collections.deque(maxlen=STATS_PERIODS)
    )
    """Closed statistics periods: (start, end, consumed bits), wall-clock seconds."""
    period_start: float = 0.0
    period_bits: int = 0
    recent: collections.deque[tuple[float, int]] = field(default_factory=collections.deque)


@dataclass
class Application:
    """A registered application (`qkd_app`): server (master SAE), clients (slave SAEs), QoS."""

    app_id: str
    server: str
    clients: tuple[str, ...]
    qos: AppQos = field(default_factory=AppQos)
    priority: int = 0
    app_type: str = "CLIENT"
    remote_kme: str | None = None
    backing_links: tuple[str, ...] = ()
    expiration: float | None = None
    local_master: bool = True
    """The master SAE is served by this KM (it draws the key here); False at the slave's KM."""
    created: float = field(default_factory=time.time)
    stats: AppStats = field(default_factory=AppStats)
    bucket: TokenBucket | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        try:
            self.app_id = str(uuid.UUID(self.app_id))
        except (ValueError, TypeError, AttributeError):
            raise ValueError(f"app_id: must be a UUID, got {self.app_id!r}") from None
        if not self.server or not isinstance(self.server, str):
            raise ValueError("server_app_id: must name the master SAE")
        if not self.clients or not all(isinstance(c, str) and c for c in self.clients):
            raise ValueError("client_app_id: must name at least one slave SAE")
        if self.server in self.clients:
            raise ValueError("client_app_id: must not repeat server_app_id")
        if isinstance(self.priority, bool) or not isinstance(self.priority, int) or not 0 <= self.priority <= UINT32:
            raise ValueError(f"app_priority: must be an integer in 0..{UINT32}, got {self.priority!r}")

    def serves(self, master: str, slaves: Iterable[str]) -> bool:
        """Whether a request from `master` for `slaves` belongs to this application."""
        return master == self.server and all(s in self.clients for s in slaves)


class QosRegistry:
    """The applications registered at one KM and the QoS state that enforces them (thread-safe).

    `link_skr(link_id)` gives a link's secret key rate now (bit/s); the KM's rate meter and the
    link-state gossip supply it.
    """

    def __init__(
        self, kme_id: str, *, clock: Callable[[], float] = time.monotonic, wall: Callable[[], float] = time.time
    ) -> None:
        self.kme_id = kme_id
        self._clock = clock
        self._wall = wall
        self._lock = threading.Lock()
        self.apps: dict[str, Application] = {}
        self._metrics: dict[str, Any] | None = None

    # -- registration ------------------------------------------------------------------------------
    def register(self, app: Application, link_skr: Callable[[str], float], *, admit: bool = True) -> None:
        """Admit `app` (admission control on `min_bandwidth`) or raise `QosRefused`; replaces an
        application of the same ID (its statistics are kept). `admit=False` at the slave's KM: the
        master's KM draws the key and checks the supply."""
        with self._lock:
            mbw = app.qos.min_bandwidth or 0
            if mbw and admit:
                if not app.backing_links:
                    raise QosRefused(
                        f"min_bandwidth {mbw} bit/s: no key association link backs this application", "min_bandwidth"
                    )
                for link in app.backing_links:
                    skr = max(0.0, float(link_skr(link)))
                    reserved = self._reserved_locked(link, exclude=app.app_id)
                    if mbw > skr - reserved:
                        raise QosRefused(
                            f"min_bandwidth {mbw} bit/s exceeds what link {link} can supply: secret key rate "
                            f"{skr:.0f} bit/s, {reserved} bit/s reserved by other applications",
                            "min_bandwidth",
                        )
            old = self.apps.get(app.app_id)
            if old is not None:
                app.stats, app.created = old.stats, old.created
            if app.stats.period_start == 0.0:
                app.stats.period_start = self._wall()
            app.bucket = TokenBucket(app.qos.max_bandwidth, self._clock) if app.qos.max_bandwidth is not None else None
            self.apps[app.app_id] = app

    def remove(self, app_id: str) -> Application:
        """Unregister; KeyError if unknown."""
        with self._lock:
            return self.apps.pop(app_id)

    def reserved(self, link: str) -> int:
        """min_bandwidth reserved on `link` by the applications it backs (bit/s)."""
        with self._lock:
            return self._reserved_locked(link)

    def _reserved_locked(self, link: str, exclude: str | None = None) -> int:
        return sum(
            a.qos.min_bandwidth or 0 for a in self.apps.values() if a.app_id != exclude and link in a.backing_links
        )

    def app_of(self, master: str, slaves: Sequence[str]) -> Application | None:
        """The application a request belongs to (None: an unregistered SAE pair, no QoS)."""
        with self._lock:
            return next((a for a in self.apps.values() if a.serves(master, slaves)), None)

    def ttl_apps(self) -> list[Application]:
        """Applications with a ttl."""
        with self._lock:
            return [a for a in self.apps.values() if a.qos.ttl is not None]

    # -- enforcement on the ETSI 014 path -----------------------------------------------------------
    def admit_request(
        self, master: str, slaves: Sequence[str], bits: int, pool_bits: int | None, pool: str | None = None
    ) -> Application | None:
        """Check a key request of `bits` against its application's QoS; the tokens are taken (give
        them back with `request_failed`). `pool_bits`: key the pool holds now (None: unknown).
        A request of no registered application ranks below every application: it is served only
        if the pool keeps what the applications' `min_bandwidth` reserve."""
        app = self.app_of(master, slaves)
        with self._lock:
            if app is None:
                keep = self._keep_locked(-1, pool)
                if pool_bits is not None and keep and pool_bits - bits < keep:
                    raise QosRefused(
                        f"key pool low: {pool_bits} bits left, {keep} bits kept for registered applications", "priority"
                    )
                return None
            if app.expiration is not None and self._wall() >= app.expiration:
                self._refuse_locked(app, "expired")
                raise QosRefused(f"application {app.app_id} expired at its expiration_time", "expired")
            if pool_bits is not None:
                keep = self._keep_locked(app.priority, pool)
                if keep and pool_bits - bits < keep:
                    self._refuse_locked(app, "priority")
                    raise QosRefused(
                        f"key pool low: {pool_bits} bits left, {keep} bits kept for higher-priority applications "
                        f"(app_priority above {app.priority})",
                        "priority",
                    )
            if app.bucket is not None and not app.bucket.try_take(bits):
                self._refuse_locked(app, "max_bandwidth")
                if bits > app.bucket.capacity:
                    raise QosRefused(
                        f"request of {bits} bits exceeds one second of max_bandwidth "
                        f"({app.qos.max_bandwidth} bit/s) of application {app.app_id}",
                        "max_bandwidth",
                    )
                raise QosRefused(
                    f"max_bandwidth {app.qos.max_bandwidth} bit/s of application {app.app_id} exceeded; retry later",
                    "max_bandwidth",
                )
        return app

    def _keep_locked(self, priority: int, pool: str | None) -> int:
        """Bits a request of `priority` must leave in `pool`: `PRIORITY_HORIZON_S` of the min_bandwidth
        of the applications of higher priority drawing from it here."""
        above = sum(
            a.qos.min_bandwidth or 0
            for a in self.apps.values()
            if a.priority > priority and a.local_master and (pool is None or a.remote_kme == pool)
        )
        return math.ceil(above * PRIORITY_HORIZON_S)

    def reserves(self, pool: str) -> bool:
        """Whether any application here reserves key in `pool` (requests then need the pool's size)."""
        with self._lock:
            return self._keep_locked(-1, pool) > 0

    def request_failed(self, app: Application, bits: int) -> None:
        """The request admitted by `admit_request` was not served: its tokens go back."""
        with self._lock:
            if app.bucket is not None:
                app.bucket.give_back(bits)

    def delivered(self, app: Application, keys: int, bits: int) -> None:
        """`keys` keys of `bits` in all went to the application."""
        with self._lock:
            s = app.stats
            self._roll_locked(app)
            s.delivered_bits += bits
            s.delivered_keys += keys
            s.period_bits += bits
            s.recent.append((self._clock(), bits))
        if self._metrics is not None:
            self._metrics["delivered"].labels(app=app.app_id, sae=app.server).inc(bits)

    def expired(self, app: Application, keys: int) -> None:
        """`keys` keys of the application expired unused (voided)."""
        if keys <= 0:
            return
        with self._lock:
            app.stats.expired_keys += keys
        if self._metrics is not None:
            self._metrics["expired"].labels(app=app.app_id).inc(keys)

    def _refuse_locked(self, app: Application, code: str) -> None:
        app.stats.refusals[code] = app.stats.refusals.get(code, 0) + 1
        if self._metrics is not None:
            self._metrics["refusals"].labels(app=app.app_id, reason=code).inc()

    def _roll_locked(self, app: Application) -> None:
        s, now = app.stats, self._wall()
        while now - s.period_start >= STATS_PERIOD_S:
            end = s.period_start + STATS_PERIOD_S
            s.periods.append((s.period_start, end, s.period_bits))
            s.period_start, s.period_bits = end, 0
            if now - s.period_start >= STATS_PERIOD_S * STATS_PERIODS:  # long idle: skip ahead
                s.period_start = now - (now - s.period_start) % STATS_PERIOD_S

    # -- reports -------------------------------------------------------------------------------------
    def rate_bps(self, app: Application) -> float:
        """Delivered key rate over the last `RATE_WINDOW_S` (bit/s)."""
        with self._lock:
            now = self._clock()
            while app.stats.recent and app.stats.recent[0][0] < now - RATE_WINDOW_S:
                app.stats.recent.popleft()
            return sum(b for _, b in app.stats.recent) / RATE_WINDOW_S

    def statistics(self, app: Application, current: bool = False) -> list[tuple[float, float, int]]:
        """Closed statistics periods (start, end, consumed bits), oldest first; with `current`, the
        period under way too, ending now."""
        with self._lock:
            self._roll_locked(app)
            out = list(app.stats.periods)
            now = self._wall()
            if current and now > app.stats.period_start:
                out.append((app.stats.period_start, now, app.stats.period_bits))
            return out

    def summary(self) -> dict[str, dict[str, Any]]:
        """Per application: SAEs, QoS, delivered bits and rate, refusals, expired keys (for status)."""
        out = {}
        for a in list(self.apps.values()):
            out[a.app_id] = {
                "server": a.server,
                "clients": list(a.clients),
                "priority": a.priority,
                "qos": {k: v for k, v in vars(a.qos).items() if v is not None},
                "delivered_bits": a.stats.delivered_bits,
                "delivered_keys": a.stats.delivered_keys,
                "rate_bps": round(self.rate_bps(a), 1),
                "refusals": dict(a.stats.refusals),
                "expired_keys": a.stats.expired_keys,
            }
        return out

    def bind_metrics(self, registry: Any) -> None:
        """Export per-application counters into a Prometheus `registry` (labels: app ID, reason)."""
        from prometheus_client import Counter

        self._metrics = {
            "delivered": Counter(
                "qkdnode_app_delivered_key_bits",
                "Key bits delivered to an application",
                ["app", "sae"],
                registry=registry,
            ),
            "refusals": Counter(
                "qkdnode_app_refusals",
                "Key requests refused by the application's QoS",
                ["app", "reason"],
                registry=registry,
            ),
            "expired": Counter(
                "qkdnode_app_expired_keys",
                "Keys of an application voided unused after its ttl",
                ["app"],
                registry=registry,
            ),
        }
        registry.register(_RateCollector(self))


class _RateCollector:
    """`qkdnode_app_key_rate_bps{app}`: each application's delivered rate, computed at scrape time."""

    def __init__(self, qos: QosRegistry) -> None:
        self.qos = qos

    def collect(self) -> Iterable[Any]:
        from prometheus_client.core import GaugeMetricFamily

        fam = GaugeMetricFamily(
            "qkdnode_app_key_rate_bps",
            f"Key rate delivered to an application (bit/s, last {RATE_WINDOW_S:.0f} s)",
            labels=["app"],
        )
        for a in list(self.qos.apps.values()):
            fam.add_metric([a.app_id], self.qos.rate_bps(a))
        yield fam


class RateMeter:
    """Secret key rate per link from the blocks the KM stores: bits over the last `window_s`
    (or since the first block, if that is more recent)."""

    def __init__(self, window_s: float = RATE_WINDOW_S, clock: Callable[[], float] = time.monotonic) -> None:
        self.window_s = window_s
        self._clock = clock
        self._events: dict[str, collections.deque[tuple[float, int]]] = {}
        self._first: dict[str, float] = {}

    def add(self, link: str, bits: int) -> None:
        now = self._clock()
        self._first.setdefault(link, now)
        self._events.setdefault(link, collections.deque()).append((now, bits))

    def rate(self, link: str) -> float:
        """bit/s on `link` (0 before its first block)."""
        ev = self._events.get(link)
        if not ev:
            return 0.0
        now = self._clock()
        while ev and ev[0][0] < now - self.window_s:
            ev.popleft()
        span = min(self.window_s, max(1.0, now - self._first[link]))
        return sum(b for _, b in ev) / span


# -- ttl in the key store (run in the store's thread) ---------------------------------------------


def void_expired(store: KeyStore, master: str, clients: Sequence[str], older_than: float) -> int:
    """Void keys bound for `master`'s application and still waiting here for a client (slave side,
    direct and relayed) that were bound before `older_than` (wall clock); their material is
    overwritten. Returns how many."""
    clients_set = set(clients)
    n = 0
    with store.transaction() as db:
        for table in ("keys", "relayed_keys"):  # table names from this literal, values bound as parameters
            rows = db.execute(
                f"SELECT key_id, slaves FROM {table} WHERE origin=0 AND state='reserved' "  # noqa: S608
                "AND master_sae=? AND created<?",
                (master, older_than),
            ).fetchall()
            ids = [k for k, s in rows if set(json.loads(s)) <= clients_set]
            for k in ids:
                n += db.execute(f"UPDATE {table} SET state='void', material=NULL WHERE key_id=?", (k,)).rowcount  # noqa: S608
    return n


def delivered_before(store: KeyStore, pool: str, master: str, older_than: float, limit: int = 2000) -> list[str]:
    """IDs of keys this KM allocated for `master` in `pool`, delivered to it before `older_than`
    (the master side of a ttl: the slave may or may not have fetched them)."""
    return [
        r[0]
        for r in store.db.execute(
            "SELECT key_id FROM keys WHERE pool=? AND origin=1 AND state='delivered' AND master_sae=? AND created<? "
            "ORDER BY rowid LIMIT ?",
            (pool, master, older_than, limit),
        )
    ]


def void_own(store: KeyStore, key_ids: Sequence[str]) -> int:
    """Mark keys allocated here void (the peer voided them unused: ttl)."""
    with store.transaction() as db:
        return sum(
            db.execute("UPDATE keys SET state='void', material=NULL WHERE key_id=? AND origin=1", (k,)).rowcount
            for k in key_ids
        )


__all__ = [
    "AppQos",
    "Application",
    "QosRefused",
    "QosRegistry",
    "RateMeter",
    "TokenBucket",
    "delivered_before",
    "void_expired",
    "void_own",
]

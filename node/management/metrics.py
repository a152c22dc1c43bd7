"""A node's Prometheus metrics (prometheus-client) in a registry of its own, and their HTTP endpoint.

Each node owns a `CollectorRegistry` (never the process-global one), so several nodes can live in one
process (tests, `qkdnode demo`). The daemon calls the ``record_*`` / ``set_*`` methods of
`NodeMetrics`; `serve_metrics` exposes the registry over HTTP for Prometheus and ``qkdnode status``.

Metric names (the documented interface; `METRICS` holds the same table for code and tests):

=============================================  =======  ==================  =============================================
name                                           type     labels              meaning
=============================================  =======  ==================  =============================================
qkdnode_node_info                              gauge    node                always 1; names the node
qkdnode_link_info                              gauge    link, peer, role    always 1; a QKD link of this node, its peer node
                                                                            and this node's role (alice / bob)
qkdnode_link_up                                gauge    link                1 while the link's session runs, else 0
qkdnode_qber                                   gauge    link                QBER of the last block that was reconciled
qkdnode_sifted_key_bits_total                  counter  link                sifted key bits taken into blocks
qkdnode_secret_key_bits_total                  counter  link                secret key bits distilled
qkdnode_sifted_key_rate_bps                    gauge    link                sifted bits per second over the last window
qkdnode_secret_key_rate_bps                    gauge    link                secret bits per second over the last window
qkdnode_blocks_total                           counter  link, outcome       blocks by outcome (`BLOCK_OUTCOMES`)
qkdnode_block_aborts_total                     counter  link, reason        aborted blocks by reason (`ABORT_REASONS`)
qkdnode_dropped_detections_total               counter  link                detections dropped because post-processing
                                                                            fell behind
qkdnode_last_block_timestamp_seconds           gauge    link                Unix time of the last block's outcome
qkdnode_key_pool_bits                          gauge    peer                key bits in the key manager's pool shared
                                                                            with peer node `peer`
qkdnode_relays_total                           counter  outcome             key relays by outcome (`RELAY_OUTCOMES`)
qkdnode_relay_link_key_bits_total              counter  link                link key bits consumed by relaying (OTP + MAC)
qkdnode_alarms_active                          gauge    severity            active alarms per X.733 severity
qkdnode_instrument_up                          gauge    instrument          1 if the instrument answers, else 0
qkdnode_auth_key_bits_available                gauge    link, direction     authentication key bits left for the classical
                                                                            channel, direction send / receive
qkdnode_auth_key_bits_consumed_total           counter  link                authentication key bits consumed (tags' masks,
                                                                            replaced hash keys), both directions
qkdnode_auth_failed_tags                       gauge    link                tags failed under the current hash key
qkdnode_block_epsilon                          gauge    link, term          the last key block's failure probabilities,
                                                                            term sec / cor / auth
qkdnode_dead_time_discarded_clicks_total       counter  link                detector clicks Bob discarded inside the common
                                                                            dead time (before slotting)
qkdnode_stale_slots_total                      counter  link                detected slots Alice left out of sifting because
                                                                            the AWG replayed a pattern (state not fresh)
=============================================  =======  ==================  =============================================

What an eavesdropper reading this endpoint learns, and why it costs no key: every figure is an
aggregate of values already public on the classical channel (QBER and block outcomes follow from the
disclosed error counts and verification results; sifted and secret bit counts from the block lengths)
or of timing Eve sees on the fibre herself (dead-time discards count clicks per link, never per
detector, so they carry no bit values; stale slots are slots Alice answers as a basis mismatch).
Authentication figures (key bits consumed, failed tags, epsilons) are counts, never key bits; a
failed-tag count tells Eve how many of her forgeries were caught, which she knows anyway.

Counters appear on the wire with the ``_total`` suffix and, as prometheus-client adds, a
``_created`` sample. QBER is a fraction (0.031, not 3.1 %). Rates are bits per second over the last
``rate_window_s`` seconds (or since the link was declared, if that is shorter, but at least 1 s);
Prometheus users can equally take ``rate()`` of the counters. No metric carries key material: only counts and figures.

The same HTTP server answers ``/alarms`` with the node's active alarms and latest alarm changes as JSON
(`alarms_document`) when `serve_metrics` is given the node's `AlarmRegistry`.
"""

from __future__ import annotations

import json
import socket
import socketserver
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, Counter, Gauge, make_wsgi_app

from node.management.alarms import SEVERITIES, AlarmRegistry

BLOCK_OUTCOMES = ("key", "no_key", "aborted")
"""key: verified and positive finite-key length; no_key: verified but the bound left nothing; aborted."""
ABORT_REASONS = ("qber", "verification", "mac", "protocol", "timeout", "other")
RELAY_OUTCOMES = ("originated", "forwarded", "delivered", "rejected", "failed", "rerouted")
"""originated: this node started a relay; forwarded: passed one on as a trusted node; delivered: ended
here and stored; rejected: refused (bad MAC, unknown route, replay); failed: no route or no key; rerouted:
an in-flight relay moved to another route."""
ROLES = ("alice", "bob")
DIRECTIONS = ("send", "receive")

#: name -> (type, labels, help): the documented metric names.
METRICS: dict[str, tuple[str, tuple[str, ...], str]] = {
    "qkdnode_node_info": ("gauge", ("node",), "Always 1; names the node."),
    "qkdnode_link_info": ("gauge", ("link", "peer", "role"), "Always 1; a QKD link, its peer node and our role."),
    "qkdnode_link_up": ("gauge", ("link",), "1 while the link's session runs, else 0."),
    "qkdnode_qber": ("gauge", ("link",), "QBER (fraction) of the last reconciled block."),
    "qkdnode_sifted_key_bits_total": ("counter", ("link",), "Sifted key bits taken into blocks."),
    "qkdnode_secret_key_bits_total": ("counter", ("link",), "Secret key bits distilled."),
    "qkdnode_sifted_key_rate_bps": ("gauge", ("link",), "Sifted key bits per second over the last window."),
    "qkdnode_secret_key_rate_bps": ("gauge", ("link",), "Secret key bits per second over the last window."),
    "qkdnode_blocks_total": ("counter", ("link", "outcome"), "Blocks by outcome: key, no_key, aborted."),
    "qkdnode_block_aborts_total": ("counter", ("link", "reason"), "Aborted blocks by reason."),
    "qkdnode_dropped_detections_total": (
        "counter",
        ("link",),
        "Detections dropped because post-processing fell behind.",
    ),
    "qkdnode_last_block_timestamp_seconds": ("gauge", ("link",), "Unix time of the last block's outcome."),
    "qkdnode_key_pool_bits": ("gauge", ("peer",), "Key bits in the key manager's pool shared with a peer node."),
    "qkdnode_relays_total": ("counter", ("outcome",), "Key relays by outcome."),
    "qkdnode_relay_link_key_bits_total": ("counter", ("link",), "Link key bits consumed by relaying."),
    "qkdnode_alarms_active": ("gauge", ("severity",), "Active alarms per X.733 severity."),
    "qkdnode_instrument_up": ("gauge", ("instrument",), "1 if the instrument answers, else 0."),
    "qkdnode_auth_key_bits_available": ("gauge", ("link", "direction"), "Authentication key bits left, per direction."),
    "qkdnode_auth_key_bits_consumed_total": (
        "counter",
        ("link",),
        "Authentication key bits consumed, both directions.",
    ),
    "qkdnode_auth_failed_tags": ("gauge", ("link",), "Authentication tags failed under the current hash key."),
    "qkdnode_block_epsilon": ("gauge", ("link", "term"), "Last key block's failure probability: sec, cor or auth."),
    "qkdnode_dead_time_discarded_clicks_total": (
        "counter",
        ("link",),
        "Detector clicks discarded inside Bob's common dead time.",
    ),
    "qkdnode_stale_slots_total": ("counter", ("link",), "Detected slots not sifted: the AWG replayed their pattern."),
}
EPSILON_TERMS = ("sec", "cor", "auth")


def _check_label(name: str, value: Any, allowed: tuple[str, ...] | None = None) -> str:
    if allowed is not None:
        if value not in allowed:
            raise ValueError(f"{name}: {value!r} is not one of {', '.join(allowed)}")
    elif not isinstance(value, str) or not value:
        raise ValueError(f"{name}: must be a non-empty str, got {value!r}")
    return value


def _check_count(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name}: must be an int >= 0, got {value!r}")
    return value


class _RateWindow:
    """Bits per second over the last `window_s` seconds (or since `start` if that is shorter)."""

    def __init__(self, window_s: float, clock: Callable[[], float], start: float) -> None:
        self.window_s, self.clock, self.start = window_s, clock, start
        self.events: deque[tuple[float, int]] = deque()
        self.lock = threading.Lock()

    def add(self, bits: int) -> None:
        with self.lock:
            self.events.append((self.clock(), bits))

    def rate(self) -> float:
        now = self.clock()
        with self.lock:
            while self.events and self.events[0][0] <= now - self.window_s:
                self.events.popleft()
            bits = sum(b for _, b in self.events)
        span = max(min(self.window_s, now - self.start), 1.0)
        return bits / span


class NodeMetrics:
    """The metrics of one node, in `self.registry` (its own `CollectorRegistry`)."""

    def __init__(
        self,
        node: str,
        *,
        registry: CollectorRegistry | None = None,
        rate_window_s: float = 30.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        _check_label("node", node)
        if not (isinstance(rate_window_s, (int, float)) and rate_window_s > 0):
            raise ValueError(f"rate_window_s: must be a number > 0, got {rate_window_s!r}")
        self.node = node
        self.registry = registry if registry is not None else CollectorRegistry()
        self.rate_window_s = float(rate_window_s)
        self._clock = clock
        self._lock = threading.Lock()
        self._rates: dict[tuple[str, str], _RateWindow] = {}
        self._links: dict[str, tuple[str, str]] = {}
        m: dict[str, Any] = {}
        for name, (kind, labels, help_text) in METRICS.items():
            cls = Counter if kind == "counter" else Gauge
            metric_name = name[: -len("_total")] if kind == "counter" else name
            m[name] = cls(metric_name, help_text, labels, registry=self.registry)
        self._m = m
        m["qkdnode_node_info"].labels(node=node).set(1)
        for s in SEVERITIES:
            m["qkdnode_alarms_active"].labels(severity=s).set(0)

    # -- links and blocks ------------------------------------------------------------------------
    def declare_link(self, link: str, peer: str, role: str) -> None:
        """Announce a QKD link of this node (shown by `qkdnode status`); its counters start at zero."""
        _check_label("link", link), _check_label("peer", peer), _check_label("role", role, ROLES)
        with self._lock:
            old = self._links.get(link)
            if old is not None and old != (peer, role):
                self._m["qkdnode_link_info"].remove(link, *old)
            self._links[link] = (peer, role)
        self._m["qkdnode_link_info"].labels(link=link, peer=peer, role=role).set(1)
        self._m["qkdnode_sifted_key_bits_total"].labels(link=link)
        self._m["qkdnode_secret_key_bits_total"].labels(link=link)
        self._m["qkdnode_dead_time_discarded_clicks_total"].labels(link=link)
        self._m["qkdnode_stale_slots_total"].labels(link=link)
        for outcome in BLOCK_OUTCOMES:
            self._m["qkdnode_blocks_total"].labels(link=link, outcome=outcome)
        self._rate(link, "sifted"), self._rate(link, "secret")
        self._m["qkdnode_auth_key_bits_consumed_total"].labels(link=link)
        self._m["qkdnode_auth_failed_tags"].labels(link=link)
        for term in EPSILON_TERMS:  # 0 until the link's first key block
            self._m["qkdnode_block_epsilon"].labels(link=link, term=term)

    def set_link_up(self, link: str, up: bool) -> None:
        """Whether the link's session runs."""
        self._m["qkdnode_link_up"].labels(link=_check_label("link", link)).set(1 if up else 0)

    def record_block(
        self,
        link: str,
        sifted_bits: int,
        secret_bits: int,
        qber: float | None,
        outcome: str,
        *,
        reason: str | None = None,
    ) -> None:
        """One block's outcome: sifted bits it took, secret bits it gave, its QBER (None if not
        reconciled), outcome in `BLOCK_OUTCOMES`; an aborted block names its reason (`ABORT_REASONS`)."""
        _check_label("link", link)
        _check_label("outcome", outcome, BLOCK_OUTCOMES)
        _check_count("sifted_bits", sifted_bits), _check_count("secret_bits", secret_bits)
        if outcome != "key" and secret_bits:
            raise ValueError(f"secret_bits: must be 0 for outcome {outcome!r}, got {secret_bits}")
        if outcome == "aborted":
            _check_label("reason", "other" if reason is None else reason, ABORT_REASONS)
        elif reason is not None:
            raise ValueError(f"reason: only for outcome 'aborted', got {reason!r} with {outcome!r}")
        if qber is not None and not (isinstance(qber, (int, float)) and 0.0 <= qber <= 1.0):
            raise ValueError(f"qber: must be a fraction in [0, 1] or None, got {qber!r}")
        m = self._m
        m["qkdnode_sifted_key_bits_total"].labels(link=link).inc(sifted_bits)
        m["qkdnode_secret_key_bits_total"].labels(link=link).inc(secret_bits)
        m["qkdnode_blocks_total"].labels(link=link, outcome=outcome).inc()
        if outcome == "aborted":
            m["qkdnode_block_aborts_total"].labels(link=link, reason=reason or "other").inc()
        if qber is not None:
            m["qkdnode_qber"].labels(link=link).set(float(qber))
        m["qkdnode_last_block_timestamp_seconds"].labels(link=link).set(self._clock())
        self._rate(link, "sifted").add(sifted_bits)
        self._rate(link, "secret").add(secret_bits)

    def record_dropped(self, link: str, detections: int) -> None:
        """Detections dropped because post-processing fell behind."""
        self._m["qkdnode_dropped_detections_total"].labels(link=_check_label("link", link)).inc(
            _check_count("detections", detections)
        )

    def record_dead_time_discarded(self, link: str, clicks: int) -> None:
        """Detector clicks Bob's common dead time discarded (DESIGN §5: enforced before sifting)."""
        self._m["qkdnode_dead_time_discarded_clicks_total"].labels(link=_check_label("link", link)).inc(
            _check_count("clicks", clicks)
        )

    def record_stale_slots(self, link: str, slots: int) -> None:
        """Detected slots Alice did not sift because their state was not fresh (a replayed pattern)."""
        self._m["qkdnode_stale_slots_total"].labels(link=_check_label("link", link)).inc(_check_count("slots", slots))

    # -- key manager and relays ------------------------------------------------------------------
    def set_key_pool(self, peer: str, bits: int) -> None:
        """Key bits now in the pool shared with peer node `peer`."""
        self._m["qkdnode_key_pool_bits"].labels(peer=_check_label("peer", peer)).set(_check_count("bits", bits))

    def record_relay(self, outcome: str, *, link_key_bits: dict[str, int] | None = None) -> None:
        """One key relay with its outcome (`RELAY_OUTCOMES`) and the link key it consumed per link."""
        self._m["qkdnode_relays_total"].labels(outcome=_check_label("outcome", outcome, RELAY_OUTCOMES)).inc()
        for link, bits in (link_key_bits or {}).items():
            self._m["qkdnode_relay_link_key_bits_total"].labels(link=_check_label("link", link)).inc(
                _check_count("link_key_bits", bits)
            )

    # -- instruments, authentication, alarms ------------------------------------------------------
    def set_instrument_up(self, instrument: str, up: bool) -> None:
        """Whether an instrument answers."""
        self._m["qkdnode_instrument_up"].labels(instrument=_check_label("instrument", instrument)).set(1 if up else 0)

    def set_auth_key_available(self, link: str, direction: str, bits: int) -> None:
        """Authentication key bits left on a link's classical channel for `direction` (send / receive)."""
        self._m["qkdnode_auth_key_bits_available"].labels(
            link=_check_label("link", link),
            direction=_check_label("direction", direction, DIRECTIONS),
        ).set(_check_count("bits", bits))

    def record_authentication(self, link: str, consumed_bits: int, failed_tags: int) -> None:
        """Authentication key bits consumed since the last call and the failed-tag count now."""
        _check_label("link", link)
        self._m["qkdnode_auth_key_bits_consumed_total"].labels(link=link).inc(
            _check_count("consumed_bits", consumed_bits)
        )
        self._m["qkdnode_auth_failed_tags"].labels(link=link).set(_check_count("failed_tags", failed_tags))

    def set_block_epsilon(self, link: str, eps_sec: float, eps_cor: float, eps_auth: float) -> None:
        """The last key block's ε_sec, ε_cor and ε_auth, side by side."""
        _check_label("link", link)
        for term, value in zip(EPSILON_TERMS, (eps_sec, eps_cor, eps_auth)):
            if not (isinstance(value, (int, float)) and 0.0 <= value <= 1.0):
                raise ValueError(f"eps_{term}: must be a probability in [0, 1], got {value!r}")
            self._m["qkdnode_block_epsilon"].labels(link=link, term=term).set(float(value))

    def watch_alarms(self, alarms: AlarmRegistry) -> None:
        """Report `alarms`' active counts per severity, read at each scrape."""
        for s in SEVERITIES:
            self._m["qkdnode_alarms_active"].labels(severity=s).set_function(lambda s=s: alarms.counts()[s])

    # -- internals ---------------------------------------------------------------------------------
    def _rate(self, link: str, kind: str) -> _RateWindow:
        with self._lock:
            window = self._rates.get((link, kind))
            if window is None:
                window = self._rates[(link, kind)] = _RateWindow(self.rate_window_s, self._clock, self._clock())
                self._m[f"qkdnode_{kind}_key_rate_bps"].labels(link=link).set_function(window.rate)
        return window


class _MetricsServer(socketserver.ThreadingMixIn, WSGIServer):
    """One thread per scrape, so a slow client cannot stall the others."""

    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    """No access log on stderr (scrapes come every few seconds)."""

    def log_message(self, format: str, *args: Any) -> None:
        pass


def alarms_document(alarms: AlarmRegistry, recent: int = 50) -> dict[str, Any]:
    """The JSON served at ``/alarms``: active alarms (most severe first) and the latest changes."""
    history = alarms.history()[-recent:] if recent > 0 else []
    return {
        "active": [a.to_dict() for a in alarms.active()],
        "recent": [{"action": e.action, "time": e.time, **e.alarm.to_dict()} for e in history],
    }


def _app(registry: CollectorRegistry, alarms: AlarmRegistry | None) -> Callable[..., Any]:
    metrics_app = make_wsgi_app(registry)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        if environ.get("PATH_INFO", "").rstrip("/") == "/alarms":
            if alarms is None:
                start_response("404 Not Found", [("Content-Type", "text/plain")])
                return [b"no alarm registry on this endpoint\n"]
            body = json.dumps(alarms_document(alarms)).encode()
            start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
            return [body]
        return metrics_app(environ, start_response)

    return app


def serve_metrics(
    registry: CollectorRegistry, host: str = "127.0.0.1", port: int = 0, *, alarms: AlarmRegistry | None = None
) -> tuple[Any, int]:
    """Serve `registry` at ``http://host:port/metrics`` from a daemon thread; port 0 picks a free port.
    With `alarms`, ``/alarms`` serves `alarms_document` as JSON (alarm texts, for ``qkdnode status``).

    Returns the server and the port it listens on; stop it with `close_metrics(server)`.
    """
    if not isinstance(port, int) or isinstance(port, bool) or not 0 <= port <= 65535:
        raise ValueError(f"port: must be an int in 0..65535, got {port!r}")
    if not isinstance(host, str) or not host:
        raise ValueError(f"host: must be a host name or IP address, got {host!r}")
    if ":" in host:

        class _Server6(_MetricsServer):
            address_family = socket.AF_INET6

        server_class: type[_MetricsServer] = _Server6
    else:
        server_class = _MetricsServer
    server = make_server(host, port, _app(registry, alarms), server_class=server_class, handler_class=_QuietHandler)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, name=f"metrics-{server.server_port}", daemon=True
    )
    thread.start()
    return server, int(server.server_port)


def close_metrics(server: Any) -> None:
    """Stop a server from `serve_metrics` and release its socket."""
    server.shutdown()
    server.server_close()

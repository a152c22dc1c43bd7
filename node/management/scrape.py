"""Read nodes' metrics endpoints and assemble the network's view: each node with its alarms, pools,
relays and instruments, and each QKD link (joined across its two ends) with its figures.

Used by ``qkdnode status``; it reads only the documented metric names of `node.management.metrics`.
"""

from __future__ import annotations

import json
import math
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from node.management.alarms import SEVERITIES, sanitise_text
from node.management.metrics import BLOCK_OUTCOMES

MAX_BODY = 8 * 1024 * 1024


@dataclass
class LinkFigures:
    """One end's figures for a QKD link."""

    link: str
    peer: str | None = None
    role: str | None = None
    up: bool | None = None
    qber: float | None = None
    sifted_bits: float = 0.0
    secret_bits: float = 0.0
    sifted_rate_bps: float = 0.0
    secret_rate_bps: float = 0.0
    blocks: dict[str, float] = field(default_factory=dict)
    aborts: dict[str, float] = field(default_factory=dict)
    dropped_detections: float = 0.0
    last_block_time: float | None = None
    relay_key_bits: float = 0.0
    auth_key_bits: dict[str, float] = field(default_factory=dict)


@dataclass
class NodeStatus:
    """What one metrics endpoint said (or why it said nothing)."""

    url: str
    name: str | None = None
    error: str | None = None
    links: dict[str, LinkFigures] = field(default_factory=dict)
    key_pools: dict[str, float] = field(default_factory=dict)
    relays: dict[str, float] = field(default_factory=dict)
    alarms: dict[str, float] = field(default_factory=dict)
    instruments: dict[str, bool] = field(default_factory=dict)
    active_alarms: list[dict[str, Any]] | None = None
    """Active alarms from ``/alarms`` when asked for (None: not asked or not served)."""
    applications: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Per application registered over SDN control (`node.keymanager.qos`): SAE, delivered bits and
    rate, refusals by reason, keys expired unused."""

    @property
    def reachable(self) -> bool:
        """True when the endpoint answered with parsable metrics."""
        return self.error is None


def fetch_metrics_text(url: str, timeout_s: float = 5.0) -> str:
    """GET a metrics endpoint; ValueError for a non-http URL, OSError (URLError) when unreachable."""
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"url: must start with http:// or https://, got {url!r}")
    with urllib.request.urlopen(url, timeout=timeout_s) as resp:  # noqa: S310 - scheme checked above
        body = resp.read(MAX_BODY + 1)
    if len(body) > MAX_BODY:
        raise ValueError(f"{url}: metrics page larger than {MAX_BODY} bytes")
    return body.decode("utf-8", errors="replace")


def _num(v: float) -> float | None:
    return None if math.isnan(v) else float(v)


def parse_node_status(url: str, text: str) -> NodeStatus:
    """A `NodeStatus` from a metrics page (Prometheus text format); ValueError if it does not parse."""
    status = NodeStatus(url)
    try:
        families = list(text_string_to_metric_families(text))
    except Exception as exc:  # noqa: BLE001 (the parser raises ValueError, TypeError, IndexError...)
        raise ValueError(f"{url}: not a Prometheus metrics page ({type(exc).__name__})") from None

    def link(name: str) -> LinkFigures:
        return status.links.setdefault(name, LinkFigures(name))

    for fam in families:
        for s in fam.samples:
            lb, v, name = s.labels, s.value, s.name
            if name == "qkdnode_node_info":
                status.name = lb.get("node")
            elif name == "qkdnode_link_info" and "link" in lb:
                fig = link(lb["link"])
                fig.peer, fig.role = lb.get("peer"), lb.get("role")
            elif name == "qkdnode_link_up" and "link" in lb:
                link(lb["link"]).up = v >= 1
            elif name == "qkdnode_qber" and "link" in lb:
                link(lb["link"]).qber = _num(v)
            elif name == "qkdnode_sifted_key_bits_total" and "link" in lb:
                link(lb["link"]).sifted_bits = v
            elif name == "qkdnode_secret_key_bits_total" and "link" in lb:
                link(lb["link"]).secret_bits = v
            elif name == "qkdnode_sifted_key_rate_bps" and "link" in lb:
                link(lb["link"]).sifted_rate_bps = v
            elif name == "qkdnode_secret_key_rate_bps" and "link" in lb:
                link(lb["link"]).secret_rate_bps = v
            elif name == "qkdnode_blocks_total" and "link" in lb and "outcome" in lb:
                link(lb["link"]).blocks[lb["outcome"]] = v
            elif name == "qkdnode_block_aborts_total" and "link" in lb and "reason" in lb:
                link(lb["link"]).aborts[lb["reason"]] = v
            elif name == "qkdnode_dropped_detections_total" and "link" in lb:
                link(lb["link"]).dropped_detections = v
            elif name == "qkdnode_last_block_timestamp_seconds" and "link" in lb:
                link(lb["link"]).last_block_time = _num(v)
            elif name == "qkdnode_relay_link_key_bits_total" and "link" in lb:
                link(lb["link"]).relay_key_bits = v
            elif name == "qkdnode_auth_key_bits_available" and "link" in lb and "direction" in lb:
                link(lb["link"]).auth_key_bits[lb["direction"]] = v
            elif name == "qkdnode_key_pool_bits" and "peer" in lb:
                status.key_pools[lb["peer"]] = v
            elif name == "qkdnode_relays_total" and "outcome" in lb:
                status.relays[lb["outcome"]] = v
            elif name == "qkdnode_alarms_active" and "severity" in lb:
                status.alarms[lb["severity"]] = v
            elif name == "qkdnode_instrument_up" and "instrument" in lb:
                status.instruments[lb["instrument"]] = v >= 1
            elif name.startswith("qkdnode_app_") and "app" in lb:
                _app_sample(status, name, lb, v)
    if status.name is None:
        raise ValueError(f"{url}: no qkdnode_node_info metric; is this a qkdnode metrics endpoint?")
    return status


def _app_sample(status: NodeStatus, name: str, lb: dict[str, str], v: float) -> None:
    """One per-application metric into `status.applications`."""
    app = status.applications.setdefault(
        lb["app"], {"sae": None, "delivered_bits": 0.0, "rate_bps": 0.0, "refusals": {}, "expired_keys": 0.0}
    )
    if name == "qkdnode_app_delivered_key_bits_total":
        app["delivered_bits"], app["sae"] = v, lb.get("sae")
    elif name == "qkdnode_app_key_rate_bps":
        app["rate_bps"] = v
    elif name == "qkdnode_app_refusals_total" and "reason" in lb:
        app["refusals"][lb["reason"]] = v
    elif name == "qkdnode_app_expired_keys_total":
        app["expired_keys"] = v


def scrape_node(url: str, timeout_s: float = 5.0) -> NodeStatus:
    """Scrape one node; an unreachable or malformed endpoint gives a `NodeStatus` with `error` set."""
    try:
        return parse_node_status(url, fetch_metrics_text(url, timeout_s))
    except urllib.error.HTTPError as exc:
        return NodeStatus(url, error=f"HTTP {exc.code}")
    except urllib.error.URLError as exc:
        return NodeStatus(url, error=f"unreachable: {exc.reason}")
    except (OSError, ValueError) as exc:
        return NodeStatus(url, error=str(exc) or type(exc).__name__)


def alarms_url(metrics_url: str) -> str:
    """The ``/alarms`` URL served next to a metrics URL."""
    parts = urllib.parse.urlsplit(metrics_url)
    path = parts.path[: -len("/metrics")] if parts.path.endswith("/metrics") else parts.path.rstrip("/")
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, path + "/alarms", "", ""))


def parse_alarms(text: str) -> list[dict[str, Any]]:
    """Active alarms from an ``/alarms`` document; texts sanitised again (they come from the network)."""
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError):
        raise ValueError("alarms: not a JSON document") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("active"), list):
        raise ValueError("alarms: expected an object with an 'active' list")
    out = []
    for a in doc["active"]:
        if not isinstance(a, dict):
            raise ValueError("alarms: each active alarm must be an object")
        out.append(
            {
                "severity": sanitise_text(str(a.get("severity", "?")))[:20],
                "source": sanitise_text(str(a.get("source", "?")))[:100],
                "text": sanitise_text(str(a.get("text", ""))),
                "count": a.get("count") if isinstance(a.get("count"), int) else None,
                "last_raised": a.get("last_raised") if isinstance(a.get("last_raised"), (int, float)) else None,
            }
        )
    return out


def fetch_alarms(metrics_url: str, timeout_s: float = 5.0) -> list[dict[str, Any]] | None:
    """The node's active alarms, or None when its endpoint serves no ``/alarms`` or cannot be read."""
    try:
        return parse_alarms(fetch_metrics_text(alarms_url(metrics_url), timeout_s))
    except (OSError, ValueError):
        return None


def network_view(nodes: list[NodeStatus], topology: Any | None = None) -> dict[str, Any]:
    """The network as one JSON-ready document: nodes, then links joined across their ends (by link
    id); links the topology names but no node reports appear with ``reported_by`` empty."""
    links: dict[str, dict[str, Any]] = {}
    if topology is not None:
        for lk in topology.links:
            links[lk.id] = {
                "id": lk.id,
                "ends": [lk.a, lk.b],
                "distance_km": lk.distance_km,
                "reported_by": [],
                "figures": {},
            }
    for n in nodes:
        if not n.reachable:
            continue
        for fig in n.links.values():
            entry = links.setdefault(
                fig.link, {"id": fig.link, "ends": None, "distance_km": None, "reported_by": [], "figures": {}}
            )
            if entry["ends"] is None and fig.peer is not None and fig.role is not None:
                entry["ends"] = [n.name, fig.peer] if fig.role == "alice" else [fig.peer, n.name]
            entry["reported_by"].append(n.name)
            entry["figures"][n.name] = _figures(fig)
    for entry in links.values():
        entry.update(_summary(entry["figures"]))
    return {
        "nodes": [
            {
                "url": n.url,
                "name": n.name,
                "reachable": n.reachable,
                "error": n.error,
                "alarms_active": {s: n.alarms.get(s, 0.0) for s in SEVERITIES} if n.reachable else {},
                "key_pools": dict(n.key_pools),
                "relays": dict(n.relays),
                "instruments": dict(n.instruments),
                "links": sorted(n.links),
                "active_alarms": n.active_alarms,
                "applications": dict(n.applications),
            }
            for n in nodes
        ],
        "links": [links[k] for k in sorted(links)],
    }


def _figures(fig: LinkFigures) -> dict[str, Any]:
    return {
        "role": fig.role,
        "peer": fig.peer,
        "up": fig.up,
        "qber": fig.qber,
        "sifted_bits": fig.sifted_bits,
        "secret_bits": fig.secret_bits,
        "sifted_rate_bps": fig.sifted_rate_bps,
        "secret_rate_bps": fig.secret_rate_bps,
        "blocks": {o: fig.blocks.get(o, 0.0) for o in BLOCK_OUTCOMES},
        "aborts": dict(fig.aborts),
        "dropped_detections": fig.dropped_detections,
        "last_block_time": fig.last_block_time,
        "relay_key_bits": fig.relay_key_bits,
        "auth_key_bits": dict(fig.auth_key_bits),
    }


def _summary(by_node: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The link's headline figures: from the end with the most recent block (ties: more blocks)."""
    if not by_node:
        return {
            "up": None,
            "qber": None,
            "sifted_rate_bps": None,
            "secret_rate_bps": None,
            "secret_bits": None,
            "blocks": None,
        }
    best = max(by_node.values(), key=lambda f: (f["last_block_time"] or 0.0, sum(f["blocks"].values())))
    ups = [f["up"] for f in by_node.values() if f["up"] is not None]
    return {
        "up": (all(ups) if ups else None),
        "qber": best["qber"],
        "sifted_rate_bps": best["sifted_rate_bps"],
        "secret_rate_bps": best["secret_rate_bps"],
        "secret_bits": best["secret_bits"],
        "blocks": best["blocks"],
    }

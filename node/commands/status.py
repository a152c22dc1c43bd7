"""`qkdnode status`: scrape the nodes' metrics endpoints and show the network's nodes and links."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def register(subparsers: Any) -> None:
    """Add the `status` subcommand."""
    p = subparsers.add_parser(
        "status",
        help="show the QKD network's nodes and links from their metrics endpoints",
        description="Scrape each node's Prometheus metrics endpoint and print the network: per node its "
        "alarms, key pools and relays; per QKD link its state, QBER, sifted and secret key rates "
        "and blocks. Exit code 1 when a node cannot be read.",
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--metrics", metavar="URL[,URL...]", help="metrics endpoints, e.g. http://127.0.0.1:9100/metrics")
    src.add_argument(
        "--topology",
        metavar="FILE",
        help="topology TOML: each node's metrics URL from its metrics_url or host and metrics_port",
    )
    p.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for each endpoint (default 5)")
    p.add_argument("--alarms", action="store_true", help="also list each node's active alarms (from its /alarms)")
    p.add_argument("--json", action="store_true", help="print one JSON document instead of tables")
    p.set_defaults(func=run)


def parse_urls(text: str) -> list[str]:
    """'URL,URL' -> URLs, each http(s)://; a bare host:port gets http:// and /metrics."""
    urls = []
    for item in text.split(","):
        item = item.strip()
        if not item:
            raise ValueError("--metrics: empty item; give URL[,URL...]")
        if "://" not in item:
            item = f"http://{item}/metrics"
        if not item.startswith(("http://", "https://")):
            raise ValueError(f"--metrics: {item!r} must be an http:// or https:// URL")
        urls.append(item)
    return urls


def run(args: argparse.Namespace) -> int:
    """Scrape and print; 0 when every node answered, 1 otherwise."""
    from node.management.scrape import (
        NodeStatus,
        fetch_alarms,
        network_view,
        scrape_node,
    )

    if not (args.timeout > 0):
        raise ValueError(f"--timeout: must be > 0 seconds, got {args.timeout}")
    topology = None
    targets: list[tuple[str | None, str | None]] = []  # (node name from topology, url)
    if args.topology:
        from node.control.topology import load_topology

        topology = load_topology(args.topology)
        targets = [(n.name, n.metrics_endpoint()) for n in topology.nodes]
    else:
        targets = [(None, u) for u in parse_urls(args.metrics)]
    statuses: list[NodeStatus] = []
    for name, url in targets:
        if url is None:
            statuses.append(NodeStatus("", name=name, error="no metrics URL in the topology (metrics_port 0)"))
            continue
        st = scrape_node(url, args.timeout)
        if st.name is None:
            st.name = name
        if args.alarms and st.reachable:
            st.active_alarms = fetch_alarms(url, args.timeout)
        statuses.append(st)
    view = network_view(statuses, topology)
    if args.json:
        json.dump(view, sys.stdout, indent=2, sort_keys=True)
        print()
    else:
        print_tables(view, alarms=args.alarms)
    return 0 if all(s.reachable for s in statuses) else 1


def _fmt_rate(bps: float | None) -> str:
    if bps is None:
        return "-"
    for unit, scale in (("Mbit/s", 1e6), ("kbit/s", 1e3)):
        if bps >= scale:
            return f"{bps / scale:.2f} {unit}"
    return f"{bps:.0f} bit/s"


def _fmt_bits(bits: float | None) -> str:
    if bits is None:
        return "-"
    for unit, scale in (("Gbit", 1e9), ("Mbit", 1e6), ("kbit", 1e3)):
        if bits >= scale:
            return f"{bits / scale:.2f} {unit}"
    return f"{bits:.0f} bit"


def _table(headers: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    print("  ".join(h.ljust(w) for h, w in zip(headers, widths)).rstrip())
    print("  ".join("-" * w for w in widths))
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())


def print_tables(view: dict[str, Any], *, alarms: bool = False) -> None:
    """The nodes table, the links table and, with `alarms`, the active alarms."""
    rows = []
    for n in view["nodes"]:
        if not n["reachable"]:
            rows.append([n["name"] or "?", "DOWN", "-", "-", "-", "-", f"{n['url'] or '-'} ({n['error']})"])
            continue
        alarm_counts = ", ".join(f"{int(c)} {s}" for s, c in n["alarms_active"].items() if c) or "none"
        pools = ", ".join(f"{p}: {_fmt_bits(b)}" for p, b in sorted(n["key_pools"].items())) or "-"
        relays = ", ".join(f"{int(c)} {o}" for o, c in sorted(n["relays"].items()) if c) or "0"
        down = [i for i, up in sorted(n["instruments"].items()) if not up]
        instruments = "all up" if n["instruments"] and not down else ("down: " + ", ".join(down) if down else "-")
        rows.append([n["name"], "up", alarm_counts, pools, relays, instruments, n["url"]])
    print("nodes")
    _table(["node", "state", "alarms", "key pools", "relays", "instruments", "endpoint"], rows)
    print()
    rows = []
    for lk in view["links"]:
        ends = " -> ".join(lk["ends"]) if lk["ends"] else "?"
        state = "unreported" if not lk["reported_by"] else {True: "up", False: "DOWN", None: "?"}[lk["up"]]
        blocks = lk["blocks"] or {}
        qber = "-" if lk["qber"] is None else f"{100 * lk['qber']:.2f} %"
        rows.append(
            [
                lk["id"],
                ends,
                state,
                qber,
                _fmt_rate(lk["sifted_rate_bps"]),
                _fmt_rate(lk["secret_rate_bps"]),
                _fmt_bits(lk["secret_bits"]),
                f"{int(blocks.get('key', 0))}/{int(blocks.get('no_key', 0))}/{int(blocks.get('aborted', 0))}"
                if blocks
                else "-",
            ]
        )
    print("links")
    _table(
        [
            "link",
            "ends (alice -> bob)",
            "state",
            "QBER",
            "sifted rate",
            "secret rate",
            "secret key",
            "blocks key/none/aborted",
        ],
        rows,
    )
    print_applications(view)
    if alarms:
        rows = []
        for n in view["nodes"]:
            if n["active_alarms"] is None:
                if n["reachable"]:
                    rows.append([n["name"] or "?", "-", "-", "-", "(no /alarms on this endpoint)"])
                continue
            for a in n["active_alarms"]:
                rows.append([n["name"] or "?", a["severity"], a["source"], str(a["count"] or ""), a["text"]])
        print()
        print("active alarms")
        _table(["node", "severity", "source", "count", "text"], rows)


def print_applications(view: dict[str, Any]) -> None:
    """Applications registered over SDN control, per node: delivered key and rate, refusals, expiries."""
    rows = []
    for n in view["nodes"]:
        for app_id, a in sorted((n.get("applications") or {}).items()):
            refusals = ", ".join(f"{int(c)} {r}" for r, c in sorted(a["refusals"].items()) if c) or "0"
            rows.append(
                [
                    n["name"] or "?",
                    app_id,
                    a["sae"] or "-",
                    _fmt_bits(a["delivered_bits"]),
                    _fmt_rate(a["rate_bps"]),
                    refusals,
                    str(int(a["expired_keys"])),
                ]
            )
    if rows:
        print()
        print("applications")
        _table(["node", "app_id", "SAE", "delivered", "rate", "refused", "expired keys"], rows)

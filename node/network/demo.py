"""`qkdnode demo --topology FILE`: a loopback network of key managers, a key relayed between SAEs
that share no QKD link, then one link taken down and the relay rerouted."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from node.control.topology import EXAMPLES, Topology, example_topology, load_topology
from node.keymanager.saeclient import SaeClient
from node.network.linkdaemons import start_link_daemons
from node.network.loopback import LoopbackNetwork, kme_id, sae_id, start_network
from node.runtime.launch import stop_processes
from node.runtime.mockconfig import check_link_mock

ALARM_LOGGER = "node.management.alarms"


def resolve_topology(spec: str) -> Topology:
    """A topology file, or the name of a shipped example (line3, ring5)."""
    if not Path(spec).exists():
        if spec in EXAMPLES:
            return example_topology(spec, check_mock=check_link_mock)
        raise ValueError(
            f"--topology: {spec!r} is neither a topology file nor a built-in topology; built-ins: {', '.join(EXAMPLES)}"
        )
    return load_topology(spec, check_mock=check_link_mock)


class Story:
    """What the network demo is doing, one line per step on stderr; link progress rewritten in place
    on a terminal, every 5 s when piped."""

    def __init__(self) -> None:
        self.t0 = time.monotonic()
        self.tty = sys.stderr.isatty()
        self.dirty = False
        self.last = -10.0

    def __call__(self, text: str) -> None:
        self.end()
        print(f"[{time.monotonic() - self.t0:5.1f} s] {text}", file=sys.stderr, flush=True)

    def progress(self, text: str) -> None:
        """A line of live figures."""
        now = time.monotonic() - self.t0
        if self.tty:
            print(f"\r[{now:5.1f} s] {text}\x1b[K", end="", file=sys.stderr, flush=True)
            self.dirty = True
        elif now - self.last >= 5:
            self.last = now
            print(f"[{now:5.1f} s] {text}", file=sys.stderr, flush=True)

    def end(self) -> None:
        """Finish a progress line."""
        if self.dirty:
            print(file=sys.stderr, flush=True)
            self.dirty = False


def _link_state(counters: dict[str, Any]) -> str:
    if not counters:
        return "starting"
    if counters.get("blocks"):
        return f"{counters['blocks']} block(s)"
    return f"{counters.get('sifted_bits', 0) / 1e6:.1f} Mbit sifted"


@contextlib.contextmanager
def expected_alarms() -> Iterator[None]:
    """Alarms raised while the demo fails a link on purpose are part of its story (listed at the end),
    not ERROR lines on the console."""
    log = logging.getLogger(ALARM_LOGGER)
    level = log.level
    log.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        log.setLevel(level)


def _wait_for_blocks(daemons: Any, topology: Topology, story: Story, timeout_s: float = 600.0) -> None:
    """Wait until every link has distilled a block, showing each link's progress."""
    deadline = time.monotonic() + timeout_s
    while True:
        daemons.check_alive()
        per = {lk.id: daemons.status(f"{lk.id}-bob").get("counters", {}) for lk in topology.links}
        if all(c.get("blocks", 0) >= 1 for c in per.values()):
            story.end()
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"the links did not distil a block within {timeout_s:.0f} s")
        story.progress("links: " + "  ".join(f"{k} {_link_state(c)}" for k, c in per.items()))
        time.sleep(0.3)


def _hops(topology: Topology, src: str, without: str | None = None) -> dict[str, int]:
    """Hop counts from `src` over the topology's links (link `without` left out)."""
    dist = {src: 0}
    frontier = [src]
    while frontier:
        nxt = []
        for n in frontier:
            for m in (lk.other_end(n) for lk in topology.links_of(n) if lk.id != without):
                if m not in dist:
                    dist[m] = dist[n] + 1
                    nxt.append(m)
        frontier = nxt
    return dist


def relay_check(net: LoopbackNetwork, src: str, dst: str, size: int = 256) -> dict[str, Any]:
    """Master SAE at `src` gets a key for the SAE at `dst`, which fetches it; compare (by hash)."""
    master = SaeClient(net.url(src), *net.sae_credentials(src))
    slave = SaeClient(net.url(dst), *net.sae_credentials(dst))
    t0 = time.perf_counter()
    code, cont = master.enc_keys(sae_id(dst), 1, size)
    if code != 200:
        return {"master": sae_id(src), "slave": sae_id(dst), "ok": False, "reason": cont.get("message", str(code))}
    key = cont["keys"][0]
    code, got = slave.dec_keys(sae_id(src), [key["key_ID"]])
    ms = 1000 * (time.perf_counter() - t0)
    ok = code == 200 and got["keys"][0]["key"] == key["key"]
    # the printed 48-bit digest prefix tells a reader about this check key only; it is served once and
    # used by no application, so that disclosure costs no key in use
    return {
        "master": sae_id(src),
        "slave": sae_id(dst),
        "ok": ok,
        "key_ID": key["key_ID"],
        "size_bits": size,
        "path": key.get("key_extension", {}).get("relay", {}).get("path"),
        "ms": round(ms, 1),
        "sha256_prefix": hashlib.sha256(key["key"].encode()).hexdigest()[:12],
    }


def run_topology_demo(
    spec: str,
    workdir: str | None = None,
    as_json: bool = False,
    block_bytes: int = 1 << 16,
    links: str = "mock",
    block_bits: int = 1_000_000,
    keep: bool = False,
) -> int:
    """Run the demo (module doc); print a summary; 0 when every relayed key matched.

    `links="mock"`: each topology link is a pair of node daemons on the mock hardware whose
    distilled keys feed the key managers; `links="feed"`: a stand-in source sends identical random
    blocks of `block_bytes` to both ends (fast; for tests of the relay layer alone). A temporary
    work directory is removed at the end unless `keep`.
    """
    if links not in ("mock", "feed"):
        raise ValueError(f"--links must be 'mock' or 'feed', got {links!r}")
    topology = resolve_topology(spec)
    story = Story()
    temporary = workdir is None
    root = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="qkdnode-net-"))
    t0 = time.perf_counter()
    out: dict[str, Any] = {
        "topology": topology.name,
        "nodes": list(topology.node_names()),
        "links": [lk.id for lk in topology.links],
        "workdir": str(root),
        "link_key_source": links,
    }
    daemons = None
    net = None
    try:
        with expected_alarms():
            story(f"network {topology.name}: starting {len(out['nodes'])} key managers")
            net = start_network(topology, root, gossip_interval_s=0.1, stale_s=1.5)
            if links == "mock":
                story(
                    f"starting two node daemons per link for {', '.join(out['links'])} on the mock hardware; "
                    "each link distils one block first (the first batches compile the numba kernels: a minute or "
                    "more when the cache is cold)"
                )
                daemons = start_link_daemons(
                    topology, root, {n: net.ingest_endpoint(n) for n in topology.node_names()}, block_bits
                )
                _wait_for_blocks(daemons, topology, story)
                out["distilled"] = {
                    lk.id: {
                        k: daemons.status(f"{lk.id}-bob").get("counters", {}).get(k)
                        for k in ("blocks", "aborted", "key_bits")
                    }
                    for lk in topology.links
                }
            else:
                story("feeding identical random blocks to both ends of every link (stand-in key source)")
                net.feed_all(block_bytes, 1)
            story("every link has key; waiting for the key managers to agree on routes")
            # distilled blocks of the mock links carry tens of kbit each (at 1e6-bit blocks, after the common
            # dead time and every disclosed bit are paid for), so those links get longer to fill their pads
            net.wait_converged(
                timeout_s=120.0 if links == "mock" else 20.0, min_bits=4096 if links == "mock" else 8 * 4096
            )
            out["ready_s"] = round(time.perf_counter() - t0, 2)
            pairs = [(s, d) for s in topology.node_names() for d, h in sorted(_hops(topology, s).items()) if h >= 2]
            story(f"relaying a key between {len(pairs)} SAE pair(s) two or more hops apart")
            out["relays"] = [relay_check(net, s, d) for s, d in pairs]
            _show_link_down(net, topology, out, story)
            out["link_key_bits_used"] = {
                n: km.run(lambda k=km.km: dict(k.relay.link_key_bits)) for n, km in net.kms.items()
            }
            out["alarms"] = [
                f"{kme_id(n)} {a.severity} [{a.source}] {a.text}"
                for n, km in net.kms.items()
                for a in km.run(km.km.alarms.active)
            ]
            story("stopping link daemons and key managers")
    except KeyboardInterrupt:
        story.end()
        story("interrupted: stopping link daemons and key managers")
        raise
    finally:
        t_stop = time.monotonic()
        if daemons is not None:
            stop_processes(daemons.procs.values(), 2.5)
        if net is not None:
            net.stop()
        if temporary and not keep:
            shutil.rmtree(root, ignore_errors=True)
            out["workdir"] = None
        story(f"stopped in {time.monotonic() - t_stop:.1f} s" + (f"; files kept in {root}" if out["workdir"] else ""))
    ok = (
        bool(out.get("relays"))
        and all(r["ok"] for r in out["relays"])
        and all(r.get("ok", True) for k, r in out.get("link_down", {}).items() if k != "link")
    )
    if as_json:
        print(json.dumps(out, indent=2))
    else:
        _print(out, ok)
    return 0 if ok else 1


def _show_link_down(net: LoopbackNetwork, topology: Topology, out: dict[str, Any], story: Story) -> None:
    """Fail the last link of the first relayed path that has a detour, and relay over the detour."""
    first = None
    for r in out["relays"]:  # the first relay whose last link can fail without cutting its ends apart
        if r["ok"] and r["path"]:
            path = [p.removeprefix("KME_") for p in r["path"]]
            failed = next(lk.id for lk in topology.links if set(lk.ends()) == {path[-2], path[-1]})
            if path[-1] in _hops(topology, path[0], failed):
                first = r
                break
    if first is None:
        out["link_down"] = {"link": None}
        return
    story(
        f"taking link {failed} down on purpose: its key managers raise alarms for it (expected, listed below) "
        f"and the relay {first['master']} -> {first['slave']} must find a detour"
    )
    net.set_link_up(failed, False)
    t_down = time.perf_counter()
    after = relay_check(net, path[0], path[-1])
    after["after_link_down_ms"] = round(1000 * (time.perf_counter() - t_down), 1)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(lk.up for lk in net.snapshot(path[0]) if lk.link_id == failed):
        time.sleep(0.05)
    converged = relay_check(net, path[0], path[-1])
    converged["after_link_down_ms"] = round(1000 * (time.perf_counter() - t_down), 1)
    out["link_down"] = {"link": failed, "relay": after, "after_convergence": converged}


def _print(out: dict[str, Any], ok: bool) -> None:
    lines = [
        (
            f"network {out['topology']}: nodes {', '.join(out['nodes'])}; links {', '.join(out['links'])}; "
            f"key managers ready in {out.get('ready_s', '-')} s (link keys: "
            + (
                "QKD link daemons on the mock hardware"
                if out["link_key_source"] == "mock"
                else "stand-in source, identical blocks to both ends"
            )
            + ")"
        )
    ]
    for link_id, d in out.get("distilled", {}).items():
        lines.append(
            f"link {link_id}: {d['blocks']} block(s) distilled, {d['key_bits']} secret bits to the key managers"
        )
    for r in out.get("relays", []):
        if r["ok"]:
            lines.append(
                f"relay {r['master']} -> {r['slave']}: same {r['size_bits']}-bit key {r['key_ID']} "
                f"(sha256 {r['sha256_prefix']}…) via {'-'.join(r['path'] or [])} in {r['ms']} ms"
            )
        else:
            lines.append(f"relay {r['master']} -> {r['slave']}: FAILED ({r.get('reason', 'keys differ')})")
    if out.get("link_down", {}).get("link") is None:
        lines.append("no link can fail without cutting a relay's ends apart: rerouting not shown")
    else:
        for what, r in (
            ("in flight", out["link_down"]["relay"]),
            ("after link-state convergence", out["link_down"]["after_convergence"]),
        ):
            lines.append(
                f"link {out['link_down']['link']} down, {what}: {r['master']} -> {r['slave']} "
                + (
                    f"via {'-'.join(r['path'] or [])}, key matched, {r['after_link_down_ms']} ms after the failure"
                    if r["ok"]
                    else f"FAILED ({r.get('reason', 'keys differ')})"
                )
            )
    used: dict[str, int] = {}
    for per in out.get("link_key_bits_used", {}).values():  # each end counts the pads of its links
        for lk, bits in per.items():
            used[lk] = used.get(lk, 0) + bits
    lines.append("link key used as one-time pads: " + ", ".join(f"{k} {v // 2} bits" for k, v in sorted(used.items())))
    failed = out.get("link_down", {}).get("link")
    # the failed link's own alarms and the reroutes it forces are the story, not news
    expected = [a for a in out.get("alarms", []) if failed and (f"link:{failed}" in a or " rerouted " in a)]
    for a in expected:
        lines.append(f"expected alarm (link {failed} failed on purpose): {a}")
    for a in out.get("alarms", []):
        if a not in expected:
            lines.append(f"alarm: {a}")
    lines.append("OK" if ok else "FAILED")
    print("\n".join(lines))

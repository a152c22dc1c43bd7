"""`qkdnode demo --topology ring5 --sdn`: a loopback network under SDN control. A controller (over
RESTCONF, mutual TLS) reads every node, opens a VIRT link (a relay path) between two nodes that share
no QKD link, registers an application on it with a QoS, and the key managers enforce it: the rate
capped by max_bandwidth, unused keys expiring after ttl, a min_bandwidth the links cannot supply
refused, and no key once the VIRT link is deleted. With `--serve`, it prints how to reach each
node's RESTCONF server and leaves the network running for an external controller instead."""

from __future__ import annotations

import http.client
import json
import signal
import ssl
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from node.control.sdn.agent import MODULE, TYPES
from node.keymanager.saeclient import SaeClient
from node.network.loopback import LoopbackNetwork, kme_id, sae_id, start_network
from node.network.sdnloopback import SdnNetwork

DATA = f"/restconf/data/{MODULE}:qkd_node"


class Controller:
    """A minimal RESTCONF client (standard library), one per node."""

    def __init__(self, url: str, cert: str, key: str, ca: str) -> None:
        hostport = url.split("//", 1)[1].split("/", 1)[0]
        self.host, _, port = hostport.rpartition(":")
        self.port = int(port)
        self.ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca)
        self.ctx.load_cert_chain(cert, key)

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        conn = http.client.HTTPSConnection(self.host, self.port, context=self.ctx, timeout=15)
        try:
            headers = {"Accept": "application/yang-data+json"}
            data = None
            if body is not None:
                data = json.dumps(body).encode()
                headers["Content-Type"] = "application/yang-data+json"
            conn.request(method, path, data, headers)
            resp = conn.getresponse()
            raw = resp.read()
            return resp.status, json.loads(raw) if raw else None
        finally:
            conn.close()


def _reason(doc: Any) -> str:
    try:
        return doc["ietf-restconf:errors"]["error"][0]["error-message"]
    except (KeyError, IndexError, TypeError):
        return str(doc)


def run_scenario(net: LoopbackNetwork, sdn: SdnNetwork, src: str, dst: str, via: list[str]) -> dict[str, Any]:
    """The controller's steps (module doc) from `src` to `dst` over the nodes `via` (dst last)."""
    d = sdn.describe()
    ctl = {
        n: Controller(v["restconf_url"], v["controller_cert"], v["controller_key"], v["ca_cert"]) for n, v in d.items()
    }
    out: dict[str, Any] = {"nodes": {}}
    for n, c in ctl.items():
        status, doc = c.call("GET", DATA)
        node = doc[f"{MODULE}:qkd_node"]
        out["nodes"][n] = {
            "qkdn_id": node["qkdn_id"],
            "links": [
                {
                    "remote": lk["qkdl_remote"]["qkdn_id"],
                    "status": lk["qkdl_status"].rpartition(":")[2],
                    "skr_bps": lk["qkdl_performance"]["skr"],
                }
                for lk in node["qkd_links"]["qkd_link"]
            ],
        }
    qid = str(uuid.uuid4())
    status, doc = ctl[src].call(
        "POST",
        DATA + "/qkd_links",
        {
            f"{MODULE}:qkd_link": [
                {
                    "qkdl_id": qid,
                    "qkdl_type": f"{TYPES}:VIRT",
                    "qkdl_local": {"qkdn_id": d[src]["qkdn_id"]},
                    "qkdl_remote": {"qkdn_id": d[dst]["qkdn_id"]},
                    "virt_next_hop": [d[n]["qkdn_id"] for n in via],
                }
            ]
        },
    )
    out["virt_link"] = {"qkdl_id": qid, "created": status == 201, "path": [src, *via]}
    # admission control: more than the links can supply is refused
    big = str(uuid.uuid4())
    status, doc = ctl[src].call(
        "POST",
        DATA + "/qkd_applications",
        {
            f"{MODULE}:qkd_app": [
                {
                    "app_id": big,
                    "server_app_id": sae_id(src),
                    "client_app_id": [sae_id(dst)],
                    "app_qos": {"min_bandwidth": 4_000_000_000},
                }
            ]
        },
    )
    out["min_bandwidth_refused"] = {"status": status, "reason": _reason(doc)}
    app_id = str(uuid.uuid4())
    qos = {"max_bandwidth": 1024, "ttl": 1}
    app = {
        "app_id": app_id,
        "app_type": f"{TYPES}:CLIENT",
        "server_app_id": sae_id(src),
        "client_app_id": [sae_id(dst)],
        "app_priority": 1,
        "app_qos": qos,
    }
    reg = {}
    for n, extra in ((src, {"backing_qkdl_id": [qid]}), (dst, {})):
        status, doc = ctl[n].call("POST", DATA + "/qkd_applications", {f"{MODULE}:qkd_app": [{**app, **extra}]})
        reg[n] = status
    out["application"] = {"app_id": app_id, "qos": qos, "registered": reg}
    master = SaeClient(net.url(src), *net.sae_credentials(src))
    slave = SaeClient(net.url(dst), *net.sae_credentials(dst))
    served, refused, reason, path, matched = 0, 0, None, None, True
    t0 = time.monotonic()
    while time.monotonic() - t0 < 2.0:  # ask for 4 keys of 256 bits (one second of the cap) as fast as it answers
        code, cont = master.enc_keys(sae_id(dst), 4, 256)
        if code == 200:
            served += len(cont["keys"])
            path = cont["keys"][0].get("key_extension", {}).get("relay", {}).get("path")
            fetched, got = slave.dec_keys(sae_id(src), [k["key_ID"] for k in cont["keys"]])
            matched &= fetched == 200 and [k["key"] for k in got["keys"]] == [k["key"] for k in cont["keys"]]
        else:
            refused += 1
            reason = cont.get("message")
    elapsed = time.monotonic() - t0
    out["rate_cap"] = {
        "seconds": round(elapsed, 2),
        "keys_served": served,
        "requests_refused": refused,
        "delivered_bps": round(served * 256 / elapsed, 1),
        "max_bandwidth": qos["max_bandwidth"],
        "reason": reason,
        "relay_path": path,
        "slave_got_same_keys": matched,
    }
    time.sleep(1.1)  # let a second of rate budget come back
    code, cont = master.enc_keys(sae_id(dst), 1, 256)
    unused = cont["keys"][0]["key_ID"] if code == 200 else None
    time.sleep(qos["ttl"] + 0.5)
    code2: int | None = slave.dec_keys(sae_id(src), [unused])[0] if unused else None
    status, doc = ctl[dst].call("GET", f"{DATA}/qkd_applications/qkd_app={app_id}")
    out["ttl"] = {
        "unused_key_fetched_after_ttl": code2,
        "served": code2 == 200,
        "expired_keys_at_slave": sdn.servers[dst].agent.qos.registry.summary()[app_id]["expired_keys"],
    }
    status, doc = ctl[src].call("GET", f"{DATA}/qkd_applications/qkd_app={app_id}")
    out["application"]["statistics"] = doc[f"{MODULE}:qkd_app"][0]["app_statistics"]["statistics"]
    status, _ = ctl[src].call("DELETE", f"{DATA}/qkd_links/qkd_link={qid}")
    code, cont = master.enc_keys(sae_id(dst), 1, 256)
    out["after_virt_link_deleted"] = {"deleted": status == 204, "enc_keys_status": code, "message": cont.get("message")}
    out["ok"] = bool(
        out["virt_link"]["created"]
        and out["min_bandwidth_refused"]["status"] == 409
        and served
        and refused
        and matched
        and code2 not in (200, None)
        and code != 200
    )
    return out


def serve_document(net: LoopbackNetwork, sdn: SdnNetwork, topology_name: str) -> dict[str, Any]:
    """The fixed `--serve --json` document: per node its RESTCONF root and the controller's files."""
    nodes = {}
    for n, v in sdn.describe().items():
        cert, key, _ca = net.sae_credentials(n)
        nodes[n] = {
            "restconf_url": v["restconf_url"],
            "controller_cert": v["controller_cert"],
            "controller_key": v["controller_key"],
            "ca_cert": v["ca_cert"],
            "qkdn_id": v["qkdn_id"],
            "kme_id": kme_id(n),
            "etsi014_url": f"https://{net.url(n)}/api/v1/keys/",
            "sae_id": sae_id(n),
            "sae_cert": cert,
            "sae_key": key,
        }
    return {"topology": topology_name, "nodes": nodes}


def run_sdn_demo(
    topology: Any,
    workdir: str | None = None,
    as_json: bool = False,
    serve: bool = False,
    links: str = "feed",
    block_bits: int = 1_000_000,
) -> int:
    """`qkdnode demo --topology SPEC --sdn`: start the network with SDN agents; run the scenario (or
    serve); 0 on success. `links` is where the links' keys come from: "feed" or "mock" link daemons."""
    from node.network.linkdaemons import start_link_daemons, wait_for_blocks

    if links not in ("mock", "feed"):
        raise ValueError(f"links must be 'mock' or 'feed', got {links!r}")

    root = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="qkdnode-sdn-"))
    net = start_network(topology, root, gossip_interval_s=0.1, stale_s=1.5)
    sdn = daemons = None
    try:
        sdn = SdnNetwork(net, topology)
        if links == "mock":
            daemons = start_link_daemons(
                topology, root, {n: net.ingest_endpoint(n) for n in topology.node_names()}, block_bits
            )
            wait_for_blocks(daemons, topology, 1)
        else:
            net.feed_all(1 << 16, 1)
        net.wait_converged(min_bits=8 * 4096)
        if serve:
            doc = serve_document(net, sdn, topology.name)
            print(json.dumps(doc, indent=2) if as_json else _serve_text(doc), flush=True)
            for sig in (signal.SIGINT, signal.SIGTERM):  # also when started in the background (SIGINT ignored)
                signal.signal(sig, signal.default_int_handler)
            try:
                while True:
                    time.sleep(1)
            except KeyboardInterrupt:
                return 0
        names = list(topology.node_names())
        src, dst, via = _pair(topology, names)
        out = run_scenario(net, sdn, src, dst, via)
        out.update({"topology": topology.name, "workdir": str(root), "link_key_source": links})
        print(json.dumps(out, indent=2) if as_json else _text(out, src, dst))
        return 0 if out["ok"] else 1
    finally:
        if daemons is not None:
            daemons.stop()
        if sdn is not None:
            sdn.stop()
        net.stop()


def _pair(topology: Any, names: list[str]) -> tuple[str, str, list[str]]:
    """Two nodes two hops apart and the middle node: (source, destination, [middle, destination])."""
    for s in names:
        for m in topology.neighbours(s):
            for d in topology.neighbours(m):
                if d != s and d not in topology.neighbours(s):
                    return s, d, [m, d]
    raise ValueError("topology: no two nodes are two hops apart; the SDN demo needs a relay")


def _serve_text(doc: dict[str, Any]) -> str:
    lines = [f"network {doc['topology']} under SDN control; Ctrl-C stops it"]
    for n, v in doc["nodes"].items():
        lines.append(f"node {n}: RESTCONF {v['restconf_url']} (qkdn_id {v['qkdn_id']})")
    any_node = next(iter(doc["nodes"].values()))
    lines.append(
        f"controller certificate {any_node['controller_cert']}, key {any_node['controller_key']}, "
        f"CA {any_node['ca_cert']}"
    )
    return "\n".join(lines)


def _text(out: dict[str, Any], src: str, dst: str) -> str:
    lines = [f"network {out['topology']} under SDN control (link keys: {out['link_key_source']})"]
    for n, v in out["nodes"].items():
        lines.append(
            f"node {n} ({v['qkdn_id'][:8]}…): "
            + ", ".join(f"PHYS to {lk['remote'][:8]}… {lk['status']} {lk['skr_bps']} bit/s" for lk in v["links"])
        )
    vl = out["virt_link"]
    lines.append(
        f"VIRT link {vl['qkdl_id'][:8]}… {'created' if vl['created'] else 'NOT created'} over RESTCONF: "
        f"{'-'.join(vl['path'])}"
    )
    mb = out["min_bandwidth_refused"]
    lines.append(f"application asking min_bandwidth 4e9 bit/s: HTTP {mb['status']}: {mb['reason']}")
    a = out["application"]
    lines.append(
        f"application {a['app_id'][:8]}… SAE_{src} -> SAE_{dst} registered (HTTP {a['registered']}) with "
        f"app_qos {a['qos']}"
    )
    rc = out["rate_cap"]
    lines.append(
        f"rate cap: {rc['keys_served']} keys served, {rc['requests_refused']} refused in {rc['seconds']} s "
        f"-> {rc['delivered_bps']} bit/s delivered (max_bandwidth {rc['max_bandwidth']}, one second of burst); via "
        f"{'-'.join(rc['relay_path'] or [])}; slave got the same keys: {rc['slave_got_same_keys']}"
    )
    lines.append(f"refusal reason: {rc['reason']}")
    t = out["ttl"]
    lines.append(
        f"ttl: an unused key fetched after its ttl -> HTTP {t['unused_key_fetched_after_ttl']} "
        f"(expired keys voided at SAE_{dst}'s node: {t['expired_keys_at_slave']})"
    )
    for s in out["application"].get("statistics", []):
        lines.append(f"app_statistics {s['start_time']} .. {s['end_time']}: {s['consumed_bits']} bits")
    d = out["after_virt_link_deleted"]
    lines.append(f"VIRT link deleted: enc_keys -> HTTP {d['enc_keys_status']} ({d['message']})")
    lines.append(("OK" if out["ok"] else "FAILED") + f"; files: {out['workdir']}")
    return "\n".join(lines)

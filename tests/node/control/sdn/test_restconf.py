"""RESTCONF over mutual TLS: the whole tree walked and validated against the YANG module, discovery,
errors in RFC 8040's shape, VIRT links as relay paths, PATCH qkdl_enable and the event stream."""

from __future__ import annotations

import json
import ssl
import threading
import uuid

import pytest

from tests.node.control.sdn.restconf_client import (
    MODULE,
    RestconfClient,
    TreeWalker,
    data_model,
    validate_notification,
)

TYPES = "etsi-qkd-node-types"


def test_controller_walks_the_whole_tree_and_every_answer_validates(ring):
    c = ring.controller("A")
    assert c.root == "/restconf"
    status, doc = c.json("GET", "/restconf/data/ietf-yang-library:modules-state")
    assert status == 200
    names = {m["name"] for m in doc["ietf-yang-library:modules-state"]["module"]}
    assert {MODULE, TYPES} <= names
    walker = TreeWalker(c, data_model())
    tree = walker.walk()
    assert tree["qkdn_id"] == ring.qkdn_id("A")
    links = tree["qkd_links"]["qkd_link"]
    assert {lk["qkdl_type"] for lk in links} == {f"{TYPES}:PHYS"}
    assert {lk["qkdl_remote"]["qkdn_id"] for lk in links} == {ring.qkdn_id("B"), ring.qkdn_id("E")}
    assert all(lk["qkdl_performance"]["skr"] > 0 for lk in links)
    assert len(tree["qkd_interfaces"]["qkd_interface"]) == 2
    assert any(p.endswith("/qkdl_performance") for p in walker.visited)
    assert len(walker.visited) > 40
    c.close()


def test_errors_have_the_restconf_shape_and_strangers_are_refused(ring):
    c = ring.controller("A")
    status, doc = c.json("GET", c.data_path([("qkd_node", None), ("qkd_links", None), ("qkd_link", str(uuid.uuid4()))]))
    assert status == 404
    err = doc["ietf-restconf:errors"]["error"][0]
    assert err["error-tag"] == "invalid-value" and err["error-type"] in ("protocol", "application")
    status, doc = c.json(
        "POST",
        c.data_path([("qkd_node", None), ("qkd_links", None)]),
        {
            f"{MODULE}:qkd_link": [
                {
                    "qkdl_id": str(uuid.uuid4()),
                    "qkdl_type": f"{TYPES}:PHYS",
                    "qkdl_remote": {"qkdn_id": ring.qkdn_id("B")},
                }
            ]
        },
    )
    assert status == 405 and doc["ietf-restconf:errors"]["error"][0]["error-tag"] == "operation-not-supported"
    status, _, _ = c.request(
        "POST", c.data_path([("qkd_node", None), ("qkd_links", None)]), None, {"Content-Type": "text/plain"}
    )
    assert status in (400, 415)
    # an SAE's certificate is signed by the same CA but is not a controller's
    d = ring.sdn.describe()["A"]
    cert, key, ca = ring.net.sae_credentials("A")
    sae = RestconfClient.from_url(d["restconf_url"], cert, key, ca)
    status, doc = sae.json("GET", "/restconf/data/etsi-qkd-sdn-node:qkd_node")
    assert status == 403 and doc["ietf-restconf:errors"]["error"][0]["error-tag"] == "access-denied"
    # no client certificate at all: the TLS handshake fails
    ctx = ssl.create_default_context(cafile=ca)
    import http.client

    conn = http.client.HTTPSConnection(c.host, c.port, context=ctx, timeout=10)
    with pytest.raises((ssl.SSLError, ConnectionResetError, http.client.RemoteDisconnected, OSError)):
        conn.request("GET", "/restconf")
        conn.getresponse().read()
    c.close()


def _virt_body(ring, qid: str, via: list[str], dest: str) -> dict:
    return {
        f"{MODULE}:qkd_link": [
            {
                "qkdl_id": qid,
                "qkdl_type": f"{TYPES}:VIRT",
                "qkdl_local": {"qkdn_id": ring.qkdn_id("A")},
                "qkdl_remote": {"qkdn_id": ring.qkdn_id(dest)},
                "virt_next_hop": [ring.qkdn_id(n) for n in via],
            }
        ]
    }


def test_virt_link_created_over_restconf_carries_relayed_keys_and_deleted_carries_none(ring):
    c = ring.controller("A")
    master, slave = ring.sae("A"), ring.sae("C")
    code, body = master.enc_keys("SAE_C", 1, 256)
    assert code == 400  # under SDN control no key association to C exists yet
    qid = str(uuid.uuid4())
    links = c.data_path([("qkd_node", None), ("qkd_links", None)])
    status, headers, _ = c.request("POST", links, _virt_body(ring, qid, ["E", "D", "C"], "C"))
    assert status == 201 and headers["location"].endswith(f"qkd_link={qid}")
    walker = TreeWalker(c, data_model())
    tree = walker.walk()  # the new entry validates too
    virt = next(lk for lk in tree["qkd_links"]["qkd_link"] if lk["qkdl_id"] == qid)
    assert virt["qkdl_type"] == f"{TYPES}:VIRT"
    assert virt["virt_next_hop"] == [ring.qkdn_id(n) for n in ("E", "D", "C")]
    code, cont = master.enc_keys("SAE_C", 2, 256)
    assert code == 200, cont
    key = cont["keys"][0]
    assert key["key_extension"]["relay"]["path"] == ["KME_A", "KME_E", "KME_D", "KME_C"]  # the VIRT link's path
    code, got = slave.dec_keys("SAE_A", [k["key_ID"] for k in cont["keys"]])
    assert code == 200 and [k["key"] for k in got["keys"]] == [k["key"] for k in cont["keys"]]
    status, _, _ = c.request("DELETE", c.data_path([("qkd_node", None), ("qkd_links", None), ("qkd_link", qid)]))
    assert status == 204
    code, body = master.enc_keys("SAE_C", 1, 256)
    assert code == 400 and "keys" not in body
    status, _ = c.json("GET", c.data_path([("qkd_node", None), ("qkd_links", None), ("qkd_link", qid)]))
    assert status == 404
    c.close()


def test_virt_link_with_a_path_over_unlinked_nodes_is_refused(ring):
    c = ring.controller("A")
    status, doc = c.json(
        "POST", c.data_path([("qkd_node", None), ("qkd_links", None)]), _virt_body(ring, str(uuid.uuid4()), ["C"], "C")
    )  # A and C share no QKD link
    assert status == 400 and "first hop" in doc["ietf-restconf:errors"]["error"][0]["error-message"]
    c.close()


def test_patch_qkdl_enable_takes_a_link_out_of_service_and_notifies(ring):
    c = ring.controller("B")
    status, _headers, raw = c.request("GET", "/restconf/data/ietf-restconf-monitoring:restconf-state/streams")
    assert status == 200
    location = json.loads(raw)["ietf-restconf-monitoring:streams"]["stream"][0]["access"][0]["location"]
    stream_path = "/" + location.split("/", 3)[3]
    events: list[dict] = []
    got = threading.Event()
    listener = RestconfClient(
        c.host, c.port, *[str(p) for p in (ring.sdn.controller_cert, ring.sdn.controller_key, ring.sdn.ca_cert)]
    )
    listener.conn = None
    import http.client

    conn = http.client.HTTPSConnection(c.host, c.port, context=listener.ctx, timeout=20)
    conn.request("GET", stream_path, headers={"Accept": "text/event-stream"})
    resp = conn.getresponse()
    assert resp.status == 200 and resp.getheader("Content-Type").startswith("text/event-stream")

    def read() -> None:
        for line in resp:
            if line.startswith(b"data: "):
                events.append(json.loads(line[6:]))
                if any(f"{MODULE}:sdqkdn_link_down" in e["ietf-restconf:notification"] for e in events):
                    got.set()
                    return

    t = threading.Thread(target=read, daemon=True)
    t.start()
    tree = TreeWalker(c, data_model()).walk()
    bc = next(lk for lk in tree["qkd_links"]["qkd_link"] if lk["qkdl_remote"]["qkdn_id"] == ring.qkdn_id("C"))
    target = c.data_path([("qkd_node", None), ("qkd_links", None), ("qkd_link", bc["qkdl_id"])])
    try:
        status, _, raw = c.request(
            "PATCH", target, {f"{MODULE}:qkd_link": [{"qkdl_id": bc["qkdl_id"], "qkdl_enable": False}]}
        )
        assert status == 204, raw
        assert got.wait(15), events
        names = [validate_notification(data_model(), e) for e in events]  # each one against the module
        assert "sdqkdn_link_down" in names and "alarm" in names  # the link-down alarm travels too
        note = next(e for e in events if f"{MODULE}:sdqkdn_link_down" in e["ietf-restconf:notification"])
        assert note["ietf-restconf:notification"][f"{MODULE}:sdqkdn_link_down"]["qkdl_id"] == bc["qkdl_id"]
        status, doc = c.json("GET", target)
        assert doc[f"{MODULE}:qkd_link"][0]["qkdl_status"] == f"{TYPES}:OFF"
        assert doc[f"{MODULE}:qkd_link"][0]["qkdl_enable"] is False
        km = ring.km("B")
        assert not km.run(km.km.control.link_usable, "KME_C")  # relays avoid it, as when it fails
    finally:
        status, _, _ = c.request("PATCH", target + "/qkdl_enable", {f"{MODULE}:qkdl_enable": True})
        assert status == 204
        conn.close()
        c.close()

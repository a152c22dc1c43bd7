"""Application QoS registered over RESTCONF and enforced by the key manager through ETSI 014:
max_bandwidth refusals with the reason, ttl expiry on both sides, min_bandwidth admission control."""

from __future__ import annotations

import json
import time
import uuid

from tests.node.control.sdn.restconf_client import MODULE, TreeWalker, data_model

TYPES = "etsi-qkd-node-types"


def _app(server: str, client: str, **qos: int) -> tuple[str, dict]:
    app_id = str(uuid.uuid4())
    return app_id, {
        f"{MODULE}:qkd_app": [
            {
                "app_id": app_id,
                "app_type": f"{TYPES}:CLIENT",
                "server_app_id": server,
                "client_app_id": [client],
                "app_qos": qos,
            }
        ]
    }


def _register(ring, node: str, body: dict) -> tuple[int, dict | None]:
    c = ring.controller(node)
    try:
        return c.json("POST", c.data_path([("qkd_node", None), ("qkd_applications", None)]), body)
    finally:
        c.close()


def test_application_over_max_bandwidth_is_refused_with_the_reason(ring):
    app_id, body = _app("SAE_A", "SAE_B", max_bandwidth=768)
    assert _register(ring, "A", body)[0] == 201
    master = ring.sae("A")
    codes, reasons = [], []
    for _ in range(4):  # 4 x 256 bits at once: the bucket holds one second of 768 bit/s
        code, cont = master.enc_keys("SAE_B", 1, 256)
        codes.append(code)
        reasons.append(cont.get("message"))
    assert codes[:3] == [200, 200, 200] and codes[3] == 503
    assert "max_bandwidth 768 bit/s" in reasons[3] and app_id in reasons[3]
    time.sleep(0.4)  # 0.4 s later about 307 bits are back in the bucket: one more key
    assert master.enc_keys("SAE_B", 1, 256)[0] == 200
    code, cont = master.enc_keys("SAE_B", 1, 1024)
    assert code == 503 and "exceeds one second of max_bandwidth" in cont["message"]
    c = ring.controller("A")
    tree = TreeWalker(c, data_model()).walk()
    app = next(a for a in tree["qkd_applications"]["qkd_app"] if a["app_id"] == app_id)
    assert app["app_qos"] == {"max_bandwidth": 768}
    assert app["backing_qkdl_id"] and app["remote_qkdn_id"] == ring.qkdn_id("B")
    km = ring.km("A")
    summary = km.run(km.km.qos.registry.summary)[app_id]
    assert summary["delivered_bits"] == 4 * 256 and summary["refusals"] == {"max_bandwidth": 2}
    metrics = __import__("urllib.request").request.urlopen(ring.net.metrics_url("A"), timeout=10).read().decode()
    assert f'qkdnode_app_refusals_total{{app="{app_id}",reason="max_bandwidth"}} 2.0' in metrics
    assert f'qkdnode_app_delivered_key_bits_total{{app="{app_id}",sae="SAE_A"}} 1024.0' in metrics
    status, _, _ = c.request(
        "DELETE", c.data_path([("qkd_node", None), ("qkd_applications", None), ("qkd_app", app_id)])
    )
    assert status == 204
    assert [master.enc_keys("SAE_B", 1, 256)[0] for _ in range(4)] == [200] * 4  # no QoS any more
    c.close()


def test_application_with_ttl_never_gets_an_expired_key_and_both_sides_void_it(ring):
    app_id, body = _app("SAE_E", "SAE_D", ttl=1)
    for node in ("E", "D"):  # the controller registers the application at both of its nodes
        assert _register(ring, node, body)[0] == 201
    master, slave = ring.sae("E"), ring.sae("D")
    code, fresh = master.enc_keys("SAE_D", 1, 256)
    assert code == 200
    code, got = slave.dec_keys("SAE_E", [fresh["keys"][0]["key_ID"]])
    assert code == 200 and got["keys"][0]["key"] == fresh["keys"][0]["key"]  # within its ttl: served
    code, stale = master.enc_keys("SAE_D", 1, 256)
    assert code == 200
    stale_id = stale["keys"][0]["key_ID"]
    time.sleep(1.3)
    code, body = slave.dec_keys("SAE_E", [stale_id])
    assert code == 400 and "keys" not in body  # past its ttl: never served
    kd, ke = ring.km("D"), ring.km("E")
    assert kd.run(kd.km.store.key_record, stale_id)["state"] == "void"
    deadline = time.monotonic() + 10
    while ke.run(ke.km.store.key_record, stale_id)["state"] != "void":  # the master's KM learns it too
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert ke.run(ke.km.store.key_record, fresh["keys"][0]["key_ID"])["state"] == "delivered"  # used: kept
    assert kd.run(kd.km.qos.registry.summary)[app_id]["expired_keys"] == 1


def test_min_bandwidth_beyond_what_the_links_supply_is_refused_at_registration(ring):
    app_id, body = _app("SAE_C", "SAE_D", min_bandwidth=4_000_000_000)
    status, doc = _register(ring, "C", body)
    assert status == 409
    err = doc["ietf-restconf:errors"]["error"][0]
    assert err["error-tag"] == "resource-denied"
    assert "min_bandwidth 4000000000 bit/s exceeds what link" in err["error-message"]
    c = ring.controller("C")
    status, _ = c.json("GET", c.data_path([("qkd_node", None), ("qkd_applications", None), ("qkd_app", app_id)]))
    assert status == 404  # nothing was registered
    app_id, body = _app("SAE_C", "SAE_D", min_bandwidth=1)
    assert _register(ring, "C", body)[0] == 201
    tree = TreeWalker(c, data_model()).walk()
    cd = next(lk for lk in tree["qkd_links"]["qkd_link"] if lk["qkdl_remote"]["qkdn_id"] == ring.qkdn_id("D"))
    assert cd["qkdl_performance"]["expected_consumption"] == 1 and app_id in cd["qkdl_applications"]
    status, _, _ = c.request(
        "PATCH",
        c.data_path([("qkd_node", None), ("qkd_applications", None), ("qkd_app", app_id)]),
        {f"{MODULE}:qkd_app": [{"app_qos": {"min_bandwidth": 4_000_000_000}}]},
    )
    assert status == 409  # a PATCH is admitted like a registration
    c.close()


def test_qkdnode_status_reports_each_applications_delivery_refusals_and_expiries(ring, capsys):
    from node.cli import main

    app_id, body = _app("SAE_B", "SAE_C", max_bandwidth=256)
    assert _register(ring, "B", body)[0] == 201
    master = ring.sae("B")
    assert [master.enc_keys("SAE_C", 1, 256)[0] for _ in range(2)] == [200, 503]
    url = ring.net.metrics_url("B")
    assert main(["status", "--metrics", url, "--json"]) == 0
    view = json.loads(capsys.readouterr().out)
    app = view["nodes"][0]["applications"][app_id]
    assert app["sae"] == "SAE_B" and app["delivered_bits"] == 256 and app["refusals"] == {"max_bandwidth": 1.0}
    assert app["rate_bps"] > 0 and app["expired_keys"] == 0
    assert main(["status", "--metrics", url]) == 0
    text = capsys.readouterr().out
    assert "applications" in text and app_id in text and "1 max_bandwidth" in text

"""`qkdnode demo --topology ... --sdn`: the scenario's figures (on line3, the smallest network with a relay),
and the fixed `qkdnode demo --topology ring5 --sdn --serve --json` interface."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

from node.cli import main
from tests.node.control.sdn.restconf_client import RestconfClient, TreeWalker, data_model


def test_sdn_demo_caps_the_rate_expires_keys_and_refuses_what_the_links_cannot_supply(tmp_path, capsys):
    assert (
        main(["demo", "--topology", "line3", "--sdn", "--links", "feed", "--workdir", str(tmp_path / "net"), "--json"])
        == 0
    )
    out = json.loads(capsys.readouterr().out)
    assert out["ok"] and out["virt_link"]["created"] and len(out["virt_link"]["path"]) == 3
    rc = out["rate_cap"]
    assert rc["keys_served"] >= 1 and rc["requests_refused"] >= 1 and "max_bandwidth 1024 bit/s" in rc["reason"]
    # one second of burst plus max_bandwidth for the rest: never more
    assert rc["keys_served"] * 256 <= 1024 * (1 + rc["seconds"]) + 256
    assert rc["slave_got_same_keys"] and rc["relay_path"] == [f"KME_{n}" for n in out["virt_link"]["path"]]
    assert out["ttl"]["served"] is False and out["ttl"]["expired_keys_at_slave"] >= 1
    assert out["min_bandwidth_refused"]["status"] == 409
    assert out["after_virt_link_deleted"]["deleted"] and out["after_virt_link_deleted"]["enc_keys_status"] != 200
    assert sum(s["consumed_bits"] for s in out["application"]["statistics"]) == rc["keys_served"] * 256 + 256


def test_sdn_demo_serve_json_prints_each_nodes_restconf_root_and_credentials_then_keeps_running(tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (os.environ.get("PYTHONPATH"), os.getcwd()) if p)}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "node",
            "demo",
            "--topology",
            "ring5",
            "--sdn",
            "--serve",
            "--json",
            "--links",
            "feed",
            "--workdir",
            str(tmp_path / "net"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=env,
        text=True,
    )
    try:
        text = ""
        doc = None
        deadline = time.monotonic() + 60
        while doc is None:
            assert time.monotonic() < deadline and proc.poll() is None, text
            text += proc.stdout.readline()
            try:
                doc = json.loads(text)
            except json.JSONDecodeError:
                continue
        assert set(doc["nodes"]) == {"A", "B", "C", "D", "E"}
        for node in doc["nodes"].values():
            assert node["restconf_url"].startswith("https://127.0.0.1:") and node["restconf_url"].endswith("/restconf")
            assert all(os.path.exists(node[k]) for k in ("controller_cert", "controller_key", "ca_cert"))
        b = doc["nodes"]["B"]
        client = RestconfClient.from_url(b["restconf_url"], b["controller_cert"], b["controller_key"], b["ca_cert"])
        assert client.discover() == "/restconf"
        tree = TreeWalker(client, data_model()).walk()
        assert tree["qkdn_id"] == b["qkdn_id"] and len(tree["qkd_links"]["qkd_link"]) == 2
        client.close()
        time.sleep(0.5)
        assert proc.poll() is None  # still serving
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

"""`qkdnode demo` end to end, as the README's main-job command runs it (with a short run)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


@pytest.mark.slow
def test_demo_distils_keys_and_both_saes_fetch_the_same_key(tmp_path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "node", "demo", "--blocks", "2", "--json", "--workdir", str(tmp_path / "demo")],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout)
    assert summary["etsi014_check"]["ok"] is True
    assert summary["blocks"] >= 1 and summary["secret_bits"] > 0
    assert summary["keys_stored"]["KME_A"] == summary["keys_stored"]["KME_B"] > 0
    assert 0.005 < summary["qber"] < 0.03
    # keys never appear in what the demo prints
    key_id = summary["etsi014_check"]["key_ID"]
    assert key_id in proc.stdout and "key\": \"" not in proc.stdout


def test_demo_rejects_bad_options_naming_them() -> None:
    proc = subprocess.run([sys.executable, "-m", "node", "demo", "--eve", "1.5"], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 2 and "--eve must be a fraction in [0, 1]" in proc.stderr


@pytest.mark.slow
def test_demo_serve_prints_each_kms_etsi014_url_and_sae_credentials_that_work(tmp_path) -> None:
    import base64
    import signal

    from etsi_qkd_014_client import QKD014Client

    proc = subprocess.Popen(
        [sys.executable, "-m", "node", "demo", "--blocks", "1", "--serve", "--json", "--workdir", str(tmp_path / "d")],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    try:
        lines = []
        for line in proc.stdout:  # type: ignore[union-attr]
            lines.append(line)
            if line.rstrip() == "}":
                break
        info = json.loads("".join(lines))
        a, b = info["key_managers"]["KME_A"], info["key_managers"]["KME_B"]
        assert a["etsi014_base_url"].startswith("https://127.0.0.1:") and a["etsi014_base_url"].endswith("/api/v1/keys")
        host = lambda url: url.split("//")[1].split("/")[0]  # noqa: E731
        master = QKD014Client(host(a["etsi014_base_url"]), a["sae"]["cert"], a["sae"]["key"], info["ca_cert"])
        slave = QKD014Client(host(b["etsi014_base_url"]), b["sae"]["cert"], b["sae"]["key"], info["ca_cert"])
        code, keys = master.get_key(b["sae"]["id"])
        assert code == 200
        code, same = slave.get_key_with_key_IDs(a["sae"]["id"], [keys.keys[0].key_id])
        assert code == 200 and base64.b64decode(same.keys[0].key) == base64.b64decode(keys.keys[0].key)
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(60)

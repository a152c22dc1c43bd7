"""`qkdnode demo` end to end, as the README's main-job command runs it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.node.commands.test_demo_stop import STOP_LIMIT_S, alive, children


def _without_test_extra(tmp_path: Path) -> dict[str, str]:
    """An environment in which the test-only ETSI 014 client cannot be imported (as in a base install)."""
    shadow = tmp_path / "shadow"
    shadow.mkdir()
    (shadow / "etsi_qkd_014_client.py").write_text("raise ImportError('test extra not installed')\n")
    path = os.pathsep.join([str(shadow), os.environ.get("PYTHONPATH", "")])
    return {**os.environ, "PYTHONPATH": path, "TMPDIR": str(tmp_path)}


@pytest.mark.slow
def test_demo_ends_once_a_key_is_distilled_and_checked_without_the_test_extra(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "node", "demo", "--json"],
        capture_output=True,
        text=True,
        timeout=300,
        env=_without_test_extra(tmp_path),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout)
    assert summary["etsi014_check"]["ok"] is True
    assert summary["blocks"] >= 1 and summary["secret_bits"] > 0
    assert summary["keys_stored"]["KME_A"] == summary["keys_stored"]["KME_B"] > 0
    assert 0.005 < summary["qber"] < 0.03
    assert summary["time_to_first_key_s"] > 0
    # it said what it was doing, and keys never appear in what it prints
    for step in ("starting key managers", "starting Alice's and Bob's nodes", "link up", "first key"):
        assert step in proc.stderr
    key_id = summary["etsi014_check"]["key_ID"]
    assert key_id in proc.stdout and 'key": "' not in proc.stdout
    assert not list(tmp_path.glob("qkdnode-demo-*")), "the temporary work directory is left behind"


def test_demo_rejects_bad_options_naming_them() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "node", "demo", "--eve", "1.5"], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2 and "--eve must be a fraction in [0, 1]" in proc.stderr


@pytest.mark.slow
def test_demo_duration_hit_says_why_no_key_came_and_exits_1(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "node", "demo", "--duration", "4"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "TMPDIR": str(tmp_path)},
    )
    assert proc.returncode == 1
    last = proc.stderr.strip().splitlines()
    reason = next(line for line in last if line.startswith("qkdnode demo: no key:"))
    assert "--duration 4 s" in reason and "Traceback" not in proc.stderr
    assert not list(tmp_path.glob("qkdnode-demo-*"))


@pytest.mark.slow
def test_demo_serve_prints_each_kms_etsi014_url_and_sae_credentials_that_work(tmp_path) -> None:
    """Interoperability with the PyPI ETSI 014 client, then Ctrl-C: everything gone within 3 s."""
    import base64

    from etsi_qkd_014_client import QKD014Client

    proc = subprocess.Popen(
        [sys.executable, "-m", "node", "demo", "--blocks", "1", "--serve", "--json", "--workdir", str(tmp_path / "d")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
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
        kids = children(proc.pid)
        # both key managers serve on; the nodes stop after their --blocks and may already be gone
        # (a warm numba cache distils the block in seconds), so only the key managers are certain
        assert len(kids) >= 2, kids
        t0 = time.monotonic()
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C, as a terminal sends it to the whole group
        rest = proc.communicate(timeout=30)[1]
        while any(alive(k) for k in kids) and time.monotonic() - t0 < 30:
            time.sleep(0.02)
        took = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert took < STOP_LIMIT_S, rest
    assert "stopped nodes and key managers" in rest and "Traceback" not in rest
    assert (tmp_path / "d" / "pki" / "ca.pem").exists()  # --serve and --workdir keep the files

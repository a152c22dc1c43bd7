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

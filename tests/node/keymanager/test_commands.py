"""`qkdnode certs` and `qkdnode km`: the PKI they write and a clean start and stop."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys

from cryptography import x509

from node.cli import main
from node.keymanager.certs import ca_key_path, common_name_of
from tests.node.keymanager.conftest import write_pair_configs

HANG_S = 240  # longer than any shutdown on a loaded machine, shorter than pytest's timeout


def test_certs_command_writes_a_ca_and_owner_only_keys(tmp_path):
    assert main(["certs", str(tmp_path), "--kme", "KME_A", "--sae", "SAE_A", "--sae", "SAE_B"]) == 0
    for name in ("KME_A", "SAE_A", "SAE_B"):
        assert stat.S_IMODE(os.stat(tmp_path / f"{name}.key").st_mode) == 0o600
    assert stat.S_IMODE(os.stat(ca_key_path(tmp_path)).st_mode) == 0o600  # apart from the run-time files
    assert not (tmp_path / "ca.key").exists()
    cert = x509.load_pem_x509_certificate((tmp_path / "SAE_B.pem").read_bytes())
    assert cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value == "SAE_B"
    kme = x509.load_pem_x509_certificate((tmp_path / "KME_A.pem").read_bytes())
    sans = kme.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in sans.get_values_for_type(x509.DNSName)


def test_certs_command_refuses_duplicate_names(tmp_path, capsys):
    assert main(["certs", str(tmp_path), "--kme", "X", "--sae", "X"]) == 2
    assert "distinct" in capsys.readouterr().err


def test_common_name_is_read_from_the_peer_certificate_dict():
    assert common_name_of({"subject": ((("organizationName", "q"),), (("commonName", "SAE_A"),))}) == "SAE_A"
    assert common_name_of(None) is None and common_name_of({}) is None


def test_km_command_serves_and_stops_cleanly_on_sigterm(pki, tmp_path):
    paths = write_pair_configs(tmp_path, pki)
    # stderr to a file: a pipe nobody reads fills up with the KM's warnings (its peer is not
    # running) and blocks it mid-shutdown on a slow machine
    with open(tmp_path / "km.stderr", "w") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "node", "km", str(paths["a"]), "--print-endpoints"],
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
    try:
        endpoints = json.loads(proc.stdout.readline())
        assert endpoints["api_port"] == paths["ports"]["a_api"]
        proc.send_signal(signal.SIGTERM)
        # the KM bounds its own shutdown (5 s for the service, then exit); the wait below only ends a
        # hang, whatever the load on the machine
        assert proc.wait(HANG_S) == 0, (tmp_path / "km.stderr").read_text()[-2000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert os.path.exists(paths["a"].parent / "km_a.db.links.json")


def test_km_command_reports_a_bad_config(tmp_path, capsys):
    bad = tmp_path / "km.toml"
    bad.write_text('kme_id = "A"\n')
    assert main(["km", str(bad)]) == 2
    assert "config key 'api.cert' is required" in capsys.readouterr().err


def test_km_write_demo_creates_two_valid_configs(tmp_path, capsys):
    from node.keymanager.config import load_config

    assert main(["km", "--write-demo", str(tmp_path)]) == 0
    a, b = load_config(tmp_path / "km_a.toml"), load_config(tmp_path / "km_b.toml")
    assert a.peers[0].kme_id == "KME_B" and b.peers[0].kme_id == "KME_A"
    assert "qkdnode km" in capsys.readouterr().out

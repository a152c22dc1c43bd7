"""`qkdnode certs`: an existing CA is never replaced silently; --add signs new identities with it."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography import x509

from node.cli import main


def issuer_key_id(path: Path) -> bytes:
    cert = x509.load_pem_x509_certificate(path.read_bytes())
    key_id = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value.key_identifier
    assert key_id is not None, "the test CA always writes an authority key identifier"
    return key_id


def ca_key_id(path: Path) -> bytes:
    cert = x509.load_pem_x509_certificate(path.read_bytes())
    return cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest


def test_add_signs_with_the_existing_ca_and_force_replaces_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "pki"
    assert main(["certs", str(out), "--kme", "KME_A", "--sae", "SAE_A"]) == 0
    ca_before = (out / "ca.pem").read_bytes()
    assert main(["certs", str(out), "--kme", "KME_B"]) == 2  # refused: the CA stays
    assert (out / "ca.pem").read_bytes() == ca_before and not (out / "KME_B.pem").exists()
    assert main(["certs", str(out), "--add", "--sae", "SAE_B"]) == 0
    assert (out / "ca.pem").read_bytes() == ca_before
    assert issuer_key_id(out / "SAE_B.pem") == ca_key_id(out / "ca.pem") == issuer_key_id(out / "KME_A.pem")
    assert (out / "SAE_B.key").stat().st_mode & 0o077 == 0
    assert main(["certs", str(out), "--add", "--sae", "SAE_B"]) == 2  # an identity is not overwritten either
    assert main(["certs", str(out), "--force", "--kme", "KME_A"]) == 0
    assert (out / "ca.pem").read_bytes() != ca_before
    err = capsys.readouterr().err
    assert "--add" in err and "already holds SAE_B" in err


def test_add_without_a_ca_says_what_is_missing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["certs", str(tmp_path), "--add", "--sae", "S"]) == 2
    assert "ca.pem" in capsys.readouterr().err

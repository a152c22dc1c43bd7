"""A small PKI for demos and tests: a CA, KME server certificates and SAE client certificates.

The SAE ID (and the KME ID) is the certificate subject's common name; the ETSI 014 server takes the
caller's SAE ID from it after the TLS handshake has verified the chain against the CA.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from node.private_files import private_dir, write_private_file

#: Where `make_pki` puts the CA's private key, relative to the PKI directory, unless told otherwise:
#: apart from the certificates and keys a KM or SAE needs at run time, so it can be moved offline.
CA_KEY_DIR = "ca-private"


@dataclass(frozen=True)
class Identity:
    """Where one party's PEM files lie."""

    name: str
    cert: Path
    key: Path


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [x509.NameAttribute(NameOID.ORGANIZATION_NAME, "qkdnode"), x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    )


def _check_name(common_name: str) -> None:
    if not common_name or not common_name.isprintable() or "/" in common_name or common_name.strip() != common_name:
        raise ValueError(f"identity name must be printable, without '/' or surrounding blanks, got {common_name!r}")


def make_ca(
    common_name: str = "qkdnode demo CA", days: int = 825
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A self-signed CA key and certificate (ECDSA P-256)."""
    _check_name(common_name)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(_name(common_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def make_leaf(
    ca_key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    common_name: str,
    *,
    server: bool,
    hosts: tuple[str, ...] = ("localhost", "127.0.0.1"),
    days: int = 825,
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A certificate for a KME (`server=True`: server and client auth, with `hosts` as SANs) or an SAE."""
    _check_name(common_name)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    usages = [ExtendedKeyUsageOID.CLIENT_AUTH] + ([ExtendedKeyUsageOID.SERVER_AUTH] if server else [])
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
    )
    if server:
        sans: list[x509.GeneralName] = []
        for h in hosts:
            try:
                sans.append(x509.IPAddress(ipaddress.ip_address(h)))
            except ValueError:
                sans.append(x509.DNSName(h))
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return key, builder.sign(ca_key, hashes.SHA256())


def write_pem(
    directory: Path,
    name: str,
    key: ec.EllipticCurvePrivateKey,
    cert: x509.Certificate,
    key_directory: Path | None = None,
) -> Identity:
    """Write `name.pem` (certificate) into `directory` and `name.key` (private key) into `key_directory`
    (default: the same); files 0600 and directories 0700 whatever the umask (a certificate another
    user could overwrite is a CA they could swap)."""
    private_dir(directory)
    key_dir = private_dir(key_directory) if key_directory is not None else directory
    cert_path, key_path = directory / f"{name}.pem", key_dir / f"{name}.key"
    write_private_file(cert_path, cert.public_bytes(serialization.Encoding.PEM))
    write_private_file(
        key_path,
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
    )
    return Identity(name, cert_path, key_path)


def ca_key_path(directory: str | os.PathLike, ca_key_dir: str | os.PathLike | None = None) -> Path:
    """Where `make_pki(directory, ..., ca_key_dir=...)` writes the CA's private key."""
    return (Path(ca_key_dir) if ca_key_dir is not None else Path(directory) / CA_KEY_DIR) / "ca.key"


def find_ca_key(directory: str | os.PathLike) -> Path:
    """The CA key of the PKI in `directory`: its private subdirectory, or beside `ca.pem` as earlier
    versions wrote it."""
    private = ca_key_path(directory)
    beside = Path(directory) / "ca.key"
    return beside if not private.exists() and beside.exists() else private


def make_pki(
    directory: str | os.PathLike,
    kme_ids: list[str],
    sae_ids: list[str],
    hosts: tuple[str, ...] = ("localhost", "127.0.0.1"),
    ca_name: str = "qkdnode demo CA",
    ca_key_dir: str | os.PathLike | None = None,
) -> dict[str, Identity]:
    """Create `ca.pem` and one identity per KME and SAE in `directory`, and the CA's key `ca.key` in
    `ca_key_dir` (default `directory/ca-private`, never beside the run-time files); returns them by name."""
    if not kme_ids and not sae_ids:
        raise ValueError("kme_ids and sae_ids must name at least one identity")
    names = list(kme_ids) + list(sae_ids)
    if len(set(names)) != len(names) or "ca" in names:
        raise ValueError("KME and SAE IDs must be distinct and not 'ca'")
    out = Path(directory)
    ca_key, ca_cert = make_ca(ca_name)
    ids = {"ca": write_pem(out, "ca", ca_key, ca_cert, ca_key_path(out, ca_key_dir).parent)}
    for kme in kme_ids:
        ids[kme] = write_pem(out, kme, *make_leaf(ca_key, ca_cert, kme, server=True, hosts=hosts))
    for sae in sae_ids:
        ids[sae] = write_pem(out, sae, *make_leaf(ca_key, ca_cert, sae, server=False))
    return ids


def common_name_of(peercert: dict | None) -> str | None:
    """The subject common name from `ssl.SSLSocket.getpeercert()` (None without a certificate)."""
    if not peercert:
        return None
    for rdn in peercert.get("subject", ()):
        for attr, value in rdn:
            if attr == "commonName":
                return value
    return None

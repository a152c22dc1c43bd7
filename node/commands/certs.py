"""`qkdnode certs`: create a CA and KME / SAE certificates for demos and tests, or add identities
signed by a CA already in the directory."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def register(subparsers: Any) -> None:
    """Add the `certs` subcommand."""
    p = subparsers.add_parser(
        "certs",
        help="create a demo CA with KME and SAE certificates",
        description="Create ca.pem (its key in ca-private/, kept apart from what nodes need) and, for each KME and SAE, NAME.pem and NAME.key (mode 0600) in "
        "OUT. The certificate's common name is the KME or SAE ID; KME certificates carry the "
        "--host names as subject alternative names. An existing CA in OUT is never replaced "
        "unless --force is given (certificates it signed would stop verifying); --add signs the "
        "new identities with it instead.",
    )
    p.add_argument("out", help="directory to write the PEM files into (created if missing)")
    p.add_argument("--kme", action="append", default=[], metavar="ID", help="a KME ID (repeatable)")
    p.add_argument("--sae", action="append", default=[], metavar="ID", help="an SAE ID (repeatable)")
    p.add_argument(
        "--host",
        action="append",
        default=[],
        metavar="NAME",
        help="DNS name or IP of the KMEs (repeatable; default localhost and 127.0.0.1)",
    )
    p.add_argument("--ca-name", default="qkdnode demo CA", help="the CA's common name")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument(
        "--add",
        action="store_true",
        help="sign the new identities with the CA already in OUT (ca.pem, ca-private/ca.key)",
    )
    mode.add_argument(
        "--force",
        action="store_true",
        help="replace an existing CA and identities in OUT (earlier certificates stop verifying)",
    )
    p.set_defaults(func=run)


def _out_dir(text: str) -> Path:
    out = Path(text)
    for parent in (out, *out.parents):
        if parent.exists() and not parent.is_dir():
            raise ValueError(f"OUT: {parent} is a file, not a directory; give a directory path")
    if out.exists():
        return out
    from node.private_files import private_dir

    try:
        private_dir(out)  # owner-only whatever the umask
    except OSError as exc:
        raise ValueError(f"OUT: cannot create {out}: {exc.strerror}") from None
    return out


def _load_ca(out: Path) -> tuple[Any, Any]:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    from node.keymanager.certs import find_ca_key

    try:
        cert = x509.load_pem_x509_certificate((out / "ca.pem").read_bytes())
        key = serialization.load_pem_private_key(find_ca_key(out).read_bytes(), password=None)
    except FileNotFoundError as exc:
        raise ValueError(
            f"--add: {exc.filename} is missing; OUT must hold the CA's ca.pem and its key (ca-private/ca.key)"
        ) from None
    except (ValueError, TypeError) as exc:
        raise ValueError(f"--add: the CA in {out} cannot be read: {exc}") from None
    return key, cert


def run(args: argparse.Namespace) -> int:
    """Write the PKI (or the added identities) and list what was written."""
    from node.keymanager.certs import make_leaf, make_pki, write_pem

    if not args.kme and not args.sae:
        raise ValueError("name at least one identity: --kme ID and/or --sae ID (repeatable)")
    names = args.kme + args.sae
    if len(set(names)) != len(names) or "ca" in names:
        raise ValueError("--kme and --sae IDs must be distinct and not 'ca'")
    hosts = tuple(args.host) or ("localhost", "127.0.0.1")
    out = _out_dir(args.out)
    from node.keymanager.certs import find_ca_key

    has_ca = (out / "ca.pem").exists() or find_ca_key(out).exists()
    if args.add:
        ca_key, ca_cert = _load_ca(out)
        taken = [n for n in names if (out / f"{n}.pem").exists() or (out / f"{n}.key").exists()]
        if taken:
            raise ValueError(f"--add: {out} already holds {', '.join(taken)}; choose other IDs")
        ids = {}
        for kme in args.kme:
            ids[kme] = write_pem(out, kme, *make_leaf(ca_key, ca_cert, kme, server=True, hosts=hosts))
        for sae in args.sae:
            ids[sae] = write_pem(out, sae, *make_leaf(ca_key, ca_cert, sae, server=False))
    else:
        if has_ca and not args.force:
            raise ValueError(
                f"{out} already holds a CA (ca.pem); --add signs new identities with it, --force "
                "replaces it (certificates it signed stop verifying)"
            )
        ids = make_pki(out, args.kme, args.sae, hosts=hosts, ca_name=args.ca_name)
    for name, ident in ids.items():
        print(f"{name}: {ident.cert} {ident.key}")
    return 0

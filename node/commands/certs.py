"""`qkdnode certs`: create a CA and KME / SAE certificates for demos and tests."""

from __future__ import annotations

import argparse
from typing import Any


def register(subparsers: Any) -> None:
    """Add the `certs` subcommand."""
    p = subparsers.add_parser(
        "certs", help="create a demo CA with KME and SAE certificates",
        description="Create ca.pem/ca.key and, for each KME and SAE, NAME.pem and NAME.key (mode 0600) in "
                    "OUT. The certificate's common name is the KME or SAE ID; KME certificates carry the "
                    "--host names as subject alternative names.",
    )
    p.add_argument("out", help="directory to write the PEM files into")
    p.add_argument("--kme", action="append", default=[], metavar="ID", help="a KME ID (repeatable)")
    p.add_argument("--sae", action="append", default=[], metavar="ID", help="an SAE ID (repeatable)")
    p.add_argument("--host", action="append", default=[], metavar="NAME",
                   help="DNS name or IP of the KMEs (repeatable; default localhost and 127.0.0.1)")
    p.add_argument("--ca-name", default="qkdnode demo CA", help="the CA's common name")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Write the PKI and list what was written."""
    from node.keymanager.certs import make_pki

    hosts = tuple(args.host) or ("localhost", "127.0.0.1")
    ids = make_pki(args.out, args.kme, args.sae, hosts=hosts, ca_name=args.ca_name)
    for name, ident in ids.items():
        print(f"{name}: {ident.cert} {ident.key}")
    return 0

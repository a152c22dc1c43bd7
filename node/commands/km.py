"""`qkdnode km CONFIG`: run a key manager (ingest, peer sync, ETSI GS QKD 014 server)."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
from typing import Any


def register(subparsers: Any) -> None:
    """Add the `km` subcommand."""
    p = subparsers.add_parser(
        "km",
        help="run a key manager (ETSI GS QKD 014 over mutual TLS)",
        description="Run a key manager from a TOML configuration: durable key store, KEY_BLOCK ingest "
        "from the QKD modules, authenticated sync with the peer KM, and the ETSI GS QKD 014 "
        "API over mutual TLS. Stops cleanly on SIGINT/SIGTERM. The audit trail (one JSON line per "
        "TLS handshake failure, refused request, key delivery by key ID, voided key) goes to the "
        "config's audit_log file, by default beside the key store; warnings and errors to stderr.",
    )
    p.add_argument("config", nargs="?", help="path to the key manager's TOML file")
    p.add_argument(
        "--write-demo",
        metavar="DIR",
        help="instead of running: write a demo pair (PKI, secrets, km_a.toml, km_b.toml) into DIR",
    )
    p.add_argument(
        "--print-endpoints",
        action="store_true",
        help="print the bound endpoints as one JSON line on stdout once serving",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Validate the configuration, then serve until signalled."""
    from node.control.sdn.service import services_for
    from node.keymanager.config import load_config
    from node.keymanager.daemon import run_key_manager

    if args.write_demo:
        from node.keymanager.demo import write_demo_pair

        pair = write_demo_pair(args.write_demo)
        for who, path in pair.configs.items():
            print(f"KME_{who.upper()}: qkdnode km {path}  (ETSI 014 on https://127.0.0.1:{pair.ports[who + '_api']})")
        print(
            f"SAE certificates and the CA certificate are in {pair.root / 'pki'}; the CA's private key is "
            f"kept apart in {pair.root / 'ca'} (no KM or SAE needs it to run)"
        )
        return 0
    if args.config is None:
        raise ValueError("CONFIG is required (or --write-demo DIR)")
    config = load_config(args.config)
    if config.audit_log:
        logging.getLogger(__name__).info("audit trail: %s", config.audit_log)

    def ready(km: Any) -> None:
        if args.print_endpoints:
            print(json.dumps(km.endpoints()), flush=True)

    asyncio.run(run_key_manager(config, ready, services_for(config)))
    return 0

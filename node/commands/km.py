"""`qkdnode km CONFIG`: run a key manager (ingest, peer sync, ETSI GS QKD 014 server)."""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import Any


def register(subparsers: Any) -> None:
    """Add the `km` subcommand."""
    p = subparsers.add_parser(
        "km", help="run a key manager (ETSI GS QKD 014 over mutual TLS)",
        description="Run a key manager from a TOML configuration: durable key store, KEY_BLOCK ingest "
                    "from the QKD modules, authenticated sync with the peer KM, and the ETSI GS QKD 014 "
                    "API over mutual TLS. Stops cleanly on SIGINT/SIGTERM.",
    )
    p.add_argument("config", help="path to the key manager's TOML file")
    p.add_argument("--print-endpoints", action="store_true",
                   help="print the bound endpoints as one JSON line on stdout once serving")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Validate the configuration, then serve until signalled."""
    from node.keymanager.config import load_config
    from node.keymanager.daemon import run_key_manager

    config = load_config(args.config)

    def ready(km: Any) -> None:
        if args.print_endpoints:
            print(json.dumps(km.endpoints()), flush=True)

    asyncio.run(run_key_manager(config, ready))
    return 0



"""Start a key manager's RESTCONF server from its `[sdn]` configuration (called by `KeyManager.start`)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from node.control.sdn.agent import SdnAgent
from node.control.sdn.config import SdnConfig, interfaces_from
from node.control.sdn.restconf import RestconfServer
from node.keymanager.etsi014 import server_ssl_context

if TYPE_CHECKING:
    from node.keymanager.daemon import KeyManager


async def start_restconf(km: KeyManager, config: SdnConfig) -> RestconfServer:
    """The agent for `km` with its configured interfaces (each `*IDN?` asked off the event loop),
    served over mutual TLS; returns the running server."""
    interfaces = await asyncio.get_running_loop().run_in_executor(None, interfaces_from, config)
    agent = SdnAgent(km, interfaces, location=config.location)
    server = RestconfServer(agent, set(config.controllers))
    await server.start(config.host, config.port, server_ssl_context(config.cert, config.key, config.ca))
    return server

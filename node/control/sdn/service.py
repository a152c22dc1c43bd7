"""Start a key manager's RESTCONF server from its `[sdn]` configuration: `services_for` gives the starter
that whoever starts a key manager (`qkdnode km`, the loopback networks) hands to `KeyManager`."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from drivers.registry import identify
from node.control.sdn.agent import QkdInterface, SdnAgent
from node.control.sdn.config import InterfaceConfig, SdnConfig
from node.control.sdn.restconf import RestconfServer
from node.keymanager.etsi014 import server_ssl_context

if TYPE_CHECKING:
    from node.keymanager.config import KmConfig
    from node.keymanager.daemon import KeyManager

log = logging.getLogger(__name__)


def services_for(config: KmConfig) -> dict[str, Callable[[KeyManager], Awaitable[RestconfServer]]]:
    """The services a key manager with `config` runs beside it: the RESTCONF server when it has [sdn]."""
    sdn = config.sdn
    if sdn is None:
        return {}

    async def restconf(km: KeyManager) -> RestconfServer:
        return await start_restconf(km, sdn)

    return {"restconf": restconf}


async def start_restconf(km: KeyManager, config: SdnConfig) -> RestconfServer:
    """The agent for `km` with its configured interfaces (each `*IDN?` asked off the event loop),
    served over mutual TLS; returns the running server."""
    interfaces = await asyncio.get_running_loop().run_in_executor(None, interfaces_from, config)
    agent = SdnAgent(km, interfaces, location=config.location)
    server = RestconfServer(agent, set(config.controllers))
    await server.start(config.host, config.port, server_ssl_context(config.cert, config.key, config.ca))
    return server


def model_of(iface: InterfaceConfig, timeout_s: float = 2.0) -> str:
    """The interface's model: vendor and model from its instrument's `*IDN?` when `idn_resource` is set
    (falling back to `model`, with a warning, when the instrument does not answer)."""
    if not iface.idn_resource:
        return iface.model
    idn, error = identify(iface.idn_resource, iface.visa_library, timeout_s)
    if idn:
        fields = [f.strip() for f in idn.split(",")]
        return " ".join(fields[:2]) if len(fields) >= 2 else idn
    log.warning(
        "sdn interface %d: *IDN? on %s failed (%s); using model %r",
        iface.qkdi_id,
        iface.idn_resource,
        error,
        iface.model,
    )
    return iface.model or "unknown"


def interfaces_from(config: SdnConfig) -> list[QkdInterface]:
    """The agent's interfaces (asks each instrument's `*IDN?` where configured)."""
    return [
        QkdInterface(
            i.qkdi_id,
            model_of(i),
            i.link,
            i.technology,
            i.role,
            i.wavelength_range,
            i.max_absorption_db,
            i.device,
            i.port,
        )
        for i in config.interfaces
    ]

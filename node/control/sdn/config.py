"""The `[sdn]` section of a key manager's TOML file: serve ETSI GS QKD 015 over RESTCONF from the KM.

Example::

    [sdn]
    host = "127.0.0.1"
    port = 8444                      # 0: any free port (`qkdnode km --print-endpoints` shows it)
    controllers = ["SDN_CONTROLLER"] # client certificate common names allowed (signed by api.ca)
    location = "lab 2, rack 4"       # qkdn_location_id
    # cert, key, ca: default to the [api] ones

    [[sdn.interfaces]]               # the node's QKD modules, one per QKD link end
    id = 1
    link = "L1"                      # a link named in [[peers]] links
    role = "TRANSMITTER"             # TRANSMITTER, RECEIVER or TRANSCEIVER
    technology = "DV_QKD"            # CV_QKD, DV_QKD, DV_QKD_COW or DV_QKD_2Ws
    wavelength_range = "1550"        # nm, or "1530-1565"
    max_absorption_db = 30.0
    model = "AWG transmitter"        # or ask the instrument:
    idn_resource = "TCPIP0::10.0.0.21::hislip0::INSTR"  # its *IDN? reply (vendor, model) at start
    visa_library = "@py"
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from node.configschema import ConfigError, check_keys, fail

TECHNOLOGIES = ("CV_QKD", "DV_QKD", "DV_QKD_COW", "DV_QKD_2Ws")
ROLES = ("TRANSMITTER", "RECEIVER", "TRANSCEIVER")
KEYS = {"host", "port", "controllers", "location", "cert", "key", "ca", "interfaces"}
IFACE_KEYS = {
    "id",
    "link",
    "role",
    "technology",
    "wavelength_range",
    "max_absorption_db",
    "model",
    "idn_resource",
    "visa_library",
    "device",
    "port",
}


@dataclass(frozen=True)
class InterfaceConfig:
    """One `[[sdn.interfaces]]` table."""

    qkdi_id: int
    link: str
    role: str = "TRANSMITTER"
    technology: str = "DV_QKD"
    wavelength_range: str = "1550"
    max_absorption_db: float = 30.0
    model: str = ""
    idn_resource: str = ""
    visa_library: str = "@py"
    device: str = ""
    port: int = 0


@dataclass(frozen=True)
class SdnConfig:
    """The `[sdn]` section."""

    host: str
    port: int
    controllers: tuple[str, ...]
    location: str
    cert: str
    key: str
    ca: str
    interfaces: tuple[InterfaceConfig, ...] = ()


def _bad(key: str, allowed: str, got: Any) -> ConfigError:
    return fail(f"sdn.{key}", f"must be {allowed}, got {got!r}")


def parse_sdn(table: Any, api: Any, links: set[str], path: Callable[[str], str]) -> SdnConfig:
    """Validate the `[sdn]` table (`api`: the [api] section for defaults; `links`: configured link IDs)."""
    table = check_keys(table, KEYS, "sdn")
    port = table.get("port", 8444)
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise _bad("port", "an integer in [0, 65535]", port)
    controllers = table.get("controllers", ["SDN_CONTROLLER"])
    if not isinstance(controllers, list) or not controllers or not all(isinstance(c, str) and c for c in controllers):
        raise _bad("controllers", "a non-empty list of certificate common names", controllers)
    for k in ("host", "location", "cert", "key", "ca"):
        if k in table and not isinstance(table[k], str):
            raise _bad(k, "a string", table[k])
    ifaces = []
    seen: set[int] = set()
    for i, t in enumerate(table.get("interfaces", [])):
        where = f"interfaces[{i}]."
        t = check_keys(t, IFACE_KEYS, f"sdn.interfaces[{i}]")
        qid = t.get("id")
        if isinstance(qid, bool) or not isinstance(qid, int) or not 0 <= qid <= 2**32 - 1 or qid in seen:
            raise _bad(where + "id", "a distinct integer in [0, 4294967295]", qid)
        seen.add(qid)
        link = t.get("link")
        if link not in links:
            raise _bad(where + "link", f"a link named in [[peers]] links ({', '.join(sorted(links)) or 'none'})", link)
        role, tech = t.get("role", "TRANSMITTER"), t.get("technology", "DV_QKD")
        if role not in ROLES:
            raise _bad(where + "role", " or ".join(ROLES), role)
        if tech not in TECHNOLOGIES:
            raise _bad(where + "technology", ", ".join(TECHNOLOGIES), tech)
        wl = t.get("wavelength_range", "1550")
        if not isinstance(wl, str) or not re.fullmatch(r"[1-9][0-9]{0,3}(-[1-9][0-9]{0,3})?", wl):
            raise _bad(where + "wavelength_range", 'a wavelength in nm such as "1550" or "1530-1565"', wl)
        absorption = t.get("max_absorption_db", 30.0)
        if isinstance(absorption, bool) or not isinstance(absorption, (int, float)) or not 0 <= absorption < 1e6:
            raise _bad(where + "max_absorption_db", "a number >= 0 (dB)", absorption)
        strings = {
            k: t.get(k, d) for k, d in (("model", ""), ("idn_resource", ""), ("visa_library", "@py"), ("device", ""))
        }
        for k, v in strings.items():
            if not isinstance(v, str):
                raise _bad(where + k, "a string", v)
        if not strings["model"] and not strings["idn_resource"]:
            raise fail(f"sdn.{where}model", f"or 'sdn.{where}idn_resource' must be given")
        dport = t.get("port", 0)
        if isinstance(dport, bool) or not isinstance(dport, int) or not 0 <= dport <= 2**32 - 1:
            raise _bad(where + "port", "an integer >= 0 (the optical switch port)", dport)
        ifaces.append(InterfaceConfig(qid, link, role, tech, wl, float(absorption), port=dport, **strings))
    return SdnConfig(
        host=table.get("host", api.host),
        port=port,
        controllers=tuple(controllers),
        location=table.get("location", ""),
        cert=path(table["cert"]) if "cert" in table else api.cert,
        key=path(table["key"]) if "key" in table else api.key,
        ca=path(table["ca"]) if "ca" in table else api.ca,
        interfaces=tuple(ifaces),
    )

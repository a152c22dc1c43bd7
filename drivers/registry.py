"""Which driver fits an instrument, and opening drivers from a node's TOML `[instruments.*]` tables.

A table names its driver and resource; the other keys are that driver's options:

    [instruments.laser]
    driver = "itc4001"
    resource = "USB0::0x1313::0x804A::M00443953::INSTR"
    max_current_a = 0.08
"""

from __future__ import annotations

import importlib
import inspect
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from drivers.errors import DriverError
from drivers.transport.factory import open_transport


@dataclass(frozen=True)
class DriverInfo:
    """One driver: its config name, class, what it drives, and the `*IDN?` replies it fits."""

    name: str
    target: str  # "module:Class"
    role: str
    idn: str  # regex on the *IDN? reply (case-insensitive)
    needs_resource: bool = True

    def load(self) -> type:
        module, _, attr = self.target.partition(":")
        return getattr(importlib.import_module(module), attr)


DRIVERS: tuple[DriverInfo, ...] = (
    DriverInfo("itc4001", "drivers.laser:ThorlabsITC4001", "laser", r"^Thorlabs,ITC400[1-2]"),
    DriverInfo(
        "keysight33500b",
        "drivers.awg.keysight33500b:Keysight33500B",
        "awg",
        r"^(Agilent|Keysight) Technologies,335\d\dB",
    ),
    DriverInfo("m8195a", "drivers.awg.m8195a:KeysightM8195A", "awg", r"^Keysight Technologies,M8195A"),
    DriverInfo("mbx", "drivers.bias:ThorlabsMBX", "bias", r"^THORLABS,MBX"),
    DriverInfo(
        "keysight8157xa",
        "drivers.attenuator:Keysight8157xA",
        "attenuator",
        r"^(Agilent|Keysight) Technologies,(816[34][AB]|8157\dA)",
    ),
    DriverInfo("id1000", "drivers.taggers.idq:IDQTimeController", "tagger", r"^ID Quantique,ID1000"),
    DriverInfo("picoquant", "drivers.taggers.picoquant_live:PicoQuantTagger", "tagger", r"^$", needs_resource=False),
    DriverInfo("swabian", "drivers.taggers.swabian:SwabianTagger", "tagger", r"^$", needs_resource=False),
)
BY_NAME = {d.name: d for d in DRIVERS}
#: options every message-based driver takes besides its own (instrument base and transports)
INSTRUMENT_OPTIONS = frozenset(
    {
        "name",
        "retries",
        "check_errors",
        "timeout_s",
        "read_termination",
        "write_termination",
        "visa_library",
        "baud_rate",
        "encoding",
    }
)


def match_idn(idn: str) -> list[DriverInfo]:
    """The drivers whose `*IDN?` pattern fits this reply."""
    idn = idn.strip()
    return [d for d in DRIVERS if idn and re.match(d.idn, idn, re.IGNORECASE)]


def open_instrument(name: str, table: Mapping[str, Any]) -> Any:
    """Open the driver a config table describes; `ValueError` naming the key and the allowed values."""
    where = f"[instruments.{name}]"
    if not isinstance(table, Mapping):
        raise ValueError(f"{where} must be a table")
    driver = table.get("driver")
    if driver not in BY_NAME:
        raise ValueError(f"{where} driver must be one of {sorted(BY_NAME)}, got {driver!r}")
    info = BY_NAME[driver]
    options = {k: v for k, v in table.items() if k != "driver"}
    cls = info.load()
    params = inspect.signature(cls).parameters
    accepts_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    if info.needs_resource:
        resource = options.pop("resource", None)
        if not isinstance(resource, str) or not resource:
            raise ValueError(f"{where} resource must be a VISA resource string, serial port or URL")
        args: tuple[Any, ...] = (resource,)
    else:
        args = ()
    known = {n for n, p in params.items() if p.kind is not inspect.Parameter.VAR_KEYWORD} - {"resource"}
    if accepts_any:
        known |= INSTRUMENT_OPTIONS
    unknown = sorted(set(options) - known)
    if unknown:
        raise ValueError(f"{where} has unknown keys {unknown}; {driver} takes {sorted(known)}")
    for key, value in options.items():
        if isinstance(value, list):
            options[key] = tuple(value)
        elif (
            isinstance(value, Mapping) and value and all(isinstance(k, str) and k.lstrip("-").isdigit() for k in value)
        ):
            options[key] = {int(k): v for k, v in value.items()}  # TOML keys are strings: channel maps by number
    try:
        return cls(*args, **options)
    except TypeError as exc:
        raise ValueError(f"{where}: {exc}") from exc


def open_instruments(section: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """Open every table of an `[instruments]` section; on failure, close those already open."""
    opened: dict[str, Any] = {}
    try:
        for name, table in section.items():
            opened[name] = open_instrument(name, table)
    except BaseException:
        for inst in opened.values():
            try:
                inst.close()
            except Exception:  # noqa: BLE001, S110 - the original error matters more
                pass
        raise
    return opened


def identify(resource: str, visa_library: str, timeout_s: float, serial: bool = False) -> tuple[str, str]:
    """(*IDN? reply, error) for one resource; exactly one of them is non-empty."""
    options: dict[str, Any] = {"timeout_s": timeout_s}
    if serial:
        options.update(read_termination="\n", write_termination="\r", baud_rate=115200)  # MBX: CR in, NL out
    else:
        options["visa_library"] = visa_library
    transport = open_transport(resource, **options)
    try:
        transport.open()
        transport.write("*IDN?")
        idn = transport.read().strip()
        return (idn, "") if idn else ("", "empty reply to *IDN?")
    except DriverError as exc:
        return "", str(exc)
    finally:
        transport.close()

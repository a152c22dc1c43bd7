"""An emulated bench for a node config's `[instruments]` tables, with the faults a lab meets.

`emulated_bench(section, faults)` starts an emulator (or installs a fake vendor library) for every
table, returns the tables rewritten to reach them, and stops everything on exit. Each emulator
starts in the state the configuration asks for, as if a lab had set the bench up; a fault then
breaks one thing the way the real instrument would show it:

- `interlock-open`: the ITC4001's interlock loop is open;
- `wrong-dac-mode`: the M8195A is in single-channel DAC mode;
- `mbx-error`: the MBX answers `Err: ...` to everything;
- `stream-overflow`: the Swabian tagger's stream overflows (OverflowBegin, missed events);
- `counts-dropped`: the PicoQuant library reports FLAG_CNTS_DROPPED.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator, Mapping
from typing import Any

FAULTS = ("interlock-open", "wrong-dac-mode", "mbx-error", "stream-overflow", "counts-dropped")


def _visa_server(device: Any, table: dict[str, Any]) -> Any:
    """Serve `device` as a VISA TCPIP SOCKET resource and point its `[instruments]` table at it."""
    from hil_fixtures.emulators.server import EmulatorServer

    server = EmulatorServer(device)
    table["resource"] = server.visa_resource
    return server


@contextlib.contextmanager
def emulated_bench(
    section: Mapping[str, Mapping[str, Any]], faults: tuple[str, ...] = ()
) -> Iterator[dict[str, dict[str, Any]]]:
    """The `[instruments]` tables pointed at emulators in the configured state, `faults` applied."""
    from hil_fixtures.emulators.server import EmulatorServer

    bad = sorted(set(faults) - set(FAULTS))
    if bad:
        raise ValueError(f"--fault must be among {list(FAULTS)}, got {bad}")
    stops: list[Any] = []
    tables: dict[str, dict[str, Any]] = {}
    saved_module = sys.modules.get("TimeTagger")
    import drivers.taggers.picoquant_live as pq

    saved_open_library = pq.open_library
    try:
        for name, table in section.items():
            t = dict(table)
            driver = t.get("driver")
            dev: Any
            server: Any
            if driver == "itc4001":
                from hil_fixtures.emulators.itc4001 import ITC4001

                dev = ITC4001()
                dev.limit_a = min(dev.limit_a, float(t.get("max_current_a", 1.0)))  # limit set to the diode
                dev.interlock_closed = "interlock-open" not in faults
                server = _visa_server(dev, t)
            elif driver == "keysight33500b":
                from hil_fixtures.emulators.keysight33500b import Keysight33500B

                server = _visa_server(Keysight33500B(), t)
            elif driver == "m8195a":
                from drivers.awg.m8195a import DAC_MODES
                from hil_fixtures.emulators.m8195a import M8195A

                dev = M8195A()
                mode = str(t.get("dac_mode", "DUAL")).upper()
                dev.dac_mode = "SING" if "wrong-dac-mode" in faults else mode
                memory = "EXT" if t.get("memory", "extended") == "extended" else "INT"
                for ch in DAC_MODES.get(mode, ()):
                    dev.mmode[ch] = memory
                dev.rdiv = int(t.get("sample_rate_divider", 1))
                server = _visa_server(dev, t)
            elif driver == "mbx":
                from hil_fixtures.emulators.mbx import MBX

                dev = MBX()
                if "mbx-error" in faults:
                    dev.error_reply = "Err: Hardware fault"
                server = EmulatorServer(dev)
                t["resource"] = server.serial_url
            elif driver == "keysight8157xa":
                from hil_fixtures.emulators.attenuator import Keysight8157xA

                server = _visa_server(Keysight8157xA(), t)
            elif driver == "id1000":
                from hil_fixtures.emulators.idq import ID1000Emulator

                server = ID1000Emulator()
                server.device.sync = "EXTERNAL" if t.get("clock", "external") == "external" else "INTERNAL"
                t.update(resource=server.resource, dlt=server.dlt_address)
            elif driver == "swabian":
                from hil_fixtures.vendor import swabian

                mod = swabian.install_module()
                if "stream-overflow" in faults:
                    mod.fault_overflow_missed = 1200  # type: ignore[attr-defined]
                continue
            elif driver == "picoquant":
                import cffi

                from hil_fixtures.vendor.picoquant import FLAG_CNTS_DROPPED, FakePicoQuantLib

                def fake_library(family: Any, path: str | None = None, _faults: tuple[str, ...] = faults) -> Any:
                    lib = FakePicoQuantLib(family.prefix)
                    if "counts-dropped" in _faults:
                        lib.sticky_flags = FLAG_CNTS_DROPPED
                    return cffi.FFI(), lib

                pq.open_library = fake_library
                continue
            else:
                tables[name] = t
                continue
            stops.append(server)
            t.pop("timeout_s", None)
            tables[name] = t
        for name, table in section.items():
            tables.setdefault(name, dict(table))
        yield tables
    finally:
        for server in stops:
            server.stop()
        pq.open_library = saved_open_library
        if saved_module is None:
            sys.modules.pop("TimeTagger", None)
        else:
            sys.modules["TimeTagger"] = saved_module

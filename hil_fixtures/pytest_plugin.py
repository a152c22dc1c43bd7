"""pytest plugin: the same driver tests run on emulators (plain `pytest`) or a real bench (`--hil=lab.toml`).

The lab file has one table per instrument, named as the fixtures below, holding the resource
string and driver options, e.g.::

    [itc4001]
    resource = "USB0::0x1313::0x804A::M00443953::INSTR"
    max_current_a = 0.08

A fixture whose table is absent skips its tests on that bench. An optional `[bringup.itc4001]`
table gives the bring-up test the laser's temperature and a current safe for the bench's diode. Tests marked `emulator` (fault
injection, which needs an emulator to misbehave on demand) are skipped with `--hil`; tests marked
`hil` run only with it.
"""

from __future__ import annotations

import importlib
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from hil_fixtures.emulators.server import EmulatorServer


@dataclass(frozen=True)
class BenchInstrument:
    """How a fixture builds its driver and, without a bench, the emulator it talks to."""

    driver: str  # "module:Class"
    emulator: str  # "module:Class" of the device model
    link: str  # "visa" (TCPIP SOCKET) or "serial" (socket:// URL)
    reply_termination: bytes = b"\n"
    options: tuple[tuple[str, Any], ...] = ()


INSTRUMENTS: dict[str, BenchInstrument] = {
    "itc4001": BenchInstrument("drivers.laser:ThorlabsITC4001", "hil_fixtures.emulators.itc4001:ITC4001", "visa"),
    "awg33500b": BenchInstrument(
        "drivers.awg.keysight33500b:Keysight33500B", "hil_fixtures.emulators.keysight33500b:Keysight33500B", "visa"
    ),
    "m8195a": BenchInstrument("drivers.awg.m8195a:KeysightM8195A", "hil_fixtures.emulators.m8195a:M8195A", "visa"),
    "mbx": BenchInstrument("drivers.bias:ThorlabsMBX", "hil_fixtures.emulators.mbx:MBX", "serial"),
    "attenuator": BenchInstrument(
        "drivers.attenuator:Keysight8157xA", "hil_fixtures.emulators.attenuator:Keysight8157xA", "visa"
    ),
}

EMULATOR_TIMEOUT_S = 0.3


def load(target: str) -> Any:
    """The object named "module:attribute"."""
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--hil",
        metavar="LAB_TOML",
        default=None,
        help="run driver tests on the real instruments listed in this TOML file instead of emulators",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "emulator: needs an emulator (fault injection); skipped with --hil")
    path = config.getoption("--hil")
    config.stash[LAB_KEY] = read_lab(Path(path)) if path else None


def read_lab(path: Path) -> dict[str, dict[str, Any]]:
    """The lab file: a table per instrument, each with a `resource` string."""
    with path.open("rb") as f:
        lab = tomllib.load(f)
    for name, table in lab.items():
        if name == "bringup" and isinstance(table, dict):  # [bringup.<fixture>]: bring-up settings for that bench
            continue
        if name == "id1000" and isinstance(table, dict) and isinstance(table.get("resource"), str):
            continue  # the ID1000 fixture: resource, dlt, channels, clock
        if name in ("swabian", "picoquant") and isinstance(table, dict):
            continue  # vendor-library taggers: no resource, only driver options
        if name not in INSTRUMENTS:
            raise pytest.UsageError(f"--hil {path}: unknown instrument table [{name}], allowed {sorted(INSTRUMENTS)}")
        if not isinstance(table, dict) or not isinstance(table.get("resource"), str):
            raise pytest.UsageError(f'--hil {path}: [{name}] needs resource = "<VISA resource or serial port>"')
    return lab


LAB_KEY = pytest.StashKey[dict[str, dict[str, Any]] | None]()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    on_bench = config.stash[LAB_KEY] is not None
    for item in items:
        if on_bench and "emulator" in item.keywords:
            item.add_marker(pytest.mark.skip(reason="fault injection needs an emulator; not run with --hil"))
        if not on_bench and "hil" in item.keywords:
            item.add_marker(pytest.mark.skip(reason="needs real instruments: pytest --hil=lab.toml"))


@pytest.fixture(scope="session")
def lab(pytestconfig: pytest.Config) -> dict[str, dict[str, Any]] | None:
    """The parsed lab file, or None when running on emulators."""
    return pytestconfig.stash[LAB_KEY]


@pytest.fixture
def emulate() -> Iterator[Callable[..., EmulatorServer]]:
    """Start emulator servers for a test: `emulate(device)`; all are stopped at teardown."""
    servers: list[EmulatorServer] = []

    def start(device: Any, reply_termination: bytes = b"\n") -> EmulatorServer:
        server = EmulatorServer(device, reply_termination=reply_termination)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def open_instrument(
    name: str, lab: dict[str, dict[str, Any]] | None, emulate: Callable[..., EmulatorServer]
) -> tuple[Any, EmulatorServer | None]:
    """The driver for bench instrument `name`: on the real device with a lab file, else on its emulator."""
    spec = INSTRUMENTS[name]
    driver = load(spec.driver)
    if lab is not None:
        if name not in lab or name == "bringup":
            pytest.skip(f"no [{name}] table in the lab file")
        options = dict(lab[name])
        return driver(options.pop("resource"), **options), None
    server = emulate(load(spec.emulator)(), reply_termination=spec.reply_termination)
    resource = server.visa_resource if spec.link == "visa" else server.serial_url
    return driver(resource, timeout_s=EMULATOR_TIMEOUT_S, **dict(spec.options)), server


@pytest.fixture
def id1000(lab: dict[str, dict[str, Any]] | None) -> Iterator[Any]:
    """The ID1000 driver: on the bench's Time Controller and DataLinkTargetService with --hil
    (`[id1000]` table: resource, dlt, channels, clock), else on the emulator and its DLT."""
    from drivers.taggers.idq import IDQTimeController

    emulator = None
    if lab is not None:
        if "id1000" not in lab:
            pytest.skip("no [id1000] table in the lab file")
        options = dict(lab["id1000"])
        for key, value in list(options.items()):
            if isinstance(value, list):
                options[key] = tuple(value)
        tc = IDQTimeController(options.pop("resource"), **options)
    else:
        from hil_fixtures.emulators.idq import ID1000Emulator

        emulator = ID1000Emulator()
        tc = IDQTimeController(
            emulator.resource,
            channels=(1, 2),
            dlt=emulator.dlt_address,
            stream_port_base=free_port_base(),
            timeout_s=1.0,
        )
    try:
        yield tc
    finally:
        try:
            tc.shutdown()
        finally:
            tc.close()
            if emulator is not None:
                emulator.stop()


@pytest.fixture
def swabian(lab: dict[str, dict[str, Any]] | None, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The Swabian driver: on the bench's Time Tagger with --hil (`[swabian]` table: channels, serial),
    else on the fake `TimeTagger` module written from the vendor's API reference."""
    from drivers.taggers.swabian import SwabianTagger

    options: dict[str, Any] = {"channels": (1, 2)}
    if lab is not None:
        if "swabian" not in lab:
            pytest.skip("no [swabian] table in the lab file")
        options = {k: tuple(v) if isinstance(v, list) else v for k, v in lab["swabian"].items()}
    else:
        from hil_fixtures.vendor import swabian as fake

        monkeypatch.setitem(__import__("sys").modules, "TimeTagger", fake.make_module())
    tagger = SwabianTagger(**options)
    try:
        yield tagger
    finally:
        tagger.close()


@pytest.fixture
def picoquant(lab: dict[str, dict[str, Any]] | None) -> Iterator[Any]:
    """The PicoQuant driver: on the bench's MultiHarp/HydraHarp with --hil (`[picoquant]` table: family,
    device_index, library_path, trigger options), else on the fake MHLib written from `mhlib.h`."""
    from drivers.taggers.picoquant_live import PicoQuantTagger

    if lab is not None:
        if "picoquant" not in lab:
            pytest.skip("no [picoquant] table in the lab file")
        tagger = PicoQuantTagger(**lab["picoquant"])
    else:
        from hil_fixtures.vendor.picoquant import FakePicoQuantLib

        tagger = PicoQuantTagger("multiharp", library=FakePicoQuantLib("MH_"), poll_interval_s=0)
    try:
        yield tagger
    finally:
        tagger.close()


def free_port_base(n: int = 5) -> int:
    """A port p with p..p+n-1 free on 127.0.0.1 (the DLT's stream ports are base + channel)."""
    import socket

    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            base = probe.getsockname()[1]
        if base + n > 65000:
            continue
        try:
            socks = [socket.create_server(("127.0.0.1", base + i)) for i in range(n)]
        except OSError:
            continue
        for s in socks:
            s.close()
        return base
    raise RuntimeError("no free consecutive ports on 127.0.0.1")


def instrument_fixture(name: str) -> Callable[..., Iterator[Any]]:
    """A fixture yielding the driver for `name`, shut down and closed in `finally`."""

    @pytest.fixture(name=name)
    def fixture(lab: dict[str, dict[str, Any]] | None, emulate: Callable[..., EmulatorServer]) -> Iterator[Any]:
        instrument, _ = open_instrument(name, lab, emulate)
        try:
            yield instrument
        finally:
            try:
                instrument.shutdown()
            finally:
                instrument.close()

    fixture.__doc__ = f"The {name} driver, on the bench instrument with --hil, else on its emulator."
    return fixture


itc4001 = instrument_fixture("itc4001")
awg33500b = instrument_fixture("awg33500b")
m8195a = instrument_fixture("m8195a")
mbx = instrument_fixture("mbx")
attenuator = instrument_fixture("attenuator")

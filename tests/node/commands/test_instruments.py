"""`qkdnode instruments`: lists VISA resources, asks *IDN?, names the driver that fits."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hil_fixtures.emulators.itc4001 import ITC4001
from hil_fixtures.emulators.mbx import MBX
from hil_fixtures.emulators.server import EmulatorServer
from hil_fixtures.sims import sim_library
from node.cli import main


def test_lists_sim_resource_with_its_driver(capsys):
    assert main(["instruments", "--visa-library", sim_library("keysight8157xa"), "--timeout", "0.5"]) == 0
    out = capsys.readouterr().out
    assert "GPIB0::20::INSTR" in out and "8163B" in out and "driver: keysight8157xa" in out


def test_probes_given_socket_resources_and_reports_json(capsys):
    with EmulatorServer(ITC4001()) as server:
        code = main(
            [
                "instruments",
                "--visa-library",
                sim_library("itc4001"),
                "--resource",
                server.visa_resource,
                "--json",
                "--timeout",
                "0.5",
            ]
        )
    assert code == 0
    rows = {r["resource"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows[server.visa_resource]["drivers"] == ["itc4001"]
    assert rows["USB0::0x1313::0x804A::M00000000::0::INSTR"]["drivers"] == ["itc4001"]


def test_silent_resource_is_reported_not_fatal(capsys):
    with EmulatorServer(ITC4001()) as server:
        server.faults.mute_replies = 10
        assert (
            main(
                [
                    "instruments",
                    "--visa-library",
                    sim_library("itc4001"),
                    "--resource",
                    server.visa_resource,
                    "--timeout",
                    "0.2",
                ]
            )
            == 0
        )
    assert "no reply" in capsys.readouterr().out


def test_serial_url_resource_is_probed_as_the_mbx_speaks(capsys):
    with EmulatorServer(MBX()) as server:  # commands end in CR, replies in NL (MX/MBX user guide)
        assert (
            main(
                [
                    "instruments",
                    "--visa-library",
                    sim_library("itc4001"),
                    "--resource",
                    server.serial_url,
                    "--json",
                    "--timeout",
                    "0.5",
                ]
            )
            == 0
        )
    rows = {r["resource"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows[server.serial_url]["idn"].startswith("THORLABS,MBX") and rows[server.serial_url]["drivers"] == ["mbx"]


def test_bad_timeout_is_an_argument_error(capsys):
    assert main(["instruments", "--timeout", "0", "--visa-library", sim_library("itc4001")]) == 2
    assert "--timeout must be > 0" in capsys.readouterr().err


# -- `--check CONFIG`: the readiness table, on emulators in the configured state, with injected faults ---

EXAMPLES = Path(__file__).resolve().parents[3] / "node" / "runtime" / "examples"


@pytest.mark.parametrize("config", ["lab_alice.toml", "lab_bob.toml", "lab_bench.toml"])
def test_check_on_the_example_configs_is_all_green(capsys, config):
    assert main(["instruments", "--check", str(EXAMPLES / config), "--emulate"]) == 0
    out = capsys.readouterr().out
    assert "FAIL" not in out and "0 red: the bench is ready" in out


@pytest.mark.parametrize(
    "fault,instrument,cause",
    [
        ("interlock-open", "laser", "trip: interlock open"),
        ("wrong-dac-mode", "awg_fast", "DAC mode SING (want DUAL)"),
        ("mbx-error", "bias", "answered Err: Hardware fault"),
        ("stream-overflow", "swabian", "stream overflow"),
        ("counts-dropped", "multiharp", "counts dropped (FLAG_CNTS_DROPPED)"),
    ],
)
def test_check_names_each_injected_fault_on_one_red_line(capsys, fault, instrument, cause):
    assert main(["instruments", "--check", str(EXAMPLES / "lab_bench.toml"), "--emulate", "--fault", fault]) == 1
    red = [line for line in capsys.readouterr().out.splitlines() if line.startswith("FAIL")]
    assert len(red) == 1 and instrument in red[0] and cause in red[0]


def test_check_turns_nothing_on(capsys):
    """The self-test only asks: every instrument's commands on the wire are queries."""
    import tomllib

    from hil_fixtures.bench import emulated_bench
    from node.commands.instruments import check_rows

    section = tomllib.loads((EXAMPLES / "lab_alice.toml").read_text())["instruments"]
    from hil_fixtures.emulators import server as server_module

    seen: list[str] = []
    original = server_module.EmulatorServer._command

    def spy(self, conn, line):
        seen.append(line)
        return original(self, conn, line)

    server_module.EmulatorServer._command = spy
    try:
        with emulated_bench(section) as tables:
            rows = check_rows(tables)
    finally:
        server_module.EmulatorServer._command = original
    assert rows and all(r.ok for r in rows)
    session_setup = {"UNIT:TEMP CEL"}  # the ITC4001 session selects °C on connect: a unit, nothing switched
    assert seen and all(line.split(" ")[0].endswith("?") or line in session_setup for line in seen), [
        s for s in seen if "?" not in s
    ]


def test_check_of_an_unknown_fault_or_missing_file_is_a_one_line_error(capsys, tmp_path):
    assert main(["instruments", "--check", str(EXAMPLES / "lab_bench.toml"), "--emulate", "--fault", "gremlins"]) == 2
    assert "--fault must be among" in capsys.readouterr().err
    assert main(["instruments", "--check", str(tmp_path / "nope.toml")]) == 2
    assert "cannot read the config" in capsys.readouterr().err

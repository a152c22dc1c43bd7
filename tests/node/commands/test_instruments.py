"""`qkdnode instruments`: lists VISA resources, asks *IDN?, names the driver that fits."""

from __future__ import annotations

import json


from hil_fixtures.emulators.mbx import MBX
from hil_fixtures.emulators.server import EmulatorServer
from hil_fixtures.emulators.itc4001 import ITC4001
from hil_fixtures.sims import sim_library
from node.cli import main


def test_lists_sim_resource_with_its_driver(capsys):
    assert main(["instruments", "--visa-library", sim_library("keysight8157xa"), "--timeout", "0.5"]) == 0
    out = capsys.readouterr().out
    assert "GPIB0::20::INSTR" in out and "8163B" in out and "driver: keysight8157xa" in out


def test_probes_given_socket_resources_and_reports_json(capsys):
    with EmulatorServer(ITC4001()) as server:
        code = main(["instruments", "--visa-library", sim_library("itc4001"), "--resource", server.visa_resource,
                     "--json", "--timeout", "0.5"])
    assert code == 0
    rows = {r["resource"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows[server.visa_resource]["drivers"] == ["itc4001"]
    assert rows["USB0::0x1313::0x804A::M00000000::0::INSTR"]["drivers"] == ["itc4001"]


def test_silent_resource_is_reported_not_fatal(capsys):
    with EmulatorServer(ITC4001()) as server:
        server.faults.mute_replies = 10
        assert main(["instruments", "--visa-library", sim_library("itc4001"), "--resource", server.visa_resource,
                     "--timeout", "0.2"]) == 0
    assert "no reply" in capsys.readouterr().out


def test_serial_url_resource_is_probed_with_cr_termination(capsys):
    with EmulatorServer(MBX(), reply_termination=b"\r") as server:
        assert main(["instruments", "--visa-library", sim_library("itc4001"), "--resource", server.serial_url,
                     "--json", "--timeout", "0.5"]) == 0
    rows = {r["resource"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows[server.serial_url]["idn"].startswith("THORLABS,MBX") and rows[server.serial_url]["drivers"] == ["mbx"]


def test_bad_timeout_is_an_argument_error(capsys):
    assert main(["instruments", "--timeout", "0", "--visa-library", sim_library("itc4001")]) == 2
    assert "--timeout must be > 0" in capsys.readouterr().err

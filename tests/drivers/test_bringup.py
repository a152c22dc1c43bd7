"""Bring-up and shutdown per link role: ordered, read back, safe and alarmed on the first failure.

`test_alice_bring_up_on_emulator_or_bench` runs on the emulators in CI and on the real laser,
bias controller and attenuator with `pytest tests/drivers/test_bringup.py --hil=lab.toml` (the lab
file's `[bringup.itc4001]` table sets the laser's temperature and a current safe for its diode).
"""

from __future__ import annotations

import pytest

from drivers.attenuator import Keysight8157xA
from drivers.bias import BiasMode, ThorlabsMBX
from drivers.bringup import BringUpFailed, bring_up, shut_down
from drivers.laser import ThorlabsITC4001
from hil_fixtures.emulators.attenuator import Keysight8157xA as EmulatedAttenuator
from hil_fixtures.emulators.itc4001 import ITC4001
from hil_fixtures.emulators.mbx import MBX

SETTINGS = {
    "laser": {
        "temperature_c": 24.0,
        "current_a": 0.02,
        "limit_a": 0.03,
        "settle_tolerance_c": 0.2,
        "settle_timeout_s": 10.0,
    },
    "bias": {"mode": "AUTO_NULL"},
    "attenuator": {"wavelength_nm": 1550.12, "attenuation_db": 30.0},
}


def test_alice_bring_up_on_emulator_or_bench(itc4001, mbx, attenuator, lab):
    settings = dict(SETTINGS)
    if lab is not None and "bringup" in lab:
        settings["laser"] = {**settings["laser"], **lab["bringup"].get("itc4001", {})}
    instruments = {"laser": itc4001, "bias": mbx, "attenuator": attenuator}
    alarms: list[tuple[str, str]] = []
    done = bring_up("alice", instruments, settings, alarm=lambda s, t: alarms.append((s, t)))
    assert [name for name, _, _ in done.steps] == ["laser", "bias", "attenuator"] and not alarms
    assert itc4001.output_enabled and itc4001.tec_enabled
    assert mbx.bias_mode is BiasMode.AUTO_NULL and attenuator.shutter_open
    assert shut_down(instruments) == []
    assert not itc4001.output_enabled and not attenuator.shutter_open and mbx.bias_mode is BiasMode.OFF


@pytest.fixture
def bench(emulate):
    devices = {"laser": ITC4001(), "bias": MBX(), "attenuator": EmulatedAttenuator()}
    servers = {k: emulate(d) for k, d in devices.items()}
    instruments = {
        "laser": ThorlabsITC4001(servers["laser"].visa_resource, timeout_s=1.0, max_current_a=0.05),
        "bias": ThorlabsMBX(servers["bias"].serial_url, timeout_s=1.0, retries=0),
        "attenuator": Keysight8157xA(servers["attenuator"].visa_resource, timeout_s=1.0),
    }
    yield devices, instruments
    for inst in instruments.values():
        inst.close()


@pytest.mark.emulator
def test_open_interlock_stops_the_bring_up_at_the_laser_with_everything_safe(bench):
    devices, instruments = bench
    devices["laser"].interlock_closed = False
    alarms: list[tuple[str, str]] = []
    with pytest.raises(BringUpFailed, match=r"stopped at laser \(laser\).*interlock open"):
        bring_up("alice", instruments, SETTINGS, alarm=lambda s, t: alarms.append((s, t)))
    assert alarms and alarms[0][0] == "critical" and "interlock open" in alarms[0][1]
    assert not devices["laser"].ld_on and devices["bias"].mode == 0 and not devices["attenuator"].shutter[1]


@pytest.mark.emulator
def test_bias_error_after_the_laser_is_on_switches_the_laser_off_first(bench):
    devices, instruments = bench
    devices["bias"].refuse_next = 1
    with pytest.raises(BringUpFailed, match=r"stopped at bias \(bias\).*Err: Hardware fault"):
        bring_up("alice", instruments, SETTINGS)
    assert not devices["laser"].ld_on and devices["laser"].tec_on  # LD off, the TEC keeps regulating


@pytest.mark.emulator
def test_setpoint_above_the_diode_maximum_never_reaches_the_laser(bench):
    devices, instruments = bench
    bad = {**SETTINGS, "laser": {**SETTINGS["laser"], "current_a": 0.06, "limit_a": 0.06}}
    with pytest.raises(ValueError, match=r"limit_a must be within \[0, 0.05\] A"):
        bring_up("alice", instruments, bad)
    assert not devices["laser"].ld_on and not devices["laser"].tec_on


@pytest.mark.parametrize(
    "settings,match",
    [
        ({"laser": {"temperature_c": 25.0, "current_a": 0.01, "limit_a": 0.02, "colour": "red"}}, "unknown keys"),
        ({"laser": {"temperature_c": 25.0}}, r"needs \['current_a', 'limit_a'\]"),
        ({"bias": {"mode": "SIDEWAYS"}}, "mode' must be one of"),
        ({"nothing": {}}, "name no instrument"),
    ],
)
def test_bad_bring_up_settings_name_the_key(bench, settings, match):
    _, instruments = bench
    with pytest.raises(ValueError, match=match):
        bring_up("alice", instruments, settings)

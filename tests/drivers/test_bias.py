"""Thorlabs MBX bias controller: exact serial protocol, emulator over socket://, faults, shutdown."""

from __future__ import annotations

import pytest

from drivers.bias import BiasMode, ThorlabsMBX
from drivers.errors import InstrumentError, InstrumentTimeout
from drivers.transport import ScriptedTransport, expected_protocol
from hil_fixtures.emulators.mbx import MBX


def test_mbx_protocol_for_every_property_and_shutdown():
    pairs = [
        ("MZM:MODE: 2", "1"),
        ("MZM:MODE?", "2"),
        ("MZM:HOLD:VOLTAGE: 1250", "1"),
        ("MZM:HOLD:VOLTAGE?", "1250"),
        ("MZM:HOLD:VOLTAGE?", "1250"),
        ("MZM:HOLD:RATIO: 5050", "1"),
        ("MZM:HOLD:RATIO?", "5050"),
        ("VOA:POWER: 1", "1"),
        ("VOA:POWER?", "1"),
        ("VOA:ATTEN: 3.5", "1"),
        ("VOA:ATTEN?", "3.5"),
        ("MZM:VOLTAGE?", "-1.750"),
        ("MZM:TAP:MW?", "0.250"),
        ("MZM:SETPOINT?", "1"),
        ("VOA:MEASURED?", "3.49"),
        ("MZM:MODE?", "2"),
        ("MZM:MODE: 0", "1"),
        ("MZM:MODE?", "0"),
    ]
    with expected_protocol(ThorlabsMBX, pairs) as mbx:
        mbx.bias_mode = BiasMode.AUTO_NULL
        mbx.hold_voltage = 1.25
        assert mbx.hold_voltage == 1.25
        mbx.power_ratio = 50.5
        mbx.voa_enabled = True
        mbx.voa_attenuation_setpoint = 3.5
        assert mbx.bias_voltage == -1.75
        assert mbx.tap_power_mw == 0.25
        assert mbx.locked is True
        assert mbx.voa_attenuation == 3.49
        assert mbx.bias_mode is BiasMode.AUTO_NULL
        mbx.shutdown()


def test_mbx_setting_that_does_not_hold_raises():
    pairs = [("MZM:MODE: 2", "1"), ("MZM:MODE?", "0")] * 3
    with expected_protocol(ThorlabsMBX, pairs) as mbx:
        with pytest.raises(InstrumentError, match=r"'MZM:MODE: 2' did not take effect"):
            mbx.bias_mode = BiasMode.AUTO_NULL


@pytest.mark.parametrize(
    "attr,value,match",
    [
        ("hold_voltage", 12.0, r"hold_voltage must be within \[-10, 10\] V"),
        ("power_ratio", 1.0, r"power_ratio must be within \[2.5, 100\] %"),
        ("voa_attenuation_setpoint", 25.0, r"\[1, 20\] dB"),
        ("bias_mode", 2, "must be a BiasMode"),
        ("voa_enabled", 1, "must be True or False"),
    ],
)
def test_mbx_out_of_range_raises_before_any_byte(attr, value, match):
    transport = ScriptedTransport([])
    mbx = ThorlabsMBX(transport)
    with pytest.raises(ValueError, match=match):
        setattr(mbx, attr, value)
    transport.assert_all_used()


@pytest.mark.emulator
def test_mbx_lost_setting_is_resent_after_a_dropped_connection(emulate):
    server = emulate(MBX(), reply_termination=b"\n")
    with ThorlabsMBX(server.serial_url, timeout_s=0.3) as mbx:
        server.faults.drop_connections = 1  # drops "MZM:MODE: 7" before the device applies it
        mbx.bias_mode = BiasMode.MANUAL
        assert server.device.mode == 7 and server.stats.dropped == 1
    assert server.device.mode == 0  # shutdown on leaving the block


@pytest.mark.emulator
def test_mbx_timeout_names_instrument_and_command(emulate):
    server = emulate(MBX(), reply_termination=b"\n")
    mbx = ThorlabsMBX(server.serial_url, timeout_s=0.2, retries=1)
    server.faults.mute_replies = 100
    with pytest.raises(InstrumentTimeout, match=r"ThorlabsMBX\(socket://127.0.0.1:\d+\).*'MZM:VOLTAGE\?' after 2"):
        _ = mbx.bias_voltage
    mbx.close()


def test_mbx_on_emulator_or_bench(mbx):
    mbx.bias_mode = BiasMode.MANUAL
    mbx.hold_voltage = -2.0
    assert mbx.hold_voltage == pytest.approx(-2.0)
    assert mbx.bias_voltage == pytest.approx(-2.0, abs=0.05)
    mbx.shutdown()
    assert mbx.bias_mode is BiasMode.OFF

"""Thorlabs ITC4001: exact command/reply protocol, and the same checks on the emulator or a real bench."""

from __future__ import annotations

import pytest

from drivers.errors import InstrumentError
from drivers.laser import ThorlabsITC4001
from drivers.transport import ScriptedTransport, expected_protocol

NO_ERROR = ("SYST:ERR?", '+0,"No error"')
INIT = [NO_ERROR, ("UNIT:TEMP CEL", None), NO_ERROR]


def test_itc4001_protocol_for_every_property_and_shutdown():
    pairs = [
        *INIT,
        ("*IDN?", "Thorlabs,ITC4001,M00443953,1.8.0"),
        ("SOUR:CURR?", "+0.000000E+00"),  # a limit is never set below the setpoint
        ("SOUR:CURR:LIM 0.12", None),
        NO_ERROR,
        ("SOUR:CURR:LIM?", "+1.200000E-01"),
        ("SOUR:CURR:LIM?", "+1.200000E-01"),  # nor a setpoint above the limit
        ("SOUR:CURR 0.065", None),
        NO_ERROR,
        ("SOUR:CURR?", "+6.500000E-02"),
        ("SOUR2:TEMP 22.5", None),
        NO_ERROR,
        ("SOUR2:TEMP?", "+2.250000E+01"),
        ("OUTP2:STAT ON", None),
        NO_ERROR,
        ("OUTP2:STAT?", "1"),
        ("OUTP:STAT ON", None),
        NO_ERROR,
        ("OUTP:STAT?", "1"),  # switching on is read back
        ("OUTP:STAT?", "1"),
        ("MEAS:CURR?", "+6.499000E-02"),
        ("MEAS:TEMP?", "+2.251000E+01"),
        ("MEAS:VOLT?", "+1.330000E+00"),
        ("OUTP:STAT OFF", None),
        NO_ERROR,
        ("OUTP:STAT?", "0"),
    ]
    with expected_protocol(ThorlabsITC4001, pairs) as laser:
        assert laser.idn().startswith("Thorlabs,ITC4001")
        laser.current_limit = 0.12
        assert laser.current_limit == pytest.approx(0.12)
        laser.current_setpoint = 0.065
        assert laser.current_setpoint == pytest.approx(0.065)
        laser.temperature_setpoint = 22.5
        assert laser.temperature_setpoint == pytest.approx(22.5)
        laser.tec_enabled = True
        assert laser.tec_enabled is True
        laser.output_enabled = True
        assert laser.output_enabled is True
        assert laser.current == pytest.approx(0.06499)
        assert laser.temperature == pytest.approx(22.51)
        assert laser.voltage == pytest.approx(1.33)
        laser.shutdown()


def test_itc4001_shutdown_raises_when_the_output_will_not_switch_off():
    stuck = [("OUTP:STAT OFF", None), NO_ERROR, ("OUTP:STAT?", "1")] * 3
    with expected_protocol(ThorlabsITC4001, [*INIT, *stuck]) as laser:
        with pytest.raises(InstrumentError, match="laser output still on"):
            laser.shutdown()


def test_itc4001_context_manager_shuts_down_on_exception():
    transport = ScriptedTransport(
        [
            *INIT,
            ("OUTP:STAT ON", None),
            NO_ERROR,
            ("OUTP:STAT?", "1"),
            ("OUTP:STAT OFF", None),
            NO_ERROR,
            ("OUTP:STAT?", "0"),
        ]
    )
    with pytest.raises(ZeroDivisionError):
        with ThorlabsITC4001(transport) as laser:
            laser.output_enabled = True
            raise ZeroDivisionError
    transport.assert_all_used()
    assert not transport.is_open


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_current_a": 1.5},
        {"max_current_a": 0.0},
        {"temperature_range_c": (30.0, 20.0)},
        {"temperature_range_c": (-60.0, 20.0)},
    ],
)
def test_itc4001_rejects_bad_ranges_at_construction(kwargs):
    with pytest.raises(ValueError, match=r"max_current_a|temperature_range_c"):
        ThorlabsITC4001(ScriptedTransport([]), **kwargs)


# -- the same driver on the emulator (plain pytest) or on the bench (pytest --hil=lab.toml) ----------


def test_itc4001_settings_round_trip(itc4001):
    itc4001.current_limit = 0.05
    itc4001.current_setpoint = 0.02
    itc4001.temperature_setpoint = 24.0
    assert itc4001.current_limit == pytest.approx(0.05, abs=1e-4)
    assert itc4001.current_setpoint == pytest.approx(0.02, abs=1e-4)
    assert itc4001.temperature_setpoint == pytest.approx(24.0, abs=0.01)


def test_itc4001_output_follows_and_shutdown_leaves_it_off(itc4001):
    itc4001.current_limit = 0.05
    itc4001.current_setpoint = 0.01
    itc4001.tec_enabled = True
    itc4001.output_enabled = True
    assert itc4001.output_enabled is True
    assert itc4001.current == pytest.approx(0.01, abs=1e-3)
    itc4001.shutdown()
    assert itc4001.output_enabled is False
    assert itc4001.current == pytest.approx(0.0, abs=1e-3)

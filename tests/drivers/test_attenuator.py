"""Keysight 8157xA attenuator: exact protocol, emulator, validation, shutter-closed shutdown."""

from __future__ import annotations

import pytest

from drivers.attenuator import Keysight8157xA
from drivers.errors import InstrumentTimeout
from drivers.instrument import ScpiError
from drivers.transport import ScriptedTransport, expected_protocol
from hil_fixtures.emulators.attenuator import Keysight8157xA as Emulated8157xA

NO_ERROR = ("SYST:ERR?", '+0,"No error"')


def test_8157xa_protocol_for_every_property_and_shutdown():
    pairs = [
        NO_ERROR,
        (":INP2:WAV 1.550123e-06", None),
        NO_ERROR,
        (":INP2:WAV?", "+1.55012300E-006"),
        (":INP2:OFFS 1.250", None),
        NO_ERROR,
        (":INP2:OFFS?", "+1.25000000E+000"),
        (":INP2:ATT 30.000", None),
        NO_ERROR,
        ("*OPC?", "1"),
        (":INP2:ATT?", "+3.00000000E+001"),
        (":OUTP2:STAT ON", None),
        NO_ERROR,
        (":OUTP2:STAT OFF", None),
        NO_ERROR,
        (":OUTP2:STAT?", "0"),
    ]
    with expected_protocol(Keysight8157xA, pairs, slot=2) as att:
        att.wavelength = 1550.123e-9  # picometres kept, not rounded to 0.1 nm
        assert att.wavelength == pytest.approx(1550.123e-9)
        att.offset = 1.25
        att.set_attenuation(30.0)
        assert att.attenuation == 30.0
        att.shutter_open = True
        att.shutdown()


@pytest.mark.parametrize(
    "attr,value,match",
    [
        ("attenuation", 70.0, r"attenuation must be within \[0.5, 60.5\] dB"),
        ("wavelength", 1550.0, r"wavelength must be within \[1.2e-06, 1.7e-06\] m"),
        ("shutter_open", "ON", r"shutter_open must be one of \[True, False\]"),
    ],
)
def test_8157xa_out_of_range_raises_before_any_byte(attr, value, match):
    pairs = [NO_ERROR] + ([(":INP1:OFFS?", "+5.0E-001")] if attr == "attenuation" else [])
    transport = ScriptedTransport(pairs)
    att = Keysight8157xA(transport)
    with pytest.raises(ValueError, match=match):
        setattr(att, attr, value)
    transport.assert_all_used()


@pytest.mark.emulator
def test_8157xa_missing_slot_surfaces_the_header_suffix_error(emulate):
    server = emulate(Emulated8157xA())
    att = Keysight8157xA(server.visa_resource, slot=5, timeout_s=0.3)
    with pytest.raises((ScpiError, InstrumentTimeout), match=r"-114 'Header suffix out of range'"):
        att.attenuation = 10.0
    with pytest.raises(ScpiError):
        att.shutdown()  # the slot is empty: shutdown cannot succeed, and says so
    att.close()


def test_8157xa_on_emulator_or_bench(attenuator):
    attenuator.wavelength = 1550e-9
    attenuator.set_attenuation(12.5)
    assert attenuator.attenuation == pytest.approx(12.5, abs=0.01)
    attenuator.shutter_open = True
    assert attenuator.shutter_open is True
    attenuator.shutdown()
    assert attenuator.shutter_open is False

"""Keysight 33500B and M8195A drivers and the AWG transmitter: exact protocols, emulators, decoy-BB84 patterns."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from drivers.awg import AWGTransmitter, Keysight33500B, KeysightM8195A, ModulatorLevels
from drivers.awg.transmitter import decode_waveforms, random_pattern
from drivers.instrument import ScpiError
from drivers.transmitter import SlotStates, StateReuseError, Transmitter
from drivers.transport import ScriptedTransport, expected_protocol
from hil_fixtures.emulators.keysight33500b import Keysight33500B as Emulated33500B
from hil_fixtures.emulators.m8195a import M8195A as EmulatedM8195A  # noqa: N811 - the emulator, not the driver

NO_ERROR = ("SYST:ERR?", '+0,"No error"')
LEVELS = ModulatorLevels(intensity=(1.0, 0.5, 0.25), phase=(-0.75, -0.25, 0.25, 0.75))
MU = (0.5, 0.1, 0.02)


def w(command: str) -> list[tuple[str, str | None]]:
    return [(command, None), NO_ERROR]


def block_message(header: str, codes: list[int]) -> str:
    """The binary-block message as the scripted transport sees it: bytes read as latin-1."""
    payload = np.asarray(codes, dtype="<i2").tobytes()
    n = str(len(payload))
    return header + f"#{len(n)}{n}" + payload.decode("latin-1")


def test_33500b_protocol_upload_run_stop():
    samples = np.array([0.0, 1.0, -1.0, 0.5, 0.0, 0.0, 0.0, 0.25])
    pairs = [
        NO_ERROR,
        *w("SOUR1:FUNC:ARB:SRAT 100000000"),
        *w("SOUR2:FUNC:ARB:SRAT 100000000"),
        *w("OUTP1 OFF"),
        *w("OUTP1:LOAD 50"),
        *w("FORM:BORD SWAP"),
        *w("SOUR1:DATA:VOL:CLE"),
        *w(block_message("SOUR1:DATA:ARB:DAC QKDPAT,", [0, 32767, -32767, 16384, 0, 0, 0, 8192])),
        *w("SOUR1:FUNC:ARB QKDPAT"),
        *w("SOUR1:FUNC ARB"),
        *w("SOUR1:FUNC:ARB:FILT STEP"),
        *w("SOUR1:VOLT 2"),
        *w("SOUR1:VOLT:OFFS 0"),
        *w("FUNC:ARB:SYNC"),
        *w("OUTP1 ON"),
        *w("OUTP2 ON"),
        ("OUTP1?", "1"),
        *w("OUTP1 OFF"),
        *w("OUTP2 OFF"),
    ]
    with expected_protocol(Keysight33500B, pairs) as awg:
        awg.set_sample_rate(100e6)
        assert awg.sample_rate_hz == 100e6
        awg.upload(1, samples, 2.0)
        awg.run()
        assert awg.output_enabled(1) is True
        awg.shutdown()


def test_m8195a_protocol_upload_run_stop():
    samples = np.zeros(1280)
    samples[::8] = 1.0
    dac = ",".join("127" if i % 8 == 0 else "0" for i in range(1280))
    pairs = [
        NO_ERROR,
        *w(":FREQ:RAST 64000000000"),
        *w(":ABOR"),
        *w(":INST:DACM DUAL"),
        *w(":TRAC1:MMOD EXT"),
        *w(":TRAC4:MMOD EXT"),
        *w(":INST:MEM:EXT:RDIV DIV1"),
        (":INST:DACM?", "DUAL"),
        (":TRAC1:MMOD?", "EXT"),
        (":TRAC4:MMOD?", "EXT"),
        (":INST:MEM:EXT:RDIV?", "DIV1"),
        *w(":OUTP1 OFF"),
        *w(":ABOR"),
        *w(":FUNC:MODE ARB"),
        *w(":TRAC1:DEL:ALL"),
        *w(":TRAC1:DEF 1,1280"),
        *w(f":TRAC1:DATA 1,0,{dac}"),
        *w(":TRAC1:SEL 1"),
        *w(":VOLT1 0.5"),
        *w(":OUTP4 OFF"),
        *w(":ABOR"),
        *w(":FUNC:MODE ARB"),  # extended memory: segment 1 already defined on all
        *w(f":TRAC4:DATA 1,0,{dac}"),
        *w(":TRAC4:SEL 1"),
        *w(":VOLT4 0.5"),
        *w(":OUTP1 ON"),
        *w(":OUTP4 ON"),
        *w(":INIT:IMM"),
        (":VOLT1?", "+5.000000E-01"),
        *w(":ABOR"),
        *w(":OUTP1 OFF"),
        *w(":OUTP4 OFF"),
    ]
    with expected_protocol(KeysightM8195A, pairs, dac_mode="DUAL") as awg:
        awg.set_sample_rate(64e9)
        assert awg.channels == (1, 4)
        awg.upload(1, samples, 0.5)
        awg.upload(4, samples, 0.5)
        awg.run()
        assert awg.amplitude_vpp(1) == 0.5
        awg.shutdown()


@pytest.mark.parametrize(
    "driver,kwargs,match",
    [
        (
            Keysight33500B,
            {"channel": 3, "samples": np.zeros(8), "amplitude_vpp": 1.0},
            r"channel must be one of \[1, 2\]",
        ),
        (
            Keysight33500B,
            {"channel": 1, "samples": np.zeros(4), "amplitude_vpp": 1.0},
            r"length must be within \[8, 1.04858e\+06\]",
        ),
        (Keysight33500B, {"channel": 1, "samples": np.full(8, 1.5), "amplitude_vpp": 1.0}, r"within \[-1, 1\]"),
        (
            Keysight33500B,
            {"channel": 1, "samples": np.zeros(8), "amplitude_vpp": 20.0},
            r"amplitude_vpp must be within \[0.001, 10\] Vpp",
        ),
        (KeysightM8195A, {"channel": 1, "samples": np.zeros(1300), "amplitude_vpp": 0.5}, r"multiple of 256"),
        (KeysightM8195A, {"channel": 1, "samples": np.zeros(1280), "amplitude_vpp": 1.5}, r"\[0.075, 1\] Vpp"),
    ],
)
def test_awg_upload_validates_before_any_byte(driver, kwargs, match):
    transport = ScriptedTransport([NO_ERROR])
    awg = driver(transport)
    with pytest.raises(ValueError, match=match):
        awg.upload(**kwargs)
    transport.assert_all_used()


def test_awg_sample_rate_out_of_range_is_refused_before_any_byte():
    transport = ScriptedTransport([NO_ERROR, NO_ERROR])
    with pytest.raises(ValueError, match=r"sample_rate_hz must be within \[1e-06, 2.5e\+08\] Sa/s"):
        Keysight33500B(transport).set_sample_rate(1e9)
    with pytest.raises(ValueError, match=r"sample_rate must be within \[5.376e\+10, 6.5e\+10\]"):
        KeysightM8195A(transport).set_sample_rate(10e9)
    transport.assert_all_used()


def make_transmitter(awg, **kwargs: Any) -> AWGTransmitter:
    options: dict[str, Any] = dict(
        intensities=MU,
        levels=LEVELS,
        samples_per_slot=8,
        pulse_samples=2,
        pattern_slots=160,
        p_z=0.8,
        p_intensity=(0.6, 0.3, 0.1),
        stream=False,
    )
    options.update(kwargs)
    return AWGTransmitter(awg, **options)


@pytest.mark.parametrize(
    "device,driver,rate", [(Emulated33500B, Keysight33500B, 200e6), (EmulatedM8195A, KeysightM8195A, 64e9)]
)
def test_transmitter_uploads_pattern_that_decodes_to_its_states(emulate, device, driver, rate):
    server = emulate(device())
    with driver(server.visa_resource, timeout_s=0.5) as awg:
        awg.set_sample_rate(rate)
        tx = make_transmitter(awg)
        assert isinstance(tx, Transmitter)
        tx.start()
        dev = server.device
        ich, pch = tx.intensity_channel, tx.phase_channel
        assert dev.output[ich] and dev.output[pch]
        basis, bit, cls = decode_waveforms(dev.waveform(ich), dev.waveform(pch), LEVELS, 8)
        want = tx.states(np.arange(tx.pattern_slots, dtype=np.int64))
        assert np.array_equal(basis, want.basis) and np.array_equal(bit, want.bit)
        assert np.array_equal(cls, want.intensity)
        assert tx.repetition_rate_hz == rate / 8
        tx.shutdown()
        assert not any(dev.output.values())


def test_awg_refused_waveform_surfaces_the_instrument_error(emulate):
    server = emulate(EmulatedM8195A())
    with KeysightM8195A(server.visa_resource, timeout_s=0.5, max_samples=2048) as awg:
        server.device.running = True  # the device refuses segment changes while running
        with pytest.raises(ScpiError, match="-221"):
            awg.write(":TRAC1:DEL:ALL")


def test_transmitter_never_answers_a_replayed_slot():
    """The AWG loops its memory: slots after the first play of a pattern are refused, never
    answered as `slot mod P` (see tests/drivers/test_awg_fresh_states.py for the streaming)."""
    pattern = SlotStates(
        np.arange(4, dtype=np.int64),
        np.array([0, 1, 0, 1], np.uint8),
        np.array([0, 0, 1, 1], np.uint8),
        np.array([0, 1, 2, 0], np.uint8),
    )
    awg = Keysight33500B(ScriptedTransport([NO_ERROR]))
    tx = AWGTransmitter(
        awg, intensities=MU, levels=LEVELS, pattern=pattern, samples_per_slot=2, pulse_samples=1, stream=False
    )
    tx._play = lambda p: None  # no instrument behind the scripted transport
    tx.start()
    got = tx.states(np.array([2, 0, 3, 1], dtype=np.int64))
    assert got.slot.tolist() == [2, 0, 3, 1]
    assert got.basis.tolist() == [0, 0, 1, 1]
    assert got.bit.tolist() == [1, 0, 1, 0]
    assert got.intensity.tolist() == [2, 0, 0, 1]
    assert tx.fresh(np.array([3, 4, 9], dtype=np.int64)).tolist() == [True, False, False]
    with pytest.raises(StateReuseError, match="slot 4 replayed"):
        tx.states(np.array([1, 4], dtype=np.int64))
    intensity, phase = tx.waveforms()
    assert intensity.tolist() == [1.0, 0, 0.5, 0, 0.25, 0, 1.0, 0]
    assert phase.tolist() == [-0.75, -0.75, -0.25, -0.25, 0.25, 0.25, 0.75, 0.75]
    with pytest.raises(ValueError, match="slots must be a 1-D int64"):
        tx.states(np.array([1.0]))
    with pytest.raises(ValueError, match="slots must be >= 0"):
        tx.states(np.array([-1], dtype=np.int64))


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"intensities": (0.1, 0.5, 0.02)}, "signal \\(largest\\) first"),
        ({"intensity_channel": 2, "phase_channel": 2}, "two different channels"),
        ({"pulse_samples": 9}, "pulse_samples must be"),
        ({"p_intensity": (0.5, 0.5, 0.5)}, "summing to 1"),
        ({"p_z": 1.5}, r"p_z must be within \[0, 1\]"),
        ({"pattern_slots": 0}, "pattern_slots must be"),
    ],
)
def test_transmitter_rejects_bad_configuration(kwargs, match):
    awg = Keysight33500B(ScriptedTransport([NO_ERROR]))
    with pytest.raises(ValueError, match=match):
        make_transmitter(awg, **kwargs)


def test_random_pattern_follows_basis_and_intensity_probabilities():
    p = random_pattern(200_000, 0.9, (0.7, 0.2, 0.1))
    assert abs(np.mean(p.basis == 0) - 0.9) < 0.01
    frac = np.bincount(p.intensity, minlength=3) / p.intensity.size
    assert np.allclose(frac, (0.7, 0.2, 0.1), atol=0.01)
    assert abs(p.bit.mean() - 0.5) < 0.01
    assert p.intensity.max() == 2


# -- the same driver on the emulator (plain pytest) or on the bench (pytest --hil=lab.toml) ----------


def test_33500b_transmitter_starts_and_shuts_down(awg33500b):
    awg33500b.set_sample_rate(200e6)
    tx = make_transmitter(awg33500b, amplitude_vpp=(0.5, 0.5))
    tx.start()
    assert awg33500b.output_enabled(1) and awg33500b.output_enabled(2)
    assert awg33500b.amplitude_vpp(1) == pytest.approx(0.5)
    tx.shutdown()
    assert not awg33500b.output_enabled(1) and not awg33500b.output_enabled(2)


def test_m8195a_transmitter_starts_and_shuts_down(m8195a):
    m8195a.set_sample_rate(64e9)
    tx = make_transmitter(m8195a, amplitude_vpp=(0.5, 0.5))
    tx.start()
    assert m8195a.output_enabled(tx.intensity_channel) and m8195a.output_enabled(tx.phase_channel)
    tx.shutdown()
    assert not any(m8195a.output_enabled(ch) for ch in m8195a.channels)


def test_waveform_samples_never_reach_logs_or_exceptions(emulate, caplog):
    import logging

    server = emulate(Emulated33500B())
    samples = np.tile([0.123456, -0.654321], 8)  # values whose DAC codes are easy to spot
    codes = ("4045", "-21440")
    with caplog.at_level(logging.DEBUG, logger="drivers.instrument"):
        with Keysight33500B(server.visa_resource, timeout_s=0.2) as awg:
            awg.upload(1, samples, 1.0)
            server.faults.error_on["SOUR1:DATA:ARB:DAC"] = (-223, "Too much data")
            with pytest.raises(ScpiError, match="-223") as info:
                awg.upload(1, samples, 1.0)
    assert "samples withheld" in caplog.text and "samples withheld" in str(info.value)
    assert not any(c in caplog.text for c in codes) and not any(c in str(info.value) for c in codes)
    assert np.allclose(server.device.arbs[1]["QKDPAT"] / 32767, samples, atol=1e-4)  # the device got them

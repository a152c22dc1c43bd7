"""One test per finding of issue 20: each drives today's driver against an emulator written from the manual.

Each test failed against the drivers as they were before issue 20 (checked by running this file
with the old `drivers/` package first on the path) and passes with the corrected drivers.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from drivers.errors import InstrumentError
from drivers.timetagger import TagBlock
from hil_fixtures.emulators.server import EmulatorServer
from hil_fixtures.pytest_plugin import free_port_base

pytestmark = pytest.mark.emulator
TIMEOUT_S = 0.3


@pytest.fixture
def serve():
    servers: list[EmulatorServer] = []

    def start(device, **kw):
        s = EmulatorServer(device, **kw)
        servers.append(s)
        return s

    yield start
    for s in servers:
        s.stop()


# --- 1. ID1000: timestamps through the DataLinkTargetService, reference-free, external clock ------


@pytest.fixture
def id1000():
    from hil_fixtures.emulators.idq import ID1000Emulator

    emulator = ID1000Emulator()
    try:
        yield emulator
    finally:
        emulator.stop()


def read_tags(tagger, n: int, timeout_s: float = 10.0) -> list[TagBlock]:
    blocks, total = [], 0
    deadline = time.monotonic() + timeout_s
    while total < n and time.monotonic() < deadline:
        b = tagger.read_block(0.2)
        blocks.append(b)
        total += len(b)
    return blocks


def test_1_id1000_streams_come_from_the_data_link_target_service_with_window_offsets(id1000):
    from drivers.taggers.idq import IDQTimeController

    base = free_port_base()
    with IDQTimeController(
        id1000.resource, channels=(1, 2), dlt=id1000.dlt_address, stream_port_base=base, window_s=0.001, timeout_s=1.0
    ) as tc:
        tc.configure()
        assert id1000.device.sync == "EXTERNAL" and tc.clock_source() == "EXTERNAL"
        assert id1000.device.ref_link[1] == "NONE" and id1000.device.ref_link[2] == "NONE"
        assert tc.resolution_ps == id1000.device.bin_width_ps
        tc.start()
        assert any(
            c.startswith(f"start-stream --address 127.0.0.1 --channel 1 --stream-port {base + 1}")
            for c in id1000.dlt_commands
        )
        assert id1000.device.playing
        time.sleep(0.2)  # PAIR sockets connect asynchronously
        id1000.emit_window({1: np.array([100, 300]), 2: np.array([200])})
        id1000.emit_window({1: np.array([50]), 2: np.array([])})
        blocks = read_tags(tc, 4)
    t = np.concatenate([b.time for b in blocks]).tolist()
    c = np.concatenate([b.channel for b in blocks]).tolist()
    period = 1_000_000_000 + 400_000  # window + 400 ns dead time, in ps
    assert sorted(zip(t, c)) == [(100, 1), (200, 2), (300, 1), (period + 50, 1)]
    assert not id1000.device.playing and not id1000.device.sending[1]


def test_1_id1000_lost_timestamps_are_counted_not_hidden(id1000):
    from drivers.taggers.idq import IDQTimeController

    base = free_port_base()
    tc = IDQTimeController(
        id1000.resource, channels=(1,), dlt=id1000.dlt_address, stream_port_base=base, window_s=0.001, timeout_s=1.0
    )
    try:
        tc.configure()
        tc.start()
        time.sleep(0.2)
        id1000.device.raw_errors[1] = 17
        id1000.emit_window({1: np.array([10, 20])})
        blocks = read_tags(tc, 2)
        assert sum(b.lost for b in blocks) == 17 and any(b.overflow for b in blocks)
        assert tc.lost_total == 17
    finally:
        tc.close()


# --- 2. M8195A: DAC mode, memory mode and divider set; extended memory shared -----------------------


def test_2_m8195a_transmitter_drives_two_generating_channels_at_the_rate_it_reports(serve):
    from drivers.awg import AWGTransmitter, KeysightM8195A, ModulatorLevels
    from hil_fixtures.emulators.m8195a import M8195A

    device = M8195A()
    # as a previous user left it: single-channel mode, channel memory extended at a quarter rate
    device.dac_mode, device.rdiv = "SING", 4
    device.mmode = {1: "EXT", 2: "EXT", 3: "EXT", 4: "EXT"}
    server = serve(device)
    levels = ModulatorLevels(intensity=(1.0, 0.5, 0.25), phase=(-0.75, -0.25, 0.25, 0.75))
    with KeysightM8195A(server.visa_resource, timeout_s=2.0) as awg:
        # one pattern, not streamed: the outputs pause while each streamed epoch uploads
        tx = AWGTransmitter(
            awg, intensities=(0.5, 0.1, 0.02), levels=levels, samples_per_slot=8, pattern_slots=2048, stream=False
        )
        tx.start()
        for ch in (tx.intensity_channel, tx.phase_channel):
            assert device.generating(ch), f"channel {ch} is silent in DAC mode {device.dac_mode}"
            assert device.sample_rate(ch) == awg.sample_rate_hz
        intensity, phase = tx.waveforms()
        assert np.allclose(device.waveform(tx.intensity_channel), np.rint(intensity * 127) / 127)
        assert np.allclose(device.waveform(tx.phase_channel), np.rint(phase * 127) / 127)


# --- 3. MBX: `1` / `Err:` acknowledgements, NL replies, VOA minimum -------------------------------


def test_3_mbx_refused_setting_raises_with_the_instrument_reason(serve):
    from drivers.bias import BiasMode, ThorlabsMBX
    from hil_fixtures.emulators.mbx import MBX

    device = MBX()
    server = serve(device)
    with ThorlabsMBX(server.serial_url, timeout_s=TIMEOUT_S, retries=0) as mbx:
        mbx.bias_mode = BiasMode.MANUAL
        assert device.mode == 7
        device.refuse_next = 1
        with pytest.raises(InstrumentError, match="Err: Hardware fault"):
            mbx.hold_voltage = 1.0
        assert mbx.hold_voltage == 0.0  # the answer to this query, not a stale `1`


def test_3_mbx_voa_minimum_is_one_db():
    from drivers.bias import ThorlabsMBX
    from drivers.transport import ScriptedTransport

    mbx = ThorlabsMBX(ScriptedTransport([]))
    with pytest.raises(ValueError, match=r"\[1, 20\] dB"):
        mbx.voa_attenuation_setpoint = 0.5


# --- 4. Swabian: channel numbering scheme forced, full stream buffer reported ------------------------


def test_4_swabian_front_panel_channels_on_a_zero_scheme_unit(monkeypatch):
    from drivers.taggers.swabian import SwabianTagger
    from hil_fixtures.vendor import swabian

    mod = swabian.make_module()  # AUTO: this Time Tagger 20 resolves it to the ZERO scheme
    monkeypatch.setitem(__import__("sys").modules, "TimeTagger", mod)
    with SwabianTagger((1, 2), poll_interval_s=0) as tagger:
        tagger.start()
        hw = mod.taggers[-1]
        hw.inject(1, [100])
        hw.inject(1, [150], falling=True)
        hw.inject(2, [200])
        hw.inject(3, [250])
        block = tagger.read_block(0.0)
    assert list(zip(block.time.tolist(), block.channel.tolist())) == [(100, 1), (200, 2)]


def test_4_swabian_full_stream_buffer_is_a_loss_not_silence(monkeypatch):
    from drivers.taggers.swabian import SwabianTagger
    from hil_fixtures.vendor import swabian

    mod = swabian.make_module(swabian.TT_CHANNEL_NUMBER_SCHEME_ONE)
    monkeypatch.setitem(__import__("sys").modules, "TimeTagger", mod)
    with SwabianTagger((1,), buffer_events=10, poll_interval_s=0) as tagger:
        tagger.start()
        mod.taggers[-1].inject(1, np.arange(25) * 10)
        block = tagger.read_block(0.0)
    assert len(block) == 10 and block.overflow and block.lost >= 1
    assert tagger.lost_total >= 1


# --- 5. 33500B: binary block upload, memory sizes, output load and arb filter -------------------------


def test_5_33500b_large_waveform_uploads_once_as_a_binary_block(serve):
    from drivers.awg import Keysight33500B
    from hil_fixtures.emulators.keysight33500b import Keysight33500B as Emulated

    device = Emulated()
    device.ascii_points_per_s = 100_000.0  # a 131072-point ASCII list would take 1.3 s to parse
    server = serve(device)
    samples = np.sin(np.linspace(0, 20, 131_072))
    with Keysight33500B(server.visa_resource, timeout_s=TIMEOUT_S, retries=1) as awg:
        awg.upload(1, samples, 1.0)
    uploads = [c for c in server.stats.commands if "DATA:ARB:DAC" in c.upper()]
    assert len(uploads) == 1
    assert np.allclose(device.waveform(1), np.rint(samples * 32767) / 32767)


def test_5_33500b_full_standard_memory_of_1048576_points_fits(serve):
    from drivers.awg import Keysight33500B
    from hil_fixtures.emulators.keysight33500b import Keysight33500B as Emulated

    server = serve(Emulated())
    with Keysight33500B(server.visa_resource, timeout_s=2.0) as awg:
        awg.check_length(1_048_576)
        with pytest.raises(ValueError, match=r"1.04858e\+06|1048576"):
            awg.check_length(1_048_577)


def test_5_33500b_sets_output_load_and_a_pulse_friendly_arb_filter(serve):
    from drivers.awg import Keysight33500B
    from hil_fixtures.emulators.keysight33500b import Keysight33500B as Emulated

    device = Emulated()
    device.load = {1: float("inf"), 2: float("inf")}  # as a previous user left it
    device.actual_load_ohm = 50.0  # the modulator driver has a 50 ohm input
    server = serve(device)
    with Keysight33500B(server.visa_resource, timeout_s=2.0, load_ohm=50.0) as awg:
        awg.upload(1, np.zeros(64), 2.0)
    assert device.load[1] == 50.0 and device.filter[1] in ("STEP", "OFF")
    assert device.delivered_vpp(1) == pytest.approx(2.0)


# --- 6. PicoQuant: inputs configured, FLAG_CNTS_DROPPED and FLAG_SYSERROR read ------------------------


def test_6_picoquant_sets_sync_divider_triggers_offsets_and_enables():
    from drivers.taggers.picoquant_live import PicoQuantTagger
    from hil_fixtures.vendor.picoquant import FakePicoQuantLib

    lib = FakePicoQuantLib("MH_")
    PicoQuantTagger(
        "multiharp",
        library=lib,
        sync_divider=2,
        sync_level_mv=-60,
        input_levels_mv={0: -80},
        channel_offsets_ps={1: 120},
        enabled=(0, 1, 2),
    ).close()
    assert lib.sync_div == 2 and lib.sync_trigger == (-60, 0)
    assert lib.input_trigger[0] == (-80, 0) and lib.input_trigger[3] == (-50, 0)
    assert lib.input_offset[1] == 120 and lib.enabled == {0: True, 1: True, 2: True, 3: False}

    hh = FakePicoQuantLib("HH_")
    PicoQuantTagger("hydraharp", library=hh, input_levels_mv={2: 120}).close()
    assert hh.input_trigger[2] == (120, 10) and hh.sync_trigger == (50, 10)


def test_6_picoquant_dropped_counts_mark_the_block_and_syserror_stops():
    from drivers.taggers.picoquant_live import PicoQuantTagger
    from hil_fixtures.vendor.picoquant import FLAG_CNTS_DROPPED, FLAG_SYSERROR, FakePicoQuantLib

    lib = FakePicoQuantLib("MH_")
    tagger = PicoQuantTagger("multiharp", library=lib, poll_interval_s=0)
    tagger.start()
    lib.pending_flags = FLAG_CNTS_DROPPED
    block = tagger.read_block(0.0)
    assert block.lost >= 1 and block.overflow and tagger.lost_total >= 1
    lib.pending_flags = FLAG_SYSERROR
    with pytest.raises(InstrumentError, match="FLAG_SYSERROR"):
        tagger.read_block(0.0)
    tagger.close()


# --- 7. ITC4001: trips read, setpoint against limit, safe bring-up, VISA backend --------------------------


@pytest.fixture
def itc(serve):
    from drivers.laser import ThorlabsITC4001
    from hil_fixtures.emulators.itc4001 import ITC4001

    device = ITC4001()
    server = serve(device)
    laser = ThorlabsITC4001(server.visa_resource, timeout_s=2.0, max_current_a=0.1)
    yield laser, device, server
    laser.close()


@pytest.mark.parametrize(
    "fault,cause",
    [
        ("interlock_closed", "interlock open"),
        ("key_on", "key switch \\(keylock\\) off"),
        ("overheated", "over-temperature"),
    ],
)
def test_7_itc4001_a_tripped_laser_is_an_error_naming_the_trip(itc, fault, cause):
    laser, device, _ = itc
    setattr(device, fault, fault == "overheated")  # open the loop, turn the key off, or overheat
    laser.tec_enabled = True
    with pytest.raises(InstrumentError, match=cause):
        laser.output_enabled = True
    assert not device.ld_on


def test_7_itc4001_setpoint_is_checked_against_the_limit(itc):
    laser, _, _ = itc
    laser.current_limit = 0.05
    with pytest.raises(ValueError, match=r"current_limit = 0.05 A"):
        laser.current_setpoint = 0.06


def test_7_itc4001_bring_up_is_tec_first_and_reads_every_step_back(itc):
    laser, device, server = itc
    laser.bring_up(temperature_c=22.0, current_a=0.03, limit_a=0.05, settle_tolerance_c=0.2, settle_timeout_s=5.0)
    assert device.ld_on and device.tec_on and device.current_a == 0.03 and device.limit_a == 0.05
    sent = [c.upper() for c in server.stats.commands]
    order = [
        next(i for i, c in enumerate(sent) if c.startswith(p))
        for p in (
            "OUTP2:STAT ON",
            "MEAS:TEMP?",
            "SOUR:CURR:LIM 0.05",
            "SOUR:CURR 0.03",
            "SOUR:FUNC:MODE",
            "OUTP:POL",
            "OUTP:STAT ON",
        )
    ]
    assert order == sorted(order)


def test_7_visa_backend_default_is_the_installed_visa_not_pyvisa_py():
    from drivers.transport.visa import VisaTransport

    assert VisaTransport("GPIB0::1::INSTR").visa_library == ""


# --- 8. 8157xA: range follows the offset, wavelength not rounded to 0.1 nm ----------------------------


def test_8_8157xa_attenuation_range_follows_the_offset(serve):
    from drivers.attenuator import Keysight8157xA
    from hil_fixtures.emulators.attenuator import Keysight8157xA as Emulated

    server = serve(Emulated())
    with Keysight8157xA(server.visa_resource, timeout_s=2.0, slot=1) as att:
        att.offset = 3.0
        att.attenuation = 62.0
        with pytest.raises(ValueError, match=r"\[3, 63\] dB"):
            att.attenuation = 1.0


def test_8_8157xa_wavelength_keeps_picometres(serve):
    from drivers.attenuator import Keysight8157xA
    from hil_fixtures.emulators.attenuator import Keysight8157xA as Emulated

    device = Emulated()
    server = serve(device)
    with Keysight8157xA(server.visa_resource, timeout_s=2.0, slot=1) as att:
        att.wavelength = 1550.123e-9
    assert device.wav[1] == pytest.approx(1550.123e-9, abs=1e-15)

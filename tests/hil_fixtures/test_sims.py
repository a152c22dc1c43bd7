"""The pyvisa-sim models load and the drivers run on them, error queue included."""

from __future__ import annotations

import numpy as np
import pytest
import pyvisa

from drivers.attenuator import Keysight8157xA
from drivers.awg import Keysight33500B, KeysightM8195A
from drivers.instrument import ScpiError
from drivers.laser import ThorlabsITC4001
from hil_fixtures.sims import SIMS, sim_library

OPTIONS = {"timeout_s": 0.2, "retries": 0}


@pytest.mark.parametrize("path", sorted(SIMS.glob("*.yaml")), ids=lambda p: p.stem)
def test_every_sim_model_answers_idn(path):
    rm = pyvisa.ResourceManager(f"{path}@sim")
    try:
        (resource,) = rm.list_resources()
        term = "\r" if path.stem == "mbx" else "\n"  # the MBX takes CR-terminated commands, answers NL
        inst = rm.open_resource(resource, read_termination="\n", write_termination=term)
        assert inst.query("*IDN?").count(",") == 3
    finally:
        rm.close()


def test_itc4001_on_its_sim_model():
    laser = ThorlabsITC4001("USB0::0x1313::0x804A::M00000000::INSTR", visa_library=sim_library("itc4001"), **OPTIONS)
    with laser:
        laser.current_limit = 0.2
        laser.current_setpoint = 0.065
        laser.output_enabled = True
        assert laser.current_setpoint == pytest.approx(0.065) and laser.output_enabled
        with pytest.raises(ScpiError, match="-222"):
            laser.write("SOUR:CURR 5")  # bypasses the driver's range check: the device refuses it
    assert laser.transport.is_open is False


def test_33500b_on_its_sim_model():
    with Keysight33500B(
        "TCPIP0::192.168.0.20::inst0::INSTR", visa_library=sim_library("keysight33500b"), **OPTIONS
    ) as awg:
        awg.set_sample_rate(100e6)
        codes = np.tile([0x2121, 0x3030, 0x4141, 0x5050, 0x6161, 0x7070, 0x7171, 0x7A7A], 2)
        awg.upload(1, codes / 32767.0, 2.0)  # int16 codes whose bytes are text, as pyvisa-sim reads text
        awg.run()
        assert awg.output_enabled(1) and awg.amplitude_vpp(1) == pytest.approx(2.0)


def test_m8195a_on_its_sim_model():
    with KeysightM8195A(
        "TCPIP0::192.168.0.21::hislip0::INSTR", visa_library=sim_library("m8195a"), dac_mode="DCD", **OPTIONS
    ) as awg:
        awg.set_sample_rate(64e9)
        awg.upload(2, np.zeros(1280), 0.5)
        awg.run()
        assert awg.output_enabled(1) and awg.output_enabled(2)


def test_8157xa_on_its_sim_model():
    with Keysight8157xA("GPIB0::20::INSTR", visa_library=sim_library("keysight8157xa"), **OPTIONS) as att:
        att.set_attenuation(20.0)
        assert att.attenuation == pytest.approx(20.0)
        att.shutter_open = True
        assert att.shutter_open


def test_unknown_sim_model_is_rejected():
    with pytest.raises(ValueError, match="name must be one of"):
        sim_library("nope")


def test_mbx_on_its_sim_model():
    from drivers.bias import BiasMode, ThorlabsMBX

    with ThorlabsMBX("ASRL1::INSTR", visa_library=sim_library("mbx"), **OPTIONS) as mbx:
        mbx.bias_mode = BiasMode.MANUAL
        mbx.hold_voltage = -1.5
        assert mbx.hold_voltage == -1.5 and mbx.locked is True
    rm = pyvisa.ResourceManager(sim_library("mbx"))
    assert rm.open_resource("ASRL1::INSTR", read_termination="\n", write_termination="\r").query("MZM:MODE?") == "0"

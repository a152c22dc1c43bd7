"""A lab node's hardware comes up in order from its config, and a failed bring-up leaves it safe and alarms."""

from __future__ import annotations

import tomllib

import pytest

from drivers.bringup import BringUpFailed
from hil_fixtures.emulators.itc4001 import ITC4001
from hil_fixtures.emulators.keysight33500b import Keysight33500B
from hil_fixtures.emulators.mbx import MBX
from node.runtime.config import parse_node_config
from node.runtime.hardware import open_hardware

CONFIG = """
[node]
name = "alice"
role = "alice"
state_dir = "state"

[link]
id = "L-lab"
peer = "tcp://127.0.0.1:5999"
bootstrap_secret = "link.key"
intensities = [0.5, 0.1, 0.02]
class_probabilities = [0.7, 0.2, 0.1]

[hardware]
kind = "lab"

[hardware.lab]
transmitter = "awg"
transmitter_options = {{ intensities = [0.5, 0.1, 0.02], pattern_slots = 256, levels = {{ intensity = [0.9, 0.4, 0.1], phase = [-0.75, -0.25, 0.25, 0.75] }} }}

[hardware.lab.bringup.laser]
temperature_c = 25.0
current_a = 0.02
limit_a = 0.03
settle_timeout_s = 10.0

[hardware.lab.bringup.bias]
mode = "AUTO_NULL"

[instruments.laser]
driver = "itc4001"
resource = "{laser}"
max_current_a = 0.05
timeout_s = 1.0

[instruments.awg]
driver = "keysight33500b"
resource = "{awg}"
timeout_s = 2.0

[instruments.bias]
driver = "mbx"
resource = "{bias}"
timeout_s = 1.0
"""


@pytest.fixture
def lab(emulate, tmp_path):
    devices = {"laser": ITC4001(), "awg": Keysight33500B(), "bias": MBX()}
    servers = {k: emulate(d) for k, d in devices.items()}
    text = CONFIG.format(
        laser=servers["laser"].visa_resource, awg=servers["awg"].visa_resource, bias=servers["bias"].serial_url
    )
    return devices, parse_node_config(tomllib.loads(text), str(tmp_path))


@pytest.mark.emulator
def test_alice_lab_hardware_brings_the_laser_and_bias_up_before_the_transmitter(lab):
    devices, cfg = lab
    hw = open_hardware(cfg)
    try:
        assert devices["laser"].ld_on and devices["laser"].tec_on and devices["bias"].mode == 2
        assert any(devices["awg"].output.values())
    finally:
        hw.close()
    assert not devices["laser"].ld_on and not any(devices["awg"].output.values()) and devices["bias"].mode == 0


@pytest.mark.emulator
def test_open_interlock_stops_the_node_with_everything_off_and_a_critical_alarm(lab):
    devices, cfg = lab
    devices["laser"].interlock_closed = False
    alarms: list[tuple[str, str]] = []
    with pytest.raises(BringUpFailed, match="interlock open"):
        open_hardware(cfg, alarm=lambda severity, text: alarms.append((severity, text)))
    assert alarms and alarms[0][0] == "critical" and "laser" in alarms[0][1]
    assert not devices["laser"].ld_on and not any(devices["awg"].output.values())

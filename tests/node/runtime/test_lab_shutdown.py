"""`qkdnode run` on a lab configuration (instruments behind their protocol emulators): the daemon
opens the instruments through the driver registry, and SIGTERM leaves the laser and AWG outputs off."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from hil_fixtures.emulators.itc4001 import ITC4001
from hil_fixtures.emulators.keysight33500b import Keysight33500B
from node.keymanager.demo import free_port


def _config(root: Path, laser: str, awg: str) -> Path:
    (root / "link.key").write_bytes(os.urandom(1 << 14))
    cfg = root / "alice.toml"
    cfg.write_text(f"""
[node]
name = "alice"
role = "alice"
state_dir = "state"
status_file = "state/status.json"

[link]
id = "L-lab"
peer = "tcp://127.0.0.1:{free_port()}"
bootstrap_secret = "link.key"
intensities = [0.5, 0.1, 0.02]
class_probabilities = [0.7, 0.2, 0.1]

[hardware]
kind = "lab"

[hardware.lab]
transmitter = "awg"

[hardware.lab.transmitter_options]
intensities = [0.5, 0.1, 0.02]
p_z = 0.8
p_intensity = [0.7, 0.2, 0.1]
pattern_slots = 256
levels = {{ intensity = [0.9, 0.4, 0.1], phase = [-0.75, -0.25, 0.25, 0.75] }}

[instruments.laser]
driver = "itc4001"
resource = "{laser}"
timeout_s = 1.0

[instruments.awg]
driver = "keysight33500b"
resource = "{awg}"
timeout_s = 2.0
""")
    return cfg


def test_sigterm_leaves_the_laser_and_the_awg_outputs_off(tmp_path: Path, emulate) -> None:
    laser_dev, awg_dev = ITC4001(), Keysight33500B()
    laser, awg = emulate(laser_dev), emulate(awg_dev)
    laser_dev.ld_on = True  # the laser was left on by whoever used the bench before
    cfg = _config(tmp_path, laser.visa_resource, awg.visa_resource)
    proc = subprocess.Popen(
        [sys.executable, "-m", "node", "run", str(cfg)],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.time() + 60
        status: dict = {}
        while time.time() < deadline and status.get("state") != "running":
            assert proc.poll() is None, proc.stderr.read()[-2000:]  # type: ignore[union-attr]
            try:
                status = json.loads((tmp_path / "state" / "status.json").read_text())
            except (OSError, ValueError):
                pass
            time.sleep(0.1)
        assert status.get("state") == "running", "the daemon did not start on the emulated bench"
        # the transmitter streams fresh patterns: outputs are off while each upload runs
        on_by = time.time() + 10
        while not any(awg_dev.output.values()) and time.time() < on_by:
            time.sleep(0.005)
        assert any(awg_dev.output.values()), "the transmitter should have started the AWG outputs"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert not laser_dev.ld_on, "SIGTERM must leave the laser output off"
    assert not any(awg_dev.output.values()), "SIGTERM must leave the AWG outputs off"

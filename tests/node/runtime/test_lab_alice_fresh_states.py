"""Lab Alice's transmitter from the config: fresh patterns streamed, optionally from a QRNG instrument."""

from __future__ import annotations

import tomllib
from importlib import resources

import numpy as np
import pytest

import drivers.registry
from drivers.awg import AWGTransmitter
from node.runtime.config import NodeConfig, parse_node_config
from node.runtime.hardware import open_hardware
from tests.drivers.test_awg_fresh_states import RecordingAWG


class FakeQRNG:
    def __init__(self) -> None:
        self.reads = 0

    def random_bytes(self, n: int) -> bytes:
        self.reads += 1
        return bytes(range(256)) * (n // 256) + bytes(n % 256)

    def close(self) -> None:
        pass


def _config(qrng: str | None) -> NodeConfig:
    doc = tomllib.loads(resources.files("node.runtime.examples").joinpath("lab_alice.toml").read_text())
    doc["instruments"] = {"awg": {"driver": "x"}, "rng": {"driver": "y"}}
    doc["hardware"]["lab"].pop("bringup", None)  # the example's bring-up steps name instruments replaced here
    options = doc["hardware"]["lab"]["transmitter_options"]
    options.update(stream=False, pattern_slots=256)
    if qrng is not None:
        options["qrng"] = qrng
    return parse_node_config(doc, "/tmp")


@pytest.fixture
def bench(monkeypatch):
    qrng = FakeQRNG()
    awg = RecordingAWG(2e8)
    monkeypatch.setattr(drivers.registry, "open_instruments", lambda section: {"awg": awg, "rng": qrng})
    return awg, qrng


def test_lab_alice_draws_fresh_states_from_the_configured_qrng(bench) -> None:
    awg, qrng = bench
    hw = open_hardware(_config("rng"))
    try:
        assert qrng.reads == 2 and len(awg.uploads) == 1  # basis/class words and bits of the first pattern
        assert isinstance(hw.transmitter, AWGTransmitter)
        assert hw.transmitter.fresh(np.arange(3, dtype=np.int64)).all()
    finally:
        hw.close()


def test_a_qrng_that_is_not_an_instrument_is_refused(bench) -> None:
    with pytest.raises(ValueError, match=r"transmitter_options.qrng' must name an instrument"):
        open_hardware(_config("awg"))

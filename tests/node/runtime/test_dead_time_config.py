"""Bob's common dead time in the node: from the config or the instrument, refused when missing on
lab hardware, applied to the tags before slotting and counted."""

from __future__ import annotations

import tomllib
from importlib import resources

import numpy as np
import pytest

from drivers.mock.tagger import MockTimeTagger
from node.runtime.config import parse_node_config
from node.runtime.hardware import common_dead_time, open_hardware
from postprocessing.slotting import StreamSlotter


def example(name: str) -> dict:
    return tomllib.loads(resources.files("node.runtime.examples").joinpath(name).read_text())


def _slotter() -> StreamSlotter:
    return StreamSlotter(1000.0, 1000, 400.0)


def test_lab_bob_without_detector_dead_times_is_refused_at_validation() -> None:
    doc = example("lab_bob.toml")
    del doc["hardware"]["dead_time"]
    with pytest.raises(ValueError, match=r"hardware.dead_time.detector_ps' is required for Bob on lab hardware"):
        parse_node_config(doc)


def test_lab_alice_needs_no_dead_time() -> None:
    assert parse_node_config(example("lab_alice.toml")).dead_time == {}


@pytest.mark.parametrize("value", [0, -5, [1, "x"], [], True])
def test_bad_dead_times_name_the_key(value) -> None:
    doc = example("lab_bob.toml")
    doc["hardware"]["dead_time"]["detector_ps"] = value
    with pytest.raises(ValueError, match=r"hardware.dead_time.detector_ps' must be"):
        parse_node_config(doc)


def test_longest_detector_dead_time_plus_margin_is_applied() -> None:
    cfg = parse_node_config(example("lab_bob.toml"))
    cfg.dead_time.update(detector_ps=(40_000.0, 50_000.0, 45_000.0, 42_000.0), margin_ps=5_000.0)
    f = common_dead_time(cfg, object(), _slotter())
    assert f.dead_time_ps == 55_000.0
    assert f.coincidence_ps == 400.0  # one pulse's clicks (within a gate) stay together


def test_dead_time_from_an_instrument_that_cannot_read_it_is_refused() -> None:
    doc = example("lab_bob.toml")
    doc["hardware"]["dead_time"] = {"detector_ps": "instrument"}
    cfg = parse_node_config(doc)
    with pytest.raises(ValueError, match="driver cannot read the detectors' dead times"):
        common_dead_time(cfg, object(), _slotter())


def test_mock_bob_reads_the_dead_time_from_the_mock_tagger_and_filters_before_slotting() -> None:
    cfg = parse_node_config(example("mock_bob.toml"), "/tmp")
    hw = open_hardware(cfg)
    try:
        assert hw.dead_time is not None and isinstance(hw.tagger, MockTimeTagger)
        longest = max(hw.tagger.detector_dead_time_ps)
        assert hw.dead_time.dead_time_ps == pytest.approx(longest + max(0.1 * longest, 1000.0))
        block = hw.tagger.read_block(timeout_s=1.0)
        t, ch = hw.dead_time.apply(block.time, block.channel)
        det_t = t[ch != 0]
        assert np.all(np.diff(det_t)[np.diff(det_t) > hw.dead_time.coincidence_ps] >= hw.dead_time.dead_time_ps)
        assert hw.dead_time.discarded_total == np.count_nonzero(block.channel != 0) - det_t.size
    finally:
        hw.close()


def test_discarded_clicks_and_stale_slots_are_exported_as_metrics() -> None:
    from prometheus_client import generate_latest

    from node.management import NodeMetrics

    m = NodeMetrics("bob")
    m.declare_link("L1", "alice", "bob")
    text = generate_latest(m.registry).decode()
    assert 'qkdnode_dead_time_discarded_clicks_total{link="L1"} 0.0' in text
    m.record_dead_time_discarded("L1", 1234)
    m.record_stale_slots("L1", 7)
    text = generate_latest(m.registry).decode()
    assert 'qkdnode_dead_time_discarded_clicks_total{link="L1"} 1234.0' in text
    assert 'qkdnode_stale_slots_total{link="L1"} 7.0' in text

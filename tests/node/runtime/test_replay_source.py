"""Replay mode: refused outside a benchmark (the config says why: the keys would not be secret), the
node's hardware from a recording, and both nodes as processes distilling a replay into both key
managers over the authenticated channel."""

from __future__ import annotations

import pytest

from drivers.mock import LinkParams
from drivers.replay import ReplayTimeTagger, ReplayTransmitter
from node.runtime.capacity import replay_document
from node.runtime.config import parse_node_config
from node.runtime.hardware import NOT_FOR_USE, open_hardware
from node.runtime.replay_source import record_mock

MOCK = {"seed": 5, "fibre_length_km": 25.0}


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    root = tmp_path_factory.mktemp("rec")
    record_mock(LinkParams(fibre_length_km=25.0), 5, root, 20_000, block_s=1e-3)
    return root


def doc(role, recording):
    return replay_document(
        role, 5800, recording, "link.key", 100_000, 50_000, 2, ("tcp://127.0.0.1:5600", "node_a", "ingest.key"), MOCK
    )


@pytest.mark.parametrize("flag", [None, False, "yes"])
def test_replay_is_refused_unless_marked_benchmark_only(recording, flag):
    d = doc("bob", recording)
    if flag is None:
        del d["hardware"]["replay"]["benchmark_only"]
    else:
        d["hardware"]["replay"]["benchmark_only"] = flag
    with pytest.raises(ValueError, match=r"benchmark_only' must be true.*knows every key bit"):
        parse_node_config(d)


def test_replay_table_outside_replay_mode_is_refused(recording):
    d = doc("bob", recording)
    d["hardware"]["kind"] = "mock"
    d["hardware"]["mock"] = {}
    with pytest.raises(ValueError, match=r"\[hardware.replay\] is only read with hardware.kind"):
        parse_node_config(d)


def test_each_node_opens_its_side_of_the_recording_and_alarms(recording):
    alarms = []
    for role, kind in (("alice", ReplayTransmitter), ("bob", ReplayTimeTagger)):
        hw = open_hardware(parse_node_config(doc(role, recording)), lambda sev, text: alarms.append((sev, text)))
        try:
            assert isinstance(hw.transmitter if role == "alice" else hw.tagger, kind)
            assert hw.description["kind"] == "replay"
        finally:
            hw.close()
    assert alarms == [("major", NOT_FOR_USE)] * 2


def test_intensities_other_than_the_recordings_are_refused(recording):
    d = doc("alice", recording)
    d["link"]["intensities"] = [0.6, 0.1, 0.0]
    with pytest.raises(ValueError, match="must match the recording"):
        open_hardware(parse_node_config(d))


@pytest.mark.slow
def test_both_nodes_distil_a_replay_into_both_key_managers(tmp_path, monkeypatch):
    from node.runtime.capacity import run_capacity

    monkeypatch.setenv("QKDNODE_REPLAY_CACHE", str(tmp_path))
    out = run_capacity(MOCK, 1_000_000, 2, batch=200_000, timeout_s=240)  # 5e5-bit blocks leave no key at 25 km
    assert out["exit"]["alice"] == 0 and out["exit"]["bob"] == 0, out["logs"]
    bob, alice = out["bob"], out["alice"]
    blocks = bob["counters"]["blocks"]
    assert blocks + bob["counters"]["aborted"] >= 2 and blocks >= 1
    assert alice["delivery"]["delivered_blocks"] == bob["delivery"]["delivered_blocks"] == blocks
    assert alice["delivery"]["delivered_bits"] == bob["delivery"]["delivered_bits"] > 0
    assert all(v > 0 for v in out["rss"].values())

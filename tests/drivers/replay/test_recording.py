"""The replay recording's streams: written blocks and states come back bit for bit, malformed files
are refused with the file and the fault named, and a mock recording matches the mock's own states."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.mock import LinkParams, MockTransmitter
from drivers.replay.recording import (
    RecordingError,
    StateWriter,
    TagWriter,
    iter_state_chunks,
    iter_tag_file,
    pack_states,
    read_info,
    unpack_states,
)
from drivers.timetagger import TagBlock
from node.runtime.replay_source import record_mock

blocks_strategy = st.lists(
    st.tuples(
        st.lists(st.tuples(st.integers(0, 2**62), st.integers(0, 255)), max_size=30),
        st.integers(0, 1000),
        st.booleans(),
    ),
    max_size=6,
)


@given(blocks_strategy)
@settings(max_examples=50, deadline=None)
def test_tag_blocks_come_back_as_written(tmp_path_factory, blocks):
    path = tmp_path_factory.mktemp("tags") / "tags.bin"
    written = []
    with TagWriter(path) as w:
        for tags, lost, overflow in blocks:
            tags = sorted(tags)
            b = TagBlock(
                np.array([t for t, _ in tags], np.int64),
                np.array([c for _, c in tags], np.uint8),
                lost=lost,
                overflow=overflow,
            )
            w.write(b)
            written.append(b)
    back = list(iter_tag_file(path))
    assert len(back) == len(written)
    for a, b in zip(back, written):
        assert np.array_equal(a.time, b.time) and np.array_equal(a.channel, b.channel)
        assert (a.lost, a.overflow) == (b.lost, b.overflow)


@given(st.lists(st.tuples(st.integers(0, 1), st.integers(0, 1), st.integers(0, 63)), max_size=50))
def test_packed_states_unpack_to_the_same_states(states):
    basis, bit, cls = (np.array([s[i] for s in states], np.uint8) for i in range(3))
    b2, t2, c2 = unpack_states(pack_states(basis, bit, cls))
    assert np.array_equal(b2, basis) and np.array_equal(t2, bit) and np.array_equal(c2, cls)


def test_state_stream_refuses_slots_that_do_not_increase(tmp_path):
    with StateWriter(tmp_path / "s.bin") as w:
        w.write(np.array([3, 5], np.int64), *(np.zeros(2, np.uint8),) * 3)
        with pytest.raises(ValueError, match="increase strictly"):
            w.write(np.array([5, 6], np.int64), *(np.zeros(2, np.uint8),) * 3)


@given(st.binary(max_size=200), st.integers(0, 3))
@settings(max_examples=200, deadline=None)
def test_malformed_streams_raise_recording_errors_only(tmp_path_factory, junk, cut):
    """Fuzz: random bytes after the magic, or a valid file cut short, give RecordingError (never
    another exception, never a silent short read)."""
    d = tmp_path_factory.mktemp("fuzz")
    for magic, reader in ((b"QKDTAG01", iter_tag_file), (b"QKDSTA01", iter_state_chunks)):
        path = d / "f.bin"
        path.write_bytes(magic + junk)
        try:
            list(reader(path))
        except RecordingError:
            pass
    with TagWriter(d / "t.bin") as w:
        w.write(TagBlock(np.arange(5, dtype=np.int64), np.ones(5, np.uint8)))
    data = (d / "t.bin").read_bytes()
    (d / "t.bin").write_bytes(data[: len(data) - 1 - cut])
    with pytest.raises(RecordingError, match="truncated"):
        list(iter_tag_file(d / "t.bin"))


def test_wrong_magic_is_refused(tmp_path):
    (tmp_path / "x.bin").write_bytes(b"NOTMAGIC")
    with pytest.raises(RecordingError, match="not a replay stream"):
        list(iter_tag_file(tmp_path / "x.bin"))


def test_meta_errors_name_the_missing_key(tmp_path):
    with pytest.raises(RecordingError, match=r"cannot read meta\.json"):
        read_info(tmp_path)
    (tmp_path / "meta.json").write_text(json.dumps({"format": "qkdnode-replay/1", "tags": "t"}))
    with pytest.raises(RecordingError, match="lacks key"):
        read_info(tmp_path)


@pytest.fixture(scope="module")
def mock_recording(tmp_path_factory):
    params = LinkParams(fibre_length_km=25.0)
    root = tmp_path_factory.mktemp("rec")
    return params, record_mock(params, 7, root, 20_000, block_s=1e-3)


def test_mock_recording_holds_the_mock_transmitters_states(mock_recording):
    params, info = mock_recording
    assert read_info(info.root) == info
    assert info.sifted_bits >= 20_000
    tx = MockTransmitter(params, 7)
    n = 0
    for slot, packed in iter_state_chunks(info.states):
        truth = tx.states(slot)
        assert np.array_equal(packed, pack_states(truth.basis, truth.bit, truth.intensity))
        n += slot.size
    assert n > 20_000

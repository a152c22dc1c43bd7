"""Chunked decoding: any split of the byte stream decodes like the whole; TagBlocks from files."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.errors import FormatError
from drivers.picoquant import RecordStream, RecordType, Tag, TagType, encode_header, iter_tag_blocks, read_ptu
from drivers.picoquant.records import T2Records, decode_t2, decode_t3, encode_t2, encode_t3, record_format
from drivers.timetagger import TagBlock
from tests.drivers.picoquant.strategies import ALL_TYPES, T2_TYPES, T3_TYPES, t2_events, t3_events, valid_records

PTU_DIR = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "ptu"
T2_FILE = PTU_DIR / "hydraharp_v20_t2.ptu"
T3_FILE = PTU_DIR / "hydraharp_v20_t3.ptu"
needs_data = pytest.mark.skipif(not T2_FILE.exists(), reason="shared PTU sample files not present")


def _fields(out) -> tuple[np.ndarray, ...]:
    if isinstance(out, T2Records):
        return out.time_ps, out.channel, out.marker_time_ps, out.marker_bits
    return out.sync, out.dtime, out.channel, out.marker_sync, out.marker_bits


@pytest.mark.parametrize("rt", ALL_TYPES, ids=lambda rt: rt.name)
@given(data=st.data())
def test_any_split_of_the_byte_stream_decodes_like_the_whole(rt, data):
    records = data.draw(valid_records(rt))
    raw = records.tobytes()
    cuts = sorted(data.draw(st.lists(st.integers(0, len(raw)), max_size=6)))
    whole = decode_t3(records, rt) if record_format(rt).t3 else decode_t2(records, rt, resolution_ps=4)
    stream = RecordStream(rt, resolution_ps=4)
    pieces = [stream.decode(raw[a:b]) for a, b in zip([0, *cuts], [*cuts, len(raw)])]
    stream.close()
    for got, want in zip(zip(*(_fields(p) for p in pieces)), _fields(whole)):
        assert np.array_equal(np.concatenate(got), want)
    assert stream.overflow == whole.overflow and stream.records_decoded == records.size


@pytest.mark.parametrize("rt", T2_TYPES, ids=lambda rt: rt.name)
@given(data=st.data())
def test_encoded_events_survive_decoding_in_arbitrary_pieces(rt, data):
    ticks, channel, marker_ticks, marker_bits = data.draw(t2_events(rt))
    raw = encode_t2(rt, ticks, channel, marker_ticks=marker_ticks, marker_bits=marker_bits).tobytes()
    cuts = sorted(data.draw(st.lists(st.integers(0, len(raw)), max_size=8)))
    stream = RecordStream(rt, resolution_ps=5)
    blocks = [stream.block(raw[a:b]) for a, b in zip([0, *cuts], [*cuts, len(raw)])]
    stream.close()
    assert np.array_equal(np.concatenate([b.time for b in blocks]), ticks * 5)
    assert np.array_equal(np.concatenate([b.channel for b in blocks]), channel)
    assert np.array_equal(np.concatenate([b.meta["markers"].bits for b in blocks]), marker_bits)


@pytest.mark.parametrize("rt", T3_TYPES, ids=lambda rt: rt.name)
@given(data=st.data())
def test_encoded_t3_events_survive_decoding_in_arbitrary_pieces(rt, data):
    sync, dtime, channel, marker_sync, marker_bits = data.draw(t3_events(rt))
    raw = encode_t3(rt, sync, dtime, channel, marker_sync=marker_sync, marker_bits=marker_bits).tobytes()
    cuts = sorted(data.draw(st.lists(st.integers(0, len(raw)), max_size=8)))
    stream = RecordStream(rt, sync_period_ps=12_500.0, dtime_resolution_ps=4)
    blocks = [stream.block(raw[a:b]) for a, b in zip([0, *cuts], [*cuts, len(raw)])]
    assert np.array_equal(np.concatenate([b.meta["sync"] for b in blocks]), sync)
    assert np.array_equal(np.concatenate([b.time for b in blocks]), sync * 12_500 + dtime * 4)
    assert np.array_equal(np.concatenate([b.meta["markers"].sync for b in blocks]), marker_sync)


def test_uint32_pieces_and_byte_pieces_mix():
    rt = RecordType.HYDRAHARP_V2_T2
    records = np.array([0xFE000002, 5, (1 << 25) | 6, 0xFE000000, 7], dtype=np.uint32)
    raw = records.tobytes()
    stream = RecordStream(rt)
    pieces = [
        stream.decode(raw[:10]),  # two records and half of the third
        stream.decode(np.frombuffer(raw[10:18], np.uint32)),  # the held-back half goes first
        stream.decode(raw[18:]),
    ]
    assert np.concatenate([p.time_ps for p in pieces]).tolist() == [2 * 2**25 + 5, 2 * 2**25 + 6, 3 * 2**25 + 7]
    assert [p.time_ps.size for p in pieces] == [1, 1, 1] and stream.pending_bytes == 0


def test_stream_ending_inside_a_record_names_the_byte_offset():
    stream = RecordStream(RecordType.HYDRAHARP_V2_T2, byte_offset=1000)
    stream.decode(b"\x01\x00\x00\x00\x02\x00")
    assert stream.pending_bytes == 2
    with pytest.raises(FormatError, match=r"ends inside a record at byte offset 1004"):
        stream.close()


def test_invalid_record_in_a_later_piece_names_its_absolute_offset():
    stream = RecordStream(RecordType.HYDRAHARP_V2_T2, byte_offset=4392)
    stream.decode(np.zeros(10, np.uint32))
    with pytest.raises(FormatError, match=r"byte offset 4436\b"):
        stream.decode(np.array([0, (1 << 31) | (33 << 25)], np.uint32))


def test_t3_blocks_need_the_sync_period_and_bin_width():
    stream = RecordStream(RecordType.HYDRAHARP_V2_T3)
    with pytest.raises(ValueError, match="sync_period_ps and dtime_resolution_ps"):
        stream.block(np.zeros(1, np.uint32))


@needs_data
def test_real_t2_file_streams_as_tag_blocks_equal_to_read_ptu():
    whole = read_ptu(T2_FILE)
    blocks = list(iter_tag_blocks(T2_FILE, records_per_block=40_000))
    assert len(blocks) == -(-435_319 // 40_000)
    assert all(isinstance(b, TagBlock) and b.lost == 0 for b in blocks)
    assert np.array_equal(np.concatenate([b.time for b in blocks]), whole.time_ps)
    assert np.array_equal(np.concatenate([b.channel for b in blocks]), whole.channel)
    assert sum(len(b.meta["markers"]) for b in blocks) == len(whole.markers)


@needs_data
def test_real_t3_file_streams_with_times_from_sync_period_and_dtime_bins():
    whole = read_ptu(T3_FILE)
    blocks = list(iter_tag_blocks(T3_FILE, records_per_block=7_777))
    time = np.concatenate([b.time for b in blocks])
    period = whole.measurement.sync_period_ps
    expected = np.rint(whole.sync * period).astype(np.int64) + whole.dtime.astype(np.int64) * 64
    assert np.array_equal(time, expected)
    assert np.array_equal(np.concatenate([b.meta["sync"] for b in blocks]), whole.sync)
    assert np.array_equal(np.concatenate([b.meta["dtime"] for b in blocks]), whole.dtime)


def test_t3_file_without_resolutions_cannot_stream_tag_times():
    head = encode_header([Tag("TTResultFormat_TTTRRecType", -1, TagType.INT8, int(RecordType.GENERIC_T3))])
    with pytest.raises(FormatError, match=r"MeasDesc_GlobalResolution and MeasDesc_Resolution"):
        list(iter_tag_blocks(io.BytesIO(head + bytes(8))))


def test_iter_tag_blocks_rejects_empty_blocks():
    with pytest.raises(ValueError, match="records_per_block must be >= 1"):
        next(iter_tag_blocks(T2_FILE, records_per_block=0))

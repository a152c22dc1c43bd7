"""`read_ptu` and the PTU writers: real files against ptufile, our files read back in ptufile, malformed files."""

from __future__ import annotations

import io
import struct
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.errors import FormatError
from drivers.picoquant import SYNC_CHANNEL, RecordType, Tag, TagType, read_ptu, write_ptu, write_t2, write_t3
from drivers.picoquant.ptu import encode_header
from drivers.picoquant.records import record_format
from tests.drivers.picoquant.strategies import T2_TYPES, T3_TYPES, t2_events, t3_events

PTU_DIR = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "ptu"
T2_FILE = PTU_DIR / "hydraharp_v20_t2.ptu"
T3_FILE = PTU_DIR / "hydraharp_v20_t3.ptu"
needs_data = pytest.mark.skipif(not T2_FILE.exists(), reason="shared PTU sample files not present")


def _ptufile(source) -> tuple[dict, np.ndarray, np.ndarray]:
    """ptufile's tags, photon records and marker records."""
    import ptufile

    with ptufile.PtuFile(source) as f:
        decoded = f.decode_records()
        tags = f.tags
    return tags, decoded[decoded["channel"] >= 0], decoded[(decoded["channel"] < 0) & (decoded["marker"] > 0)]


@needs_data
def test_real_t2_file_decodes_exactly_like_ptufile():
    ours = read_ptu(T2_FILE)
    _, photons, markers = _ptufile(T2_FILE)
    assert ours.mode == "T2" and ours.record_type == RecordType.HYDRAHARP_V2_T2
    assert ours.measurement.resolution_ps == 1 and ours.measurement.n_records == 435_319
    assert len(ours) == len(photons) == 305_565
    assert ours.time_ps.dtype == np.int64
    assert np.array_equal(ours.time_ps, photons["time"].astype(np.int64))
    assert np.array_equal(ours.channel, photons["channel"].astype(np.uint8))
    assert len(ours.markers) == len(markers) == 0
    assert ours.header["TTResult_NumberOfRecords"] == 435_319 and ours.header["HW_Type"] == "HydraHarp 400"


@needs_data
def test_real_t3_file_decodes_exactly_like_ptufile():
    ours = read_ptu(T3_FILE)
    _, photons, markers = _ptufile(T3_FILE)
    assert ours.mode == "T3" and ours.record_type == RecordType.HYDRAHARP_V2_T3
    assert ours.measurement.dtime_resolution_ps == 64
    assert ours.measurement.sync_period_ps == pytest.approx(200_001.6, rel=1e-9)
    assert len(ours) == len(photons) == 77_883
    assert np.array_equal(ours.sync, photons["time"].astype(np.int64))
    assert np.array_equal(ours.dtime, photons["dtime"].astype(np.uint16))
    assert np.array_equal(ours.channel, photons["channel"].astype(np.uint8))
    assert len(ours.markers) == len(markers)
    assert ours.time_ps is None and ours.markers.sync is not None


@needs_data
def test_reading_from_a_file_object_at_an_offset_gives_the_same_result():
    data = T3_FILE.read_bytes()
    fh = io.BytesIO(b"junk" * 3 + data)
    fh.seek(12)
    ours = read_ptu(fh)
    assert np.array_equal(ours.sync, read_ptu(T3_FILE).sync)


@needs_data
def test_real_file_rewritten_by_our_writer_reads_back_identically_in_ptufile(tmp_path):
    src = read_ptu(T2_FILE)
    out = tmp_path / "copy.ptu"
    write_t2(out, src.record_type, src.time_ps, src.channel, resolution_ps=1, tags=src.ptu_header.tags)
    _, photons, _ = _ptufile(out)
    assert np.array_equal(photons["time"].astype(np.int64), src.time_ps)
    assert np.array_equal(photons["channel"].astype(np.uint8), src.channel)
    again = read_ptu(out)
    assert again.header["HW_Type"] == "HydraHarp 400" and again.header["File_GUID"] == src.header["File_GUID"]


@pytest.mark.parametrize("rt", T2_TYPES, ids=lambda rt: rt.name)
@given(data=st.data(), resolution_ps=st.sampled_from([1, 4, 25, 80]))
def test_t2_files_we_write_read_back_identically_in_ptufile_and_read_ptu(rt, data, resolution_ps):
    ticks, channel, marker_ticks, marker_bits = data.draw(t2_events(rt, max_size=100))
    buf = io.BytesIO()
    write_t2(
        buf,
        rt,
        ticks * resolution_ps,
        channel,
        resolution_ps=resolution_ps,
        marker_time_ps=marker_ticks * resolution_ps,
        marker_bits=marker_bits,
        tags={"HW_Type": "mock"},
    )
    ours = read_ptu(io.BytesIO(buf.getvalue()))
    assert np.array_equal(ours.time_ps, ticks * resolution_ps) and np.array_equal(ours.channel, channel)
    tags, photons, markers = _ptufile(io.BytesIO(buf.getvalue()))
    assert tags["TTResultFormat_TTTRRecType"] == int(rt) and tags["HW_Type"] == "mock"
    if record_format(rt).has_sync_records:
        channel = np.where(channel == SYNC_CHANNEL, 0, channel)  # ptufile folds sync into channel 0
    assert np.array_equal(photons["time"].astype(np.int64), ticks)
    assert np.array_equal(photons["channel"].astype(np.int64), channel)
    assert np.array_equal(markers["time"].astype(np.int64) * resolution_ps, ours.markers.time_ps)
    assert np.array_equal(markers["marker"], ours.markers.bits) and np.array_equal(ours.markers.bits, marker_bits)


@pytest.mark.parametrize("rt", T3_TYPES, ids=lambda rt: rt.name)
@given(data=st.data())
def test_t3_files_we_write_read_back_identically_in_ptufile_and_read_ptu(rt, data):
    sync, dtime, channel, marker_sync, marker_bits = data.draw(t3_events(rt, max_size=100))
    buf = io.BytesIO()
    write_t3(
        buf,
        rt,
        sync,
        dtime,
        channel,
        sync_period_ps=12_500.0,
        dtime_resolution_ps=4,
        marker_sync=marker_sync,
        marker_bits=marker_bits,
    )
    ours = read_ptu(io.BytesIO(buf.getvalue()))
    assert (
        np.array_equal(ours.sync, sync) and np.array_equal(ours.dtime, dtime) and np.array_equal(ours.channel, channel)
    )
    assert np.array_equal(ours.markers.sync, marker_sync) and np.array_equal(ours.markers.bits, marker_bits)
    tags, photons, markers = _ptufile(io.BytesIO(buf.getvalue()))
    assert tags["MeasDesc_GlobalResolution"] == pytest.approx(12.5e-9) and tags["TTResult_SyncRate"] == 80_000_000
    assert np.array_equal(photons["time"].astype(np.int64), sync)
    assert np.array_equal(photons["dtime"].astype(np.int64), dtime)
    assert np.array_equal(photons["channel"].astype(np.int64), channel)
    assert np.array_equal(markers["time"].astype(np.int64), marker_sync) and np.array_equal(
        markers["marker"], marker_bits
    )


def test_writer_owns_the_format_tags():
    buf = io.BytesIO()
    records = np.array([5, 6], np.uint32)
    write_ptu(
        buf,
        RecordType.GENERIC_T2,
        records,
        global_resolution_s=5e-12,
        resolution_s=5e-12,
        tags={"TTResult_NumberOfRecords": 99, "CreatorSW_Name": "lab"},
    )
    data = read_ptu(io.BytesIO(buf.getvalue()))
    assert data.header["TTResult_NumberOfRecords"] == 2 and data.header["CreatorSW_Name"] == "lab"
    assert data.time_ps.tolist() == [25, 30]


def test_writers_reject_times_off_the_resolution_grid_and_bad_resolutions():
    with pytest.raises(ValueError, match="multiples of resolution_ps=4"):
        write_t2(io.BytesIO(), RecordType.PICOHARP_T2, [5], [0], resolution_ps=4)
    with pytest.raises(ValueError, match="integer picoseconds"):
        write_t2(io.BytesIO(), RecordType.PICOHARP_T2, [4.5], [0], resolution_ps=4)
    with pytest.raises(ValueError, match="resolution_ps must be a positive integer"):
        write_t2(io.BytesIO(), RecordType.PICOHARP_T2, [5], [0], resolution_ps=0)
    with pytest.raises(ValueError, match="sync_period_ps must be positive"):
        write_t3(io.BytesIO(), RecordType.PICOHARP_T3, [5], [0], [0], sync_period_ps=0.0, dtime_resolution_ps=4)


# --- malformed files ------------------------------------------------------------------------------


def _small_file(rt: RecordType = RecordType.HYDRAHARP_V2_T2, n: int = 50) -> bytes:
    buf = io.BytesIO()
    write_t2(buf, rt, np.arange(n, dtype=np.int64) * 10**7, np.zeros(n, np.int64))
    return buf.getvalue()


def _data_offset(raw: bytes) -> int:
    return raw.index(b"Header_End") + 48


def test_truncated_records_name_the_byte_offset_where_the_file_ends():
    raw = _small_file()
    cut = len(raw) - 6
    with pytest.raises(
        FormatError, match=rf"truncated PTU file: .* from byte offset {_data_offset(raw)} .* ends at byte offset {cut}"
    ):
        read_ptu(io.BytesIO(raw[:cut]))


def test_wrong_magic_is_a_format_error_at_offset_zero(tmp_path):
    path = tmp_path / "x.ptu"
    path.write_bytes(b"PQTTTS\0\0" + _small_file()[8:])
    with pytest.raises(FormatError, match=r"wrong magic .* byte offset 0"):
        read_ptu(path)


def test_unknown_record_type_names_the_tag_offset():
    raw = bytearray(_small_file())
    at = raw.index(b"TTResultFormat_TTTRRecType")
    struct.pack_into("<q", raw, at + 40, 0x00010299)
    with pytest.raises(
        FormatError, match=rf"TTResultFormat_TTTRRecType' at byte offset {at}: record_type 0x00010299 is not a known"
    ):
        read_ptu(io.BytesIO(bytes(raw)))


def test_header_length_running_past_the_end_names_the_offset():
    raw = bytearray(_small_file())
    at = raw.index(b"File_GUID")
    struct.pack_into("<q", raw, at + 40, 1 << 40)
    with pytest.raises(FormatError, match=rf"tag 'File_GUID' \(starting at byte offset {at}\)"):
        read_ptu(io.BytesIO(bytes(raw)))


def test_invalid_record_names_its_byte_offset():
    raw = bytearray(_small_file())
    start = _data_offset(bytes(raw))
    struct.pack_into("<I", raw, start + 4 * 7, (1 << 31) | (40 << 25))
    with pytest.raises(
        FormatError, match=rf"record 0x[0-9A-F]{{8}} at byte offset {start + 28} is not a valid HYDRAHARP_V2_T2"
    ):
        read_ptu(io.BytesIO(bytes(raw)))


@pytest.mark.parametrize(
    ("tags", "message"),
    [
        ([], "no integer TTResultFormat_TTTRRecType"),
        ([Tag("TTResultFormat_TTTRRecType", -1, TagType.INT8, 0x00010203)], "no MeasDesc_GlobalResolution"),
        (
            [
                Tag("TTResultFormat_TTTRRecType", -1, TagType.INT8, 0x00010203),
                Tag("TTResultFormat_BitsPerRecord", -1, TagType.INT8, 64),
            ],
            "only 32-bit records",
        ),
        (
            [
                Tag("TTResultFormat_TTTRRecType", -1, TagType.INT8, 0x00010203),
                Tag("MeasDesc_GlobalResolution", -1, TagType.FLOAT8, 0.5e-12),
            ],
            "not a whole number of picoseconds",
        ),
        (
            [
                Tag("TTResultFormat_TTTRRecType", -1, TagType.INT8, 0x00010203),
                Tag("MeasDesc_GlobalResolution", -1, TagType.FLOAT8, 4e-12),
                Tag("TTResult_NumberOfRecords", -1, TagType.INT8, -1),
            ],
            "is not a record count",
        ),
    ],
)
def test_missing_or_wrong_format_tags_are_format_errors(tags, message):
    with pytest.raises(FormatError, match=message):
        read_ptu(io.BytesIO(encode_header(tags)))


def test_file_without_a_record_count_reads_every_whole_record():
    head = encode_header(
        [
            Tag("TTResultFormat_TTTRRecType", -1, TagType.INT8, 0x00010203),
            Tag("MeasDesc_GlobalResolution", -1, TagType.FLOAT8, 4e-12),
        ]
    )
    data = read_ptu(io.BytesIO(head + struct.pack("<2I", 7, (1 << 28) | 9)))
    assert data.time_ps.tolist() == [28, 36] and data.channel.tolist() == [0, 1]
    with pytest.raises(FormatError, match="not a whole number of 4-byte records"):
        read_ptu(io.BytesIO(head + b"\0" * 5))


def test_read_ptu_rejects_objects_that_are_not_files():
    with pytest.raises(ValueError, match="path or a seekable binary file"):
        read_ptu(42)


@given(st.data())
def test_truncations_and_bit_flips_give_data_or_a_format_error(data):
    raw = bytearray(
        _small_file(
            data.draw(st.sampled_from([RecordType.HYDRAHARP_V2_T2, RecordType.PICOHARP_T2, RecordType.GENERIC_T2])), 40
        )
    )
    for _ in range(data.draw(st.integers(0, 6))):
        i = data.draw(st.integers(0, len(raw) - 1))
        raw[i] ^= 1 << data.draw(st.integers(0, 7))
    raw = raw[: data.draw(st.integers(0, len(raw)))]
    try:
        out = read_ptu(io.BytesIO(bytes(raw)))
    except FormatError as exc:  # either outcome is allowed; pytest.raises cannot say that
        assert "byte offset" in str(exc)  # noqa: PT017
    else:
        assert len(out) <= out.measurement.n_records


@given(st.binary(max_size=400))
def test_random_bytes_after_a_valid_header_prefix_never_crash(blob):
    head = _small_file()[: 16 + 48 * 3]
    for raw in (blob, head + blob):
        try:
            read_ptu(io.BytesIO(raw))
        except FormatError:
            pass

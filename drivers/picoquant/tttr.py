"""PTU files as whole measurements: `read_ptu` (header + decoded records) and the T2/T3 writers."""

from __future__ import annotations

import io
import math
import os
import uuid
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import IO, Any, Union

import numpy as np
from numpy.typing import NDArray

from drivers.errors import FormatError
from drivers.picoquant.ptu import PtuHeader, Tag, TagType, encode_header, read_header, tags_from_mapping
from drivers.picoquant.records import (
    RecordFormat,
    RecordType,
    decode_t2_chunks,
    decode_t3_chunks,
    encode_t2,
    encode_t3,
    record_format,
)

__all__ = ["Markers", "PtuData", "Measurement", "measurement", "read_ptu", "write_ptu", "write_t2", "write_t3"]

PtuSource = Union[str, "os.PathLike[str]", IO[bytes]]


@dataclass(frozen=True)
class Markers:
    """Marker events kept apart from photons: the marker bits and when (T2: `time_ps`, T3: `sync`)."""

    bits: NDArray[np.uint8]
    time_ps: NDArray[np.int64] | None = None
    sync: NDArray[np.int64] | None = None

    def __len__(self) -> int:
        return int(self.bits.size)


@dataclass(frozen=True)
class Measurement:
    """What the header says about the records: format, count and resolutions."""

    format: RecordFormat
    n_records: int
    data_offset: int  # byte offset of the first record in the file object
    resolution_ps: int | None  # T2: one time tick in ps
    sync_period_ps: float | None  # T3: MeasDesc_GlobalResolution in ps
    dtime_resolution_ps: int | None  # T3: one dtime bin in ps


@dataclass(frozen=True)
class PtuData:
    """A decoded PTU file. T2: `time_ps` and `channel`; T3: `sync`, `dtime` and `channel`.

    Photons (and T2 sync events, channel `SYNC_CHANNEL`) are in the photon arrays; markers are in
    `markers`; overflow records are resolved and dropped.
    """

    header: dict[str, Any]
    ptu_header: PtuHeader  # the tags in file order, with their types (lossless for writing back)
    measurement: Measurement
    channel: NDArray[np.uint8]
    markers: Markers
    time_ps: NDArray[np.int64] | None = None
    sync: NDArray[np.int64] | None = None
    dtime: NDArray[np.uint16] | None = None

    @property
    def record_type(self) -> RecordType:
        """The record format of the file."""
        return self.measurement.format.record_type

    @property
    def mode(self) -> str:
        """'T2' or 'T3'."""
        return self.measurement.format.mode

    def __len__(self) -> int:
        return int(self.channel.size)


def _integer_ps(tag: Tag, what: str) -> int:
    value = tag.value
    if not isinstance(value, float) or not math.isfinite(value) or value <= 0:
        raise FormatError(
            f"tag {tag.ident!r} at byte offset {tag.offset}: {what} must be a positive float, got {value!r}"
        )
    ps = value * 1e12
    whole = round(ps)
    if whole < 1 or abs(ps - whole) > 1e-4 * ps:
        raise FormatError(
            f"tag {tag.ident!r} at byte offset {tag.offset}: {what} {value!r} s is not a whole number of picoseconds"
        )
    return int(whole)


def measurement(header: PtuHeader, file_size: int, start: int = 0) -> Measurement:
    """Check the tags the decoder relies on and return what they say; `FormatError` if they are wrong."""
    end = start + header.data_offset
    tags = header.lookup()
    rt_tag = tags.get(("TTResultFormat_TTTRRecType", -1))
    if rt_tag is None or not isinstance(rt_tag.value, int) or isinstance(rt_tag.value, bool):
        raise FormatError(f"header ending at byte offset {end} has no integer TTResultFormat_TTTRRecType tag")
    try:
        fmt = record_format(rt_tag.value)
    except ValueError as exc:
        raise FormatError(f"tag 'TTResultFormat_TTTRRecType' at byte offset {rt_tag.offset}: {exc}") from None
    bits = tags.get(("TTResultFormat_BitsPerRecord", -1))
    if bits is not None and bits.value not in (0, 32):
        raise FormatError(
            f"tag 'TTResultFormat_BitsPerRecord' at byte offset {bits.offset}: {bits.value!r}, only 32-bit records exist"
        )
    available = file_size - end
    count = tags.get(("TTResult_NumberOfRecords", -1))
    if count is None:
        if available % 4:
            raise FormatError(
                f"record data from byte offset {end} to {file_size} is not a whole number of 4-byte records"
            )
        n = available // 4
    else:
        n = count.value
        if not isinstance(n, int) or n < 0:
            raise FormatError(
                f"tag 'TTResult_NumberOfRecords' at byte offset {count.offset}: {n!r} is not a record count"
            )
        if 4 * n > available:
            raise FormatError(
                f"truncated PTU file: {n} records from byte offset {end} need {4 * n} bytes, "
                f"the file ends at byte offset {file_size} (record {available // 4} is incomplete or missing)"
            )
    glob = tags.get(("MeasDesc_GlobalResolution", -1))
    res = tags.get(("MeasDesc_Resolution", -1))
    if fmt.t3:
        period = None
        if glob is not None:
            if not isinstance(glob.value, float) or not math.isfinite(glob.value) or glob.value <= 0:
                raise FormatError(
                    f"tag 'MeasDesc_GlobalResolution' at byte offset {glob.offset}: {glob.value!r} is not a sync period"
                )
            period = glob.value * 1e12
        bin_ps = _integer_ps(res, "the dtime bin width") if res is not None else None
        return Measurement(fmt, n, end, None, period, bin_ps)
    if glob is None:
        raise FormatError(f"header ending at byte offset {end} has no MeasDesc_GlobalResolution tag (T2 time unit)")
    return Measurement(fmt, n, end, _integer_ps(glob, "the T2 time resolution"), None, None)


@contextmanager
def open_ptu(file: PtuSource) -> Iterator[tuple[IO[bytes], int, int]]:
    """A binary handle on a path or seekable file object, its size, and where the PTU starts."""
    if isinstance(file, (str, os.PathLike)):
        with open(file, "rb") as fh:
            yield fh, os.fstat(fh.fileno()).st_size, 0
        return
    if not (hasattr(file, "read") and hasattr(file, "seek")):
        raise ValueError(f"file must be a path or a seekable binary file object, got {type(file).__name__}")
    start = file.tell()
    size = file.seek(0, io.SEEK_END)
    file.seek(start)
    yield file, size, start


_CHUNK_RECORDS = 1 << 17  # 512 KiB: the read buffer stays in cache and is reused for the whole file


def _record_chunks(fh: IO[bytes], where: int, n: int) -> Iterator[NDArray[np.uint32]]:
    """The `n` records at `where`, read piece by piece into one reused buffer."""
    buffer = np.empty(min(n, _CHUNK_RECORDS), np.uint32)
    fh.seek(where)
    done = 0
    while done < n:
        piece = buffer[: min(n - done, buffer.size)]
        got = fh.readinto(piece)  # type: ignore[attr-defined]
        if got != 4 * piece.size:
            raise FormatError(
                f"truncated PTU file: record data ends at byte offset {where + 4 * done + (got or 0)}, "
                f"{n} records from byte offset {where} were announced"
            )
        done += piece.size
        yield piece


def read_ptu(file: PtuSource) -> PtuData:
    """Read a PTU file: header tags and every record decoded, overflows resolved, markers apart.

    Malformed files (truncated, wrong magic, unknown record type, header lengths past the end,
    invalid records) raise `FormatError` naming the byte offset.
    """
    with open_ptu(file) as (fh, size, start):
        header = read_header(fh, size, start)
        meas = measurement(header, size, start)
        chunks = _record_chunks(fh, meas.data_offset, meas.n_records)
        rt = meas.format.record_type
        if meas.format.t3:
            t3 = decode_t3_chunks(chunks, meas.n_records, rt, byte_offset=meas.data_offset)
        else:
            assert meas.resolution_ps is not None
            t2 = decode_t2_chunks(
                chunks, meas.n_records, rt, resolution_ps=meas.resolution_ps, byte_offset=meas.data_offset
            )
    tags = header.as_dict()
    if meas.format.t3:
        return PtuData(
            tags, header, meas, t3.channel, Markers(t3.marker_bits, sync=t3.marker_sync), sync=t3.sync, dtime=t3.dtime
        )
    return PtuData(
        tags, header, meas, t2.channel, Markers(t2.marker_bits, time_ps=t2.marker_time_ps), time_ps=t2.time_ps
    )


# --- writing --------------------------------------------------------------------------------------

_WRITER_OWNS = (
    "Measurement_Mode",
    "Measurement_SubMode",
    "TTResultFormat_TTTRRecType",
    "TTResultFormat_BitsPerRecord",
    "TTResult_NumberOfRecords",
    "MeasDesc_GlobalResolution",
    "MeasDesc_Resolution",
)


def write_ptu(
    file: str | os.PathLike[str] | IO[bytes],
    record_type: int,
    records: NDArray[np.uint32],
    *,
    global_resolution_s: float,
    resolution_s: float,
    tags: Iterable[Tag] | Mapping[str, Any] | None = None,
) -> None:
    """Write encoded records with a header. The writer sets the format tags (`_WRITER_OWNS`) itself;
    `tags` adds or replaces any other tag (File_GUID, CreatorSW_Name, ... have defaults)."""
    fmt = record_format(record_type)
    if not isinstance(records, np.ndarray) or records.dtype != np.uint32 or records.ndim != 1:
        raise ValueError("records must be a 1-D numpy uint32 array")
    for name, val in (("global_resolution_s", global_resolution_s), ("resolution_s", resolution_s)):
        if not math.isfinite(val) or val <= 0:
            raise ValueError(f"{name} must be a positive number of seconds, got {val!r}")
    user = tags_from_mapping(tags) if isinstance(tags, Mapping) else list(tags or [])
    owned = [
        Tag("Measurement_Mode", -1, TagType.INT8, 3 if fmt.t3 else 2),
        Tag("Measurement_SubMode", -1, TagType.INT8, 0),
        Tag("TTResultFormat_TTTRRecType", -1, TagType.INT8, int(fmt.record_type)),
        Tag("TTResultFormat_BitsPerRecord", -1, TagType.INT8, 32),
        Tag("TTResult_NumberOfRecords", -1, TagType.INT8, int(records.size)),
        Tag("MeasDesc_GlobalResolution", -1, TagType.FLOAT8, float(global_resolution_s)),
        Tag("MeasDesc_Resolution", -1, TagType.FLOAT8, float(resolution_s)),
    ]
    defaults = [
        Tag("File_GUID", -1, TagType.ANSI_STRING, f"{{{str(uuid.uuid4()).upper()}}}"),
        Tag("File_CreatingTime", -1, TagType.TDATETIME, datetime.now().replace(microsecond=0)),
        Tag("CreatorSW_Name", -1, TagType.ANSI_STRING, "qkdnode"),
        Tag("MeasDesc_BinningFactor", -1, TagType.INT8, 1),
    ]
    if fmt.t3:
        defaults.append(Tag("TTResult_SyncRate", -1, TagType.INT8, round(1.0 / global_resolution_s)))
    given = {(t.ident, t.index) for t in user}
    chosen = [t for t in defaults if (t.ident, t.index) not in given]
    chosen += [t for t in user if t.ident not in _WRITER_OWNS]
    chosen += owned
    head = encode_header(chosen)
    body = np.ascontiguousarray(records, dtype="<u4").data.cast("B")
    if isinstance(file, (str, os.PathLike)):
        with open(file, "wb") as fh:
            fh.write(head)
            fh.write(body)
    else:
        file.write(head)
        file.write(body)


def _integers(values: object, name: str) -> NDArray[np.int64]:
    arr = np.asarray(values)
    if arr.ndim != 1 or (arr.size and arr.dtype.kind not in "iu"):
        raise ValueError(
            f"{name} must be a 1-D array of integer picoseconds, got dtype {arr.dtype} and shape {arr.shape}"
        )
    return arr.astype(np.int64, copy=False)


def write_t2(
    file: str | os.PathLike[str] | IO[bytes],
    record_type: int,
    time_ps: object,
    channel: object,
    *,
    resolution_ps: int = 1,
    marker_time_ps: object = None,
    marker_bits: object = None,
    tags: Iterable[Tag] | Mapping[str, Any] | None = None,
) -> None:
    """Write T2 events (ps, multiples of `resolution_ps`) as a PTU file that `read_ptu` and `ptufile` read back."""
    if int(resolution_ps) < 1:
        raise ValueError(f"resolution_ps must be a positive integer, got {resolution_ps}")
    res = int(resolution_ps)
    t = _integers(time_ps, "time_ps")
    mt = _integers(marker_time_ps if marker_time_ps is not None else [], "marker_time_ps")
    if (t % res).any() or (mt % res).any():
        raise ValueError(f"time_ps and marker_time_ps must be multiples of resolution_ps={res}")
    records = encode_t2(record_type, t // res, channel, marker_ticks=mt // res, marker_bits=marker_bits)
    write_ptu(file, record_type, records, global_resolution_s=res * 1e-12, resolution_s=res * 1e-12, tags=tags)


def write_t3(
    file: str | os.PathLike[str] | IO[bytes],
    record_type: int,
    sync: object,
    dtime: object,
    channel: object,
    *,
    sync_period_ps: float,
    dtime_resolution_ps: int,
    marker_sync: object = None,
    marker_bits: object = None,
    tags: Iterable[Tag] | Mapping[str, Any] | None = None,
) -> None:
    """Write T3 events (absolute sync counts, dtime bins, inputs) as a PTU file."""
    if not math.isfinite(sync_period_ps) or sync_period_ps <= 0:
        raise ValueError(f"sync_period_ps must be positive, got {sync_period_ps!r}")
    if int(dtime_resolution_ps) < 1:
        raise ValueError(f"dtime_resolution_ps must be a positive integer, got {dtime_resolution_ps}")
    records = encode_t3(record_type, sync, dtime, channel, marker_sync=marker_sync, marker_bits=marker_bits)
    write_ptu(
        file,
        record_type,
        records,
        global_resolution_s=sync_period_ps * 1e-12,
        resolution_s=int(dtime_resolution_ps) * 1e-12,
        tags=tags,
    )

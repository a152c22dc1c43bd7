"""Chunked decoding of a PTU record stream into `TagBlock`s.

Acquisition software hands records over in pieces of any size (a FIFO read, a file read, a socket
read); a piece may even end inside a record. `RecordStream` keeps the overflow correction and the
partial record between pieces, so the concatenated output equals decoding everything at once.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from numpy.typing import NDArray

from drivers.errors import FormatError
from drivers.picoquant.ptu import read_header
from drivers.picoquant.records import T2Records, T3Records, decode_t2, decode_t3, record_format
from drivers.picoquant.tttr import Markers, PtuSource, measurement, open_ptu
from drivers.timetagger import TagBlock

__all__ = ["RecordStream", "iter_tag_blocks"]


class RecordStream:
    """Decodes records piece by piece, carrying the overflow correction and any partial record.

    `byte_offset` is where the first record sits in its file (for error messages). For T3 blocks
    the tag time is `round(sync * sync_period_ps) + dtime * dtime_resolution_ps` (float64: exact to
    the picosecond while `sync * sync_period_ps` stays below 2**53 ps, about 2.5 hours).
    """

    def __init__(
        self,
        record_type: int,
        *,
        resolution_ps: int = 1,
        sync_period_ps: float | None = None,
        dtime_resolution_ps: int | None = None,
        byte_offset: int = 0,
    ) -> None:
        self.format = record_format(record_type)
        if int(resolution_ps) < 1:
            raise ValueError(f"resolution_ps must be a positive integer, got {resolution_ps}")
        if sync_period_ps is not None and not sync_period_ps > 0:
            raise ValueError(f"sync_period_ps must be positive, got {sync_period_ps!r}")
        if dtime_resolution_ps is not None and int(dtime_resolution_ps) < 1:
            raise ValueError(f"dtime_resolution_ps must be a positive integer, got {dtime_resolution_ps}")
        self.resolution_ps = int(resolution_ps)
        self.sync_period_ps = sync_period_ps
        self.dtime_resolution_ps = None if dtime_resolution_ps is None else int(dtime_resolution_ps)
        self.overflow = 0
        self.records_decoded = 0
        self._start = byte_offset
        self._partial = b""

    @property
    def byte_offset(self) -> int:
        """File offset of the next record to decode."""
        return self._start + 4 * self.records_decoded

    @property
    def pending_bytes(self) -> int:
        """Bytes of an incomplete record held back for the next piece."""
        return len(self._partial)

    def _records(self, data: bytes | bytearray | memoryview | NDArray[np.uint32]) -> NDArray[np.uint32]:
        if isinstance(data, np.ndarray):
            if data.dtype != np.uint32 or data.ndim != 1:
                raise ValueError("data must be bytes or a 1-D uint32 array of records")
            if self._partial:
                return self._records(data.astype("<u4", copy=False).tobytes())
            return data
        raw = memoryview(data).cast("B")
        if self._partial:
            raw = memoryview(self._partial + bytes(raw))
        whole = len(raw) - len(raw) % 4
        self._partial = bytes(raw[whole:])
        return np.frombuffer(raw[:whole], dtype="<u4").astype(np.uint32, copy=False)

    def decode(self, data: bytes | bytearray | memoryview | NDArray[np.uint32]) -> T2Records | T3Records:
        """Decode the next piece: raw bytes (any length) or whole records."""
        records = self._records(data)
        if self.format.t3:
            out: T2Records | T3Records = decode_t3(
                records, self.format.record_type, overflow=self.overflow, byte_offset=self.byte_offset
            )
        else:
            out = decode_t2(
                records,
                self.format.record_type,
                resolution_ps=self.resolution_ps,
                overflow=self.overflow,
                byte_offset=self.byte_offset,
            )
        self.overflow = out.overflow
        self.records_decoded += records.size
        return out

    def block(self, data: bytes | bytearray | memoryview | NDArray[np.uint32]) -> TagBlock:
        """Decode the next piece into a `TagBlock`; markers (and T3 sync/dtime) travel in `meta`."""
        out = self.decode(data)
        meta: dict[str, object] = {"record_type": self.format.record_type.name}
        if isinstance(out, T2Records):
            meta["markers"] = Markers(out.marker_bits, time_ps=out.marker_time_ps)
            return TagBlock(out.time_ps, out.channel, meta=meta)
        if self.sync_period_ps is None or self.dtime_resolution_ps is None:
            raise ValueError("T3 TagBlocks need sync_period_ps and dtime_resolution_ps")
        time = np.rint(out.sync * self.sync_period_ps).astype(np.int64)
        time += out.dtime.astype(np.int64) * self.dtime_resolution_ps
        meta["markers"] = Markers(out.marker_bits, sync=out.marker_sync)
        meta["sync"] = out.sync
        meta["dtime"] = out.dtime
        return TagBlock(time, out.channel, meta=meta)

    def close(self) -> None:
        """End of stream: `FormatError` if it stopped inside a record."""
        if self._partial:
            raise FormatError(
                f"record stream ends inside a record at byte offset {self.byte_offset} "
                f"({len(self._partial)} of 4 bytes)"
            )


def iter_tag_blocks(file: PtuSource, records_per_block: int = 1 << 20) -> Iterator[TagBlock]:
    """Stream a PTU file as `TagBlock`s of at most `records_per_block` records each, in bounded memory."""
    if records_per_block < 1:
        raise ValueError(f"records_per_block must be >= 1, got {records_per_block}")
    with open_ptu(file) as (fh, size, start):
        header = read_header(fh, size, start)
        meas = measurement(header, size, start)
        if meas.format.t3 and (meas.sync_period_ps is None or meas.dtime_resolution_ps is None):
            raise FormatError(
                f"header ending at byte offset {meas.data_offset} lacks MeasDesc_GlobalResolution and "
                "MeasDesc_Resolution, which T3 tag times need"
            )
        stream = RecordStream(
            meas.format.record_type,
            resolution_ps=meas.resolution_ps or 1,
            sync_period_ps=meas.sync_period_ps,
            dtime_resolution_ps=meas.dtime_resolution_ps,
            byte_offset=meas.data_offset,
        )
        fh.seek(meas.data_offset)
        left = meas.n_records
        while left:
            n = min(left, records_per_block)
            data = fh.read(4 * n)
            if len(data) != 4 * n:
                raise FormatError(
                    f"truncated PTU file: records end early at byte offset {stream.byte_offset + len(data)}"
                )
            left -= n
            yield stream.block(data)
        stream.close()

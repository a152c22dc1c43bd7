"""PicoQuant TTTR record formats: numba decoders and encoders for the 32-bit T2 and T3 records.

Layouts (little-endian uint32, PicoQuant file-format specification and demo readers):

- PicoHarp 300 T2: time 28 bits | channel 4 bits. Channel 15 is special: low 4 time bits 0 is a
  wrap-around (overflow) of 210 698 240 ticks, otherwise a marker whose bits are those 4 time bits.
- PicoHarp 300 T3: nsync 16 bits | dtime 12 bits | channel 4 bits (inputs 1..4). Channel 15 is
  special: dtime 0 is an overflow of 65 536 syncs, otherwise a marker with bits `dtime`.
- HydraHarp v1/v2, TimeHarp 260 N/P, MultiHarp / PicoHarp 330 ("generic"): T2 is time 25 bits |
  channel 6 bits | special 1 bit; T3 is nsync 10 bits | dtime 15 bits | channel 6 bits | special.
  Special channel 63 is an overflow (v1: one wrap per record; v2: `count` wraps, 0 meaning 1),
  special channels 1..15 are markers, special channel 0 in T2 is the sync input.

Everything else is an invalid record (PicoHarp T2 channels 5..14, PicoHarp T3 channels 0 and
5..14 or a marker above 15, HydraHarp-family special channels 16..62 and T3 special channel 0):
`FormatError` naming its byte offset, where `ptufile` would silently make something up.

Decoded photons carry the zero-based input index (PicoHarp T3 inputs 1..4 become 0..3, as
`ptufile` reports them); T2 sync events get `SYNC_CHANNEL`. Markers are kept apart.
The kernels take and return the overflow correction, so a stream decodes chunk by chunk; on a
malformed record they stop and return its index, and the wrapper raises `FormatError`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import IntEnum

import numpy as np
from numpy.typing import NDArray

from drivers.errors import FormatError
from drivers.jit import kernel

__all__ = [
    "COMPATIBLE_OVERFLOW_COUNT",
    "SYNC_CHANNEL",
    "RecordType",
    "RecordFormat",
    "record_format",
    "T2Records",
    "T3Records",
    "decode_t2",
    "decode_t2_chunks",
    "decode_t3",
    "decode_t3_chunks",
    "encode_t2",
    "encode_t3",
]

SYNC_CHANNEL = 64
"""Channel number given to sync events in T2 streams (above every real input index 0..63)."""

_INT64_MAX = (1 << 63) - 1

COMPATIBLE_OVERFLOW_COUNT = 127
"""Largest wrap count the encoder puts in one HydraHarp v2-family T2 overflow record by default.

The field holds up to 2**25 - 1, but readers that form count * 2**25 in 32-bit arithmetic
(ptufile 2026.2 does) misread counts from 128 on; staying below costs one record per 127 wraps
(about 4 ms at 1 ps ticks) and keeps our files readable everywhere."""


class RecordType(IntEnum):
    """`TTResultFormat_TTTRRecType` codes of the PicoQuant 32-bit record formats."""

    PICOHARP_T2 = 0x00010203
    PICOHARP_T3 = 0x00010303
    HYDRAHARP_V1_T2 = 0x00010204
    HYDRAHARP_V1_T3 = 0x00010304
    HYDRAHARP_V2_T2 = 0x01010204
    HYDRAHARP_V2_T3 = 0x01010304
    TIMEHARP260N_T2 = 0x00010205
    TIMEHARP260N_T3 = 0x00010305
    TIMEHARP260P_T2 = 0x00010206
    TIMEHARP260P_T3 = 0x00010306
    GENERIC_T2 = 0x00010207  # MultiHarp, PicoHarp 330
    GENERIC_T3 = 0x00010307


@dataclass(frozen=True)
class RecordFormat:
    """What a decoder needs to know about one record type."""

    record_type: RecordType
    t3: bool
    picoharp: bool  # PicoHarp 300 layout; otherwise the HydraHarp layout
    v1: bool  # HydraHarp v1: one wrap per overflow record
    wrap: int  # ticks (T2) or syncs (T3) per overflow
    max_input: int  # highest zero-based input index the layout can hold
    max_dtime: int  # T3 only

    @property
    def mode(self) -> str:
        """'T2' or 'T3'."""
        return "T3" if self.t3 else "T2"

    @property
    def has_sync_records(self) -> bool:
        """Whether the layout has a sync event record (HydraHarp-family T2)."""
        return not self.t3 and not self.picoharp


def _format(rt: RecordType) -> RecordFormat:
    t3 = (rt >> 8) & 0xFF == 3
    if rt in (RecordType.PICOHARP_T2, RecordType.PICOHARP_T3):
        if t3:
            return RecordFormat(rt, True, True, False, 65536, 3, 0xFFF)
        return RecordFormat(rt, False, True, False, 210698240, 4, 0)
    v1 = rt in (RecordType.HYDRAHARP_V1_T2, RecordType.HYDRAHARP_V1_T3)
    if t3:
        return RecordFormat(rt, True, False, v1, 1024, 63, 0x7FFF)
    return RecordFormat(rt, False, False, v1, 33552000 if v1 else 33554432, 63, 0)


_FORMATS = {rt: _format(rt) for rt in RecordType}


def record_format(record_type: int) -> RecordFormat:
    """The layout of `record_type`; ValueError naming the known codes if it is not one."""
    try:
        return _FORMATS[RecordType(int(record_type))]
    except ValueError:
        known = ", ".join(f"0x{int(rt):08X} ({rt.name})" for rt in RecordType)
        raise ValueError(
            f"record_type 0x{int(record_type) & 0xFFFFFFFF:08X} is not a known PTU record type; known: {known}"
        ) from None


@dataclass(frozen=True)
class T2Records:
    """Decoded T2 records: photons (and sync events) in `time_ps`/`channel`, markers apart."""

    time_ps: NDArray[np.int64]
    channel: NDArray[np.uint8]
    marker_time_ps: NDArray[np.int64]
    marker_bits: NDArray[np.uint8]
    overflow: int  # correction after the last record, in ticks (carry into the next chunk)


@dataclass(frozen=True)
class T3Records:
    """Decoded T3 records: photons in `sync`/`dtime`/`channel`, markers apart."""

    sync: NDArray[np.int64]
    dtime: NDArray[np.uint16]
    channel: NDArray[np.uint8]
    marker_sync: NDArray[np.int64]
    marker_bits: NDArray[np.uint8]
    overflow: int  # correction after the last record, in syncs


# --- decoders -------------------------------------------------------------------------------------
# Every record writes its photon slot unconditionally and advances the output index only for
# photons: the common path has no data-dependent branch. Special records take the rare branch.
# Markers fill the same output arrays from the top down: after i records k photons and m markers
# satisfy k + m <= i, so the two ends never meet and no second set of buffers is needed.
# Errors: 1 = invalid record, 2 = the overflow correction would leave int64.


@kernel
def _decode_t2_hydraharp(records, v1, wrap, scale, ofl, limit, time, channel):  # pragma: no cover
    k = 0
    m = 0
    top = channel.size - 1
    for i in range(records.size):
        r = np.int64(records[i])
        tt = r & 0x1FFFFFF
        ch = (r >> 25) & 63
        special = r >> 31
        time[k] = (ofl + tt) * scale
        channel[k] = ch
        k += 1 - special
        is_ovf = special & np.int64(ch == 63)
        count = 1 if v1 else tt + np.int64(tt == 0)
        ofl += is_ovf * wrap * count
        if ofl > limit:
            return k, m, ofl, i, 2
        if special - is_ovf:
            if ch == 0:
                channel[k] = 64
                k += 1
            elif ch <= 15:
                time[top - m] = (ofl + tt) * scale
                channel[top - m] = ch
                m += 1
            else:
                return k, m, ofl, i, 1
    return k, m, ofl, -1, 0


@kernel
def _decode_t2_picoharp(records, wrap, scale, ofl, limit, time, channel):  # pragma: no cover
    k = 0
    m = 0
    top = channel.size - 1
    for i in range(records.size):
        r = np.int64(records[i])
        tt = r & 0xFFFFFFF
        ch = r >> 28
        time[k] = (ofl + tt) * scale
        channel[k] = ch
        k += np.int64(ch <= 4)
        is_ovf = np.int64(ch == 15) & np.int64((tt & 15) == 0)
        ofl += is_ovf * wrap
        if ofl > limit:
            return k, m, ofl, i, 2
        if np.int64(ch > 4) - is_ovf:
            if ch != 15:
                return k, m, ofl, i, 1
            time[top - m] = (ofl + tt) * scale
            channel[top - m] = tt & 15
            m += 1
    return k, m, ofl, -1, 0


@kernel
def _decode_t3_hydraharp(records, v1, wrap, ofl, limit, sync, dtime, channel):  # pragma: no cover
    k = 0
    m = 0
    top = channel.size - 1
    for i in range(records.size):
        r = np.int64(records[i])
        nsync = r & 1023
        special = r >> 31
        ch = (r >> 25) & 63
        sync[k] = ofl + nsync
        dtime[k] = (r >> 10) & 0x7FFF
        channel[k] = ch
        k += 1 - special
        is_ovf = special & np.int64(ch == 63)
        count = 1 if v1 else nsync + np.int64(nsync == 0)
        ofl += is_ovf * wrap * count
        if ofl > limit:
            return k, m, ofl, i, 2
        if special - is_ovf:
            if ch >= 1 and ch <= 15:
                sync[top - m] = ofl + nsync
                channel[top - m] = ch
                m += 1
            else:
                return k, m, ofl, i, 1
    return k, m, ofl, -1, 0


@kernel
def _decode_t3_picoharp(records, wrap, ofl, limit, sync, dtime, channel):  # pragma: no cover
    k = 0
    m = 0
    top = channel.size - 1
    for i in range(records.size):
        r = np.int64(records[i])
        nsync = r & 0xFFFF
        dt = (r >> 16) & 0xFFF
        ch = r >> 28
        sync[k] = ofl + nsync
        dtime[k] = dt
        channel[k] = ch - 1
        valid = np.int64(ch >= 1) & np.int64(ch <= 4)
        k += valid
        is_ovf = np.int64(ch == 15) & np.int64(dt == 0)
        ofl += is_ovf * wrap
        if ofl > limit:
            return k, m, ofl, i, 2
        if 1 - valid - is_ovf:
            if ch != 15 or dt > 15:
                return k, m, ofl, i, 1
            sync[top - m] = ofl + nsync
            channel[top - m] = dt
            m += 1
    return k, m, ofl, -1, 0


def _check_records(records: object) -> NDArray[np.uint32]:
    if not isinstance(records, np.ndarray) or records.dtype != np.uint32 or records.ndim != 1:
        raise ValueError("records must be a 1-D numpy uint32 array of PTU records")
    return np.ascontiguousarray(records)


def _raise_record_error(
    records: NDArray[np.uint32], fmt: RecordFormat, index: int, code: int, byte_offset: int
) -> None:
    where = byte_offset + 4 * index
    value = int(records[index])
    if code == 2:
        raise FormatError(
            f"record 0x{value:08X} at byte offset {where}: overflow correction leaves the int64 time range"
        )
    raise FormatError(f"record 0x{value:08X} at byte offset {where} is not a valid {fmt.record_type.name} record")


def _shrink(a: NDArray, n: int) -> NDArray:
    """`a[:n]`, copied when most of the buffer would otherwise be kept alive for nothing."""
    return a[:n].copy() if 2 * n < a.size else a[:n]


def _decode_chunks(
    fmt: RecordFormat,
    chunks: Iterable[NDArray[np.uint32]],
    n: int,
    scale: int,
    overflow: int,
    byte_offset: int,
) -> tuple[tuple[NDArray, ...], tuple[NDArray, ...], int]:
    """Run the format's kernel over `chunks` (n records in all) into one set of output buffers.

    Each chunk decodes into the free middle of the buffers (photons grow up from the bottom,
    markers down from the top), so a file read in small pieces needs no concatenation.
    Returns the photon arrays, the marker arrays (time or sync, bits) and the final overflow.
    """
    if overflow < 0:
        raise ValueError(f"overflow must be >= 0, got {overflow}")
    when = np.empty(n, np.int64)
    channel = np.empty(n, np.uint8)
    dtime = np.empty(n if fmt.t3 else 0, np.uint16)
    if fmt.t3:
        limit = _INT64_MAX - (1 << 36)
    else:
        limit = min(_INT64_MAX - (1 << 51), _INT64_MAX // scale - (1 << 28))
    if overflow > limit:
        raise ValueError(f"overflow must be <= {limit}, got {overflow}")
    k = m = done = 0
    ofl = overflow
    for records in chunks:
        records = _check_records(records)
        if done + records.size > n:
            raise ValueError(f"chunks hold more than the announced {n} records")
        free_t, free_c = when[k : n - m], channel[k : n - m]
        if fmt.t3 and fmt.picoharp:
            dk, dm, ofl, bad, code = _decode_t3_picoharp(
                records, fmt.wrap, ofl, limit, free_t, dtime[k : n - m], free_c
            )
        elif fmt.t3:
            dk, dm, ofl, bad, code = _decode_t3_hydraharp(
                records, fmt.v1, fmt.wrap, ofl, limit, free_t, dtime[k : n - m], free_c
            )
        elif fmt.picoharp:
            dk, dm, ofl, bad, code = _decode_t2_picoharp(records, fmt.wrap, scale, ofl, limit, free_t, free_c)
        else:
            dk, dm, ofl, bad, code = _decode_t2_hydraharp(records, fmt.v1, fmt.wrap, scale, ofl, limit, free_t, free_c)
        if bad >= 0:
            _raise_record_error(records, fmt, bad, code, byte_offset + 4 * done)
        k += dk
        m += dm
        done += records.size
    if done != n:
        raise ValueError(f"chunks hold {done} records, {n} were announced")
    photons = (_shrink(when, k), _shrink(channel, k)) + ((_shrink(dtime, k),) if fmt.t3 else ())
    markers = (when[n - m :][::-1].copy(), channel[n - m :][::-1].copy())
    return photons, markers, int(ofl)


def _t2_scale(fmt: RecordFormat, resolution_ps: int) -> int:
    if fmt.t3:
        raise ValueError(f"record_type {fmt.record_type.name} is a T3 format; use decode_t3")
    if int(resolution_ps) < 1:
        raise ValueError(f"resolution_ps must be a positive integer, got {resolution_ps}")
    return int(resolution_ps)


def decode_t2(
    records: NDArray[np.uint32],
    record_type: int,
    *,
    resolution_ps: int = 1,
    overflow: int = 0,
    byte_offset: int = 0,
) -> T2Records:
    """Decode T2 records into times in ps (ticks times `resolution_ps`), channels and markers.

    `overflow` is the correction carried from the previous chunk; `byte_offset` is where
    `records[0]` sits in its file, used only in error messages.
    """
    records = _check_records(records)
    fmt = record_format(record_type)
    return decode_t2_chunks(
        [records],
        records.size,
        fmt.record_type,
        resolution_ps=resolution_ps,
        overflow=overflow,
        byte_offset=byte_offset,
    )


def decode_t2_chunks(
    chunks: Iterable[NDArray[np.uint32]],
    n_records: int,
    record_type: int,
    *,
    resolution_ps: int = 1,
    overflow: int = 0,
    byte_offset: int = 0,
) -> T2Records:
    """`decode_t2` over consecutive chunks of `n_records` records in all (a file read piece by piece
    into one reused buffer: the records never need to be in memory at once)."""
    fmt = record_format(record_type)
    scale = _t2_scale(fmt, resolution_ps)
    (time, channel), (mtime, mbits), ofl = _decode_chunks(fmt, chunks, n_records, scale, overflow, byte_offset)
    return T2Records(time, channel, mtime, mbits, ofl)


def decode_t3(
    records: NDArray[np.uint32],
    record_type: int,
    *,
    overflow: int = 0,
    byte_offset: int = 0,
) -> T3Records:
    """Decode T3 records into sync counts (overflow resolved), dtime bins, channels and markers."""
    records = _check_records(records)
    return decode_t3_chunks([records], records.size, record_type, overflow=overflow, byte_offset=byte_offset)


def decode_t3_chunks(
    chunks: Iterable[NDArray[np.uint32]],
    n_records: int,
    record_type: int,
    *,
    overflow: int = 0,
    byte_offset: int = 0,
) -> T3Records:
    """`decode_t3` over consecutive chunks of `n_records` records in all."""
    fmt = record_format(record_type)
    if not fmt.t3:
        raise ValueError(f"record_type {fmt.record_type.name} is a T2 format; use decode_t2")
    (sync, channel, dtime), (msync, mbits), ofl = _decode_chunks(fmt, chunks, n_records, 1, overflow, byte_offset)
    return T3Records(sync, dtime, channel, msync, mbits, ofl)


# --- encoders -------------------------------------------------------------------------------------
# Input: events sorted by time, `code` 0..63 an input, 64 a sync event, 65 + bits a marker.
# Overflow records are inserted whenever the next event lies past the current wrap.


@kernel
def _encode_t2(times, codes, picoharp, v1, wrap, max_count, out):  # pragma: no cover
    n_out = 0
    cur = 0  # wraps emitted so far
    for i in range(times.size):
        t = times[i]
        target = t // wrap
        while cur < target:
            if picoharp:
                out[n_out] = np.uint32(0xF0000000)
                cur += 1
            elif v1:
                out[n_out] = np.uint32(0xFE000000)
                cur += 1
            else:
                c = min(target - cur, max_count)
                out[n_out] = np.uint32(0xFE000000 | c)
                cur += c
            n_out += 1
        tt = t - cur * wrap
        c = codes[i]
        if picoharp:
            if c >= 65:
                out[n_out] = np.uint32((15 << 28) | (tt & 0xFFFFFF0) | (c - 65))
            else:
                out[n_out] = np.uint32((c << 28) | tt)
        else:
            if c >= 65:
                out[n_out] = np.uint32((1 << 31) | ((c - 65) << 25) | tt)
            elif c == 64:
                out[n_out] = np.uint32((1 << 31) | tt)
            else:
                out[n_out] = np.uint32((c << 25) | tt)
        n_out += 1
    return n_out


@kernel
def _encode_t3(syncs, dtimes, codes, picoharp, v1, wrap, out):  # pragma: no cover
    n_out = 0
    cur = 0
    for i in range(syncs.size):
        s = syncs[i]
        target = s // wrap
        while cur < target:
            if picoharp:
                out[n_out] = np.uint32(0xF0000000)
                cur += 1
            elif v1:
                out[n_out] = np.uint32(0xFE000000)
                cur += 1
            else:
                c = min(target - cur, 1023)
                out[n_out] = np.uint32(0xFE000000 | c)
                cur += c
            n_out += 1
        ns = s - cur * wrap
        c = codes[i]
        if picoharp:
            if c >= 65:
                out[n_out] = np.uint32((15 << 28) | ((c - 65) << 16) | ns)
            else:
                out[n_out] = np.uint32(((c + 1) << 28) | (dtimes[i] << 16) | ns)
        else:
            if c >= 65:
                out[n_out] = np.uint32((1 << 31) | ((c - 65) << 25) | ns)
            else:
                out[n_out] = np.uint32((c << 25) | (dtimes[i] << 10) | ns)
        n_out += 1
    return n_out


def _int_array(a: object, name: str) -> NDArray[np.int64]:
    arr = np.asarray(a)
    if arr.ndim != 1 or (arr.size and arr.dtype.kind not in "iu"):
        raise ValueError(f"{name} must be a 1-D integer array, got dtype {arr.dtype} and shape {arr.shape}")
    return arr.astype(np.int64, copy=False)


def _merge_events(
    times: NDArray[np.int64],
    codes: NDArray[np.int64],
    marker_times: NDArray[np.int64],
    marker_bits: NDArray[np.int64],
    extra: NDArray[np.int64] | None = None,
) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.int64] | None]:
    """Photons and markers in one time-ordered event list (stable: photons first at equal times)."""
    all_t = np.concatenate([times, marker_times])
    all_c = np.concatenate([codes, 65 + marker_bits])
    order = np.argsort(all_t, kind="stable")
    merged_extra = None
    if extra is not None:
        merged_extra = np.concatenate([extra, np.zeros(marker_times.size, np.int64)])[order]
    return np.ascontiguousarray(all_t[order]), np.ascontiguousarray(all_c[order]), merged_extra


def _check_markers(marker_at: object, marker_bits: object, name: str) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    at = _int_array(np.empty(0, np.int64) if marker_at is None else marker_at, name)
    bits = _int_array(np.empty(0, np.int64) if marker_bits is None else marker_bits, "marker_bits")
    if at.size != bits.size:
        raise ValueError(f"{name} and marker_bits must have equal length, got {at.size} and {bits.size}")
    if bits.size and (bits.min() < 1 or bits.max() > 15):
        raise ValueError("marker_bits must lie in 1..15 (four marker inputs)")
    return at, bits


def _capacity(n: int, last: int, fmt: RecordFormat, per_record: int) -> int:
    wraps = last // fmt.wrap if n else 0
    if fmt.picoharp or fmt.v1:
        return n + wraps
    return 2 * n + wraps // per_record + 1


_MAX_RECORDS = 1 << 30  # 4 GiB of records: more means the times are wrong, not the encoder


def encode_t2(
    record_type: int,
    ticks: object,
    channel: object,
    *,
    marker_ticks: object = None,
    marker_bits: object = None,
    max_overflow_count: int = COMPATIBLE_OVERFLOW_COUNT,
) -> NDArray[np.uint32]:
    """Encode T2 events (times in ticks of the global resolution) into records with overflows.

    `channel` holds zero-based inputs, or `SYNC_CHANNEL` for sync events where the format has them.
    Events are written in time order (stable). PicoHarp 300 markers carry their bits in the low
    four time bits, so a marker at tick t reads back at `(t & ~15) | bits`. `max_overflow_count`
    (HydraHarp v2 family, 1..2**25-1) caps the wraps per overflow record.
    """
    fmt = record_format(record_type)
    if not 1 <= max_overflow_count <= (1 << 25) - 1:
        raise ValueError(f"max_overflow_count must lie in 1..{(1 << 25) - 1}, got {max_overflow_count}")
    if fmt.t3:
        raise ValueError(f"record_type {fmt.record_type.name} is a T3 format; use encode_t3")
    t = _int_array(ticks, "ticks")
    c = _int_array(channel, "channel")
    if t.size != c.size:
        raise ValueError(f"ticks and channel must have equal length, got {t.size} and {c.size}")
    mt, mb = _check_markers(marker_ticks, marker_bits, "marker_ticks")
    if (t.size and t.min() < 0) or (mt.size and mt.min() < 0):
        raise ValueError("ticks and marker_ticks must be >= 0")
    bad = (c < 0) | (c > fmt.max_input)
    if fmt.has_sync_records:
        bad &= c != SYNC_CHANNEL
    if c.size and bad.any():
        allowed = f"0..{fmt.max_input}" + (f" or SYNC_CHANNEL={SYNC_CHANNEL}" if fmt.has_sync_records else "")
        raise ValueError(f"channel must lie in {allowed} for {fmt.record_type.name}")
    times, codes, _ = _merge_events(t, c, mt, mb)
    last = int(times[-1]) if times.size else 0
    cap = _capacity(times.size, last, fmt, max_overflow_count)
    if cap > _MAX_RECORDS:
        raise ValueError(
            f"ticks span {last // fmt.wrap} wrap-arounds; {fmt.record_type.name} would need over {_MAX_RECORDS} records"
        )
    out = np.empty(cap, np.uint32)
    n = _encode_t2(times, codes, fmt.picoharp, fmt.v1, fmt.wrap, max_overflow_count, out)
    return out[:n].copy()


def encode_t3(
    record_type: int,
    sync: object,
    dtime: object,
    channel: object,
    *,
    marker_sync: object = None,
    marker_bits: object = None,
) -> NDArray[np.uint32]:
    """Encode T3 events (absolute sync counts, dtime bins, zero-based inputs) into records with overflows."""
    fmt = record_format(record_type)
    if not fmt.t3:
        raise ValueError(f"record_type {fmt.record_type.name} is a T2 format; use encode_t2")
    s = _int_array(sync, "sync")
    d = _int_array(dtime, "dtime")
    c = _int_array(channel, "channel")
    if not (s.size == d.size == c.size):
        raise ValueError(f"sync, dtime and channel must have equal length, got {s.size}, {d.size}, {c.size}")
    ms, mb = _check_markers(marker_sync, marker_bits, "marker_sync")
    if (s.size and s.min() < 0) or (ms.size and ms.min() < 0):
        raise ValueError("sync and marker_sync must be >= 0")
    if c.size and (c.min() < 0 or c.max() > fmt.max_input):
        raise ValueError(f"channel must lie in 0..{fmt.max_input} for {fmt.record_type.name}")
    if d.size and (d.min() < 0 or d.max() > fmt.max_dtime):
        raise ValueError(f"dtime must lie in 0..{fmt.max_dtime} for {fmt.record_type.name}")
    syncs, codes, dtimes = _merge_events(s, c, ms, mb, d)
    assert dtimes is not None
    last = int(syncs[-1]) if syncs.size else 0
    cap = _capacity(syncs.size, last, fmt, 1023)
    if cap > _MAX_RECORDS:
        raise ValueError(
            f"sync spans {last // fmt.wrap} wrap-arounds; {fmt.record_type.name} would need over {_MAX_RECORDS} records"
        )
    out = np.empty(cap, np.uint32)
    n = _encode_t3(syncs, dtimes, codes, fmt.picoharp, fmt.v1, fmt.wrap, out)
    return out[:n].copy()

"""Slow, obviously correct record decoders: one Python int at a time, as PicoQuant's demo readers do.

Each returns (photons, markers, overflow): photons as (time, channel[, dtime]) tuples, markers
as (time, bits); `time` is ticks (T2) or sync counts (T3) with the overflow correction added.
An invalid record raises ValueError with its index.
"""

from __future__ import annotations

from collections.abc import Iterable

PICOHARP_T2_WRAP = 210698240
PICOHARP_T3_WRAP = 65536
HYDRAHARP_V1_T2_WRAP = 33552000
HYDRAHARP_V2_T2_WRAP = 33554432
HYDRAHARP_T3_WRAP = 1024
SYNC = 64


def naive_picoharp_t2(records: Iterable[int], ofl: int = 0):
    photons, markers = [], []
    for i, r in enumerate(records):
        channel = r >> 28
        time = r & 0x0FFFFFFF
        if channel == 0xF:
            if time & 0xF == 0:
                ofl += PICOHARP_T2_WRAP
            else:
                markers.append((ofl + time, time & 0xF))
        elif channel <= 4:
            photons.append((ofl + time, channel))
        else:
            raise ValueError(i)
    return photons, markers, ofl


def naive_picoharp_t3(records: Iterable[int], ofl: int = 0):
    photons, markers = [], []
    for i, r in enumerate(records):
        nsync = r & 0xFFFF
        dtime = (r >> 16) & 0xFFF
        channel = r >> 28
        if channel == 0xF:
            if dtime == 0:
                ofl += PICOHARP_T3_WRAP
            elif dtime <= 15:
                markers.append((ofl + nsync, dtime))
            else:
                raise ValueError(i)
        elif 1 <= channel <= 4:
            photons.append((ofl + nsync, channel - 1, dtime))
        else:
            raise ValueError(i)
    return photons, markers, ofl


def naive_hydraharp_t2(records: Iterable[int], version: int, ofl: int = 0):
    photons, markers = [], []
    for i, r in enumerate(records):
        special = r >> 31
        channel = (r >> 25) & 0x3F
        timetag = r & 0x1FFFFFF
        if special:
            if channel == 0x3F:
                if version == 1:
                    ofl += HYDRAHARP_V1_T2_WRAP
                else:
                    ofl += HYDRAHARP_V2_T2_WRAP * max(timetag, 1)
            elif 1 <= channel <= 15:
                markers.append((ofl + timetag, channel))
            elif channel == 0:
                photons.append((ofl + timetag, SYNC))
            else:
                raise ValueError(i)
        else:
            photons.append((ofl + timetag, channel))
    return photons, markers, ofl


def naive_hydraharp_t3(records: Iterable[int], version: int, ofl: int = 0):
    photons, markers = [], []
    for i, r in enumerate(records):
        special = r >> 31
        channel = (r >> 25) & 0x3F
        dtime = (r >> 10) & 0x7FFF
        nsync = r & 0x3FF
        if special:
            if channel == 0x3F:
                if version == 1:
                    ofl += HYDRAHARP_T3_WRAP
                else:
                    ofl += HYDRAHARP_T3_WRAP * max(nsync, 1)
            elif 1 <= channel <= 15:
                markers.append((ofl + nsync, channel))
            else:
                raise ValueError(i)
        else:
            photons.append((ofl + nsync, channel, dtime))
    return photons, markers, ofl


def naive_decode(record_type: int, records: Iterable[int], ofl: int = 0):
    """Dispatch on the `TTResultFormat_TTTRRecType` code."""
    records = [int(r) for r in records]
    t3 = (record_type >> 8) & 0xFF == 3
    if record_type == 0x00010203:
        return naive_picoharp_t2(records, ofl)
    if record_type == 0x00010303:
        return naive_picoharp_t3(records, ofl)
    version = 1 if record_type in (0x00010204, 0x00010304) else 2
    if t3:
        return naive_hydraharp_t3(records, version, ofl)
    return naive_hydraharp_t2(records, version, ofl)

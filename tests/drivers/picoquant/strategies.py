"""Hypothesis strategies for PicoQuant records and events, shared by the picoquant tests."""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from drivers.picoquant.records import SYNC_CHANNEL, RecordType, record_format

ALL_TYPES = list(RecordType)
T2_TYPES = [rt for rt in RecordType if not record_format(rt).t3]
T3_TYPES = [rt for rt in RecordType if record_format(rt).t3]


def _compose(fmt, rng: np.random.Generator, n: int, max_overflow_count: int) -> np.ndarray:
    """n valid records: about 70 % photons, the rest overflows, markers and (HydraHarp T2) syncs."""
    kind = rng.choice(4, size=n, p=[0.7, 0.15, 0.1, 0.05])  # photon, overflow, marker, sync
    u = lambda hi: rng.integers(0, hi, n, dtype=np.int64, endpoint=True)  # noqa: E731
    bits = rng.integers(1, 15, n, dtype=np.int64, endpoint=True)
    if fmt.picoharp and not fmt.t3:
        time = u((1 << 28) - 1)
        rec = np.where(kind == 0, (u(4) << 28) | time, (15 << 28) | (time & ~15))
        rec = np.where(kind >= 2, rec | bits, rec)
    elif fmt.picoharp:
        nsync = u(0xFFFF)
        rec = np.where(kind == 0, ((u(3) + 1) << 28) | (u(0xFFF) << 16) | nsync, (15 << 28) | nsync)
        rec = np.where(kind >= 2, rec | (bits << 16), rec)
    elif not fmt.t3:
        tt = u((1 << 25) - 1)
        count = u(max_overflow_count)
        special = np.where(kind == 1, 63 << 25 | count, np.where(kind == 2, bits << 25 | tt, tt))
        rec = np.where(kind == 0, (u(63) << 25) | tt, (1 << 31) | special)
    else:
        nsync = u(1023)
        dtime = u(0x7FFF) << 10
        overflow = (1 << 31) | (63 << 25) | np.minimum(nsync, max_overflow_count)
        rec = np.where(kind == 0, (u(63) << 25) | dtime | nsync, (1 << 31) | (bits << 25) | dtime | nsync)
        rec = np.where(kind == 1, overflow, rec)
    return rec.astype(np.uint32)


@st.composite
def valid_records(draw, record_type: RecordType, max_size: int = 300, max_overflow_count: int = (1 << 25) - 1):
    """A stream of valid records of `record_type`: photons, overflows, markers (and T2 sync)."""
    fmt = record_format(record_type)
    n = draw(st.integers(0, max_size))
    seed = draw(st.integers(0, 2**32 - 1))
    return _compose(fmt, np.random.default_rng(seed), n, max_overflow_count)


def raw_words(max_size: int = 200) -> st.SearchStrategy[np.ndarray]:
    """Arbitrary 32-bit words (mostly invalid for the HydraHarp layouts)."""
    return st.lists(st.integers(0, 0xFFFFFFFF), max_size=max_size).map(lambda xs: np.array(xs, dtype=np.uint32))


def _sorted_times(rng: np.random.Generator, n: int, max_gap_bits: int) -> np.ndarray:
    """Non-decreasing times: mostly short gaps (ties included), some spanning many wrap-arounds."""
    small = rng.integers(0, 2000, n, dtype=np.int64)
    large = rng.integers(0, 1 << max_gap_bits, n, dtype=np.int64)
    return np.cumsum(np.where(rng.random(n) < 0.8, small, large))


def _markers(rng: np.random.Generator, times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Up to 20 markers spread over the span of `times` (and a little beyond)."""
    m = int(rng.integers(0, 20))
    end = (int(times[-1]) if times.size else 0) + 5000
    return np.sort(rng.integers(0, end, m, dtype=np.int64)), rng.integers(1, 16, m, dtype=np.int64)


@st.composite
def t2_events(draw, record_type: RecordType, max_size: int = 300):
    """(ticks, channel, marker_ticks, marker_bits) valid for `record_type`."""
    fmt = record_format(record_type)
    n = draw(st.integers(0, max_size))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    ticks = _sorted_times(rng, n, 36 if fmt.v1 or fmt.picoharp else 44)  # v1: one record per wrap
    channels = np.array(list(range(fmt.max_input + 1)) + ([SYNC_CHANNEL] if fmt.has_sync_records else []))
    channel = rng.choice(channels, n).astype(np.int64)
    marker_ticks, marker_bits = _markers(rng, ticks)
    return ticks, channel, marker_ticks, marker_bits


@st.composite
def t3_events(draw, record_type: RecordType, max_size: int = 300):
    """(sync, dtime, channel, marker_sync, marker_bits) valid for `record_type`."""
    fmt = record_format(record_type)
    n = draw(st.integers(0, max_size))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    sync = _sorted_times(rng, n, 20 if fmt.v1 or fmt.picoharp else 30)
    dtime = rng.integers(0, fmt.max_dtime + 1, n, dtype=np.int64)
    channel = rng.integers(0, fmt.max_input + 1, n, dtype=np.int64)
    marker_sync, marker_bits = _markers(rng, sync)
    return sync, dtime, channel, marker_sync, marker_bits

"""Clock recovery and slotting: from Bob's raw time tags to detections in Alice's slots.

The sync channel carries one pulse every `sync_every` slots. `fit_clock` numbers the sync tags
(tolerating missing ones), and fits Bob-clock time against slot number by least squares: the
intercept is the clock offset, the slope the slot period on Bob's clock, whose ratio to the
nominal period is the drift. `assign_slots` maps each detector tag to the nearest slot after
removing the channel's delay relative to the sync, keeps it when it falls within a gate of
`gate_ps` centred on the expected arrival time, and counts the rest per channel.
`resolve_clicks` turns the tags of each slot into one detection (measured basis and bit),
squashing multi-clicks as real receivers do: two detectors of one basis give that basis and a
random bit, detectors of both bases a random basis and bit (each case counted). `StreamSlotter`
does all of it over a stream of tag blocks, refitting the clock on a window of recent sync tags.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import overload

import numpy as np
from numpy.typing import NDArray

from drivers.jit import kernel
from drivers.sorting import nearly_sorted

__all__ = [
    "ClockFit",
    "SlottedTags",
    "Detections",
    "number_sync_pulses",
    "fit_clock",
    "estimate_delays",
    "assign_slots",
    "resolve_clicks",
    "StreamSlotter",
]

N_CHANNELS = 256  # tagger channels are uint8


@dataclass(frozen=True)
class ClockFit:
    """Bob-clock time of slot `s`: `t_ref_ps + intercept_ps + period_ps * (s - slot_ref)` (ps).

    `drift_ppm` is the fitted period against the nominal one; `residual_rms_ps` the scatter of the
    sync tags about the line (sync jitter); `n_sync` the sync tags used, `n_sync_rejected` those
    dropped as spurious (closer than half a sync period to the previous one).
    """

    t_ref_ps: int
    slot_ref: int
    intercept_ps: float
    period_ps: float
    nominal_period_ps: float
    residual_rms_ps: float
    n_sync: int
    n_sync_rejected: int
    last_sync_slot: int

    @property
    def drift_ppm(self) -> float:
        """Fractional rate difference of Bob's clock against Alice's, in parts per million."""
        return (self.period_ps / self.nominal_period_ps - 1.0) * 1e6

    @overload
    def time_of_slot(self, slot: int) -> float: ...
    @overload
    def time_of_slot(self, slot: NDArray[np.int64]) -> NDArray[np.float64]: ...
    def time_of_slot(self, slot: int | NDArray[np.int64]) -> float | NDArray[np.float64]:
        """Expected Bob-clock time of a slot's sync-aligned arrival (float ps)."""
        return self.t_ref_ps + self.intercept_ps + self.period_ps * (np.asarray(slot, dtype=np.float64) - self.slot_ref)


@dataclass(frozen=True)
class SlottedTags:
    """Detector tags that fell in their slot's gate (in input order), and per-channel counts.
    `index` is each kept tag's position in the input."""

    slot: NDArray[np.int64]
    channel: NDArray[np.uint8]
    time: NDArray[np.int64]
    index: NDArray[np.int64] | None  # only with assign_slots(..., with_index=True)
    in_gate: NDArray[np.int64]  # per channel (index = channel number)
    out_of_gate: NDArray[np.int64]  # per channel

    def __len__(self) -> int:
        return int(self.slot.size)

    @property
    def n_out_of_gate(self) -> int:
        """Detector tags dropped because they fell outside every gate (or before slot 0)."""
        return int(self.out_of_gate.sum())

    @property
    def gate_efficiency(self) -> float:
        """Fraction of detector tags kept by the gate (1.0 when there were none)."""
        total = int(self.in_gate.sum()) + self.n_out_of_gate
        return float(self.in_gate.sum()) / total if total else 1.0


@dataclass(frozen=True)
class Detections:
    """One detection per slot with at least one click: measured basis (0 Z, 1 X) and bit, sorted
    by slot. `clicks` is the pattern of detectors that fired (bit i = detector_channels[i])."""

    slot: NDArray[np.int64]
    basis: NDArray[np.uint8]
    bit: NDArray[np.uint8]
    clicks: NDArray[np.uint8]
    time: NDArray[np.int64]
    n_double: int  # both detectors of one basis: random bit
    n_cross: int  # detectors of both bases: random basis and bit

    def __len__(self) -> int:
        return int(self.slot.size)


# ---------------------------------------------------------------------------------------------
# clock recovery


@kernel
def _number_syncs(t, sync_period, index, keep):  # pragma: no cover - numba
    """Sync pulse numbers from the gaps between sync tags; a tag less than half a period after
    the last kept one is spurious. The period estimate follows the data (drift): it is refreshed
    from the whole span each time the pulse count doubles (from 16 on)."""
    n = t.size
    index[0] = 0
    keep[0] = True
    last = 0
    inv_period = 1.0 / sync_period
    refresh = 16
    rejected = 0
    for i in range(1, n):
        m = np.int64(math.floor((t[i] - t[last]) * inv_period + 0.5))
        if m < 1:
            keep[i] = False
            index[i] = index[last]
            rejected += 1
            continue
        keep[i] = True
        index[i] = index[last] + m
        last = i
        if index[i] >= refresh:
            inv_period = index[i] / np.float64(t[i] - t[0])
            refresh = 2 * index[i]
    return rejected


@kernel
def _fit_line(index, t, keep, sync_every):  # pragma: no cover - numba
    """Least-squares line t - t[0] = a + b * slot over the kept sync tags (two passes, centred);
    returns (a, b, rms residual, tags used)."""
    n = 0
    sx = 0.0
    sy = 0.0
    t0 = t[0]
    for i in range(t.size):
        if keep[i]:
            sx += index[i] * np.float64(sync_every)
            sy += np.float64(t[i] - t0)
            n += 1
    xm = sx / n
    ym = sy / n
    sxx = 0.0
    sxy = 0.0
    for i in range(t.size):
        if keep[i]:
            dx = index[i] * np.float64(sync_every) - xm
            sxx += dx * dx
            sxy += dx * (np.float64(t[i] - t0) - ym)
    b = sxy / sxx
    a = ym - b * xm
    ss = 0.0
    for i in range(t.size):
        if keep[i]:
            r = np.float64(t[i] - t0) - (a + b * (index[i] * np.float64(sync_every)))
            ss += r * r
    return a, b, math.sqrt(ss / n), n


def number_sync_pulses(
    sync_time: NDArray[np.int64], sync_period_ps: float
) -> tuple[NDArray[np.int64], NDArray[np.bool_], int]:
    """Pulse number of each sync tag counted from the first (missing pulses leave gaps), the mask
    of tags kept, and how many were rejected as spurious."""
    t = _check_times(sync_time, "sync_time")
    if not sync_period_ps > 0:
        raise ValueError(f"sync_period_ps must be > 0, got {sync_period_ps}")
    index = np.empty(t.size, np.int64)
    keep = np.empty(t.size, np.bool_)
    if t.size == 0:
        return index, keep, 0
    rejected = _number_syncs(t, float(sync_period_ps), index, keep)
    return index, keep, int(rejected)


def fit_clock(sync_time: NDArray[np.int64], nominal_period_ps: float, sync_every: int, first_slot: int = 0) -> ClockFit:
    """Fit offset and slot period of Bob's clock from the sync tags (the first marks `first_slot`)."""
    t = _check_times(sync_time, "sync_time")
    if not nominal_period_ps > 0 or not math.isfinite(nominal_period_ps):
        raise ValueError(f"nominal_period_ps must be > 0, got {nominal_period_ps}")
    if not isinstance(sync_every, (int, np.integer)) or sync_every < 1:
        raise ValueError(f"sync_every must be an integer >= 1, got {sync_every!r}")
    if t.size < 2:
        raise ValueError(f"sync_time must hold at least 2 sync tags to fit a clock, got {t.size}")
    index, keep, rejected = number_sync_pulses(t, nominal_period_ps * sync_every)
    t_ref = int(t[0])
    if index[-1] == 0:
        raise ValueError("sync_time must span at least two distinct sync pulses")
    intercept, slope, rms, n_used = _fit_line(index, t, keep, np.int64(sync_every))
    return ClockFit(
        t_ref_ps=t_ref,
        slot_ref=int(first_slot),
        intercept_ps=float(intercept),
        period_ps=float(slope),
        nominal_period_ps=float(nominal_period_ps),
        residual_rms_ps=float(rms),
        n_sync=int(n_used),
        n_sync_rejected=rejected,
        last_sync_slot=int(first_slot + index[-1] * sync_every),
    )


# ---------------------------------------------------------------------------------------------
# slotting


@kernel
def _assign(
    time,
    channel,
    is_det,
    phase0,
    t_ref,
    inv_period,
    half_gate,
    s_min,
    out_slot,
    out_ch,
    out_t,
    want_index,
    out_i,
    in_gate,
    out_gate,
):  # pragma: no cover - numba
    """Nearest slot of each detector tag and the gate test, branch-free; returns the tags kept.
    `phase0[c]` is (intercept + delay[c]) / period; `half_gate` is in periods; slots below
    `s_min` (relative to the fit's reference) are before the session and dropped."""
    n = 0
    for i in range(time.size):
        ch = channel[i]
        x = np.float64(time[i] - t_ref) * inv_period - phase0[ch]
        s = math.floor(x + 0.5)
        r = x - s
        keep = is_det[ch] & (s >= s_min) & (r <= half_gate) & (r >= -half_gate)
        out_slot[n] = np.int64(s)
        out_ch[n] = ch
        out_t[n] = time[i]
        if want_index:
            out_i[n] = i
        n += keep
        in_gate[ch] += keep
        out_gate[ch] += is_det[ch] & ~keep
    return n


def assign_slots(
    time: NDArray[np.int64],
    channel: NDArray[np.uint8],
    fit: ClockFit,
    gate_ps: float,
    delay_ps: NDArray[np.float64] | dict[int, float] | None = None,
    detector_channels: tuple[int, ...] = (1, 2, 3, 4),
    with_index: bool = False,
) -> SlottedTags:
    """Map each detector tag to its slot; keep those within `gate_ps` of the expected arrival.

    `delay_ps[c]` is channel c's arrival delay relative to the sync-fitted slot time (an array
    indexed by channel, or a dict; default 0). Tags of other channels (the sync) are ignored.
    `with_index` also returns each kept tag's input position (e.g. to look up ground truth).
    """
    t, ch = _check_tags(time, channel)
    if not isinstance(fit, ClockFit):
        raise ValueError(f"fit must be a ClockFit, got {type(fit).__name__}")
    if not (gate_ps > 0 and gate_ps <= fit.period_ps):
        raise ValueError(f"gate_ps must be in (0, period {fit.period_ps:.1f} ps], got {gate_ps}")
    delay = _delay_table(delay_ps)
    is_det = _channel_mask(detector_channels)
    n = t.size
    out_slot = np.empty(n, np.int64)
    out_ch = np.empty(n, np.uint8)
    out_t = np.empty(n, np.int64)
    out_i = np.empty(n if with_index else 0, np.int64)
    in_gate = np.zeros(N_CHANNELS, np.int64)
    out_gate = np.zeros(N_CHANNELS, np.int64)
    # slot numbers are counted from slot_ref inside the kernel
    phase0 = (fit.intercept_ps + delay) / fit.period_ps
    k = _assign(
        t,
        ch,
        is_det,
        phase0,
        np.int64(fit.t_ref_ps),
        1.0 / fit.period_ps,
        0.5 * float(gate_ps) / fit.period_ps,
        float(-fit.slot_ref),
        out_slot,
        out_ch,
        out_t,
        bool(with_index),
        out_i,
        in_gate,
        out_gate,
    )
    slot = out_slot[:k]
    if fit.slot_ref:
        slot += fit.slot_ref
    return SlottedTags(slot, out_ch[:k], out_t[:k], out_i[:k] if with_index else None, in_gate, out_gate)


@kernel
def _phase_sums(time, channel, is_det, t_ref, intercept, inv_period, sums):  # pragma: no cover - numba
    two_pi = 6.283185307179586
    for i in range(time.size):
        ch = channel[i]
        if not is_det[ch]:
            continue
        x = (np.float64(time[i] - t_ref) - intercept) * inv_period
        a = two_pi * (x - math.floor(x))
        sums[ch, 0] += math.cos(a)
        sums[ch, 1] += math.sin(a)
        sums[ch, 2] += 1.0


def estimate_delays(
    time: NDArray[np.int64],
    channel: NDArray[np.uint8],
    fit: ClockFit,
    detector_channels: tuple[int, ...] = (1, 2, 3, 4),
    hint_ps: NDArray[np.float64] | dict[int, float] | None = None,
) -> NDArray[np.float64]:
    """Each channel's arrival delay relative to the sync, from the circular mean of the tags'
    phase within the slot (uniform background averages out). The phase fixes the delay only
    modulo one period: the result is the value nearest `hint_ps[c]` (default 0). Channels
    without tags keep their hint."""
    t, ch = _check_tags(time, channel)
    hint = _delay_table(hint_ps)
    is_det = _channel_mask(detector_channels)
    sums = np.zeros((N_CHANNELS, 3))
    _phase_sums(t, ch, is_det, np.int64(fit.t_ref_ps), float(fit.intercept_ps), 1.0 / fit.period_ps, sums)
    out = hint.copy()
    b = fit.period_ps
    for c in detector_channels:
        if sums[c, 2] == 0:
            continue
        phase = math.atan2(sums[c, 1], sums[c, 0]) / (2 * math.pi) * b
        out[c] = hint[c] + ((phase - hint[c] + 0.5 * b) % b) - 0.5 * b
    return out


# ---------------------------------------------------------------------------------------------
# multi-click resolution


@kernel
def _group_slots(slot, channel, time, bit_of_channel, g_slot, g_mask, g_time):  # pragma: no cover - numba
    """Sort (slot, channel, time) by slot in place (insertion sort: the input is nearly sorted)
    and OR the click patterns of each slot; returns the number of slots."""
    n = slot.size
    nearly_sorted(slot, channel, time)
    g = -1
    for i in range(n):
        if g < 0 or slot[i] != g_slot[g]:
            g += 1
            g_slot[g] = slot[i]
            g_mask[g] = 0
            g_time[g] = time[i]
        g_mask[g] |= bit_of_channel[channel[i]]
        if time[i] < g_time[g]:
            g_time[g] = time[i]
    return g + 1


# click pattern (bits Z0, Z1, X0, X1) -> (basis, bit); 255 = squashed to a random choice
_SINGLE_BASIS = np.full(16, 255, np.uint8)
_SINGLE_BIT = np.full(16, 255, np.uint8)
for _m in range(1, 16):
    _z, _x = _m & 3, _m >> 2
    if _z and not _x:
        _SINGLE_BASIS[_m] = 0
        _SINGLE_BIT[_m] = {1: 0, 2: 1, 3: 255}[_z]
    elif _x and not _z:
        _SINGLE_BASIS[_m] = 1
        _SINGLE_BIT[_m] = {1: 0, 2: 1, 3: 255}[_x]


def resolve_clicks(
    slot: NDArray[np.int64],
    channel: NDArray[np.uint8],
    time: NDArray[np.int64] | None = None,
    detector_channels: tuple[int, int, int, int] = (1, 2, 3, 4),
    rng: np.random.Generator | None = None,
) -> Detections:
    """One detection per slot from the slotted tags of the detectors (Z0, Z1, X0, X1).

    Multi-click squashing draws random bits from `os.urandom` (they become key bits); pass a
    seeded `rng` only in tests and simulations.
    """
    slot = np.array(slot, dtype=np.int64, copy=True)
    channel = np.array(channel, copy=True)
    if slot.ndim != 1 or channel.ndim != 1 or slot.size != channel.size:
        raise ValueError("slot and channel must be 1-D arrays of equal length")
    if channel.dtype != np.uint8:
        raise ValueError(f"channel must be uint8, got {channel.dtype}")
    if time is None:
        time = np.zeros(slot.size, np.int64)
    else:
        time = np.array(time, dtype=np.int64, copy=True)
        if time.shape != slot.shape:
            raise ValueError("time must have the same length as slot")
    if len(detector_channels) != 4 or len(set(detector_channels)) != 4:
        raise ValueError(f"detector_channels must be 4 distinct channels (Z0, Z1, X0, X1), got {detector_channels}")
    bit_of_channel = _click_bits(detector_channels)
    if slot.size and not bit_of_channel[channel].all():
        raise ValueError("channel holds a channel that is not one of detector_channels")
    return _squash_clicks(slot, channel, time, bit_of_channel, rng)


def _click_bits(detector_channels: tuple[int, int, int, int]) -> NDArray[np.uint8]:
    """Per tagger channel, its bit in the click pattern (0 for a channel that is no detector)."""
    bit_of_channel = np.zeros(N_CHANNELS, np.uint8)
    for i, c in enumerate(detector_channels):
        if not 0 <= c < N_CHANNELS:
            raise ValueError(f"detector_channels must be in 0..255, got {c}")
        bit_of_channel[c] = 1 << i
    return bit_of_channel


def _squash_clicks(
    slot: NDArray[np.int64],
    channel: NDArray[np.uint8],
    time: NDArray[np.int64],
    bit_of_channel: NDArray[np.uint8],
    rng: np.random.Generator | None,
) -> Detections:
    """`resolve_clicks` on checked arrays it may reorder in place (detector channels only)."""
    n = slot.size
    g_slot = np.empty(n, np.int64)
    g_mask = np.empty(n, np.uint8)
    g_time = np.empty(n, np.int64)
    m = _group_slots(slot, channel, time, bit_of_channel, g_slot, g_mask, g_time)
    g_slot, g_mask, g_time = g_slot[:m], g_mask[:m], g_time[:m]
    basis, bit = np.empty(m, np.uint8), np.empty(m, np.uint8)
    n_cross, n_double = _measured(g_mask, _SINGLE_BASIS, _SINGLE_BIT, basis, bit)
    n_random = 2 * n_cross + n_double
    if n_random:
        if rng is None:
            coins = np.frombuffer(os.urandom(n_random), np.uint8) & 1
        else:
            coins = rng.integers(0, 2, n_random, dtype=np.uint8)
        _place_coins(basis, bit, coins, n_cross)
    return Detections(g_slot, basis, bit, g_mask, g_time, int(n_double), int(n_cross))


@kernel
def _measured(mask, single_basis, single_bit, basis, bit):  # pragma: no cover - numba
    """Basis and bit of each click pattern (255 where squashing must draw a coin); returns
    (cross-basis slots, double clicks within one basis)."""
    n_cross = 0
    n_double = 0
    for i in range(mask.size):
        b = single_basis[mask[i]]
        v = single_bit[mask[i]]
        basis[i] = b
        bit[i] = v
        n_cross += b == 255
        n_double += (v == 255) & (b != 255)
    return n_cross, n_double


@kernel
def _place_coins(basis, bit, coins, n_cross):  # pragma: no cover - numba
    """The coins in slot order: cross-basis slots take basis coins[0:n_cross] and bit
    coins[n_cross:2 n_cross], double clicks take bit coins[2 n_cross:] (numpy's boolean-mask order)."""
    c = 0
    d = 2 * n_cross
    for i in range(basis.size):
        if basis[i] == 255:
            basis[i] = coins[c]
            bit[i] = coins[n_cross + c]
            c += 1
        elif bit[i] == 255:
            bit[i] = coins[d]
            d += 1


# ---------------------------------------------------------------------------------------------
# validation helpers


def _check_times(t: NDArray[np.int64], name: str) -> NDArray[np.int64]:
    t = np.ascontiguousarray(t)
    if t.ndim != 1 or t.dtype != np.int64:
        raise ValueError(f"{name} must be a 1-D int64 array of picoseconds, got {t.dtype}{t.shape}")
    if t.size > 1 and np.any(t[1:] < t[:-1]):
        raise ValueError(f"{name} must be sorted by time")
    return t


def _check_tags(time: NDArray[np.int64], channel: NDArray[np.uint8]) -> tuple[NDArray[np.int64], NDArray[np.uint8]]:
    t = np.ascontiguousarray(time)
    c = np.ascontiguousarray(channel)
    if t.ndim != 1 or t.dtype != np.int64:
        raise ValueError(f"time must be a 1-D int64 array of picoseconds, got {t.dtype}{t.shape}")
    if c.ndim != 1 or c.dtype != np.uint8 or c.size != t.size:
        raise ValueError(f"channel must be a 1-D uint8 array as long as time, got {c.dtype}{c.shape}")
    return t, c


def _delay_table(delay_ps: NDArray[np.float64] | dict[int, float] | None) -> NDArray[np.float64]:
    table = np.zeros(N_CHANNELS, np.float64)
    if delay_ps is None:
        return table
    if isinstance(delay_ps, dict):
        for c, d in delay_ps.items():
            if not 0 <= int(c) < N_CHANNELS:
                raise ValueError(f"delay_ps keys must be channels 0..255, got {c}")
            table[int(c)] = float(d)
    else:
        arr = np.asarray(delay_ps, dtype=np.float64)
        if arr.ndim != 1 or arr.size > N_CHANNELS:
            raise ValueError(
                f"delay_ps must be a 1-D array indexed by channel (at most {N_CHANNELS}), got shape {arr.shape}"
            )
        table[: arr.size] = arr
    if not np.all(np.isfinite(table)):
        raise ValueError("delay_ps must be finite")
    return table


def _channel_mask(detector_channels: tuple[int, ...]) -> NDArray[np.bool_]:
    mask = np.zeros(N_CHANNELS, np.bool_)
    for c in detector_channels:
        if not 0 <= int(c) < N_CHANNELS:
            raise ValueError(f"detector_channels must be in 0..255, got {c}")
        mask[int(c)] = True
    return mask


# ---------------------------------------------------------------------------------------------
# streaming


@kernel
def _split_block(time, channel, sync_channel, is_det, sync_t, det_t, det_ch, offset):  # pragma: no cover - numba
    """One pass over a tag block: sync tag times into `sync_t`, detector tags appended to
    `det_t`/`det_ch` from `offset` (other channels dropped), branch-free; returns (syncs, end of the
    detector tags, whether the times were sorted)."""
    ns = 0
    nd = offset
    ok = True
    for i in range(time.size):
        ti = time[i]
        c = channel[i]
        if i:
            ok &= ti >= time[i - 1]
        sync_t[ns] = ti
        ns += c == sync_channel
        det_t[nd] = ti
        det_ch[nd] = c
        nd += is_det[c]
    return ns, nd, ok


@kernel
def _split_ready(
    t, ch, t_ref, intercept, delay, period, slot_ref, cut, ready_t, ready_ch, rest_t, rest_ch
):  # pragma: no cover - numba
    """Pending tags whose nearest slot (gate ignored) lies before `cut` into ready_*, the others into
    rest_*, both in input order; returns (ready, rest). The float arithmetic is numpy's, step for step:
    ((t - t_ref) - intercept - delay[ch]) / period, floor(x + 0.5) + slot_ref < cut."""
    nr = 0
    nw = 0
    for i in range(t.size):
        c = ch[i]
        x = ((np.float64(t[i] - t_ref) - intercept) - delay[c]) / period
        ready = np.floor(x + 0.5) + slot_ref < cut
        ready_t[nr] = t[i]
        ready_ch[nr] = c
        rest_t[nw] = t[i]
        rest_ch[nw] = c
        nr += ready
        nw += not ready
    return nr, nw


class StreamSlotter:
    """Clock recovery and slotting over a stream of tag blocks (Bob's acquisition loop).

    Sync tags are numbered across blocks; the clock is refitted on the last `window_syncs` sync
    tags each time (so slow wander of the drift is followed). Detector tags are resolved into
    detections once their slot lies before the slot of the newest sync pulse less a guard of
    two slots; later tags wait for the next block, so a slot's clicks are never split between
    two outputs. The first sync tag seen marks slot `first_slot`.
    """

    def __init__(
        self,
        nominal_period_ps: float,
        sync_every: int,
        gate_ps: float,
        delay_ps: NDArray[np.float64] | dict[int, float] | None = None,
        detector_channels: tuple[int, int, int, int] = (1, 2, 3, 4),
        sync_channel: int = 0,
        window_syncs: int = 4096,
        first_slot: int = 0,
        rng: np.random.Generator | None = None,
    ) -> None:
        if not nominal_period_ps > 0:
            raise ValueError(f"nominal_period_ps must be > 0, got {nominal_period_ps}")
        if not isinstance(sync_every, (int, np.integer)) or sync_every < 1:
            raise ValueError(f"sync_every must be an integer >= 1, got {sync_every!r}")
        if not 0 < gate_ps <= nominal_period_ps:
            raise ValueError(f"gate_ps must be in (0, nominal_period_ps], got {gate_ps}")
        if not isinstance(window_syncs, (int, np.integer)) or window_syncs < 2:
            raise ValueError(f"window_syncs must be an integer >= 2, got {window_syncs!r}")
        if len(detector_channels) != 4 or len(set(detector_channels)) != 4:
            raise ValueError(f"detector_channels must be 4 distinct channels (Z0, Z1, X0, X1), got {detector_channels}")
        if not 0 <= sync_channel < N_CHANNELS or sync_channel in detector_channels:
            raise ValueError(f"sync_channel must be a channel 0..255 other than the detectors, got {sync_channel}")
        self.nominal_period_ps = float(nominal_period_ps)
        self.sync_every = int(sync_every)
        self.gate_ps = float(gate_ps)
        self.delay = _delay_table(delay_ps)
        self.detector_channels: tuple[int, int, int, int] = detector_channels
        self._is_det = _channel_mask(detector_channels)
        self._click_bits = _click_bits(detector_channels)
        self.sync_channel = int(sync_channel)
        self.window = int(window_syncs)
        self.first_slot = int(first_slot)
        self._rng = rng
        self._sync_t = np.empty(0, np.int64)  # recent kept sync tags and their pulse numbers
        self._sync_i = np.empty(0, np.int64)
        self._pend_t = np.empty(0, np.int64)
        self._pend_ch = np.empty(0, np.uint8)
        self.fit: ClockFit | None = None
        self.in_gate = np.zeros(N_CHANNELS, np.int64)
        self.out_of_gate = np.zeros(N_CHANNELS, np.int64)
        self.n_sync_rejected = 0
        self.n_before_sync = 0  # detector tags before the first sync tag (no slot to give)

    @property
    def gate_efficiency(self) -> float:
        """Fraction of resolved detector tags kept by the gate so far."""
        total = int(self.in_gate.sum() + self.out_of_gate.sum())
        return float(self.in_gate.sum()) / total if total else 1.0

    @property
    def pending(self) -> int:
        """Detector tags held back until a later sync pulse brackets their slot (grows without
        bound if the sync channel goes dark: a condition the caller should alarm on)."""
        return int(self._pend_t.size)

    @property
    def drift_ppm(self) -> float | None:
        """Drift of the latest clock fit (None before two sync tags)."""
        return None if self.fit is None else self.fit.drift_ppm

    def push(self, time: NDArray[np.int64], channel: NDArray[np.uint8]) -> Detections:
        """Add one block of tags (time-sorted); returns the detections that became final."""
        t, ch = _check_tags(time, channel)
        held = self._pend_t.size
        sync_t = np.empty(t.size, np.int64)
        pend_t, pend_ch = np.empty(held + t.size, np.int64), np.empty(held + t.size, np.uint8)
        pend_t[:held], pend_ch[:held] = self._pend_t, self._pend_ch
        n_sync, n_pend, ordered = _split_block(
            t, ch, np.uint8(self.sync_channel), self._is_det, sync_t, pend_t, pend_ch, held
        )
        if not ordered:
            raise ValueError("time must be sorted")
        self._add_syncs(sync_t[:n_sync])
        self._pend_t, self._pend_ch = pend_t[:n_pend], pend_ch[:n_pend]
        if self.fit is None:
            return _no_detections()
        last_slot = int(self._sync_i[-1]) * self.sync_every + self.first_slot
        return self._resolve(cut_slot=last_slot - 2)

    def flush(self) -> Detections:
        """Resolve every pending tag (the stream has ended)."""
        if self.fit is None:
            self.n_before_sync += int(self._pend_t.size)
            self._pend_t, self._pend_ch = self._pend_t[:0], self._pend_ch[:0]
            return _no_detections()
        return self._resolve(cut_slot=None)

    def _add_syncs(self, ts: NDArray[np.int64]) -> None:
        if ts.size == 0:
            return
        if self._sync_t.size:
            period = self.fit.period_ps if self.fit is not None else self.nominal_period_ps
            t = np.concatenate([self._sync_t[-1:], ts])
            index, keep, rejected = number_sync_pulses(t, period * self.sync_every)
            index = index[1:][keep[1:]] + self._sync_i[-1]
            ts = ts[keep[1:]]
        else:
            index, keep, rejected = number_sync_pulses(ts, self.nominal_period_ps * self.sync_every)
            index, ts = index[keep], ts[keep]
        self.n_sync_rejected += rejected
        self._sync_t = np.concatenate([self._sync_t, ts])[-self.window :]
        self._sync_i = np.concatenate([self._sync_i, index])[-self.window :]
        if self._sync_t.size >= 2:
            self._fit()

    def _fit(self) -> None:
        t_ref = int(self._sync_t[0])
        x = (self._sync_i - self._sync_i[0]).astype(np.float64) * self.sync_every
        y = (self._sync_t - t_ref).astype(np.float64)
        xm, ym = x.mean(), y.mean()
        dx = x - xm
        slope = float(np.dot(dx, y - ym) / np.dot(dx, dx))
        intercept = float(ym - slope * xm)
        resid = y - (intercept + slope * x)
        self.fit = ClockFit(
            t_ref_ps=t_ref,
            slot_ref=int(self._sync_i[0]) * self.sync_every + self.first_slot,
            intercept_ps=intercept,
            period_ps=slope,
            nominal_period_ps=self.nominal_period_ps,
            residual_rms_ps=float(np.sqrt(np.mean(resid * resid))),
            n_sync=int(self._sync_t.size),
            n_sync_rejected=self.n_sync_rejected,
            last_sync_slot=int(self._sync_i[-1]) * self.sync_every + self.first_slot,
        )

    def _resolve(self, cut_slot: int | None) -> Detections:
        fit = self.fit
        assert fit is not None
        t, ch = self._pend_t, self._pend_ch
        if cut_slot is None:
            self._pend_t, self._pend_ch = t[:0], ch[:0]
        else:
            # nearest slot of each pending tag (gate ignored): split on slot boundaries, so the
            # clicks of one slot are resolved together
            ready_t, ready_ch = np.empty_like(t), np.empty_like(ch)
            rest_t, rest_ch = np.empty_like(t), np.empty_like(ch)
            n_ready, n_rest = _split_ready(
                t,
                ch,
                np.int64(fit.t_ref_ps),
                fit.intercept_ps,
                self.delay,
                fit.period_ps,
                float(fit.slot_ref),
                float(cut_slot),
                ready_t,
                ready_ch,
                rest_t,
                rest_ch,
            )
            t, ch = ready_t[:n_ready], ready_ch[:n_ready]
            self._pend_t, self._pend_ch = rest_t[:n_rest], rest_ch[:n_rest]
        # assign_slots and resolve_clicks without their argument checks and copies: these arrays
        # are this slotter's own, hold detector channels only, and may be reordered in place
        if not (self.gate_ps > 0 and self.gate_ps <= fit.period_ps):
            raise ValueError(f"gate_ps must be in (0, period {fit.period_ps:.1f} ps], got {self.gate_ps}")
        out_slot, out_ch, out_t = np.empty(t.size, np.int64), np.empty(t.size, np.uint8), np.empty(t.size, np.int64)
        k = _assign(
            t,
            ch,
            self._is_det,
            (fit.intercept_ps + self.delay) / fit.period_ps,
            np.int64(fit.t_ref_ps),
            1.0 / fit.period_ps,
            0.5 * float(self.gate_ps) / fit.period_ps,
            float(-fit.slot_ref),
            out_slot,
            out_ch,
            out_t,
            False,
            _NO_INDEX,
            self.in_gate,
            self.out_of_gate,
        )
        slot = out_slot[:k]
        if fit.slot_ref:
            slot += fit.slot_ref
        return _squash_clicks(slot, out_ch[:k], out_t[:k], self._click_bits, self._rng)


_NO_INDEX = np.empty(0, np.int64)


def _no_detections() -> Detections:
    e64 = np.empty(0, np.int64)
    e8 = np.empty(0, np.uint8)
    return Detections(e64, e8, e8.copy(), e8.copy(), e64.copy(), 0, 0)

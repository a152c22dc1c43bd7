"""Clock recovery and slotting: kernels against slow references, and recovery on the mock link."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.mock.detectors import KIND_PHOTON
from drivers.mock.link import simulate_link
from drivers.mock.params import DETECTOR_CHANNELS, LinkParams
from postprocessing.slotting import (
    ClockFit,
    assign_slots,
    estimate_delays,
    fit_clock,
    number_sync_pulses,
    resolve_clicks,
)

# ---- slow references ---------------------------------------------------------------------------


def number_ref(t: list[int], period: float) -> tuple[list[int], list[bool]]:
    index, keep = [0], [True]
    last, inv, refresh = 0, 1.0 / period, 16
    for i in range(1, len(t)):
        m = math.floor((t[i] - t[last]) * inv + 0.5)
        if m < 1:
            index.append(index[last])
            keep.append(False)
            continue
        index.append(index[last] + m)
        keep.append(True)
        last = i
        if index[i] >= refresh:
            inv = index[i] / float(t[i] - t[0])
            refresh = 2 * index[i]
    return index, keep


def assign_ref(time, channel, fit: ClockFit, gate_ps: float, delay: dict[int, float], detectors):
    kept = []
    half = 0.5 * gate_ps / fit.period_ps
    for i, (t, c) in enumerate(zip(time.tolist(), channel.tolist())):
        if c not in detectors:
            continue
        x = float(t - fit.t_ref_ps) * (1.0 / fit.period_ps) - (fit.intercept_ps + delay.get(c, 0.0)) / fit.period_ps
        s = math.floor(x + 0.5)
        if s + fit.slot_ref >= 0 and -half <= x - s <= half:
            kept.append((s + fit.slot_ref, c, t, i))
    return kept


def resolve_ref(slot, channel, time, rng):
    groups: dict[int, list[tuple[int, int]]] = {}
    for s, c, t in zip(slot.tolist(), channel.tolist(), time.tolist()):
        groups.setdefault(s, []).append((c, t))
    out = []
    for s in sorted(groups):
        mask = 0
        for c, _ in groups[s]:
            mask |= 1 << (c - 1)
        out.append((s, mask, min(t for _, t in groups[s])))
    cross = [o for o in out if (o[1] & 3) and (o[1] >> 2)]
    double = [o for o in out if o[1] in (3, 12)]
    coins = rng.integers(0, 2, 2 * len(cross) + len(double), dtype=np.uint8).tolist()
    result = {}
    for i, o in enumerate(cross):
        result[o[0]] = (coins[i], coins[len(cross) + i])
    for i, o in enumerate(double):
        result[o[0]] = (0 if o[1] == 3 else 1, coins[2 * len(cross) + i])
    for s, mask, _ in out:
        if s not in result:
            basis = 0 if mask & 3 else 1
            bits = (mask >> (2 * basis)) & 3
            result[s] = (basis, bits - 1)
    return out, result


# ---- kernels against references ---------------------------------------------------------------


@st.composite
def sync_streams(draw):
    period = draw(st.integers(1000, 2_000_000))
    n = draw(st.integers(1, 200))
    gaps = draw(st.lists(st.integers(1, 4), min_size=n - 1, max_size=n - 1))
    jitter = draw(st.lists(st.integers(-period // 10, period // 10), min_size=n, max_size=n))
    idx = np.concatenate([[0], np.cumsum(gaps)]).astype(np.int64)
    drift = draw(st.floats(-1e-4, 1e-4))
    t = 10_000_000 + np.round(idx * period * (1 + drift)).astype(np.int64) + np.array(jitter, np.int64)
    return np.sort(t), float(period), idx


@given(sync_streams())
def test_sync_numbering_matches_reference_and_truth(case) -> None:
    t, period, idx = case
    index, keep, rejected = number_sync_pulses(t, period)
    ref_index, ref_keep = number_ref(t.tolist(), period)
    assert index.tolist() == ref_index and keep.tolist() == ref_keep
    assert rejected == 0 and np.array_equal(index, idx)


@given(sync_streams(), st.data())
def test_spurious_sync_tags_are_rejected(case, data) -> None:
    t, period, idx = case
    extra_at = data.draw(st.lists(st.integers(0, t.size - 1), max_size=5, unique=True))
    spurious = t[extra_at] + int(period // 5)
    tt = np.sort(np.concatenate([t, spurious]))
    index, keep, rejected = number_sync_pulses(tt, period)
    ref_index, ref_keep = number_ref(tt.tolist(), period)
    assert index.tolist() == ref_index and keep.tolist() == ref_keep
    assert rejected == len(extra_at)
    assert np.array_equal(index[keep], idx)


@st.composite
def tag_streams(draw):
    period = draw(st.floats(50.0, 5000.0))
    n = draw(st.integers(0, 300))
    t = np.sort(np.array(draw(st.lists(st.integers(0, 10**9), min_size=n, max_size=n)), np.int64))
    ch = np.array(draw(st.lists(st.integers(0, 6), min_size=n, max_size=n)), np.uint8)
    fit = ClockFit(
        t_ref_ps=draw(st.integers(0, 10**6)),
        slot_ref=draw(st.integers(0, 10**6)),
        intercept_ps=draw(st.floats(-period, period)),
        period_ps=period,
        nominal_period_ps=period,
        residual_rms_ps=0.0,
        n_sync=2,
        n_sync_rejected=0,
        last_sync_slot=0,
    )
    gate = draw(st.floats(1.0, 1.0)) * draw(st.floats(0.01, 1.0)) * period
    delay = {c: draw(st.floats(-2 * period, 2 * period)) for c in range(1, 5)}
    return t, ch, fit, gate, delay


@given(tag_streams())
def test_assign_slots_matches_reference(case) -> None:
    t, ch, fit, gate, delay = case
    out = assign_slots(t, ch, fit, gate, delay, DETECTOR_CHANNELS, with_index=True)
    ref = assign_ref(t, ch, fit, gate, delay, DETECTOR_CHANNELS)
    assert out.index is not None
    assert list(zip(out.slot.tolist(), out.channel.tolist(), out.time.tolist(), out.index.tolist())) == ref
    plain = assign_slots(t, ch, fit, gate, delay, DETECTOR_CHANNELS)
    assert plain.index is None and np.array_equal(plain.slot, out.slot) and np.array_equal(plain.time, out.time)
    n_det = int(np.isin(ch, DETECTOR_CHANNELS).sum())
    assert int(out.in_gate.sum()) == len(ref) and out.n_out_of_gate == n_det - len(ref)


@st.composite
def slotted_clicks(draw):
    n = draw(st.integers(0, 200))
    slot = np.sort(np.array(draw(st.lists(st.integers(0, 60), min_size=n, max_size=n)), np.int64))
    # a little disorder, as per-channel delays produce
    swaps = draw(st.lists(st.integers(0, max(n - 2, 0)), max_size=10))
    for i in swaps:
        if n > 1:
            slot[i], slot[i + 1] = slot[i + 1], slot[i]
    ch = np.array(draw(st.lists(st.integers(1, 4), min_size=n, max_size=n)), np.uint8)
    time = np.array(draw(st.lists(st.integers(0, 10**6), min_size=n, max_size=n)), np.int64)
    return slot, ch, time, draw(st.integers(0, 2**32))


@given(slotted_clicks())
def test_resolve_clicks_matches_reference(case) -> None:
    slot, ch, time, seed = case
    det = resolve_clicks(slot, ch, time, rng=np.random.default_rng(seed))
    groups, result = resolve_ref(slot, ch, time, np.random.default_rng(seed))
    assert det.slot.tolist() == [g[0] for g in groups]
    assert det.clicks.tolist() == [g[1] for g in groups]
    assert det.time.tolist() == [g[2] for g in groups]
    assert list(zip(det.basis.tolist(), det.bit.tolist())) == [result[g[0]] for g in groups]
    assert det.n_cross == sum(1 for g in groups if (g[1] & 3) and (g[1] >> 2))
    assert det.n_double == sum(1 for g in groups if g[1] in (3, 12))


def test_resolve_clicks_without_rng_uses_fresh_coins_on_multi_clicks_only() -> None:
    slot = np.array([0, 0, 1, 2, 2], np.int64)
    ch = np.array([1, 2, 3, 1, 4], np.uint8)
    det = resolve_clicks(slot, ch)
    assert det.slot.tolist() == [0, 1, 2]
    assert det.basis[0] == 0 and (det.basis[1], det.bit[1]) == (1, 0)
    assert det.n_double == 1 and det.n_cross == 1


@given(st.floats(-50.0, 50.0), st.integers(10, 400), st.floats(100.0, 10_000.0))
def test_fit_clock_recovers_drift_and_offset(drift_ppm: float, n: int, period: float) -> None:
    every = 100
    slots = np.arange(n, dtype=np.int64) * every
    truth_period = period * (1 + drift_ppm * 1e-6)
    t = np.round(5e6 + slots * truth_period).astype(np.int64)
    fit = fit_clock(t, period, every)
    assert abs(fit.drift_ppm - drift_ppm) < 1.0 / (period * every) * 1e6 + 1e-6
    assert abs(fit.time_of_slot(0) - 5e6) < 1.0
    x = slots.astype(float)
    slope, _intercept = np.polyfit(x, (t - t[0]).astype(float), 1)
    assert fit.period_ps == pytest.approx(slope, rel=1e-9)
    assert fit.last_sync_slot == slots[-1] and fit.n_sync == n


# ---- clock recovery on the mock link ---------------------------------------------------------


@pytest.mark.parametrize("rate_hz, drift_ppm, estimate", [(1e9, 10.0, False), (1e9, -10.0, True), (2.5e9, 10.0, True)])
def test_with_drift_and_jitter_true_detections_get_their_slot(rate_hz: float, drift_ppm: float, estimate: bool) -> None:
    p = LinkParams(
        repetition_rate_hz=rate_hz,
        fibre_length_km=20.0,
        clock_drift_ppm=drift_ppm,
        jitter_ps=50.0,
        dead_time_ps=0.0,
        afterpulse_probability=0.0,
        dark_count_hz=0.0,
        detector_delay_ps=(0.0, 40.0, 80.0, 120.0),
    )
    ev = simulate_link(p, 20_000_000, seed=3)
    fit = fit_clock(ev.time[ev.channel == 0], p.period_ps, p.sync_every)
    assert abs(fit.drift_ppm - drift_ppm) < 0.01
    delays = p.channel_delays_ps()
    if estimate:
        delays = estimate_delays(ev.time, ev.channel, fit)
        assert np.all(np.abs(delays[1:5] - p.channel_delays_ps()[1:5]) < 5.0)
    gate = min(p.period_ps, 500.0)
    slotted = assign_slots(ev.time, ev.channel, fit, gate, delays, with_index=True)
    photon = ev.kind == KIND_PHOTON
    correct = np.zeros(len(ev), bool)
    correct[slotted.index] = slotted.slot == ev.slot[slotted.index]
    n_photon = int(photon.sum())
    assert n_photon > 50_000
    assert np.sum(correct & photon) >= 0.999 * n_photon
    assert slotted.gate_efficiency >= 0.999


def test_out_of_gate_tags_are_dropped_and_counted() -> None:
    fit = ClockFit(0, 0, 0.0, 1000.0, 1000.0, 0.0, 2, 0, 1000)
    t = np.array([0, 100, 260, 499, 501, 760, 1000, 1240], np.int64)
    ch = np.array([1, 1, 2, 2, 3, 3, 4, 0], np.uint8)
    out = assign_slots(t, ch, fit, 500.0)
    assert out.slot.tolist() == [0, 0, 1, 1]
    assert out.time.tolist() == [0, 100, 760, 1000]
    assert out.n_out_of_gate == 3 and out.out_of_gate[2] == 2 and out.out_of_gate[3] == 1
    assert out.gate_efficiency == pytest.approx(4 / 7)


def test_bad_inputs_are_rejected_naming_the_argument() -> None:
    good = np.array([0, 1000, 2000], np.int64)
    with pytest.raises(ValueError, match="sync_time"):
        fit_clock(good[::-1].copy(), 10.0, 100)
    with pytest.raises(ValueError, match="sync_time"):
        fit_clock(good[:1], 10.0, 100)
    with pytest.raises(ValueError, match="sync_time"):
        fit_clock(good.astype(np.float64), 10.0, 100)
    with pytest.raises(ValueError, match="nominal_period_ps"):
        fit_clock(good, 0.0, 100)
    with pytest.raises(ValueError, match="sync_every"):
        fit_clock(good, 10.0, 0)
    fit = fit_clock(good, 10.0, 100)
    with pytest.raises(ValueError, match="gate_ps"):
        assign_slots(good, np.zeros(3, np.uint8), fit, 11.0)
    with pytest.raises(ValueError, match="channel"):
        assign_slots(good, np.zeros(2, np.uint8), fit, 5.0)
    with pytest.raises(ValueError, match="delay_ps"):
        assign_slots(good, np.zeros(3, np.uint8), fit, 5.0, {300: 1.0})
    with pytest.raises(ValueError, match="detector_channels"):
        resolve_clicks(np.zeros(1, np.int64), np.ones(1, np.uint8), detector_channels=(1, 1, 2, 3))
    with pytest.raises(ValueError, match="channel"):
        resolve_clicks(np.zeros(1, np.int64), np.array([9], np.uint8))


def test_stream_slotter_matches_batch_slotting_and_never_splits_a_slot() -> None:
    from drivers.mock import MockTimeTagger
    from postprocessing.slotting import StreamSlotter

    p = LinkParams(
        fibre_length_km=0.0,
        clock_drift_ppm=10.0,
        jitter_ps=50.0,
        afterpulse_probability=0.0,
        dead_time_ps=0.0,
        dark_count_hz=2e4,
    )
    tagger = MockTimeTagger(p, seed=4, block_s=3.7e-5, duration_s=2e-3, max_tags=5000)
    slotter = StreamSlotter(
        p.period_ps, p.sync_every, 500.0, p.channel_delays_ps(), window_syncs=64, rng=np.random.default_rng(0)
    )
    tagger.start()
    outs, times, chans = [], [], []
    while True:
        b = tagger.read_block(0.0)
        if not len(b) and not tagger.running:
            break
        times.append(b.time)
        chans.append(b.channel)
        outs.append(slotter.push(b.time, b.channel))
    assert slotter.pending > 0  # the tail after the last sync waits for the flush
    outs.append(slotter.flush())
    assert slotter.pending == 0
    slots = np.concatenate([o.slot for o in outs])
    clicks = np.concatenate([o.clicks for o in outs])
    assert np.unique(slots).size == slots.size  # each slot resolved exactly once
    t, ch = np.concatenate(times), np.concatenate(chans)
    fit = fit_clock(t[ch == 0], p.period_ps, p.sync_every)
    batch = resolve_clicks(
        *(lambda s: (s.slot, s.channel, s.time))(assign_slots(t, ch, fit, 500.0, p.channel_delays_ps())),
        rng=np.random.default_rng(0),
    )
    assert slots.size > 10_000
    order = np.argsort(slots)
    same = np.isin(slots, batch.slot)
    assert np.mean(same) >= 0.9999 and abs(slots.size - batch.slot.size) <= 1e-4 * slots.size
    _common, i_stream, i_batch = np.intersect1d(slots[order], batch.slot, return_indices=True)
    assert np.mean(clicks[order][i_stream] == batch.clicks[i_batch]) >= 0.9999
    drift = slotter.drift_ppm
    assert drift is not None and abs(drift - 10.0) < 0.3  # 64 syncs over 64 us with 10 ps sync jitter
    assert slotter.gate_efficiency > 0.99


def test_stream_slotter_follows_a_wandering_clock_that_defeats_one_global_fit() -> None:
    from drivers.mock import MockTimeTagger
    from postprocessing.slotting import StreamSlotter

    # the drift moves by 2 ppm over the 10 ms run: 10 ns of curvature, ten slots
    p = LinkParams(
        fibre_length_km=10.0,
        clock_drift_ppm=10.0,
        clock_drift_rate_ppm_per_s=200.0,
        jitter_ps=50.0,
        afterpulse_probability=0.0,
        dead_time_ps=0.0,
        dark_count_hz=0.0,
    )
    tagger = MockTimeTagger(p, seed=6, block_s=2e-4, duration_s=1e-2, truth=True)
    slotter = StreamSlotter(
        p.period_ps, p.sync_every, 500.0, p.channel_delays_ps(), window_syncs=64, rng=np.random.default_rng(0)
    )
    tagger.start()
    got, times, chans, true_slots = [], [], [], []
    while True:
        b = tagger.read_block(0.0)
        if not len(b) and not tagger.running:
            break
        times.append(b.time)
        chans.append(b.channel)
        true_slots.append(np.asarray(b.meta["slot"])[np.asarray(b.meta["kind"]) == KIND_PHOTON])
        got.append(slotter.push(b.time, b.channel).slot)
    got.append(slotter.flush().slot)
    detected = np.concatenate(got)
    truth = np.unique(np.concatenate(true_slots))
    assert truth.size > 50_000
    assert np.isin(truth, detected).mean() >= 0.999
    assert np.isin(detected, truth).mean() >= 0.999
    # one straight line through all sync tags cannot follow the curvature
    t, ch = np.concatenate(times), np.concatenate(chans)
    fit = fit_clock(t[ch == 0], p.period_ps, p.sync_every)
    batch = assign_slots(t, ch, fit, 500.0, p.channel_delays_ps())
    assert np.isin(truth, batch.slot).mean() < 0.9


def test_delay_estimates_resolve_the_period_ambiguity_with_a_coarse_hint_at_10_ghz() -> None:
    # delays beyond half the 100 ps period: the phase alone cannot tell 150 ps from 50 ps
    p = LinkParams(
        repetition_rate_hz=10e9,
        fibre_length_km=5.0,
        jitter_ps=15.0,
        dead_time_ps=0.0,
        afterpulse_probability=0.0,
        dark_count_hz=5e4,
        detector_delay_ps=(0.0, 150.0, -120.0, 260.0),
    )
    ev = simulate_link(p, 20_000_000, seed=8)
    fit = fit_clock(ev.time[ev.channel == 0], p.period_ps, p.sync_every)
    true = p.channel_delays_ps()
    coarse = true + np.array([0.0, 30.0, -30.0, 25.0, -20.0])  # cable lengths known to ~ +-30 ps
    est = estimate_delays(ev.time, ev.channel, fit, hint_ps=coarse)
    assert np.all(np.abs(est[1:5] - true[1:5]) < 3.0)
    naive = estimate_delays(ev.time, ev.channel, fit)
    assert np.abs(naive[4] - true[4]) > 50.0  # without the hint the 260 ps channel wraps
    slotted = assign_slots(ev.time, ev.channel, fit, 60.0, est, with_index=True)
    photon = ev.kind == KIND_PHOTON
    correct = np.zeros(len(ev), bool)
    correct[slotted.index] = slotted.slot == ev.slot[slotted.index]
    assert np.sum(correct & photon) >= 0.95 * photon.sum()  # a 60 ps gate keeps 95 % at 15 ps jitter

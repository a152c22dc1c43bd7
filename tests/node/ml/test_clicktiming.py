"""KM03's click-time spread: the numba kernel's residuals equal a plain-Python fit bit for bit, and the
spread is the robust standard deviation the collector has always reported (numpy's formulation)."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from node.ml.clicktiming import MAD_EFFICIENCY, MIN_CLICKS, click_time_spread, median_in_place, single_click_residuals


def reference_residuals(slot: list[int], time: list[int], clicks: list[int]) -> list[float]:
    """Each detector's least-squares line time ~ slot over its single clicks, in the kernel's order of sums."""
    out: list[float] = []
    for d in range(4):
        rows = [i for i, c in enumerate(clicks) if c == 1 << d]
        if len(rows) < MIN_CLICKS:
            continue
        s0, t0 = slot[rows[0]], time[rows[0]]
        ss = st_ = 0.0
        for i in rows:
            ss += float(slot[i] - s0)
            st_ += float(time[i] - t0)
        sm, tm = ss / len(rows), st_ / len(rows)
        sxy = sxx = 0.0
        for i in rows:
            ds, dt = float(slot[i] - s0) - sm, float(time[i] - t0) - tm
            sxy += ds * dt
            sxx += ds * ds
        slope = sxy / max(sxx, 1e-300)
        out += [(float(time[i] - t0) - tm) - slope * (float(slot[i] - s0) - sm) for i in rows]
    return out


def numpy_spread(det: SimpleNamespace) -> tuple[float, float]:
    """The collector's formulation before the kernel (masks, centred float arrays, numpy medians)."""
    pattern = np.asarray(det.clicks)
    residuals = []
    for d in range(4):
        m = pattern == (1 << d)
        if m.sum() < MIN_CLICKS:
            continue
        s = det.slot[m].astype(np.float64)
        t = det.time[m].astype(np.float64)
        s -= s.mean()
        t -= t.mean()
        residuals.append(t - float(s @ t) / max(float(s @ s), 1e-300) * s)
    if not residuals:
        return math.nan, 0.0
    r = np.concatenate(residuals)
    r -= np.median(r)
    return 1.4826 * float(np.median(np.abs(r))), MAD_EFFICIENCY * r.size


@st.composite
def batches(draw: st.DrawFn, max_start: int = 2**40) -> SimpleNamespace:
    n = draw(st.integers(0, 200))
    start = draw(st.integers(0, max_start))
    gaps = draw(st.lists(st.integers(1, 10**6), min_size=n, max_size=n))
    slot = start + np.cumsum(np.asarray(gaps, np.int64))
    period = draw(st.integers(100, 100_000))
    jitter = draw(st.lists(st.integers(-5000, 5000), min_size=n, max_size=n))
    time = slot * period + np.asarray(jitter, np.int64)
    weights = st.sampled_from([1, 2, 4, 8, 1, 2, 4, 8, 3, 5, 12, 15])  # mostly single clicks, some multi
    clicks = np.asarray(draw(st.lists(weights, min_size=n, max_size=n)), np.uint8)
    return SimpleNamespace(slot=slot.astype(np.int64), time=time.astype(np.int64), clicks=clicks)


@settings(max_examples=100, deadline=None)
@given(batches())
def test_kernel_residuals_equal_the_python_reference_bit_for_bit(det: SimpleNamespace) -> None:
    got = single_click_residuals(det)
    want = reference_residuals(det.slot.tolist(), det.time.tolist(), det.clicks.tolist())
    assert got.tobytes() == np.asarray(want, np.float64).tobytes()


@settings(max_examples=100, deadline=None)
@given(batches(max_start=2**30))  # times below 2**47 ps: numpy's raw float64 times still hold every ps
def test_spread_is_the_numpy_formulations(det: SimpleNamespace) -> None:
    spread, samples = click_time_spread(det)
    want_spread, want_samples = numpy_spread(det)
    assert samples == want_samples
    if math.isnan(want_spread):
        assert math.isnan(spread)
    else:
        assert math.isclose(spread, want_spread, rel_tol=1e-5, abs_tol=1e-2)  # ps: numpy rounds the raw times


def test_spread_of_gaussian_jitter_is_its_standard_deviation() -> None:
    rng = np.random.default_rng(7)
    slot = np.cumsum(rng.integers(1, 50, 200_000)).astype(np.int64)
    clicks = (np.uint8(1) << rng.integers(0, 4, slot.size).astype(np.uint8)).astype(np.uint8)
    delay = np.array([0, 300, -200, 1000])[np.log2(clicks).astype(int)]  # each detector its own offset
    time = (slot * 1000 + delay + np.round(rng.normal(0, 40, slot.size))).astype(np.int64)
    spread, samples = click_time_spread(SimpleNamespace(slot=slot, time=time, clicks=clicks))
    assert abs(spread - 40) < 1.0
    assert samples == MAD_EFFICIENCY * slot.size


def test_detectors_with_too_few_single_clicks_are_left_out() -> None:
    n = MIN_CLICKS - 1
    det = SimpleNamespace(
        slot=np.arange(n, dtype=np.int64), time=np.arange(n, dtype=np.int64) * 1000, clicks=np.ones(n, np.uint8)
    )
    assert single_click_residuals(det).size == 0
    assert math.isnan(click_time_spread(det)[0])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.floats(-1e12, 1e12) | st.sampled_from([0.0, -0.0, 1.0, 5e-324]), min_size=1, max_size=60))
def test_median_in_place_is_numpys_median_bit_for_bit(values: list[float]) -> None:
    a = np.asarray(values, np.float64)
    want, got = np.float64(np.median(a)), np.float64(median_in_place(a.copy()))
    if want == 0:  # +0 and -0 compare equal, so either partition may leave either one in the middle
        assert got == 0
    else:
        assert got.tobytes() == want.tobytes()

"""StreamSlotter's fused kernels (one pass to split a block, one to split the pending tags on the cut)
give what the plain composition of the public steps gives (assign_slots, resolve_clicks, numpy masks),
bit for bit, block after block, on random streams and on the mock link."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.mock import MockTimeTagger
from drivers.mock.params import LinkParams
from postprocessing.slotting import Detections, StreamSlotter, assign_slots, resolve_clicks


class ReferenceSlotter(StreamSlotter):
    """The stream slotter as the public functions compose it: numpy masks and concatenations per block."""

    def push(self, time: np.ndarray, channel: np.ndarray) -> Detections:
        t, ch = np.asarray(time), np.asarray(channel)
        if t.size > 1 and np.any(t[1:] < t[:-1]):
            raise ValueError("time must be sorted")
        self._add_syncs(t[ch == self.sync_channel])
        det = self._is_det[ch]
        self._pend_t = np.concatenate([self._pend_t, t[det]])
        self._pend_ch = np.concatenate([self._pend_ch, ch[det]])
        if self.fit is None:
            return resolve_clicks(np.empty(0, np.int64), np.empty(0, np.uint8), np.empty(0, np.int64))
        return self._resolve(int(self._sync_i[-1]) * self.sync_every + self.first_slot - 2)

    def _resolve(self, cut_slot: int | None) -> Detections:
        fit = self.fit
        assert fit is not None
        t, ch = self._pend_t, self._pend_ch
        if cut_slot is None:
            ready = np.ones(t.size, np.bool_)
        else:
            x = ((t - fit.t_ref_ps).astype(np.float64) - fit.intercept_ps - self.delay[ch]) / fit.period_ps
            ready = np.floor(x + 0.5) + fit.slot_ref < cut_slot
        self._pend_t, self._pend_ch = t[~ready], ch[~ready]
        slotted = assign_slots(t[ready], ch[ready], fit, self.gate_ps, self.delay, self.detector_channels)
        self.in_gate += slotted.in_gate
        self.out_of_gate += slotted.out_of_gate
        return resolve_clicks(slotted.slot, slotted.channel, slotted.time, self.detector_channels, rng=self._rng)


def same(a: Detections, b: Detections) -> bool:
    return all(
        np.asarray(getattr(a, f)).tobytes() == np.asarray(getattr(b, f)).tobytes()
        and np.asarray(getattr(a, f)).dtype == np.asarray(getattr(b, f)).dtype
        for f in ("slot", "basis", "bit", "clicks", "time", "n_double", "n_cross")
    )


def outcome(step: Callable[[], Detections]) -> Detections | str:
    """The detections of one step, or the ValueError it raised (a fitted period below the gate)."""
    try:
        return step()
    except ValueError as exc:
        return str(exc)


def run_both(blocks: list[tuple[np.ndarray, np.ndarray]], period: float, sync_every: int, gate: float, delay) -> None:
    kw = {"delay_ps": delay, "window_syncs": 16, "first_slot": 5}
    fast = StreamSlotter(period, sync_every, gate, rng=np.random.default_rng(1), **kw)
    ref = ReferenceSlotter(period, sync_every, gate, rng=np.random.default_rng(1), **kw)
    for t, ch in blocks:
        got, want = outcome(lambda s=fast, t=t, ch=ch: s.push(t, ch)), outcome(lambda s=ref, t=t, ch=ch: s.push(t, ch))  # type: ignore[misc]
        assert got == want if isinstance(want, str) else same(got, want)  # type: ignore[arg-type]
        assert fast._pend_t.tobytes() == ref._pend_t.tobytes() and fast._pend_ch.tobytes() == ref._pend_ch.tobytes()
    got, want = outcome(fast.flush), outcome(ref.flush)
    assert got == want if isinstance(want, str) else same(got, want)  # type: ignore[arg-type]
    assert np.array_equal(fast.in_gate, ref.in_gate) and np.array_equal(fast.out_of_gate, ref.out_of_gate)


@st.composite
def streams(draw: st.DrawFn) -> tuple[list[tuple[np.ndarray, np.ndarray]], float, int, float, dict[int, float]]:
    period = float(draw(st.integers(50, 5000)))
    sync_every = draw(st.integers(1, 64))
    gate = draw(st.floats(0.1, 1.0)) * period
    delay = {c: draw(st.floats(-3 * period, 3 * period)) for c in (1, 2, 3, 4)}
    n = draw(st.integers(0, 600))
    start = draw(st.integers(0, 2**40))
    slots = np.sort(np.asarray(draw(st.lists(st.integers(0, 4000), min_size=n, max_size=n)), np.int64))
    chans = np.asarray(draw(st.lists(st.sampled_from([0, 1, 2, 3, 4, 7]), min_size=n, max_size=n)), np.uint8)
    jitter = np.asarray(draw(st.lists(st.floats(-0.7, 0.7), min_size=n, max_size=n)), np.float64)
    dly = np.array([0.0, delay[1], delay[2], delay[3], delay[4], 0, 0, 0])
    t = start + np.round(slots * period + dly[chans] + jitter * period).astype(np.int64)
    sync_slots = np.arange(0, 4001, sync_every, dtype=np.int64)
    ts = start + np.round(sync_slots * period).astype(np.int64)
    t_all = np.concatenate([t, ts])
    ch_all = np.concatenate([chans, np.zeros(ts.size, np.uint8)])
    order = np.argsort(t_all, kind="stable")
    t_all, ch_all = t_all[order], ch_all[order]
    cuts = sorted(draw(st.lists(st.integers(0, t_all.size), max_size=12)))
    bounds = [0, *cuts, t_all.size]
    blocks = [(t_all[a:b], ch_all[a:b]) for a, b in itertools.pairwise(bounds)]
    return blocks, period, sync_every, gate, delay


@settings(max_examples=150, deadline=None)
@given(streams())
def test_stream_slotter_equals_the_composition_of_the_public_steps(case) -> None:
    run_both(*case)


def test_stream_slotter_equals_the_reference_on_the_mock_link() -> None:
    p = LinkParams(fibre_length_km=25.0, clock_drift_ppm=3.0, dark_count_hz=2e4)
    tagger = MockTimeTagger(p, seed=9, block_s=2e-4, duration_s=4e-3)
    tagger.start()
    blocks = []
    while True:
        b = tagger.read_block(0.0)
        if not len(b) and not tagger.running:
            break
        blocks.append((b.time, b.channel))
    assert sum(t.size for t, _ in blocks) > 10_000
    run_both(blocks, p.period_ps, p.sync_every, 0.5 * p.period_ps, p.channel_delays_ps())


def test_an_unsorted_block_is_refused_and_leaves_the_slotter_as_it_was() -> None:
    s = StreamSlotter(1000.0, 10, 500.0)
    s.push(np.array([0, 10_000, 10_500], np.int64), np.array([0, 0, 1], np.uint8))
    before = (s._pend_t.copy(), s._sync_t.copy())
    with pytest.raises(ValueError, match="sorted"):
        s.push(np.array([20_000, 19_000], np.int64), np.array([0, 1], np.uint8))
    assert np.array_equal(s._pend_t, before[0]) and np.array_equal(s._sync_t, before[1])

"""The mock link's numba kernels against slow Python references, draw for draw."""

from __future__ import annotations

import heapq
import math

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from drivers.mock.counter import hash64_py
from drivers.mock.detectors import KIND_AFTERPULSE, KIND_DARK, KIND_PHOTON, KIND_SYNC, register_clicks
from drivers.mock.link import LinkSimulator
from drivers.mock.params import JITTER_TRUNCATION, LinkParams
from drivers.mock.photons import GAUSS_CORE, GAUSS_HI, GAUSS_LO, GAUSS_Z, nearly_sorted
from tests.drivers.mock.test_alice import _state_ref

MASK = 0xFFFFFFFFFFFFFFFF


def _u(key: int, c: int) -> float:
    return (int(hash64_py(key, c)) >> 11) * 2.0**-53


def gauss_tail_ref(key: int, negative: bool) -> float:
    c = 0
    while True:  # Marsaglia's tail beyond GAUSS_CORE; redraw past the truncation
        x = -math.log(1.0 - _u(key, c)) * (1.0 / GAUSS_CORE)
        y = -math.log(1.0 - _u(key, c + 1))
        c += 2
        if 2.0 * y > x * x and GAUSS_CORE + x <= JITTER_TRUNCATION:
            return -(GAUSS_CORE + x) if negative else GAUSS_CORE + x


def photon_range_ref(sim: LinkSimulator, seed: int, key: int, s0: int, s1: int) -> list[tuple[int, int, int]]:
    """Slot-by-slot Python version of `LinkSimulator._photon_range` (no Eve)."""
    p = sim.params
    # candidate slots from geometric gaps (numpy's log, as the simulator uses it)
    cands = []
    s, c = s0, 0
    while s < s1:
        u = np.array([1.0 - _u(key, c + i) for i in range(64)])
        g = np.log(u) * (1.0 / sim._log_q)
        c += 64
        for gi in g.tolist():
            gap = math.floor(gi)
            if gap >= s1 - s:
                s = s1
                break
            s += gap
            cands.append(s)
            s += 1
            if s >= s1:
                break
    clicks = []
    for s in cands:
        basis, bit, k = _state_ref(seed, s, p.p_z, p.class_probabilities)
        v = _u(int(sim._acc_key), s)
        acc_p = sim._accept[k, basis, bit]
        if v >= acc_p:
            continue
        lt = sim._lam_tot[k, basis, bit]
        q = sim._exp_neg[k, basis, bit]
        w = (v / acc_p) * (1.0 - q)
        cum, m = 0.0, 0
        while m < 1000:
            m += 1
            q *= lt / m
            cum += q
            if w <= cum:
                break
        hit = set()
        for j in range(m):
            x = _u((int(sim._pick_key) + j) & MASK, s) * lt
            hit.add(sum(1 for jj in range(3) if x >= sim._lam_cum[k, basis, bit, jj]))
        clicks += [(s, d) for d in sorted(hit)]
    out = []
    clock = sim._clock
    n_tab = GAUSS_Z.size - 1
    inv_step = n_tab / (GAUSS_HI - GAUSS_LO)
    for s, d in clicks:
        uj = _u((int(sim._jit_key) + d) & MASK, s)
        if uj < GAUSS_LO or uj >= GAUSS_HI:
            z = gauss_tail_ref(int(hash64_py((int(sim._tail_key) + d) & MASK, s)), uj < GAUSS_LO)
        else:
            pos = (uj - GAUSS_LO) * inv_step
            j = min(int(pos), n_tab - 1)
            z = float(GAUSS_Z[j] + (pos - j) * (GAUSS_Z[j + 1] - GAUSS_Z[j]))
        ta = s * clock.period_ps + clock.fibre_delay_ps
        t = clock.offset_ps + ta * (clock.scale + clock.curvature * ta) + p.detector_delay_ps[d] + p.jitter_ps[d] * z
        out.append((math.floor(t + 0.5), d + 1, s))
    return out


@given(st.integers(0, 2**32), st.integers(0, MASK), st.integers(0, 10**12), st.integers(1, 3000), st.floats(0.01, 3.0))
def test_photon_kernels_match_reference(seed: int, key: int, s0: int, n: int, mu: float) -> None:
    p = LinkParams(
        intensities=(mu, mu / 4, 0.0),
        fibre_length_km=0.0,
        efficiency=(0.9, 0.5, 0.7, 0.3),
        jitter_ps=(400.0, 50.0, 0.0, 20.0),
        clock_drift_ppm=3.0,
        clock_drift_rate_ppm_per_s=40.0,
    )
    sim = LinkSimulator(p, seed)
    t, ch, slot = sim._photon_range(s0, s0 + n, np.uint64(key))
    ref = photon_range_ref(sim, seed, key, s0, s0 + n)
    assert list(zip(t.tolist(), ch.tolist(), slot.tolist())) == ref


def register_ref(sig, dark, sync, horizon, dead, ap_prob, ap_tau, key, counter, last):
    """Heap-based merge with dead time and afterpulses (ties: photon, dark, sync, then afterpulse)."""
    streams = (
        [(t, 0, ch, sl) for t, ch, sl in zip(*sig)]
        + [(t, 1, ch, -1) for t, ch in zip(*dark)]
        + [(t, 2, 0, sl) for t, sl in zip(*sync)]
    )
    streams.sort(key=lambda e: (e[0], e[1]))
    pending: list[tuple[int, int, int]] = []
    order = 0
    out, lost = [], [0] * 4
    i = 0
    while True:
        nxt = streams[i] if i < len(streams) else None
        if pending and (nxt is None or pending[0][0] < nxt[0]):
            t, _, ch = heapq.heappop(pending)
            src, slot = 3, -1
        elif nxt is not None:
            t, src, ch, slot = nxt
            i += 1
        else:
            break
        if t >= horizon:
            break
        if src == 2:
            out.append((t, 0, slot, KIND_SYNC))
            continue
        d = ch - 1
        if t - last[d] < dead[d]:
            lost[d] += 1
            continue
        last[d] = t
        out.append((t, ch, slot, [KIND_PHOTON, KIND_DARK, None, KIND_AFTERPULSE][src]))
        if ap_prob[d] > 0:
            u = _u(key, counter)
            counter += 1
            if u < ap_prob[d]:
                v = 1.0 - _u(key, counter)
                counter += 1
                t_ap = t + int(np.round(dead[d] - ap_tau[d] * math.log(v)))
                t_ap = max(t_ap, t + 1)
                order += 1
                heapq.heappush(pending, (t_ap, -order, ch))
    return out, lost


@st.composite
def click_streams(draw):
    def stream(n_max, with_ch, with_slot):
        n = draw(st.integers(0, n_max))
        t = sorted(draw(st.lists(st.integers(0, 5000), min_size=n, max_size=n)))
        cols = [t]
        if with_ch:
            cols.append(draw(st.lists(st.integers(1, 4), min_size=n, max_size=n)))
        if with_slot:
            cols.append(draw(st.lists(st.integers(0, 10**6), min_size=n, max_size=n)))
        return cols

    return (
        stream(60, True, True),
        stream(20, True, False),
        stream(10, False, True),
        draw(st.integers(0, 6000)),
        draw(st.lists(st.integers(0, 300), min_size=4, max_size=4)),
        draw(st.lists(st.sampled_from([0.0, 0.3, 0.9]), min_size=4, max_size=4)),
        draw(st.integers(0, MASK)),
    )


@given(click_streams())
def test_dead_time_and_afterpulse_kernel_matches_reference(case) -> None:
    sig, dark, sync, horizon, dead, ap, key = case
    ap_tau = [50.0, 10.0, 200.0, 1.0]
    arrays_sig = (np.array(sig[0], np.int64), np.array(sig[1], np.uint8), np.array(sig[2], np.int64))
    arrays_dark = (np.array(dark[0], np.int64), np.array(dark[1], np.uint8))
    arrays_sync = (np.array(sync[0], np.int64), np.array(sync[1], np.int64))
    pos = np.zeros(3, np.int64)
    state = np.array([key, 0], np.uint64)
    last = np.full(4, -(2**62), np.int64)
    cap = 1000
    out_t, out_ch, out_slot, out_kind = (
        np.empty(cap, np.int64),
        np.empty(cap, np.uint8),
        np.empty(cap, np.int64),
        np.empty(cap, np.uint8),
    )
    lost = np.zeros(4, np.int64)
    n_ap = np.zeros(4, np.int64)
    n, _ = register_clicks(
        *arrays_sig,
        *arrays_dark,
        *arrays_sync,
        pos,
        np.int64(horizon),
        np.array(dead, np.int64),
        np.array(ap, np.float64),
        np.array(ap_tau),
        np.int64(1),
        state,
        last,
        np.empty(4096, np.int64),
        np.empty(4096, np.uint8),
        0,
        out_t,
        out_ch,
        out_slot,
        out_kind,
        lost,
        n_ap,
    )
    ref, ref_lost = register_ref(sig, dark, sync, horizon, dead, ap, ap_tau, key, 0, [-(2**62)] * 4)
    got = list(zip(out_t[:n].tolist(), out_ch[:n].tolist(), out_slot[:n].tolist(), out_kind[:n].tolist()))
    assert got == ref
    assert lost.tolist() == ref_lost


@given(st.lists(st.integers(-1000, 1000), max_size=300))
def test_nearly_sorted_is_a_stable_sort(values: list[int]) -> None:
    t = np.array(values, np.int64)
    ch = np.arange(t.size, dtype=np.int64).astype(np.uint8)
    slot = np.arange(t.size, dtype=np.int64)
    order = np.argsort(t, kind="stable")
    nearly_sorted(t, ch, slot)
    assert np.array_equal(slot, order)
    assert np.all(np.diff(t) >= 0)

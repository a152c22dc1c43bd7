"""The mock link's per-slot kernels: candidate slots from geometric gaps, their thinning into
photon clicks at Alice's state (Eve's resend included), and each click's time on Bob's clock with
truncated Gaussian jitter. Every draw is keyed by (seed, slot), so a slot's fate does not depend on
how the range was cut."""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

from drivers.jit import kernel
from drivers.mock.alice import alice_state
from drivers.mock.counter import hash64, unit
from drivers.mock.detectors import N_DETECTORS
from drivers.mock.eve import resend_state
from drivers.mock.params import JITTER_TRUNCATION
from drivers.sorting import nearly_sorted

__all__ = [
    "GAUSS_CORE",
    "GAUSS_HI",
    "GAUSS_LO",
    "GAUSS_Z",
    "accumulate_gaps",
    "click_times",
    "fill_uniform",
    "gauss_tail",
    "nearly_sorted",
    "thin_candidates",
]

# Standard normals: inverse-CDF table (64 kB, cache-resident) with linear interpolation for
# |z| < GAUSS_CORE, Marsaglia's exact tail method beyond (interpolation error < 2e-5 sigma).
GAUSS_CORE = 2.5
_GAUSS_TABLE_SIZE = 1 << 13


def _gauss_table() -> tuple[NDArray[np.float64], float, float]:
    from scipy.special import ndtr, ndtri

    lo, hi = float(ndtr(-GAUSS_CORE)), float(ndtr(GAUSS_CORE))
    u = lo + (hi - lo) * np.arange(_GAUSS_TABLE_SIZE + 1) / _GAUSS_TABLE_SIZE
    z = ndtri(u)
    z[0], z[-1] = -GAUSS_CORE, GAUSS_CORE
    return z, lo, hi


GAUSS_Z, GAUSS_LO, GAUSS_HI = _gauss_table()


@kernel
def gauss_tail(key, counter, negative):  # pragma: no cover - numba
    """|z| > GAUSS_CORE by Marsaglia's tail method (exact), redrawn beyond the truncation."""
    while True:
        x = -math.log(1.0 - unit(hash64(key, counter))) * (1.0 / GAUSS_CORE)
        y = -math.log(1.0 - unit(hash64(key, counter + np.uint64(1))))
        counter += np.uint64(2)
        if 2.0 * y > x * x and GAUSS_CORE + x <= JITTER_TRUNCATION:
            z = GAUSS_CORE + x
            return (-z if negative else z), counter


@kernel
def fill_uniform(key, c0, out):  # pragma: no cover - numba
    """out[i] = a uniform in (0, 1] from counter c0 + i (a vectorisable loop)."""
    for i in range(out.size):
        out[i] = 1.0 - unit(hash64(key, c0 + np.uint64(i)))


@kernel
def accumulate_gaps(gap, s, s_end, out):  # pragma: no cover - numba
    """Candidate slots from geometric gaps (`gap[i]` = log(u_i) / log(1 - p_c), floored here),
    starting at slot s; returns (candidates written, next slot, gaps used)."""
    n = 0
    for i in range(gap.size):
        g = math.floor(gap[i])
        if g >= s_end - s:
            return n, s_end, i + 1
        s += np.int64(g)
        out[n] = s
        n += 1
        s += 1
        if s >= s_end:
            return n, s, i + 1
    return n, s, gap.size


@kernel
def thin_candidates(
    cand,
    start,
    alice_key,
    eve_key,
    acc_key,
    pick_key,
    p_z,
    cdf,
    eve_fraction,
    lam_cum,
    lam_tot,
    exp_neg,
    accept,
    out_slot,
    out_det,
):  # pragma: no cover - numba
    """Keep each candidate slot with its state's probability and spread its detected photons over
    the detectors; all draws are keyed by the slot. Returns (clicks written, next candidate)."""
    cap = out_slot.size
    n = 0
    i = start
    while i < cand.size and n + N_DETECTORS <= cap:
        s = cand[i]
        i += 1
        basis, bit, k = alice_state(alice_key, s, p_z, cdf)
        basis, bit = resend_state(eve_key, s, eve_fraction, basis, bit)
        v = unit(hash64(acc_key, np.uint64(s)))
        acc_p = accept[k, basis, bit]
        if v >= acc_p:
            continue
        # zero-truncated Poisson number of detected photons, by inversion; v / acc_p is a fresh
        # uniform given acceptance
        lt = lam_tot[k, basis, bit]
        p = exp_neg[k, basis, bit]
        w = (v / acc_p) * (1.0 - p)
        cum = 0.0
        m = 0
        while m < 1000:
            m += 1
            p *= lt / m
            cum += p
            if w <= cum:
                break
        if m == 1:  # the usual case: one detected photon, one click
            x = unit(hash64(pick_key, np.uint64(s))) * lt
            d = 0
            for j in range(N_DETECTORS - 1):  # branch-free choice of the detector
                d += x >= lam_cum[k, basis, bit, j]
            out_slot[n] = s
            out_det[n] = d
            n += 1
            continue
        mask = 0
        for j in range(m):
            x = unit(hash64(pick_key + np.uint64(j), np.uint64(s))) * lt
            d = 0
            for jj in range(N_DETECTORS - 1):
                d += x >= lam_cum[k, basis, bit, jj]
            mask |= 1 << d
        for d in range(N_DETECTORS):
            if mask & (1 << d):
                out_slot[n] = s
                out_det[n] = d
                n += 1
    return n, i


@kernel
def click_times(
    slot,
    det,
    jit_key,
    tail_key,
    ztab,
    z_lo,
    z_hi,
    offset,
    scale,
    curvature,
    period,
    fibre_delay,
    det_delay,
    jitter,
    resolution,
    out_t,
):  # pragma: no cover - numba
    """Bob-clock tag time of each photon click: arrival + detector delay + Gaussian jitter keyed by
    (slot, detector), rounded to the tagger resolution."""
    n_tab = ztab.size - 1
    inv_step = n_tab / (z_hi - z_lo)
    for i in range(slot.size):
        s = slot[i]
        d = det[i]
        c = np.uint64(s)
        u = unit(hash64(jit_key + np.uint64(d), c))
        if u < z_lo or u >= z_hi:  # rare: the exact tail
            z, _ = gauss_tail(hash64(tail_key + np.uint64(d), c), np.uint64(0), u < z_lo)
        else:
            pos = (u - z_lo) * inv_step
            j = min(int(pos), n_tab - 1)
            z = ztab[j] + (pos - j) * (ztab[j + 1] - ztab[j])
        ta = s * period + fibre_delay
        t = offset + ta * (scale + curvature * ta) + det_delay[d] + jitter[d] * z
        if resolution == 1:
            out_t[i] = np.int64(math.floor(t + 0.5))
        else:
            out_t[i] = np.int64(math.floor(t / resolution + 0.5)) * resolution

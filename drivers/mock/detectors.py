"""Bob's receiver: passive basis choice, misalignment, four detectors with efficiency, dead time
and afterpulsing.

Detector index `j` (0..3) is Z0, Z1, X0, X1: basis `j >> 1`, bit `j & 1`; on the tagger it is
channel `j + 1`. A photon goes to the Z arm with probability `bob_p_z` (a beam splitter), then a
polarising beam splitter sends it to the detector of Alice's bit with probability
`1 - misalignment` when the bases agree, and to either detector with probability 1/2 when they do
not. A detector registers it with its efficiency. For a coherent pulse the detected photon numbers
of the four detectors are independent Poisson variables with means `mu * eta_channel * r[a, x, j]`.

Dead time is non-paralysable and measured from each registered click; a registered click (of any
origin) spawns an afterpulse with the detector's probability, at the end of the dead time plus an
exponential delay; afterpulses pass the dead-time check like any other click.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from drivers.jit import kernel
from drivers.mock.counter import hash64, unit

N_DETECTORS = 4
KIND_PHOTON = 0
KIND_DARK = 1
KIND_AFTERPULSE = 2
KIND_SYNC = 3

_INT64_MAX = np.iinfo(np.int64).max


def routing(bob_p_z: float, misalignment: float, efficiency: tuple[float, ...]) -> NDArray[np.float64]:
    """`r[a, x, j]`: probability that a photon prepared in basis `a`, bit `x` is registered by detector `j`."""
    r = np.zeros((2, 2, N_DETECTORS))
    arm = (bob_p_z, 1.0 - bob_p_z)
    for a in range(2):
        for x in range(2):
            for j in range(N_DETECTORS):
                b, y = j >> 1, j & 1
                if b == a:
                    within = 1.0 - misalignment if y == x else misalignment
                else:
                    within = 0.5
                r[a, x, j] = arm[b] * within * efficiency[j]
    return r


@kernel
def _push(pend_t, pend_ch, n, t, ch):  # pragma: no cover - numba
    """Insert into the pending list kept sorted by time, latest first (the next one is at n-1)."""
    i = n
    while i > 0 and pend_t[i - 1] < t:
        pend_t[i] = pend_t[i - 1]
        pend_ch[i] = pend_ch[i - 1]
        i -= 1
    pend_t[i] = t
    pend_ch[i] = ch
    return n + 1


@kernel
def register_clicks(
    sig_t,
    sig_ch,
    sig_slot,
    dark_t,
    dark_ch,
    sync_t,
    sync_slot,
    pos,
    horizon,
    dead_ps,
    ap_prob,
    ap_tau_ps,
    resolution_ps,
    state,
    last_click,
    pend_t,
    pend_ch,
    n_pend,
    out_t,
    out_ch,
    out_slot,
    out_kind,
    dead_lost,
    n_afterpulses,
):  # pragma: no cover - numba
    """Merge the sorted photon, dark and sync streams with pending afterpulses up to `horizon`,
    applying dead time per detector; returns (events written, pending afterpulses).

    `pos` (3 int64: photon, dark, sync) advances in place; the kernel stops early when the output
    is full (the caller continues with a fresh buffer). `state[0]` is the RNG key, `state[1]` its
    counter. `last_click[j]` is the last registered time of detector j (INT64_MIN: none yet).
    """
    i, j, k = pos[0], pos[1], pos[2]
    n_sig, n_dark, n_sync = sig_t.size, dark_t.size, sync_t.size
    cap = out_t.size
    key = state[0]
    n = 0
    while n < cap:
        best = _INT64_MAX
        src = -1
        if i < n_sig and sig_t[i] < best:
            best = sig_t[i]
            src = 0
        if j < n_dark and dark_t[j] < best:
            best = dark_t[j]
            src = 1
        if k < n_sync and sync_t[k] < best:
            best = sync_t[k]
            src = 2
        if n_pend > 0 and pend_t[n_pend - 1] < best:
            best = pend_t[n_pend - 1]
            src = 3
        if src < 0 or best >= horizon:
            break
        if src == 2:
            out_t[n] = best
            out_ch[n] = 0
            out_slot[n] = sync_slot[k]
            out_kind[n] = KIND_SYNC
            n += 1
            k += 1
            continue
        if src == 0:
            ch = sig_ch[i]
            slot = sig_slot[i]
            kind = KIND_PHOTON
            i += 1
        elif src == 1:
            ch = dark_ch[j]
            slot = -1
            kind = KIND_DARK
            j += 1
        else:
            n_pend -= 1
            ch = pend_ch[n_pend]
            slot = -1
            kind = KIND_AFTERPULSE
        d = ch - 1
        if best - last_click[d] < dead_ps[d]:
            dead_lost[d] += 1
            continue
        last_click[d] = best
        out_t[n] = best
        out_ch[n] = ch
        out_slot[n] = slot
        out_kind[n] = kind
        n += 1
        if ap_prob[d] > 0.0:
            u = unit(hash64(key, state[1]))
            state[1] += np.uint64(1)
            if u < ap_prob[d] and n_pend < pend_t.size:
                v = 1.0 - unit(hash64(key, state[1]))
                state[1] += np.uint64(1)
                delay = dead_ps[d] - ap_tau_ps[d] * np.log(v)
                t_ap = best + np.int64(np.round(delay / resolution_ps)) * resolution_ps
                if t_ap <= best:
                    t_ap = best + resolution_ps
                n_pend = _push(pend_t, pend_ch, n_pend, t_ap, ch)
                n_afterpulses[d] += 1
    pos[0] = i
    pos[1] = j
    pos[2] = k
    return n, n_pend


def blinded(params: Any, fraction: float) -> Any:
    """Bob's detectors (a `LinkParams`) while Eve blinds them with bright light for `fraction` of
    the time: in linear mode they register neither dark counts nor afterpulses, only her trigger
    pulses, so both rates fall by that fraction (dead time still follows every registered click)."""
    keep = 1.0 - fraction
    return params.replace(
        dark_count_hz=tuple(d * keep for d in params.dark_count_hz),
        afterpulse_probability=tuple(p * keep for p in params.afterpulse_probability),
    )

"""The Monte-Carlo link: Alice's decoy-state BB84 source, the fibre, Eve, Bob's detectors and
clocks, producing the time-tag stream Bob's tagger would record.

Cost per detection, not per slot: candidate slots are drawn with geometric gaps at the largest
per-slot detection probability `p_c = 1 - exp(-Lambda_max)` over all (class, state) pairs; the
candidate's state is recomputed from (seed, slot), it is kept with probability
`(1 - exp(-Lambda)) / p_c` for its own `Lambda = mu_k * eta_channel * sum_j r[a, x, j]`, and the
detected photons (a zero-truncated Poisson number) are spread over the detectors in proportion to
`r[a, x, j]`. This is exact thinning of the per-slot process. The pipeline is struct-of-arrays
(uniforms, vectorised logs for the gaps, thinning, jitter) and all draws after the gaps are keyed
by the slot. Dark counts are a Poisson process in Bob's time; dead time and afterpulsing act on
the time-sorted clicks per detector.

Channel map (tagger channels): 0 = sync, 1 = Z0, 2 = Z1, 3 = X0, 4 = X1.
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from drivers.mock.alice import class_cdf
from drivers.mock.counter import STREAM_ALICE, STREAM_BOB, STREAM_DARK, STREAM_EVE, derive_key, hash64_py
from drivers.mock.detectors import N_DETECTORS, register_clicks
from drivers.mock.params import JITTER_TRUNCATION, LinkParams
from drivers.mock.photons import (
    GAUSS_HI,
    GAUSS_LO,
    GAUSS_Z,
    accumulate_gaps,
    click_times,
    fill_uniform,
    nearly_sorted,
    thin_candidates,
)

__all__ = ["LinkCounters", "LinkEvents", "LinkSimulator", "simulate_link"]

PIECE_CLICKS = 1 << 19  # expected candidate clicks per parallel piece of a large slot range
_POOL: ThreadPoolExecutor | None = None


def _pool() -> ThreadPoolExecutor:
    """Threads for the GIL-free photon kernel (one per usable core)."""
    global _POOL
    if _POOL is None:
        try:
            cores = len(os.sched_getaffinity(0))
        except AttributeError:
            cores = os.cpu_count() or 1
        _POOL = ThreadPoolExecutor(max_workers=max(1, cores), thread_name_prefix="mock-link")
    return _POOL


@dataclass
class LinkEvents:
    """Time-sorted tags with the simulation's ground truth: `slot` is the slot of a photon or sync
    tag (-1 for dark counts and afterpulses), `kind` 0 photon, 1 dark, 2 afterpulse, 3 sync."""

    time: NDArray[np.int64]
    channel: NDArray[np.uint8]
    slot: NDArray[np.int64]
    kind: NDArray[np.uint8]

    def __len__(self) -> int:
        return int(self.time.size)

    @classmethod
    def concatenate(cls, parts: list[LinkEvents]) -> LinkEvents:
        """Join consecutive pieces of one stream."""
        if not parts:
            return cls(np.empty(0, np.int64), np.empty(0, np.uint8), np.empty(0, np.int64), np.empty(0, np.uint8))
        return cls(*(np.concatenate([getattr(p, f) for p in parts]) for f in ("time", "channel", "slot", "kind")))


def _empty_stream() -> tuple[NDArray[np.int64], NDArray[np.uint8], NDArray[np.int64]]:
    return np.empty(0, np.int64), np.empty(0, np.uint8), np.empty(0, np.int64)


@dataclass
class LinkCounters:
    """What the simulation did so far, per detector where it applies."""

    slots: int = 0
    skipped_slots: int = 0
    photon_clicks: NDArray[np.int64] = field(default_factory=lambda: np.zeros(N_DETECTORS, np.int64))
    dark_counts: NDArray[np.int64] = field(default_factory=lambda: np.zeros(N_DETECTORS, np.int64))
    afterpulses: NDArray[np.int64] = field(default_factory=lambda: np.zeros(N_DETECTORS, np.int64))
    dead_time_lost: NDArray[np.int64] = field(default_factory=lambda: np.zeros(N_DETECTORS, np.int64))
    sync_pulses: int = 0


class LinkSimulator:
    """Streams the link's tags slot range by slot range; state (dead time, pending afterpulses,
    tags not yet final near the chunk edge) carries over, so the concatenated output of
    `run(n1); run(n2); ...; flush()` is one consistent time-sorted stream. Alice's states and
    every per-slot draw depend only on (seed, slot); which slots are drawn as candidates depends
    on how the range was cut into `run` calls, so the same seed and the same calls reproduce the
    same stream exactly. Tags that would fall before time 0 (before the tagger started) are not
    recorded."""

    def __init__(self, params: LinkParams, seed: int) -> None:
        if not isinstance(params, LinkParams):
            raise ValueError(f"params must be a LinkParams, got {type(params).__name__}")
        self.params = params
        self.source_params = params  # the link without injected conditions (Alice's settings in force)
        self._alice_key = derive_key(seed, STREAM_ALICE)
        self._eve_key = derive_key(seed, STREAM_EVE)
        self._bob_key = derive_key(seed, STREAM_BOB)
        # slot-keyed draws: acceptance, detector choice (key + photon index), jitter and its tail
        # (key + detector index)
        self._acc_key = hash64_py(self._bob_key, 0xACC)
        self._pick_key = hash64_py(self._bob_key, 0x91C)
        self._jit_key = hash64_py(self._bob_key, 0x717)
        self._tail_key = hash64_py(self._bob_key, 0x7A1)
        self._dark_seed = int(derive_key(seed, STREAM_DARK))
        p = params
        self._lam = p.mean_photons_detected()
        self._lam_tot = self._lam.sum(axis=3)
        self._lam_cum = np.ascontiguousarray(np.cumsum(self._lam, axis=3))
        lam_max = float(self._lam_tot.max())
        p_c = -math.expm1(-lam_max)
        self._log_q = math.log1p(-p_c) if p_c < 1.0 else -math.inf
        self._p_c = p_c
        self._exp_neg = np.exp(-self._lam_tot)
        self._accept = np.where(p_c > 0, -np.expm1(-self._lam_tot) / max(p_c, 1e-300), 0.0)
        self._cdf = class_cdf(p.class_probabilities)
        self._clock = p.clock
        self._det_delay = np.asarray(p.detector_delay_ps)
        self._jitter = np.asarray(p.jitter_ps)
        self._dead = np.round(np.asarray(p.dead_time_ps)).astype(np.int64)
        self._ap_prob = np.asarray(p.afterpulse_probability)
        self._ap_tau = np.asarray(p.afterpulse_time_ps)
        self._dark_rate_per_ps = np.asarray(p.dark_count_hz) * 1e-12
        margin = min(
            0.0,
            min(d - JITTER_TRUNCATION * j for d, j in zip(p.detector_delay_ps, p.jitter_ps)),
            p.sync_delay_ps * self._clock.scale - JITTER_TRUNCATION * p.sync_jitter_ps,
        )
        self._margin_ps = margin - 2 * p.resolution_ps - 1.0
        self._next_slot = 0
        self._chunk = 0
        self._state = np.array([self._bob_key ^ np.uint64(0xD1B54A32D192ED03), 0], dtype=np.uint64)
        self._last_click = np.full(N_DETECTORS, -(2**62), np.int64)
        self._pend_t = np.empty(4096, np.int64)
        self._pend_ch = np.empty(4096, np.uint8)
        self._n_pend = 0
        self._carry_sig = _empty_stream()
        self._carry_dark = _empty_stream()[:2]
        self._carry_sync = (np.empty(0, np.int64), np.empty(0, np.int64))
        self.counters = LinkCounters()

    @property
    def next_slot(self) -> int:
        """The first slot not yet simulated."""
        return self._next_slot

    def time_of_slot_ps(self, slot: int) -> float:
        """Bob-clock arrival time of a slot's pulse (before detector delays)."""
        return float(self._clock.arrival_ps(float(slot)))

    def run(self, n_slots: int) -> LinkEvents:
        """Simulate the next `n_slots` slots; returns the tags that are final (time-sorted)."""
        if not isinstance(n_slots, (int, np.integer)) or n_slots < 0:
            raise ValueError(f"n_slots must be a non-negative integer, got {n_slots!r}")
        s0, s1 = self._next_slot, self._next_slot + int(n_slots)
        self._next_slot = s1
        self.counters.slots += int(n_slots)
        sig = self._photons(s0, s1)
        dark = self._darks(s0, s1)
        sync = self._syncs(s0, s1)
        self._chunk += 1
        horizon = int(math.floor(self._clock.arrival_ps(float(s1)) + self._margin_ps))
        return self._register(sig, dark, sync, horizon)

    def skip(self, n_slots: int) -> None:
        """Jump over `n_slots` slots without simulating them (an acquisition gap: a tagger that
        could not keep up). Tags already held back stay valid."""
        if not isinstance(n_slots, (int, np.integer)) or n_slots < 0:
            raise ValueError(f"n_slots must be a non-negative integer, got {n_slots!r}")
        self._next_slot += int(n_slots)
        self.counters.skipped_slots += int(n_slots)

    def expected_tags_per_slot(self) -> float:
        """Mean tags per slot before dead time: photon clicks, dark counts and sync pulses."""
        p = self.params
        w = np.asarray(p.class_probabilities)[:, None, None] * np.array([p.p_z, 1.0 - p.p_z])[None, :, None] * 0.5
        photons = float((-np.expm1(-self._lam).sum(axis=3) * w).sum())
        darks = float(np.sum(p.dark_count_hz)) * p.period_ps * 1e-12
        return photons + darks + 1.0 / p.sync_every

    def flush(self) -> LinkEvents:
        """Every tag still held back (the stream ends after the last simulated slot)."""
        empty_dark = (np.empty(0, np.int64), np.empty(0, np.uint8))
        empty_sync = (np.empty(0, np.int64), np.empty(0, np.int64))
        return self._register(_empty_stream(), empty_dark, empty_sync, np.iinfo(np.int64).max)

    def _photon_range(
        self, s0: int, s1: int, key: np.uint64
    ) -> tuple[NDArray[np.int64], NDArray[np.uint8], NDArray[np.int64]]:
        """Photon clicks of slots [s0, s1) in slot order, candidates drawn with `key`.

        Struct-of-arrays: uniforms, then numpy's vectorised log for the geometric gaps, then the
        per-candidate thinning, then the jitter of each click."""
        p = self.params
        empty = (np.empty(0, np.int64), np.empty(0, np.uint8), np.empty(0, np.int64))
        if self._log_q == 0.0 or s1 <= s0:  # no light reaches Bob
            return empty
        inv_log_q = 1.0 / self._log_q
        cands = []
        s, c = s0, 0
        while s < s1:
            expected = (s1 - s) * self._p_c
            m = int(min(expected * 1.02 + 6.0 * math.sqrt(expected) + 64, 1 << 22))
            g = np.empty(m)
            fill_uniform(key, np.uint64(c), g)
            np.log(g, out=g)
            g *= inv_log_q
            out = np.empty(m, np.int64)
            n, s, used = accumulate_gaps(g, np.int64(s), np.int64(s1), out)
            c += used
            cands.append(out[:n])
        cand = cands[0] if len(cands) == 1 else np.concatenate(cands)
        slots, dets = [], []
        i = 0
        while i < cand.size:
            cap = int((cand.size - i) * 1.1) + 64
            out_slot = np.empty(cap, np.int64)
            out_det = np.empty(cap, np.uint8)
            n, i = thin_candidates(
                cand,
                i,
                self._alice_key,
                self._eve_key,
                self._acc_key,
                self._pick_key,
                p.p_z,
                self._cdf,
                p.eve_fraction,
                self._lam_cum,
                self._lam_tot,
                self._exp_neg,
                self._accept,
                out_slot,
                out_det,
            )
            slots.append(out_slot[:n])
            dets.append(out_det[:n])
        if not slots:
            return empty
        slot = slots[0] if len(slots) == 1 else np.concatenate(slots)
        det = dets[0] if len(dets) == 1 else np.concatenate(dets)
        t = np.empty(slot.size, np.int64)
        clock = self._clock
        click_times(
            slot,
            det,
            self._jit_key,
            self._tail_key,
            GAUSS_Z,
            GAUSS_LO,
            GAUSS_HI,
            clock.offset_ps,
            clock.scale,
            clock.curvature,
            clock.period_ps,
            clock.fibre_delay_ps,
            self._det_delay,
            self._jitter,
            np.int64(p.resolution_ps),
            t,
        )
        det += np.uint8(1)  # detector index -> tagger channel
        return t, det, slot

    def _photons(self, s0: int, s1: int) -> tuple[NDArray[np.int64], NDArray[np.uint8], NDArray[np.int64]]:
        # Large ranges are cut into pieces of about PIECE_CLICKS expected candidates, each with its
        # own key (so the result does not depend on the number of threads), run on a thread pool.
        chunk_key = hash64_py(self._bob_key, self._chunk)
        n_pieces = max(1, min(256, int((s1 - s0) * self._p_c / PIECE_CLICKS)))
        bounds = [s0 + (s1 - s0) * i // n_pieces for i in range(n_pieces + 1)]
        keys = [hash64_py(chunk_key, 1_000_003 * (i + 1)) for i in range(n_pieces)]
        if n_pieces == 1:
            parts = [self._photon_range(s0, s1, keys[0])]
        else:
            parts = list(_pool().map(self._photon_range, bounds[:-1], bounds[1:], keys))
        ct, cc, cs = self._carry_sig
        if len(parts) == 1 and ct.size == 0:
            t, ch, slot = parts[0]
        else:
            t = np.concatenate([ct] + [x[0] for x in parts])
            ch = np.concatenate([cc] + [x[1] for x in parts])
            slot = np.concatenate([cs] + [x[2] for x in parts])
        self.counters.photon_clicks += np.bincount(ch[ct.size :], minlength=N_DETECTORS + 1)[1 : N_DETECTORS + 1]
        nearly_sorted(t, ch, slot)
        return t, ch, slot

    def _darks(self, s0: int, s1: int) -> tuple[NDArray[np.int64], NDArray[np.uint8]]:
        t_lo = float(self._clock.arrival_ps(float(s0))) if s0 > 0 else 0.0
        t_hi = float(self._clock.arrival_ps(float(s1)))
        rng = np.random.Generator(np.random.Philox(key=[self._dark_seed, self._chunk]))
        ts, chs = [self._carry_dark[0]], [self._carry_dark[1]]
        for d in range(N_DETECTORS):
            rate = self._dark_rate_per_ps[d]
            if rate <= 0 or t_hi <= t_lo:
                continue
            m = rng.poisson(rate * (t_hi - t_lo))
            if m:
                ts.append(
                    np.round(rng.uniform(t_lo, t_hi, m) / self.params.resolution_ps).astype(np.int64)
                    * self.params.resolution_ps
                )
                chs.append(np.full(m, d + 1, np.uint8))
                self.counters.dark_counts[d] += m
        t = np.concatenate(ts)
        ch = np.concatenate(chs)
        order = np.argsort(t, kind="stable")
        return t[order], ch[order]

    def _syncs(self, s0: int, s1: int) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
        p = self.params
        slots = self._clock.sync_slots(s0, s1, p.sync_every)
        rng = np.random.Generator(np.random.Philox(key=[self._dark_seed ^ 0x5EED, self._chunk]))
        t_float = self._clock.sync_times(slots, p.sync_delay_ps, p.sync_jitter_ps, rng)
        t = np.round(t_float / p.resolution_ps).astype(np.int64) * p.resolution_ps
        self.counters.sync_pulses += int(slots.size)
        ct, cs = self._carry_sync
        t = np.concatenate([ct, t])
        slots = np.concatenate([cs, slots])
        dummy = np.empty(t.size, np.uint8)
        nearly_sorted(t, dummy, slots)
        return t, slots

    def _register(self, sig, dark, sync, horizon: int) -> LinkEvents:
        pos = np.zeros(3, np.int64)
        parts = []
        total_in = sig[0].size + dark[0].size + sync[0].size + self._n_pend
        while True:
            cap = int(total_in * (1.0 + float(self._ap_prob.max()) * 1.5) + 1024)
            out_t = np.empty(cap, np.int64)
            out_ch = np.empty(cap, np.uint8)
            out_slot = np.empty(cap, np.int64)
            out_kind = np.empty(cap, np.uint8)
            n, self._n_pend = register_clicks(
                sig[0],
                sig[1],
                sig[2],
                dark[0],
                dark[1],
                sync[0],
                sync[1],
                pos,
                np.int64(horizon),
                self._dead,
                self._ap_prob,
                self._ap_tau,
                np.int64(self.params.resolution_ps),
                self._state,
                self._last_click,
                self._pend_t,
                self._pend_ch,
                self._n_pend,
                out_t,
                out_ch,
                out_slot,
                out_kind,
                self.counters.dead_time_lost,
                self.counters.afterpulses,
            )
            parts.append(LinkEvents(out_t[:n], out_ch[:n], out_slot[:n], out_kind[:n]))
            if n < cap:
                break
        i, j, k = (int(v) for v in pos)
        self._carry_sig = (sig[0][i:].copy(), sig[1][i:].copy(), sig[2][i:].copy())
        self._carry_dark = (dark[0][j:].copy(), dark[1][j:].copy())
        self._carry_sync = (sync[0][k:].copy(), sync[1][k:].copy())
        ev = parts[0] if len(parts) == 1 else LinkEvents.concatenate(parts)
        if len(ev) and ev.time[0] < 0:  # before the tagger started: never recorded
            keep = ev.time >= 0
            ev = LinkEvents(ev.time[keep], ev.channel[keep], ev.slot[keep], ev.kind[keep])
        return ev


def simulate_link(params: LinkParams, n_slots: int, seed: int) -> LinkEvents:
    """All tags of the first `n_slots` slots, with ground truth (one call of the streaming simulator)."""
    sim = LinkSimulator(params, seed)
    return LinkEvents.concatenate([sim.run(n_slots), sim.flush()])

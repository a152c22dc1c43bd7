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
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np
from numpy.typing import NDArray

from drivers.mock.alice import alice_state, class_cdf
from drivers.mock.channel import propagation_delay_ps, transmittance
from drivers.mock.clocks import ClockModel
from drivers.mock.counter import STREAM_ALICE, STREAM_BOB, STREAM_DARK, STREAM_EVE, derive_key, hash64, hash64_py, unit
from drivers.mock.detectors import (
    KIND_AFTERPULSE,
    KIND_DARK,
    KIND_PHOTON,
    KIND_SYNC,
    N_DETECTORS,
    register_clicks,
    routing,
)
from drivers.mock.eve import resend_state
from drivers.jit import kernel

__all__ = [
    "CHANNEL_SYNC",
    "DETECTOR_CHANNELS",
    "DETECTOR_PRESETS",
    "KIND_AFTERPULSE",
    "KIND_DARK",
    "KIND_PHOTON",
    "KIND_SYNC",
    "LinkCounters",
    "LinkEvents",
    "LinkParams",
    "LinkSimulator",
    "SimulatedDetections",
    "simulate_detections",
    "simulate_link",
]

CHANNEL_SYNC = 0
DETECTOR_CHANNELS = (1, 2, 3, 4)  # Z0, Z1, X0, X1
JITTER_TRUNCATION = 8.0  # Gaussian jitter is truncated at this many sigma

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


# Typical single-photon detectors (order-of-magnitude values from vendor data sheets).
DETECTOR_PRESETS: dict[str, dict[str, Any]] = {
    # superconducting nanowires: high efficiency, few dark counts, no afterpulsing, short dead time
    "snspd": dict(efficiency=0.85, dark_count_hz=100.0, afterpulse_probability=0.0, dead_time_ps=50_000.0,
                  jitter_ps=20.0),
    # free-running InGaAs avalanche diodes: long dead time against afterpulsing
    "ingaas": dict(efficiency=0.20, dark_count_hz=1_000.0, afterpulse_probability=0.02,
                   afterpulse_time_ps=2_000_000.0, dead_time_ps=10_000_000.0, jitter_ps=100.0),
    # silicon avalanche diodes (visible / 800 nm links)
    "si-spad": dict(efficiency=0.6, dark_count_hz=250.0, afterpulse_probability=0.005,
                    afterpulse_time_ps=50_000.0, dead_time_ps=22_000.0, jitter_ps=175.0),
}

_PER_DETECTOR = ("efficiency", "dark_count_hz", "afterpulse_probability", "afterpulse_time_ps",
                 "dead_time_ps", "jitter_ps", "detector_delay_ps")


@dataclass(frozen=True)
class LinkParams:
    """Physical parameters of the mock link. Per-detector values are 4-tuples (Z0, Z1, X0, X1);
    a scalar is accepted and repeated. Times in picoseconds, rates in Hz."""

    repetition_rate_hz: float = 1e9
    intensities: tuple[float, ...] = (0.5, 0.1, 0.0)
    class_probabilities: tuple[float, ...] = (0.8, 0.15, 0.05)
    p_z: float = 0.5
    fibre_length_km: float = 25.0
    fibre_loss_db_per_km: float = 0.2
    insertion_loss_db: float = 1.0
    group_index: float = 1.468
    bob_p_z: float = 0.5
    misalignment: float = 0.01
    efficiency: tuple[float, ...] = (0.2, 0.2, 0.2, 0.2)
    dark_count_hz: tuple[float, ...] = (500.0, 500.0, 500.0, 500.0)
    afterpulse_probability: tuple[float, ...] = (0.01, 0.01, 0.01, 0.01)
    afterpulse_time_ps: tuple[float, ...] = (20_000.0,) * 4
    dead_time_ps: tuple[float, ...] = (50_000.0,) * 4
    jitter_ps: tuple[float, ...] = (50.0,) * 4
    detector_delay_ps: tuple[float, ...] = (0.0, 30.0, 60.0, 90.0)
    clock_offset_ps: float = 1_000_000.0
    clock_drift_ppm: float = 0.0
    clock_drift_rate_ppm_per_s: float = 0.0
    sync_every: int = 1000
    sync_delay_ps: float = 0.0
    sync_jitter_ps: float = 10.0
    eve_fraction: float = 0.0
    resolution_ps: int = 1

    def __post_init__(self) -> None:
        for name in _PER_DETECTOR:
            value = getattr(self, name)
            if isinstance(value, (int, float)):
                value = (float(value),) * N_DETECTORS
            value = tuple(float(v) for v in value)
            if len(value) != N_DETECTORS:
                raise ValueError(f"{name} must be a scalar or {N_DETECTORS} values (Z0, Z1, X0, X1), got {len(value)}")
            object.__setattr__(self, name, value)
        object.__setattr__(self, "intensities", tuple(float(v) for v in self.intensities))
        object.__setattr__(self, "class_probabilities", tuple(float(v) for v in self.class_probabilities))
        self._validate()

    def _validate(self) -> None:
        def need(ok: bool, what: str) -> None:
            if not ok:
                raise ValueError(what)

        need(self.repetition_rate_hz > 0 and math.isfinite(self.repetition_rate_hz),
             f"repetition_rate_hz must be > 0, got {self.repetition_rate_hz}")
        need(1 <= len(self.intensities) <= 255, "intensities must have 1..255 classes")
        need(all(m >= 0 and math.isfinite(m) for m in self.intensities), f"intensities must be >= 0, got {self.intensities}")
        need(len(self.class_probabilities) == len(self.intensities),
             "class_probabilities must have one entry per intensity class")
        need(all(p >= 0 for p in self.class_probabilities) and abs(sum(self.class_probabilities) - 1.0) < 1e-9,
             f"class_probabilities must be >= 0 and sum to 1, got {self.class_probabilities}")
        for name in ("p_z", "bob_p_z", "eve_fraction"):
            need(0.0 <= getattr(self, name) <= 1.0, f"{name} must be in [0, 1], got {getattr(self, name)}")
        need(0.0 <= self.misalignment <= 0.5, f"misalignment must be in [0, 0.5], got {self.misalignment}")
        need(self.fibre_length_km >= 0, f"fibre_length_km must be >= 0, got {self.fibre_length_km}")
        need(self.fibre_loss_db_per_km >= 0, f"fibre_loss_db_per_km must be >= 0, got {self.fibre_loss_db_per_km}")
        need(self.insertion_loss_db >= 0, f"insertion_loss_db must be >= 0, got {self.insertion_loss_db}")
        need(self.group_index >= 1, f"group_index must be >= 1, got {self.group_index}")
        need(all(0 <= e <= 1 for e in self.efficiency), f"efficiency must be in [0, 1], got {self.efficiency}")
        need(all(0 <= p < 1 for p in self.afterpulse_probability),
             f"afterpulse_probability must be in [0, 1), got {self.afterpulse_probability}")
        for name in ("dark_count_hz", "afterpulse_time_ps", "dead_time_ps", "jitter_ps"):
            need(all(v >= 0 and math.isfinite(v) for v in getattr(self, name)), f"{name} must be >= 0, got {getattr(self, name)}")
        need(all(math.isfinite(v) for v in self.detector_delay_ps), "detector_delay_ps must be finite")
        need(self.clock_offset_ps >= 0, f"clock_offset_ps must be >= 0, got {self.clock_offset_ps}")
        need(abs(self.clock_drift_ppm) < 1e4, f"clock_drift_ppm must be within +-1e4, got {self.clock_drift_ppm}")
        need(math.isfinite(self.clock_drift_rate_ppm_per_s) and abs(self.clock_drift_rate_ppm_per_s) <= 1e4,
             f"clock_drift_rate_ppm_per_s must be within +-1e4, got {self.clock_drift_rate_ppm_per_s}")
        need(isinstance(self.sync_every, int) and self.sync_every >= 1, f"sync_every must be an int >= 1, got {self.sync_every}")
        need(self.sync_jitter_ps >= 0, f"sync_jitter_ps must be >= 0, got {self.sync_jitter_ps}")
        need(self.clock_offset_ps + self.sync_delay_ps - JITTER_TRUNCATION * self.sync_jitter_ps >= 0,
             "clock_offset_ps + sync_delay_ps must leave the first sync pulse (slot 0) after the tagger's "
             f"start (8 sigma of sync jitter included), got {self.clock_offset_ps} + {self.sync_delay_ps}")
        need(isinstance(self.resolution_ps, int) and self.resolution_ps >= 1,
             f"resolution_ps must be an int >= 1, got {self.resolution_ps}")

    @property
    def period_ps(self) -> float:
        """Slot period on Alice's clock."""
        return 1e12 / self.repetition_rate_hz

    @property
    def channel_transmittance(self) -> float:
        """Fibre plus receiver insertion loss, as a fraction."""
        return transmittance(self.fibre_length_km, self.fibre_loss_db_per_km, self.insertion_loss_db)

    @property
    def fibre_delay_ps(self) -> float:
        """Time of flight through the fibre."""
        return propagation_delay_ps(self.fibre_length_km, self.group_index)

    @property
    def clock(self) -> ClockModel:
        """The slot -> Bob-clock arrival time map."""
        return ClockModel(self.period_ps, self.clock_offset_ps, self.clock_drift_ppm, self.fibre_delay_ps,
                          self.clock_drift_rate_ppm_per_s)

    def channel_delays_ps(self) -> NDArray[np.float64]:
        """Delay of each tagger channel relative to the sync (index = channel), for slotting."""
        d = np.zeros(1 + N_DETECTORS)
        d[1:] = np.asarray(self.detector_delay_ps) - self.sync_delay_ps * self.clock.scale
        return d

    def with_detectors(self, kind: str) -> LinkParams:
        """A copy with typical detectors of `kind` (a key of DETECTOR_PRESETS)."""
        if kind not in DETECTOR_PRESETS:
            raise ValueError(f"kind must be one of {sorted(DETECTOR_PRESETS)}, got {kind!r}")
        return self.replace(**DETECTOR_PRESETS[kind])

    def replace(self, **changes: Any) -> LinkParams:
        """A copy with some parameters changed."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        values.update(changes)
        return LinkParams(**values)

    def mean_photons_detected(self) -> NDArray[np.float64]:
        """`lam[k, a, x, j]`: mean detected photons at detector j per slot of class k, state (a, x)."""
        mu = np.asarray(self.intensities)[:, None, None, None]
        return mu * self.channel_transmittance * routing(self.bob_p_z, self.misalignment, self.efficiency)[None]


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
def _gauss_tail(key, counter, negative):  # pragma: no cover - numba
    """|z| > GAUSS_CORE by Marsaglia's tail method (exact), redrawn beyond the truncation."""
    while True:
        x = -math.log(1.0 - unit(hash64(key, counter))) * (1.0 / GAUSS_CORE)
        y = -math.log(1.0 - unit(hash64(key, counter + np.uint64(1))))
        counter += np.uint64(2)
        if 2.0 * y > x * x and GAUSS_CORE + x <= JITTER_TRUNCATION:
            z = GAUSS_CORE + x
            return (-z if negative else z), counter


@kernel
def _fill_uniform(key, c0, out):  # pragma: no cover - numba
    """out[i] = a uniform in (0, 1] from counter c0 + i (a vectorisable loop)."""
    for i in range(out.size):
        out[i] = 1.0 - unit(hash64(key, c0 + np.uint64(i)))


@kernel
def _accumulate_gaps(gap, s, s_end, out):  # pragma: no cover - numba
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
def _thin_candidates(
    cand, start, alice_key, eve_key, acc_key, pick_key, p_z, cdf, eve_fraction, lam_cum, lam_tot, exp_neg, accept,
    out_slot, out_det,
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
def _click_times(
    slot, det, jit_key, tail_key, ztab, z_lo, z_hi, offset, scale, curvature, period, fibre_delay, det_delay,
    jitter, resolution, out_t,
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
            z, _ = _gauss_tail(hash64(tail_key + np.uint64(d), c), np.uint64(0), u < z_lo)
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


@kernel
def _nearly_sorted(t, ch, slot):  # pragma: no cover - numba
    """Insertion sort by time, in place: linear for the nearly sorted streams the model produces."""
    for i in range(1, t.size):
        ti = t[i]
        if t[i - 1] <= ti:
            continue
        ci = ch[i]
        si = slot[i]
        j = i - 1
        while j >= 0 and t[j] > ti:
            t[j + 1] = t[j]
            ch[j + 1] = ch[j]
            slot[j + 1] = slot[j]
            j -= 1
        t[j + 1] = ti
        ch[j + 1] = ci
        slot[j + 1] = si


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
        margin = min(0.0, min(d - JITTER_TRUNCATION * j for d, j in zip(p.detector_delay_ps, p.jitter_ps)),
                     p.sync_delay_ps * self._clock.scale - JITTER_TRUNCATION * p.sync_jitter_ps)
        self._margin_ps = margin - 2 * p.resolution_ps - 1.0
        self._next_slot = 0
        self._chunk = 0
        self._state = np.array([self._bob_key ^ np.uint64(0xD1B54A32D192ED03), 0], dtype=np.uint64)
        self._last_click = np.full(N_DETECTORS, -(2 ** 62), np.int64)
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
        w = (np.asarray(p.class_probabilities)[:, None, None]
             * np.array([p.p_z, 1.0 - p.p_z])[None, :, None] * 0.5)
        photons = float((-np.expm1(-self._lam).sum(axis=3) * w).sum())
        darks = float(np.sum(p.dark_count_hz)) * p.period_ps * 1e-12
        return photons + darks + 1.0 / p.sync_every

    def flush(self) -> LinkEvents:
        """Every tag still held back (the stream ends after the last simulated slot)."""
        empty_dark = (np.empty(0, np.int64), np.empty(0, np.uint8))
        empty_sync = (np.empty(0, np.int64), np.empty(0, np.int64))
        return self._register(_empty_stream(), empty_dark, empty_sync, np.iinfo(np.int64).max)

    def _photon_range(self, s0: int, s1: int, key: np.uint64) -> tuple[NDArray[np.int64], NDArray[np.uint8], NDArray[np.int64]]:
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
            _fill_uniform(key, np.uint64(c), g)
            np.log(g, out=g)
            g *= inv_log_q
            out = np.empty(m, np.int64)
            n, s, used = _accumulate_gaps(g, np.int64(s), np.int64(s1), out)
            c += used
            cands.append(out[:n])
        cand = cands[0] if len(cands) == 1 else np.concatenate(cands)
        slots, dets = [], []
        i = 0
        while i < cand.size:
            cap = int((cand.size - i) * 1.1) + 64
            out_slot = np.empty(cap, np.int64)
            out_det = np.empty(cap, np.uint8)
            n, i = _thin_candidates(cand, i, self._alice_key, self._eve_key, self._acc_key, self._pick_key,
                                    p.p_z, self._cdf, p.eve_fraction, self._lam_cum, self._lam_tot, self._exp_neg,
                                    self._accept, out_slot, out_det)
            slots.append(out_slot[:n])
            dets.append(out_det[:n])
        if not slots:
            return empty
        slot = slots[0] if len(slots) == 1 else np.concatenate(slots)
        det = dets[0] if len(dets) == 1 else np.concatenate(dets)
        t = np.empty(slot.size, np.int64)
        clock = self._clock
        _click_times(slot, det, self._jit_key, self._tail_key, GAUSS_Z, GAUSS_LO, GAUSS_HI, clock.offset_ps,
                     clock.scale, clock.curvature, clock.period_ps, clock.fibre_delay_ps, self._det_delay, self._jitter,
                     np.int64(p.resolution_ps), t)
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
        self.counters.photon_clicks += np.bincount(ch[ct.size:], minlength=N_DETECTORS + 1)[1:N_DETECTORS + 1]
        _nearly_sorted(t, ch, slot)
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
                ts.append(np.round(rng.uniform(t_lo, t_hi, m) / self.params.resolution_ps).astype(np.int64)
                          * self.params.resolution_ps)
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
        _nearly_sorted(t, dummy, slots)
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
                sig[0], sig[1], sig[2], dark[0], dark[1], sync[0], sync[1], pos, np.int64(horizon),
                self._dead, self._ap_prob, self._ap_tau, np.int64(self.params.resolution_ps), self._state,
                self._last_click, self._pend_t, self._pend_ch, self._n_pend,
                out_t, out_ch, out_slot, out_kind, self.counters.dead_time_lost, self.counters.afterpulses,
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


@dataclass(frozen=True)
class SimulatedDetections:
    """Bob's detections after clock recovery, slotting and multi-click squashing, with Alice's
    true preparation of each detected slot (for tests and the simulated node)."""

    slot: NDArray[np.int64]
    basis: NDArray[np.uint8]  # Bob's measured basis
    bit: NDArray[np.uint8]  # Bob's bit
    clicks: NDArray[np.uint8]  # pattern of detectors that fired (bit j = detector j: Z0, Z1, X0, X1)
    time: NDArray[np.int64]  # earliest tag of the slot
    intensity: NDArray[np.uint8]  # Alice's class (truth)
    alice_basis: NDArray[np.uint8]
    alice_bit: NDArray[np.uint8]
    n_slots: int
    n_double: int
    n_cross: int
    fit: Any  # postprocessing.slotting.ClockFit
    slotted: Any  # postprocessing.slotting.SlottedTags (gate counts)
    counters: LinkCounters

    def __len__(self) -> int:
        return int(self.slot.size)


def simulate_detections(
    params: LinkParams,
    n_slots: int | None = None,
    duration_s: float | None = None,
    seed: int = 0,
    gate_ps: float | None = None,
    estimate_delays: bool = False,
    common_dead_time_ps: float | None = None,
) -> SimulatedDetections:
    """Simulate the link for `n_slots` slots (or `duration_s` seconds of Alice's clock) and run
    Bob's chain: clock fit on the sync channel, slotting with a gate of `gate_ps` (default half a
    period) centred on each detector's delay (the known cabling, or estimated from the tags),
    and multi-click squashing (a seeded coin: this is a simulation). `common_dead_time_ps` applies
    Bob's common dead time (`postprocessing.deadtime`) to the detector tags before slotting, as the
    node does; None leaves the per-detector dead time alone (the dead-time attack's setting)."""
    from postprocessing import slotting

    if (n_slots is None) == (duration_s is None):
        raise ValueError("give exactly one of n_slots and duration_s")
    if duration_s is not None:
        if not duration_s > 0:
            raise ValueError(f"duration_s must be > 0, got {duration_s}")
        n_slots = int(round(duration_s * params.repetition_rate_hz))
    assert n_slots is not None
    if not isinstance(n_slots, (int, np.integer)) or n_slots < 2 * params.sync_every:
        raise ValueError(f"n_slots must be an integer >= 2 * sync_every ({2 * params.sync_every}), got {n_slots!r}")
    if gate_ps is None:
        gate_ps = 0.5 * params.period_ps
    sim = LinkSimulator(params, seed)
    events = LinkEvents.concatenate([sim.run(int(n_slots)), sim.flush()])
    if common_dead_time_ps is not None:
        from postprocessing.deadtime import CommonDeadTime

        window = min(gate_ps, params.period_ps - gate_ps)  # clicks of one pulse, never of the next
        keep = CommonDeadTime(common_dead_time_ps, DETECTOR_CHANNELS, coincidence_ps=window).mask(
            events.time, events.channel)
        events = LinkEvents(events.time[keep], events.channel[keep], events.slot[keep], events.kind[keep])
    sync = events.time[events.channel == CHANNEL_SYNC]
    fit = slotting.fit_clock(sync, params.period_ps, params.sync_every)
    delays = params.channel_delays_ps()
    if estimate_delays:
        delays = slotting.estimate_delays(events.time, events.channel, fit, DETECTOR_CHANNELS, hint_ps=delays)
    slotted = slotting.assign_slots(events.time, events.channel, fit, gate_ps, delays, DETECTOR_CHANNELS)
    keep = slotted.slot < n_slots
    rng = np.random.Generator(np.random.Philox(key=[int(derive_key(seed, STREAM_BOB)) & 0xFFFFFFFF, 7]))
    det = slotting.resolve_clicks(slotted.slot[keep], slotted.channel[keep], slotted.time[keep],
                                  DETECTOR_CHANNELS, rng=rng)
    from drivers.mock.alice import alice_states

    a_basis, a_bit, a_class = alice_states(seed, det.slot, params.p_z, params.class_probabilities)
    return SimulatedDetections(det.slot, det.basis, det.bit, det.clicks, det.time, a_class, a_basis, a_bit,
                               int(n_slots), det.n_double, det.n_cross, fit, slotted, sim.counters)

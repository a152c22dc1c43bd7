"""Benchmarks of the mock link simulator ("mock-link", detections/s) and of clock recovery with
slotting ("slotting", tags/s, against a straightforward numpy version).

Rows also give the rate per second of process CPU time (`*_per_cpu_s`), which is what the code
costs when the machine is shared; the mock-link figure sums both threads of its pool."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from node.bench.core import BenchCase, BenchProfile, iter_sizes

SIZES = (100_000, 1_000_000, 10_000_000)
QUICK_SIZES = {"mock-link": (1_000_000,), "slotting": (1_000_000, 10_000_000)}


def _link_params() -> Any:
    from drivers.mock.params import LinkParams

    # a 1 GHz link over 25 km with the default detectors (dead time, afterpulsing, dark counts on)
    return LinkParams(fibre_length_km=25.0)


def _clicks_per_slot(params: Any) -> float:
    """Expected photon clicks per slot before dead time (the analytic model without gate)."""
    from drivers.mock.analytic import expected_statistics

    m = expected_statistics(params, None)
    w_class = np.asarray(params.class_probabilities)[:, None, None]
    w_basis = np.array([params.p_z, 1.0 - params.p_z])[None, :, None]
    return float((m.click.sum(axis=3) * w_class * w_basis * 0.5).sum())


def _mock_link_case(n: int) -> BenchCase:
    from drivers.mock.link import LinkEvents, LinkSimulator

    params = _link_params()
    n_slots = int(n / _clicks_per_slot(params))

    def setup() -> Any:
        return params

    def run(p: Any) -> dict[str, Any]:
        cpu = time.process_time()
        sim = LinkSimulator(p, seed=1)
        ev = LinkEvents.concatenate([sim.run(n_slots), sim.flush()])
        cpu = time.process_time() - cpu
        return {
            "tags": len(ev),
            "photon_clicks": int(sim.counters.photon_clicks.sum()),
            "cpu_s": round(cpu, 4),
            "Mdet_per_cpu_s": round(n / cpu / 1e6, 2) if cpu > 0 else None,
        }

    return BenchCase(
        stage="mock-link",
        n=n,
        setup=setup,
        run=run,
        unit="Mdet/s",
        items=n,
        params={"rate_GHz": params.repetition_rate_hz / 1e9, "km": params.fibre_length_km, "slots": n_slots},
    )


def _synthetic_tags(n: int) -> dict[str, Any]:
    """A 1 GHz stream with 10 ppm drift, 50 ps jitter, one sync per 1000 slots (channel 0)."""
    rng = np.random.default_rng(7)
    period, every, drift = 1000.0, 1000, 10e-6
    gaps = rng.geometric(0.02, n).astype(np.int64)
    slots = np.cumsum(gaps)
    ch = rng.integers(1, 5, n).astype(np.uint8)
    sync_slots = np.arange(0, slots[-1] + 1, every, dtype=np.int64)
    t_det = np.round(1e6 + slots * period * (1 + drift) + rng.normal(0, 50, n)).astype(np.int64)
    t_sync = np.round(1e6 + sync_slots * period * (1 + drift) + rng.normal(0, 10, sync_slots.size)).astype(np.int64)
    return {"time": t_det, "channel": ch, "sync": t_sync, "period": period, "every": every}


def _slotting_run(state: dict[str, Any]) -> dict[str, Any]:
    from postprocessing.slotting import assign_slots, fit_clock

    cpu = time.process_time()
    fit = fit_clock(state["sync"], state["period"], state["every"])
    out = assign_slots(state["time"], state["channel"], fit, 500.0)
    cpu = time.process_time() - cpu
    n = state["time"].size
    return {
        "kept": len(out),
        "drift_ppm": round(fit.drift_ppm, 4),
        "gate_eff": round(out.gate_efficiency, 6),
        "Mtag_per_cpu_s": round(n / cpu / 1e6, 1) if cpu > 0 else None,
    }


def _slotting_reference(state: dict[str, Any]) -> dict[str, Any]:
    """The straightforward numpy version: polyfit on rounded sync numbers, vectorised nearest slot."""
    sync = state["sync"]
    period, every = state["period"], state["every"]
    idx = np.round((sync - sync[0]) / (period * every)).astype(np.int64)
    slope, intercept = np.polyfit(idx * every, (sync - sync[0]).astype(np.float64), 1)
    t, ch = state["time"], state["channel"]
    x = ((t - sync[0]).astype(np.float64) - intercept) / slope
    s = np.floor(x + 0.5)
    r = (x - s) * slope
    keep = (ch >= 1) & (ch <= 4) & (s >= 0) & (np.abs(r) <= 250.0)
    slot = s[keep].astype(np.int64)
    np.bincount(ch[keep], minlength=256)
    np.bincount(ch[~keep], minlength=256)
    return {"kept_reference": int(slot.size), "times": t[keep].size}


def _slotting_case(n: int) -> BenchCase:
    return BenchCase(
        stage="slotting",
        n=n,
        setup=lambda: _synthetic_tags(n),
        run=_slotting_run,
        reference=_slotting_reference,
        unit="Mtag/s",
        items=n,
        reference_name="numpy",
        params={"rate_GHz": 1.0, "drift_ppm": 10.0, "gate_ps": 500.0},
    )


def cases(profile: BenchProfile) -> list[BenchCase]:
    """mock-link and slotting rows at the profile's sizes (up to 1e7)."""
    out: list[BenchCase] = []
    if profile.wants("mock-link"):
        sizes = QUICK_SIZES["mock-link"] if profile.quick else iter_sizes(profile, SIZES)
        out += [_mock_link_case(n) for n in sizes]
    if profile.wants("slotting"):
        sizes = QUICK_SIZES["slotting"] if profile.quick else iter_sizes(profile, SIZES)
        out += [_slotting_case(n) for n in sizes]
    return out

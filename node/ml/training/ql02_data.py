"""Labelled QL02 data: random links (loss, detector efficiency, dark counts, misalignment,
afterpulsing, dead time, block size) each optimised by `postprocessing.finitekey.optimise`.

Run: `python -m node.ml.training.ql02_data --protocol lim2014 --points 600 --out FILE.npz`
(bounded: two worker processes; a lim2014 point takes 1-4 s, a rusca2018 point 0.3-1 s)."""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from multiprocessing import Pool

import numpy as np

from node.ml.ql02_features import link_features
from postprocessing.finitekey import PRESETS, optimise
from postprocessing.finitekey.optimise import _vector_from_settings

# The sampled box (the model's range of validity, see the README).
RANGES = {
    "distance_km": (0.0, 200.0),
    "detector_efficiency": (0.05, 0.8),
    "log10_dark_count_probability": (-8.5, -5.5),
    "misalignment": (0.001, 0.03),
    "afterpulse_probability": (0.0, 0.06),
    "dead_time_s": (0.0, 100e-9),
    "log10_block_size": (5.0, 9.0),
}


def sample_links(n: int, seed: int) -> np.ndarray:
    """n rows of the `RANGES` box, uniform (seeded: training data, not secrets)."""
    rng = np.random.default_rng(seed)
    lo = np.array([r[0] for r in RANGES.values()])
    hi = np.array([r[1] for r in RANGES.values()])
    return lo + (hi - lo) * rng.random((n, len(RANGES)))


def link_of(protocol: str, row: np.ndarray):
    """The preset link of the protocol with the row's parameters, and the distance and block size."""
    d, eff, ldc, mis, ap, dead, ln = row
    link = replace(
        PRESETS[protocol],
        detector_efficiency=float(eff),
        dark_count_probability=10.0**ldc,
        misalignment=float(mis),
        afterpulse_probability=float(ap),
        dead_time_s=float(dead),
    )
    return link, float(d), 10.0**ln


def label(args: tuple[str, np.ndarray, bool]) -> tuple[np.ndarray, np.ndarray, float, float]:
    """(features, optimal settings vector, optimal key rate per pulse, seconds) of one row."""
    protocol, row, global_search = args
    link, d, n = link_of(protocol, row)
    t0 = time.perf_counter()
    pt = optimise(protocol, link, d, n, global_search=global_search)
    dt = time.perf_counter() - t0
    return link_features(link, d, n), _vector_from_settings(protocol, pt.settings, link), pt.key_rate_per_pulse, dt


def generate(protocol: str, points: int, seed: int, out: str, workers: int = 2, global_search: bool = False) -> None:
    """Label `points` random links, saving every 25 so a stopped run keeps what it did."""
    rows = sample_links(points, seed)
    feats, targets, rates, secs, raw = [], [], [], [], []
    with Pool(workers) as pool:
        for i, (f, z, r, s) in enumerate(pool.imap(label, [(protocol, row, global_search) for row in rows])):
            feats.append(f)
            targets.append(z)
            rates.append(r)
            secs.append(s)
            raw.append(rows[i])
            if (i + 1) % 25 == 0 or i + 1 == points:
                np.savez(
                    out,
                    features=np.array(feats),
                    targets=np.array(targets),
                    rates=np.array(rates),
                    seconds=np.array(secs),
                    rows=np.array(raw),
                    protocol=protocol,
                    seed=seed,
                )
                print(f"{protocol}: {i + 1}/{points} labelled, median {np.median(secs):.2f} s/point", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--protocol", choices=sorted(PRESETS), required=True)
    p.add_argument("--points", type=int, default=600)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument(
        "--global-search",
        action="store_true",
        help="differential evolution where local search finds no key (held-out grids)",
    )
    p.add_argument("--out", required=True)
    a = p.parse_args()
    generate(a.protocol, a.points, a.seed, a.out, a.workers, a.global_search)


if __name__ == "__main__":
    main()

"""Fit the QL01 forecaster on mock drift scenarios and compare it, on held-out scenarios, with
"last value" and an exponentially weighted mean (its alpha tuned on the training runs).

Scenarios (drivers.mock.blockstats): random links as KM03's, 240 blocks of about 2e5 key bits;
each run mixes a polarisation/phase drift of the misalignment (raised-cosine swing of 1-5 % over
80-400 blocks plus a random walk), a temperature cycle of the loss (0.2-1.5 dB, 60-300 blocks)
and a loss ramp (up to 2 dB over the run). Run: `python -m node.ml.training.ql01_train`."""

from __future__ import annotations

import argparse

import numpy as np

from drivers.mock.blockstats import Drift, expected_rates, simulate_run
from node.ml.forecasting import HORIZONS, LAGS, Forecaster, ewma, lag_matrix, last_value
from node.ml.models import save_arrays
from node.ml.training import publish_report
from node.ml.training.km03_train import TARGET_KEY_BITS, random_link

BLOCKS = 240


def drift_scenario(rng: np.random.Generator, blocks: int = BLOCKS) -> Drift:
    """One run's slow changes."""
    t = np.arange(blocks)
    swing = (
        rng.uniform(0.01, 0.05) * 0.5 * (1 - np.cos(2 * np.pi * t / rng.uniform(80, 400) + rng.uniform(0, 2 * np.pi)))
    )
    walk = np.cumsum(rng.normal(0, 2e-4, blocks))
    temp = rng.uniform(0.2, 1.5) * np.sin(2 * np.pi * t / rng.uniform(60, 300) + rng.uniform(0, 2 * np.pi))
    ramp = rng.uniform(-2.0, 2.0) * t / blocks
    return Drift(misalignment=swing + walk, extra_loss_db=temp + ramp + 2.0)


def scenario_series(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(QBER of the key basis, sifted key rate per slot relative to its first block) of one run."""
    rng = np.random.default_rng(seed)
    link = random_link(rng)
    slots = TARGET_KEY_BITS / float(expected_rates(link, None, 0.0)["detections"][0].sum())
    run = simulate_run(link, BLOCKS, slots, seed + 11, None, drift_scenario(rng))
    q = np.array([b.qber(0) for b in run])
    r = np.array([b.detections[0].sum() / b.slots for b in run])
    return q, r / r[0]


def fit(series: list[np.ndarray]) -> np.ndarray:
    """Least-squares coefficients [intercept, lag weights] per horizon."""
    from sklearn.linear_model import Ridge

    coef = np.zeros((len(HORIZONS), LAGS + 1))
    for i, h in enumerate(HORIZONS):
        xs, ys = [], []
        for s in series:
            m = lag_matrix(s)[:-h]
            xs.append(m)
            ys.append(s[LAGS - 1 + h :] - s[LAGS - 1 : -h])
        model = Ridge(alpha=1e-8, fit_intercept=True).fit(np.vstack(xs), np.concatenate(ys))
        coef[i, 0], coef[i, 1:] = model.intercept_, model.coef_
    return coef


def mae(series: list[np.ndarray], predict, h: int) -> float:
    errs = [np.abs(predict(s, h)[:-h] - s[LAGS - 1 + h :]) for s in series]
    return float(np.mean(np.concatenate(errs)))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--train-runs", type=int, default=60)
    p.add_argument("--heldout-runs", type=int, default=30)
    p.add_argument("--out", default=None)
    a = p.parse_args()
    train = [scenario_series(10 + i) for i in range(a.train_runs)]
    held = [scenario_series(900_000 + i) for i in range(a.heldout_runs)]
    arrays, report = {}, {}
    for j, qty in enumerate(("qber", "key_rate")):
        tr, ho = [t[j] for t in train], [t[j] for t in held]
        coef = fit(tr)
        arrays[qty] = coef
        alphas = (0.1, 0.2, 0.3, 0.5, 0.7, 0.9)
        alpha = min(alphas, key=lambda al: mae(tr, lambda s, h: ewma(s, h, al), 3))
        f = Forecaster(coef)
        rep: dict[str, float | dict[str, float]] = {"ewma_alpha": alpha}
        for h in HORIZONS:
            rep[f"h{h}"] = {
                "model_mae": mae(ho, f.predict_all, h),
                "last_value_mae": mae(ho, last_value, h),
                "ewma_mae": mae(ho, lambda s, hh, a=alpha: ewma(s, hh, a), h),
            }
        report[qty] = rep
    card = {
        "model": "QL01 per-horizon linear autoregression on the last 12 blocks (relative to the newest)",
        "features": [f"lag{i}" for i in range(LAGS)],
        "horizons": list(HORIZONS),
        "quantities": ["qber", "key_rate"],
        "valid_range": {
            "key_bits_per_block": [5e4, 1e6],
            "qber": [0.0, 0.11],
            "drift": "misalignment changes up to ~5e-4 per block, loss up to ~0.05 dB per block",
        },
        "training": f"{a.train_runs} drift runs x {BLOCKS} blocks",
        "evaluation": report,
    }
    save_arrays("ql01_forecaster", arrays, card)
    publish_report(report, a.out)


if __name__ == "__main__":
    main()

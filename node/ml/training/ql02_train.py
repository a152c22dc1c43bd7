"""Fit the QL02 networks on data from node.ml.training.ql02_data and evaluate them against the
numeric optimiser on a held-out set (other seed, so links and block sizes not in training).

Run: `python -m node.ml.training.ql02_train --protocol lim2014 --train A.npz --heldout B.npz`."""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from node.ml.models import save_arrays
from node.ml.ql02_features import FEATURES
from node.ml.training.ql02_data import RANGES, link_of


def feature_range(protocol: str) -> dict[str, list[float]]:
    """The box the data was drawn from, as feature ranges (the model's range of validity)."""
    r = RANGES
    eta_hi = np.log10(r["detector_efficiency"][1])
    eta_lo = np.log10(r["detector_efficiency"][0]) - 0.02 * r["distance_km"][1]  # 0.2 dB/km
    return {
        "log10_transmittance": [float(eta_lo), float(eta_hi)],
        "log10_dark_count_probability": list(r["log10_dark_count_probability"]),
        "misalignment": list(r["misalignment"]),
        "afterpulse_probability": list(r["afterpulse_probability"]),
        "dead_time_pulses": [r["dead_time_s"][0] * 1e9, r["dead_time_s"][1] * 1e9],
        "log10_block_size": list(r["log10_block_size"]),
    }


def fit(x: np.ndarray, y: np.ndarray, hidden: tuple[int, ...], seed: int) -> dict[str, np.ndarray]:
    """An MLP (tanh) from standardised features to standardised optimiser variables."""
    from sklearn.neural_network import MLPRegressor

    xm, xs = x.mean(0), x.std(0) + 1e-12
    ym, ys = y.mean(0), y.std(0) + 1e-12
    net = MLPRegressor(
        hidden_layer_sizes=hidden,
        activation="tanh",
        solver="lbfgs",
        max_iter=4000,
        alpha=1e-4,
        random_state=seed,
        tol=1e-9,
    ).fit((x - xm) / xs, (y - ym) / ys)
    arrays = {"x_mean": xm, "x_scale": xs, "y_mean": ym, "y_scale": ys}
    for i, (w, b) in enumerate(zip(net.coefs_, net.intercepts_)):
        arrays[f"W{i}"], arrays[f"b{i}"] = w, b
    return arrays


def evaluate(protocol: str, heldout: dict[str, np.ndarray]) -> dict[str, object]:
    """Key rate of the predicted settings over the numeric optimum, and the time per point."""
    from node.ml.parameters import ParameterModel

    model = ParameterModel.load(protocol)
    ratios, zeroed, times, polished = [], 0, [], 0
    for row, rate in zip(heldout["rows"], heldout["rates"]):
        link, d, n = link_of(protocol, row)
        t0 = time.perf_counter()
        pred = model.predict(link, d, n)
        times.append(time.perf_counter() - t0)
        polished += pred.polished
        if rate > 0:
            ratios.append(pred.point.key_rate_per_pulse / rate)
            zeroed += pred.point.key_rate_per_pulse <= 0
    r = np.array(ratios)
    return {
        "points": len(heldout["rates"]),
        "positive_points": int(r.size),
        "median_ratio": float(np.median(r)),
        "p5_ratio": float(np.percentile(r, 5)),
        "min_ratio": float(r.min()),
        "zeroed": int(zeroed),
        "polished": int(polished),
        "ml_seconds_median": float(np.median(times)),
        "numeric_seconds_median": float(np.median(heldout["seconds"])),
        "speedup": float(np.median(heldout["seconds"]) / np.median(times)),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--protocol", required=True)
    p.add_argument("--train", required=True)
    p.add_argument("--heldout")
    p.add_argument("--hidden", default="48,48")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    data = np.load(a.train)
    keep = data["rates"] > 0
    x, y = data["features"][keep], data["targets"][keep]
    arrays = fit(x, y, tuple(int(h) for h in a.hidden.split(",")), a.seed)
    card = {
        "model": f"QL02 MLP (tanh, hidden {a.hidden}) for {a.protocol}: link features -> optimiser variables",
        "protocol": a.protocol,
        "features": list(FEATURES),
        "valid_range": feature_range(a.protocol),
        "link_box": {k: list(v) for k, v in RANGES.items()},
        "training": f"{int(keep.sum())} positive-rate points of {len(keep)} labelled by postprocessing.finitekey.optimise",
    }
    save_arrays(f"ql02_{a.protocol}", arrays, card)
    if a.heldout:
        report = evaluate(a.protocol, dict(np.load(a.heldout)))
        card["evaluation"] = report
        save_arrays(f"ql02_{a.protocol}", arrays, card)
        print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()

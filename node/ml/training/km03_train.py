"""Train and evaluate the KM03 detector on labelled mock runs (drivers.mock.blockstats).

Each run is a random link (fibre 5-60 km, detector efficiency 0.1-0.6, dark counts 100-2000 Hz,
misalignment 0.5-2 %, dead time 10-100 ns, 0.2 % laser power jitter per block), blocks of about
2e5 sifted key bits, the first 16 blocks clean (the commissioning reference). Training and
held-out runs use disjoint seeds. Run: `python -m node.ml.training.km03_train` (about a minute)."""

from __future__ import annotations

import argparse

import numpy as np

from drivers.mock.blockstats import expected_rates, simulate_run
from drivers.mock.conditions import CONDITIONS, DEFAULT_STRENGTH, Condition
from drivers.mock.link import LinkParams
from node.ml.detection import FEATURES, AttackDetector, Reference, block_features
from node.ml.models import save_arrays
from node.ml.training import publish_report

CALIBRATION_BLOCKS = 16
TARGET_KEY_BITS = 2e5
LINK_RANGES = {
    "fibre_length_km": (5.0, 60.0),
    "efficiency": (0.1, 0.6),
    "dark_count_hz": (100.0, 2000.0),
    "misalignment": (0.005, 0.02),
    "dead_time_ps": (10_000.0, 100_000.0),
}


def random_link(rng: np.random.Generator) -> LinkParams:
    """A link drawn from LINK_RANGES with the demo's protocol settings."""
    v = {k: float(rng.uniform(*r)) for k, r in LINK_RANGES.items()}
    return LinkParams(
        p_z=0.8,
        bob_p_z=0.8,
        intensities=(0.5, 0.15, 0.0),
        class_probabilities=(0.6, 0.3, 0.1),
        afterpulse_probability=0.0,
        fibre_length_km=v["fibre_length_km"],
        efficiency=v["efficiency"],
        dark_count_hz=v["dark_count_hz"],
        misalignment=v["misalignment"],
        dead_time_ps=v["dead_time_ps"],
    )


def run_features(seed: int, blocks: int, condition: Condition | None) -> tuple[np.ndarray, np.ndarray, list]:
    """(features of the blocks after the calibration window, condition level per block, blocks)."""
    rng = np.random.default_rng(seed)
    link = random_link(rng)
    slots = TARGET_KEY_BITS / float(expected_rates(link, None, 0.0)["detections"][0].sum())
    run = simulate_run(link, CALIBRATION_BLOCKS + blocks, slots, seed + 7, condition)
    ref = Reference.from_blocks(run[:CALIBRATION_BLOCKS])
    feats = np.array([block_features(b, ref) for b in run[CALIBRATION_BLOCKS:]])
    levels = np.array([condition.level(i + CALIBRATION_BLOCKS) if condition else 0.0 for i in range(blocks)])
    return feats, levels, run[CALIBRATION_BLOCKS:]


def dataset(seed0: int, runs: int, blocks: int, name: str | None) -> tuple[np.ndarray, np.ndarray, list]:
    cond = Condition(name, onset_block=CALIBRATION_BLOCKS) if name else None
    parts = [run_features(seed0 + 1000 * i, blocks, cond) for i in range(runs)]
    return np.vstack([p[0] for p in parts]), np.concatenate([p[1] for p in parts]), [b for p in parts for b in p[2]]


def attacked_mask(name: str, levels: np.ndarray) -> np.ndarray:
    """Blocks that count as attacked: all after onset; for laser drift once it reached 2 %."""
    return np.abs(levels) >= (0.02 if name == "laser-drift" else 1e-12)


def main() -> None:
    from sklearn.covariance import EmpiricalCovariance
    from sklearn.metrics import roc_auc_score

    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--normal-runs", type=int, default=30)
    p.add_argument("--heldout-normal-runs", type=int, default=50)
    p.add_argument("--blocks", type=int, default=200)
    p.add_argument("--out", default=None, help="write the evaluation here as JSON")
    a = p.parse_args()
    normal, _, _ = dataset(1, a.normal_runs, a.blocks, None)
    cov = EmpiricalCovariance().fit(normal)
    mean, c = cov.location_, cov.covariance_ + 1e-9 * np.eye(len(FEATURES))
    d2 = AttackDetector(mean, c, 0.0, np.zeros((1, len(FEATURES))), ["x"])
    train_scores = np.array([d2.score(z) for z in normal])
    # Threshold: twice the worst normal training block (Gaussian tails are too thin for real data).
    threshold = 2.0 * float(train_scores.max())
    templates = []
    for name in CONDITIONS:
        f, lv, _ = dataset(2, 6, 40, name)
        templates.append(f[attacked_mask(name, lv)].mean(axis=0) - mean)
    det = AttackDetector(mean, c, threshold, np.array(templates), CONDITIONS)
    # Held out: other seeds, so other links and other noise.
    hn, _, _ = dataset(500_001, a.heldout_normal_runs, a.blocks, None)
    hn_scores = np.array([det.score(z) for z in hn])
    conditions: dict[str, dict[str, float]] = {}
    report = {
        "normal_blocks": int(hn.shape[0]),
        "false_alarms": int((hn_scores > threshold).sum()),
        "threshold": threshold,
        "conditions": conditions,
    }
    for name in CONDITIONS:
        f, lv, blocks = dataset(700_003, 10, 60, name)
        m = attacked_mask(name, lv)
        sc = np.array([det.score(z) for z in f[m]])
        y = np.r_[np.zeros(hn_scores.size), np.ones(sc.size)]
        auc = float(roc_auc_score(y, np.r_[hn_scores, sc]))
        named = [det.classify(z) for z, s in zip(f[m], sc) if s > threshold]
        entry = {
            "strength": DEFAULT_STRENGTH[name],
            "blocks": int(m.sum()),
            "roc_auc": auc,
            "detected": float((sc > threshold).mean()),
            "named_correctly": float(np.mean([n == name for n in named])) if named else 0.0,
        }
        if name == "intercept-resend":
            entry["max_qber_z"] = float(max(b.qber(0) for b, k in zip(blocks, m) if k))
            entry["max_qber_x"] = float(max(b.qber(1) for b, k in zip(blocks, m) if k))
        conditions[name] = entry
    card = {
        "model": "KM03 Gaussian one-class detector with condition templates",
        "features": list(FEATURES),
        "conditions": list(CONDITIONS),
        "calibration_blocks": CALIBRATION_BLOCKS,
        "valid_range": {
            **{k: list(v) for k, v in LINK_RANGES.items()},
            "key_bits_per_block": [5e4, 1e6],
            "intensities": [0.5, 0.15, 0.0],
            "p_z": 0.8,
        },
        "training": f"{a.normal_runs} normal runs x {a.blocks} blocks; 6 runs x 40 blocks per condition",
        "evaluation": report,
    }
    save_arrays(
        "km03_detector",
        {"mean": mean, "cov": c, "threshold": np.array(threshold), "templates": np.array(templates)},
        card,
    )
    publish_report(report, a.out)


if __name__ == "__main__":
    main()

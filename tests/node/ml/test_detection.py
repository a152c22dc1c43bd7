"""KM03: the shipped detector on a small held-out set of mock runs (seeds never used in training),
against the baseline the node has without it (the QBER abort threshold)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from drivers.mock.conditions import CONDITIONS
from node.ml.detection import FEATURES, AttackDetector
from node.ml.models import ModelFileError, load_arrays
from node.ml.training.km03_train import attacked_mask, dataset

QBER_ABORT = 0.11


def _auc(negative: np.ndarray, positive: np.ndarray) -> float:
    """ROC AUC as the Mann-Whitney statistic: P(score of an attacked block > score of a normal one)."""
    neg, pos = np.sort(negative), np.asarray(positive)
    below = np.searchsorted(neg, pos, side="left")
    ties = np.searchsorted(neg, pos, side="right") - below
    return float((below + 0.5 * ties).sum() / (neg.size * pos.size))


@pytest.fixture(scope="module")
def detector() -> AttackDetector:
    return AttackDetector.load()


@pytest.fixture(scope="module")
def normal_scores(detector: AttackDetector) -> np.ndarray:
    feats, _, _ = dataset(3_100_001, 4, 60, None)
    return np.array([detector.score(z) for z in feats])


def test_normal_blocks_raise_no_alarm(normal_scores: np.ndarray, detector: AttackDetector) -> None:
    assert (normal_scores > detector.threshold).sum() == 0


@pytest.mark.parametrize("name", CONDITIONS)
def test_each_condition_is_separated_from_normal_and_named(
    name: str, detector: AttackDetector, normal_scores: np.ndarray
) -> None:
    feats, levels, _ = dataset(3_200_003, 2, 30, name)
    m = attacked_mask(name, levels)
    scores = np.array([detector.score(z) for z in feats[m]])
    assert _auc(normal_scores, scores) >= 0.99
    assert (scores > detector.threshold).mean() >= 0.95
    named = [detector.check(z).condition for z in feats[m][:5]]
    assert named.count(name) >= 4


def test_intercept_resend_on_five_percent_is_flagged_below_the_qber_threshold(detector: AttackDetector) -> None:
    feats, levels, blocks = dataset(3_300_007, 2, 20, "intercept-resend")
    m = attacked_mask("intercept-resend", levels)
    attacked = [b for b, k in zip(blocks, m) if k]
    # Baseline: the abort threshold never fires, the whole run would yield key.
    assert max(max(b.qber(0), b.qber(1)) for b in attacked) < QBER_ABORT
    assert all(detector.check(z).anomalous for z in feats[m])


def test_a_block_with_missing_statistics_is_scored_on_what_it_has(detector: AttackDetector) -> None:
    feats, _levels, _ = dataset(3_400_009, 1, 10, "pns")
    z = feats[-1].copy()
    z[FEATURES.index("clicks_Z0") :] = np.nan  # a node that only sees the sifted counts
    assert np.isfinite(detector.score(z)) and detector.check(z).anomalous


def test_shipped_card_names_the_features_and_the_range() -> None:
    arrays, card = load_arrays("km03_detector")
    assert card["features"] == list(FEATURES)
    assert arrays["cov"].shape == (len(FEATURES), len(FEATURES))
    assert card["evaluation"]["false_alarms"] * 1000 <= card["evaluation"]["normal_blocks"]
    assert all(c["roc_auc"] >= 0.99 for c in card["evaluation"]["conditions"].values())


def test_a_pickled_or_malformed_model_file_is_refused(tmp_path) -> None:
    np.save(tmp_path / "bad.npy", np.array([object()], dtype=object), allow_pickle=True)
    (tmp_path / "bad.npy").rename(tmp_path / "bad.npz")
    (tmp_path / "bad.json").write_text(json.dumps({"features": []}))
    with pytest.raises(ModelFileError, match="cannot load"):
        load_arrays("bad", tmp_path)

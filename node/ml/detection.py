"""KM03 suspicious-behaviour and fault detection over per-block statistics.

Preprocessor: each statistic of a block becomes a z-score against the link's reference (per-slot
rates from a commissioning window of clean blocks), with its counting noise as the scale.
Model: a Gaussian one-class model of those z-scores on normal links (mean, covariance learned
offline); the anomaly score is the squared Mahalanobis distance, on whichever features the block
has (a Gaussian's marginal is the sub-covariance, so a node that lacks the click counts still
scores what it has). Naming: the condition whose learned direction of the whitened z-vector is
closest (cosine). Inference is numpy only.

What Eve learns: nothing new; every statistic here is already public on the classical channel
or local to Bob, and an alarm only stops or flags key that the proof would have paid for anyway."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from node.ml.models import ModelFileError, load_arrays

N_CLASSES = 3
FEATURES: tuple[str, ...] = (
    *(f"detections_{b}_class{k}" for b in "ZX" for k in range(N_CLASSES)),
    *(f"qber_{b}_class{k}" for b in "ZX" for k in range(N_CLASSES - 1)),
    *(f"clicks_{d}" for d in ("Z0", "Z1", "X0", "X1")),
    "multi_clicks",
    "dead_time_discards",
    "timing_spread",
)


class BlockRecord(Protocol):
    """What a block offers the detector (drivers.mock.blockstats.BlockStatistics or the node's
    collector); absent statistics are NaN."""

    @property
    def slots(self) -> float: ...
    @property
    def detections(self) -> NDArray[np.float64]: ...
    @property
    def errors(self) -> NDArray[np.float64]: ...
    @property
    def clicks(self) -> NDArray[np.float64]: ...
    @property
    def multi_clicks(self) -> float: ...
    @property
    def dead_time_discards(self) -> float: ...
    @property
    def timing_spread_ps(self) -> float: ...


@dataclass(frozen=True)
class Reference:
    """The link's expected per-slot rates, from clean commissioning blocks."""

    detections: NDArray[np.float64]  # [2, K] per slot
    qber: NDArray[np.float64]  # [2, K]
    clicks: NDArray[np.float64]  # [4] per slot
    multi_clicks: float
    dead_time_discards: float
    timing_spread_ps: float

    @classmethod
    def from_blocks(cls, blocks: Sequence[BlockRecord]) -> Reference:
        """Pooled rates of `blocks` (the commissioning window)."""
        slots = sum(b.slots for b in blocks)
        det = np.sum([np.asarray(b.detections, dtype=float) for b in blocks], axis=0)
        err = np.sum([np.asarray(b.errors, dtype=float) for b in blocks], axis=0)
        clicks = np.sum([np.asarray(b.clicks, dtype=float) for b in blocks], axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            qber = np.where(det > 0, err / np.where(det > 0, det, 1.0), 0.5)
        return cls(
            det / slots,
            qber,
            clicks / slots,
            sum(b.multi_clicks for b in blocks) / slots,
            sum(b.dead_time_discards for b in blocks) / slots,
            float(np.mean([b.timing_spread_ps for b in blocks])),
        )


def _poisson_z(x: Any, expected: Any) -> NDArray[np.float64]:
    x, lam = np.asarray(x, dtype=float), np.asarray(expected, dtype=float)
    return (x - lam) / np.sqrt(np.maximum(lam, 1.0))


def block_features(block: BlockRecord, ref: Reference) -> NDArray[np.float64]:
    """The z-score vector (`FEATURES` order) of one block against the reference; NaN where absent."""
    s = block.slots
    det = np.asarray(block.detections, dtype=float)
    err = np.asarray(block.errors, dtype=float)
    z_det = _poisson_z(det, ref.detections * s).ravel()
    q = np.clip(ref.qber[:, : N_CLASSES - 1], 1e-6, 0.5)
    n = det[:, : N_CLASSES - 1]
    z_q = ((err[:, : N_CLASSES - 1] - n * q) / np.sqrt(np.maximum(n * q * (1 - q), 1.0))).ravel()
    z_clicks = _poisson_z(block.clicks, ref.clicks * s)
    z_multi = _poisson_z(block.multi_clicks, ref.multi_clicks * s)
    z_dead = _poisson_z(block.dead_time_discards, ref.dead_time_discards * s)
    n_clicks = float(np.nansum(block.clicks)) if np.all(np.isfinite(block.clicks)) else math.nan
    samples = getattr(block, "timing_samples", math.nan)  # a robust spread's Gaussian-equivalent count
    if math.isfinite(samples):
        n_clicks = samples
    z_t = (
        (block.timing_spread_ps - ref.timing_spread_ps) / (ref.timing_spread_ps / math.sqrt(2.0 * max(n_clicks, 2.0)))
        if math.isfinite(n_clicks) and ref.timing_spread_ps > 0
        else math.nan
    )
    return np.concatenate([z_det, z_q, z_clicks, [z_multi, z_dead, z_t]])


@dataclass(frozen=True)
class Verdict:
    """The detector's answer for one block."""

    score: float
    threshold: float
    condition: str | None  # the most likely condition when anomalous

    @property
    def anomalous(self) -> bool:
        return self.score > self.threshold


class AttackDetector:
    """The shipped KM03 model: Gaussian one-class score plus condition templates."""

    def __init__(
        self,
        mean: NDArray[np.float64],
        cov: NDArray[np.float64],
        threshold: float,
        templates: NDArray[np.float64],
        names: Sequence[str],
    ) -> None:
        self.mean, self.cov, self.threshold = mean, cov, float(threshold)
        self.templates, self.names = templates, tuple(names)

    @classmethod
    def load(cls) -> AttackDetector:
        arrays, card = load_arrays("km03_detector")
        if tuple(card["features"]) != FEATURES:
            raise ModelFileError("model km03_detector: its feature list differs from node.ml.detection.FEATURES")
        return cls(arrays["mean"], arrays["cov"], float(arrays["threshold"]), arrays["templates"], card["conditions"])

    def _whitened(self, z: NDArray[np.float64]) -> tuple[NDArray[np.float64], NDArray[np.bool_]]:
        mask = np.isfinite(z)
        c = self.cov[np.ix_(mask, mask)]
        chol = np.linalg.cholesky(c)
        return np.asarray(np.linalg.solve(chol, z[mask] - self.mean[mask]), dtype=np.float64), np.asarray(
            mask, dtype=np.bool_
        )

    def score(self, z: NDArray[np.float64]) -> float:
        """Squared Mahalanobis distance of a feature vector from normal, over its finite features;
        scaled to the full feature count so one threshold serves every subset."""
        w, mask = self._whitened(z)
        return float(w @ w) * (len(z) / max(int(mask.sum()), 1))

    def classify(self, z: NDArray[np.float64]) -> str:
        """The condition whose template direction is closest to this block's deviation (both
        whitened on the block's finite features)."""
        mask = np.isfinite(z)
        chol = np.linalg.cholesky(self.cov[np.ix_(mask, mask)])
        w = np.linalg.solve(chol, z[mask] - self.mean[mask])
        tw = np.linalg.solve(chol, self.templates[:, mask].T).T
        cos = tw @ w / (np.linalg.norm(tw, axis=1) * np.linalg.norm(w) + 1e-300)
        return self.names[int(np.argmax(cos))]

    def check(self, z: NDArray[np.float64]) -> Verdict:
        """Score one block's features; name the condition when the score is over the threshold."""
        s = self.score(z)
        return Verdict(s, self.threshold, self.classify(z) if s > self.threshold else None)

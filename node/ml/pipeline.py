"""The node's ITU-T Y.Sup70 ML pipeline on Bob's side of a link, one call per key block:
Collector (the block's sifted counts, the slots it spans) -> Preprocessor (z-scores against the
commissioning reference) -> Model (KM03 detector; QL01 forecaster) -> Policy (an alarm needs
`confirm_blocks` anomalous blocks in a row; one "realign soon" warning per approach) ->
Distributor (the node's alarm registry; the forecast goes back to Cascade as its QBER estimate).

The collector sees only what Bob's node has per block (detections and errors per basis and
class); per-detector clicks, multi-clicks and timing stay NaN, and the detector scores the rest."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from node.ml.detection import AttackDetector, Reference, block_features
from node.ml.forecasting import QberWatch
from node.ml.models import ModelFileError
from postprocessing.sifting import SiftCounts

log = logging.getLogger(__name__)

CALIBRATION_BLOCKS = 8  # clean blocks at the start of a session that form the KM03 reference


@dataclass(frozen=True)
class CollectedBlock:
    """One block as the collector saw it (statistics the node lacks are NaN)."""

    slots: float
    detections: np.ndarray
    errors: np.ndarray
    clicks: np.ndarray = field(default_factory=lambda: np.full(4, np.nan))
    multi_clicks: float = math.nan
    dead_time_discards: float = math.nan
    timing_spread_ps: float = math.nan


class LinkMonitor:
    """KM03 detection and QL01 forecasting for one link, fed block by block."""

    def __init__(self, link_id: str, qber_abort: float, alarm: Callable[[str, str], None],
                 calibration_blocks: int = CALIBRATION_BLOCKS, confirm_blocks: int = 1) -> None:
        self.link_id, self.alarm = link_id, alarm
        self.calibration_blocks, self.confirm_blocks = calibration_blocks, confirm_blocks
        self.watch = QberWatch(link_id, qber_abort, alarm)
        try:
            self.detector: AttackDetector | None = AttackDetector.load()
        except ModelFileError as exc:
            log.warning("link %s: KM03 detection off: %s", link_id, exc)
            self.detector = None
        self.calibration: list[CollectedBlock] = []
        self.reference: Reference | None = None
        self.last_slot: int | None = None
        self.block_start: int | None = None
        self.streak = 0
        self.verdicts: list[dict[str, object]] = []

    def on_batch(self, first_slot: int, last_slot: int) -> None:
        """Collector: the slot span of each sifted batch (a block's slots are those of its batches)."""
        if self.block_start is None:
            self.block_start = first_slot
        self.last_slot = last_slot

    def on_block(self, counts: SiftCounts, z_errors: list[int], qber: float) -> float:
        """One finished block (its sift counts, the Z errors Cascade found per class, its QBER):
        detect, forecast, alarm; returns Cascade's QBER estimate for the next block."""
        estimate = self.watch.observe(qber)
        start, end = self.block_start, self.last_slot
        self.block_start = None
        if self.detector is None or start is None or end is None or end <= start:
            return estimate
        detections = np.asarray(counts.detections, dtype=float)
        disclosed = np.asarray(counts.disclosed[1], dtype=float)
        with np.errstate(invalid="ignore", divide="ignore"):  # X errors counted among disclosed bits only
            x_errors = np.where(disclosed > 0, np.asarray(counts.errors[1], dtype=float) * detections[1] / disclosed, 0.0)
        errors = np.vstack([np.asarray(z_errors, dtype=float), np.round(x_errors)])
        block = CollectedBlock(float(end - start + 1), detections, errors)
        if self.reference is None:
            self.calibration.append(block)
            if len(self.calibration) >= self.calibration_blocks:
                self.reference = Reference.from_blocks(self.calibration)
                log.info("link %s: KM03 reference taken from %d blocks", self.link_id, len(self.calibration))
            return estimate
        verdict = self.detector.check(block_features(block, self.reference))
        self.verdicts.append({"score": verdict.score, "anomalous": verdict.anomalous, "condition": verdict.condition})
        self.streak = self.streak + 1 if verdict.anomalous else 0
        if self.streak >= self.confirm_blocks:
            self.alarm("critical", f"link {self.link_id}: KM03 suspicious behaviour: block statistics look like "
                                   f"{verdict.condition} (score {verdict.score:.0f} > {verdict.threshold:.0f})")
        return estimate

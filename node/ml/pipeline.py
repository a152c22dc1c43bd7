"""The node's ITU-T Y.Sup70 ML pipeline on Bob's side of a link, one call per key block:
Collector (the block's sifted counts per basis and class, the slots it spans, and from its batches
the clicks per detector, multi-click slots, click-time spread and common dead-time discards) -> Preprocessor (z-scores against the
commissioning reference) -> Model (KM03 detector; QL01 forecaster) -> Policy (an alarm needs
`confirm_blocks` anomalous blocks in a row; one "realign soon" warning per approach) ->
Distributor (the node's alarm registry; the forecast goes back to Cascade as its QBER estimate).

What the node lacks stays NaN and the detector scores the rest: X errors are known only among the
disclosed X bits (scaled up), and without a common dead time there are no discards to count."""

from __future__ import annotations

import logging
import math
import queue
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from node.ml.clicktiming import click_time_spread
from node.ml.detection import AttackDetector, Reference, block_features
from node.ml.forecasting import QberWatch
from node.ml.models import ModelFileError
from postprocessing.sifting import SiftCounts

if TYPE_CHECKING:
    from node.ml.retune import LinkRetuner

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
    timing_samples: float = math.nan  # Gaussian-equivalent sample count of the spread estimate


_PATTERN_BITS = (np.arange(16)[:, None] >> np.arange(4)) & 1  # row p: which detectors pattern p fired


@dataclass
class BatchTally:
    """Running sums of one block's batches (the collector's per-batch part)."""

    clicks: np.ndarray = field(default_factory=lambda: np.zeros(4))
    multi_clicks: float = 0.0
    spread_weighted: float = 0.0
    timing_samples: float = 0.0
    batches: int = 0
    detections: int = 0  # detection rows (slots with a click), sifted or not

    def add(self, detections: Any) -> None:
        pattern = np.asarray(detections.clicks)
        # one pass over Bob's batch (on the protocol thread): count each 4-bit click pattern, then
        # read the detectors' clicks and the multi-click slots off the 16 counts
        per_pattern = np.bincount(pattern.astype(np.intp) & 15, minlength=16)
        self.clicks += _PATTERN_BITS.T @ per_pattern
        self.multi_clicks += float(per_pattern[_PATTERN_BITS.sum(axis=1) >= 2].sum())
        spread, samples = click_time_spread(detections)
        if samples > 0:
            self.spread_weighted += spread * samples
            self.timing_samples += samples
        self.batches += 1
        self.detections += len(pattern)


class LinkMonitor:
    """KM03 detection and QL01 forecasting for one link, fed block by block."""

    def __init__(
        self,
        link_id: str,
        qber_abort: float,
        alarm: Callable[[str, str], None],
        calibration_blocks: int = CALIBRATION_BLOCKS,
        confirm_blocks: int = 1,
        retuner: LinkRetuner | None = None,
    ) -> None:
        self.link_id, self.alarm, self.retuner = link_id, alarm, retuner
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
        self.tally = BatchTally()
        self.dead_time_marks: queue.SimpleQueue[tuple[int, int]] = queue.SimpleQueue()
        self._dead_total = 0  # common dead-time discards up to the last batch seen (none marked: no dead time)
        self._dead_at_block_start: int | None = None

    def mark_dead_time(self, last_slot: int, discarded_total: int) -> None:
        """Acquisition thread, before a batch is queued: common dead-time discards so far, as of the
        batch ending at `last_slot` (so a block's discards are the difference at its batches' ends)."""
        self.dead_time_marks.put((int(last_slot), int(discarded_total)))

    def _dead_time_until(self, last_slot: int) -> None:
        while True:
            try:
                slot, total = self.dead_time_marks.get_nowait()
            except queue.Empty:
                return
            self._dead_total = total
            if slot >= last_slot:
                return

    def on_batch(self, first_slot: int, last_slot: int, detections: Any = None) -> None:
        """Collector: the slot span of each sifted batch (a block's slots are those of its batches)
        and, given the batch's detections, its clicks, multi-clicks and click-time spread."""
        if self.block_start is None:
            self.block_start = first_slot
            self._dead_at_block_start = self._dead_total
        self.last_slot = last_slot
        self._dead_time_until(last_slot)
        if detections is not None:
            self.tally.add(detections)

    def discard_block(self) -> None:
        """Forget the partial block (its batches were dropped: an abort, a resynchronisation)."""
        self.block_start = None
        self.tally = BatchTally()
        self._dead_at_block_start = None

    def _collected(
        self,
        slots: float,
        detections: np.ndarray,
        errors: np.ndarray,
        tally: BatchTally,
        dead_start: int | None,
        dead_total: int,
    ) -> CollectedBlock:
        dead = math.nan
        if dead_start is not None:
            dead = float(dead_total - dead_start)
        if not tally.batches:
            return CollectedBlock(slots, detections, errors, dead_time_discards=dead)
        spread = tally.spread_weighted / tally.timing_samples if tally.timing_samples else math.nan
        return CollectedBlock(
            slots,
            detections,
            errors,
            tally.clicks.copy(),
            tally.multi_clicks,
            dead,
            spread,
            tally.timing_samples or math.nan,
        )

    def end_block(self) -> tuple[Any, ...]:
        """The collector's view of the block whose last batch was just seen, for `on_block` later
        (blocks distilled in parallel: the next block's batches are collected meanwhile)."""
        collected = (self.block_start, self.last_slot, self.tally, self._dead_at_block_start, self._dead_total)
        self.discard_block()
        return collected

    def on_block(
        self, counts: SiftCounts, z_errors: list[int], qber: float, collected: tuple[Any, ...] | None = None
    ) -> float:
        """One finished block (its sift counts, the Z errors Cascade found per class, its QBER, and
        what `end_block` collected of it, None: collected now): detect, forecast, alarm; returns
        Cascade's QBER estimate for the next block."""
        estimate = self.watch.observe(qber)
        start, end, tally, dead_start, dead_total = collected if collected is not None else self.end_block()
        if self.detector is None or start is None or end is None or end <= start:
            return estimate
        detections = np.asarray(counts.detections, dtype=float)
        disclosed = np.asarray(counts.disclosed[1], dtype=float)
        with np.errstate(invalid="ignore", divide="ignore"):  # X errors counted among disclosed bits only
            x_errors = np.where(
                disclosed > 0, np.asarray(counts.errors[1], dtype=float) * detections[1] / disclosed, 0.0
            )
        errors = np.vstack([np.asarray(z_errors, dtype=float), np.round(x_errors)])
        block = self._collected(float(end - start + 1), detections, errors, tally, dead_start, dead_total)
        if self.retuner is not None and tally.detections and self.reference is not None:  # after commissioning
            kept = float(np.sum(block.clicks))
            live = kept / (kept + block.dead_time_discards) if math.isfinite(block.dead_time_discards) else 1.0
            self.retuner.on_block(counts, z_errors, block.slots, float(tally.detections), live)
        if self.reference is None:
            self.calibration.append(block)
            if len(self.calibration) >= self.calibration_blocks:
                self.reference = Reference.from_blocks(self.calibration)
                log.info("link %s: KM03 reference taken from %d blocks", self.link_id, len(self.calibration))
            return estimate
        verdict = self.detector.check(block_features(block, self.reference))
        self.verdicts.append({"score": verdict.score, "anomalous": verdict.anomalous, "condition": verdict.condition})
        log.info("link %s: KM03 block score %.1f (threshold %.0f)", self.link_id, verdict.score, verdict.threshold)
        self.streak = self.streak + 1 if verdict.anomalous else 0
        if self.streak >= self.confirm_blocks:
            self.alarm(
                "critical",
                f"link {self.link_id}: KM03 suspicious behaviour: block statistics look like "
                f"{verdict.condition} (score {verdict.score:.0f} > {verdict.threshold:.0f})",
            )
        return estimate

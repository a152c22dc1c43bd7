"""Key blocks of the Monte-Carlo link as Bob's node collects them, for evaluating KM03 on the
physics the demo runs (drivers.mock.link with drivers.mock.onset), rather than on the block-level
mock it was trained on: per block, batches of squashed detections after Bob's common dead time
(with the running discard count at each batch's end), the block's sift counts (matched bases,
from Alice's true states) and its Z errors per class.

`python -m node.ml.training.mc_blocks` scores held-out runs of every condition with the node's own
LinkMonitor and prints ROC AUC and false alarms per condition (minutes on two cores)."""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from drivers.mock.alice import alice_states
from drivers.mock.conditions import CONDITIONS, Condition
from drivers.mock.link import LinkSimulator
from drivers.mock.onset import photon_model, set_photon_model
from drivers.mock.params import CHANNEL_SYNC, DETECTOR_CHANNELS, LinkParams
from node.ml.pipeline import CALIBRATION_BLOCKS, LinkMonitor
from postprocessing import slotting
from postprocessing.deadtime import CommonDeadTime
from postprocessing.sifting import SiftCounts

DEMO_LINK = LinkParams(p_z=0.8, bob_p_z=0.8, intensities=(0.5, 0.15, 0.0), class_probabilities=(0.6, 0.3, 0.1))
COMMON_DEAD_TIME_PS = 55_000.0  # the node's: the longest detector dead time plus its margin
BATCHES_PER_BLOCK = 4


@dataclass(frozen=True)
class CollectedMcBlock:
    """One block: (batch, discards so far at its end) pairs, sift counts, Z errors per class, QBER."""

    batches: list[tuple[slotting.Detections, int]]
    counts: SiftCounts
    z_errors: list[int]
    qber: float


def monte_carlo_blocks(
    params: LinkParams, condition: Condition | None, onset_block: int, blocks: int, block_slots: int, seed: int
) -> Iterator[CollectedMcBlock]:
    """`blocks` blocks of `block_slots` slots, the condition acting from `onset_block` on."""
    sim = LinkSimulator(params, seed)
    dead = CommonDeadTime(COMMON_DEAD_TIME_PS, DETECTOR_CHANNELS, coincidence_ps=0.5 * params.period_ps)
    rng = np.random.default_rng(seed)
    k = len(params.intensities)
    for b in range(blocks):
        if condition is not None and b == onset_block:
            set_photon_model(sim, photon_model(params, condition, condition.strength or 0.0))
        batches = []
        counts, errors = np.zeros((2, k), np.int64), np.zeros((2, k), np.int64)
        for q in range(BATCHES_PER_BLOCK):
            lo = (b * BATCHES_PER_BLOCK + q) * block_slots // BATCHES_PER_BLOCK
            ev = sim.run((b * BATCHES_PER_BLOCK + q + 1) * block_slots // BATCHES_PER_BLOCK - lo)
            keep = dead.mask(ev.time, ev.channel)
            t, ch = ev.time[keep], ev.channel[keep]
            fit = slotting.fit_clock(t[ch == CHANNEL_SYNC], params.period_ps, params.sync_every)
            sl = slotting.assign_slots(
                t, ch, fit, 0.5 * params.period_ps, params.channel_delays_ps(), DETECTOR_CHANNELS
            )
            # the fit numbers slots from this batch's first sync: shift to the link's numbering
            first_sync = int(ev.slot[(ev.channel == CHANNEL_SYNC)][0]) if np.any(ev.channel == CHANNEL_SYNC) else lo
            det = slotting.resolve_clicks(sl.slot + first_sync, sl.channel, sl.time, DETECTOR_CHANNELS, rng=rng)
            ab, ax, ak = alice_states(seed, det.slot, params.p_z, params.class_probabilities)
            m = det.basis == ab
            np.add.at(counts, (det.basis[m], ak[m]), 1)
            np.add.at(errors, (det.basis[m], ak[m]), (det.bit[m] != ax[m]).astype(np.int64))
            batches.append((det, dead.discarded_total))
        sift = SiftCounts(counts, counts.copy(), np.vstack([np.zeros(k, np.int64), errors[1]]))
        yield CollectedMcBlock(batches, sift, errors[0].tolist(), float(errors[0].sum() / max(counts[0].sum(), 1)))


def feed(monitor: LinkMonitor, blocks: Iterator[CollectedMcBlock]) -> None:
    """Hand the blocks to the node's monitor as Bob's link and acquisition thread do."""
    for block in blocks:
        for batch, discarded in block.batches:
            if len(batch):
                monitor.mark_dead_time(int(batch.slot[-1]), discarded)
                monitor.on_batch(int(batch.slot[0]), int(batch.slot[-1]), batch)
        monitor.on_block(block.counts, block.z_errors, block.qber)


def roc_auc(normal: list[float], attacked: list[float]) -> float:
    """P(an attacked block scores above a normal one), ties counted half."""
    a, n = np.asarray(attacked)[:, None], np.asarray(normal)[None, :]
    return float(((a > n).sum() + 0.5 * (a == n).sum()) / (a.size * n.size))


def evaluate(runs: int, clean_blocks: int, attacked_blocks: int, block_slots: int, seed: int) -> dict[str, Any]:
    """Scores of held-out runs: per condition, `runs` runs of commissioning, `clean_blocks` normal
    blocks and `attacked_blocks` blocks under the condition at its default strength."""
    out: dict[str, Any] = {"block_slots": block_slots, "runs_per_condition": runs, "conditions": {}}
    normal_all: list[float] = []
    alarms_normal = 0
    for c, name in enumerate(CONDITIONS):
        normal, attacked = [], []
        for r in range(runs):
            monitor = LinkMonitor("mc", 0.11, lambda severity, text: None)
            onset = CALIBRATION_BLOCKS + clean_blocks
            feed(
                monitor,
                monte_carlo_blocks(
                    DEMO_LINK, Condition(name), onset, onset + attacked_blocks, block_slots, seed + 1000 * c + r
                ),
            )
            scores = [float(v["score"]) for v in monitor.verdicts]  # type: ignore[arg-type]
            normal += scores[:clean_blocks]
            attacked += scores[clean_blocks:]
            alarms_normal += sum(bool(v["anomalous"]) for v in monitor.verdicts[:clean_blocks])
        threshold = monitor.detector.threshold if monitor.detector else float("nan")
        out["conditions"][name] = {
            "strength": Condition(name).strength,
            "roc_auc": roc_auc(normal, attacked),
            "detected": float(np.mean(np.asarray(attacked) > threshold)),
            "attacked_blocks": len(attacked),
            "min_attacked_score": min(attacked),
            "max_normal_score": max(normal),
        }
        normal_all += normal
    out["normal_blocks"] = len(normal_all)
    out["false_alarms"] = alarms_normal
    out["max_normal_score"] = max(normal_all)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--runs", type=int, default=2)
    p.add_argument("--clean-blocks", type=int, default=6)
    p.add_argument("--attacked-blocks", type=int, default=4)
    p.add_argument("--block-slots", type=int, default=100_000_000)
    p.add_argument("--seed", type=int, default=500)
    a = p.parse_args(argv)
    print(json.dumps(evaluate(a.runs, a.clean_blocks, a.attacked_blocks, a.block_slots, a.seed), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

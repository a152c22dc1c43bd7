"""The node's ML pipeline (LinkMonitor) fed block by block as Bob's link feeds it, and the attack
schedule inside the Monte-Carlo link that `qkdnode demo --attack` uses."""

from __future__ import annotations

import numpy as np
import pytest

from drivers.mock.blockstats import simulate_run
from drivers.mock.conditions import Condition
from drivers.mock.link import LinkParams, LinkSimulator
from drivers.mock.onset import ScheduledCondition, attacked_params, set_photon_model
from node.ml.demo_attack import attack_table
from node.ml.pipeline import CALIBRATION_BLOCKS, LinkMonitor
from node.ml.training.mc_blocks import feed, monte_carlo_blocks, roc_auc
from postprocessing.sifting import SiftCounts

LINK = LinkParams(p_z=0.8, bob_p_z=0.8, intensities=(0.5, 0.15, 0.0), class_probabilities=(0.6, 0.3, 0.1))


def _feed(monitor: LinkMonitor, condition: Condition | None, blocks: int, seed: int) -> None:
    """Blocks as Bob's node sees them: its sift counts (all X bits disclosed), Cascade's Z errors
    per class and the slot span of the block's batches."""
    slot = 0
    for b in simulate_run(LINK, blocks, 2e7, seed, condition):
        det = b.detections.astype(np.int64)
        counts = SiftCounts(det, det.copy(), np.vstack([np.zeros(3, np.int64), b.errors[1].astype(np.int64)]))
        monitor.on_batch(slot, slot + int(b.slots) - 1)
        slot += int(b.slots)
        monitor.on_block(counts, b.errors[0].astype(int).tolist(), b.qber(0))


def test_a_clean_link_raises_nothing_and_an_attack_after_commissioning_is_named() -> None:
    alarms: list[tuple[str, str]] = []
    clean = LinkMonitor("L1", 0.11, lambda s, t: alarms.append((s, t)))
    _feed(clean, None, CALIBRATION_BLOCKS + 30, seed=21)
    assert alarms == [] and len(clean.verdicts) == 30
    attacked = LinkMonitor("L1", 0.11, lambda s, t: alarms.append((s, t)))
    _feed(
        attacked,
        Condition("intercept-resend", 0.05, onset_block=CALIBRATION_BLOCKS + 2),
        CALIBRATION_BLOCKS + 6,
        seed=22,
    )
    flags = [v["anomalous"] for v in attacked.verdicts]
    assert flags == [False, False, True, True, True, True]
    assert alarms and all(s == "critical" and "intercept-resend" in t for s, t in alarms)


def test_the_schedule_switches_the_monte_carlo_photon_model_at_its_onset() -> None:
    sim = LinkSimulator(LINK, 3)
    tap = attacked_params(LINK, Condition("tap", 3.0), 3.0)
    before = sim._lam_tot.copy()
    set_photon_model(sim, tap)
    np.testing.assert_allclose(sim._lam_tot, before * 10**-0.3, rtol=1e-12)
    np.testing.assert_array_equal(sim._lam_cum, LinkSimulator(tap, 3)._lam_cum)
    assert attacked_params(LINK, Condition("intercept-resend", 0.05), 0.05).eve_fraction == 0.05
    drift = ScheduledCondition(Condition("laser-drift", 0.03), onset_slot=100)
    assert drift.level_at(99) == 0.0 and drift.level_at(100) == 0.01


def test_the_demo_schedules_every_condition_after_commissioning() -> None:
    for name in ("intercept-resend", "blinding", "pns", "tap", "laser-drift"):
        table = attack_table({"fibre_length_km": 25.0, "p_z": 0.8, "bob_p_z": 0.8}, name, None, 1_000_000)
        assert table["attack"] == name and table["attack_onset_slot"] > 0
    with pytest.raises(ValueError, match="not a condition"):
        attack_table({"fibre_length_km": 25.0}, "jamming", None, 4_000_000)


@pytest.mark.parametrize("name", ["blinding", "pns"])
def test_the_collector_scores_clicks_multi_clicks_and_timing_and_flags_monte_carlo_attacks(name: str) -> None:
    alarms: list[tuple[str, str]] = []
    monitor = LinkMonitor("L1", 0.11, lambda s, t: alarms.append((s, t)))
    onset = CALIBRATION_BLOCKS + 3
    feed(monitor, monte_carlo_blocks(LINK, Condition(name, 0.6), onset, onset + 2, 20_000_000, seed=9))  # 2e7 slots
    ref = monitor.reference
    assert ref is not None and np.all(ref.clicks > 0) and ref.multi_clicks > 0 and 30 < ref.timing_spread_ps < 70
    flags = [v["anomalous"] for v in monitor.verdicts]
    assert flags == [False, False, False, True, True], monitor.verdicts
    assert alarms and all(s == "critical" and name in t for s, t in alarms)


def test_roc_auc_counts_ties_half() -> None:
    assert roc_auc([1.0, 2.0], [3.0, 4.0]) == 1.0 and roc_auc([1.0, 2.0], [0.0, 0.5]) == 0.0
    assert roc_auc([1.0], [1.0]) == 0.5 and roc_auc([1.0, 3.0], [2.0]) == 0.5

"""QL02 in the running node: the system loss measured from a block's decoy yields, and re-tune
advice only after a real change of the link (the first block is the baseline)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from drivers.mock.blockstats import expected_rates
from drivers.mock.conditions import Condition
from drivers.mock.link import LinkParams
from node.link.distill import LinkSettings
from node.ml.retune import LinkRetuner, measured_link
from postprocessing.sifting import SiftCounts

LINK = LinkParams(
    p_z=0.8, bob_p_z=0.8, intensities=(0.5, 0.15, 0.0), class_probabilities=(0.6, 0.3, 0.1), dark_count_hz=0.0
)
SETTINGS = LinkSettings("L1", LINK.intensities, LINK.class_probabilities)
SLOTS = 1e9
MATCHED = 0.8 * 0.8 + 0.2 * 0.2


def _block(tap_db: float = 0.0) -> tuple[SiftCounts, list[int], float]:
    """Expected sift counts of SLOTS slots (tap_db of extra loss), Z errors, all detection rows."""
    e = expected_rates(LINK, Condition("tap", tap_db) if tap_db else None, tap_db)
    det = np.round(e["detections"] * SLOTS).astype(np.int64)
    err = np.round(e["errors"] * SLOTS).astype(np.int64)
    return SiftCounts(det, det.copy(), err), err[0].tolist(), det.sum() / MATCHED


def test_the_measured_loss_is_the_links_system_loss() -> None:
    counts, z_errors, rows = _block()
    measured = measured_link(SETTINGS, counts, z_errors, SLOTS, rows)
    assert measured is not None
    loss, q, e_mis = measured
    truth = -10 * math.log10(LINK.channel_transmittance * 0.2)
    assert loss == pytest.approx(truth, abs=0.05)
    assert q == pytest.approx(0.8, abs=1e-4) and e_mis == pytest.approx(0.01, abs=2e-3)
    tapped, z_tapped, rows_tapped = _block(2.0)
    tapped_link = measured_link(SETTINGS, tapped, z_tapped, SLOTS, rows_tapped)
    assert tapped_link is not None and tapped_link[0] == pytest.approx(truth + 2.0, abs=0.05)
    # half the clicks lost to the common dead time: the yield is corrected back
    half = SiftCounts(counts.detections // 2, counts.disclosed // 2, counts.errors // 2)
    corrected = measured_link(SETTINGS, half, [v // 2 for v in z_errors], SLOTS, rows / 2, 0.5)
    assert corrected is not None and corrected[0] == pytest.approx(loss, abs=0.01)
    assert measured_link(SETTINGS, SiftCounts.zeros(3), [0, 0, 0], SLOTS, 0.0) is None


def test_advice_follows_a_change_of_the_link_not_the_baseline() -> None:
    alarms: list[tuple[str, str]] = []
    handed: list[object] = []
    retuner = LinkRetuner(SETTINGS, lambda s, t: alarms.append((s, t)), handed.append)

    def feed(tap_db: float) -> object:
        counts, z_errors, rows = _block(tap_db)
        return retuner.on_block(counts, z_errors, SLOTS, rows)

    assert feed(0.0) is None and not alarms and retuner.recommended is None
    assert feed(0.0) is None and not alarms
    tuned = feed(6.0)
    assert tuned is not None and handed == [tuned] and retuner.recommended == tuned
    assert alarms and alarms[0][0] == "warning" and "re-tune" in alarms[0][1]
    assert feed(6.1) is None and len(handed) == 1  # within the hysteresis


def test_settings_the_bound_does_not_take_leave_the_link_running_without_advice() -> None:
    # three classes under the one-decoy bound (which takes two): no re-tune, no alarm, no exception
    other = LinkSettings("L1", LINK.intensities, LINK.class_probabilities, protocol="rusca2018")
    alarms: list[tuple[str, str]] = []
    retuner = LinkRetuner(other, lambda s, t: alarms.append((s, t)))
    for tap_db in (0.0, 6.0):
        counts, z, rows = _block(tap_db)
        assert retuner.on_block(counts, z, SLOTS, rows) is None
    assert not alarms and retuner.recommended is None

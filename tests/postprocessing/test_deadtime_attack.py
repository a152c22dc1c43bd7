"""The dead-time attack on the mock link (Weier et al. 2011), with Bob's common dead time on and off.

Two key-basis clicks closer than one detector dead time must come from different detectors when
each detector has its own dead time, so Alice's bits of such a pair differ far more often than
half the time: Eve learns their parity from public slot numbers alone. With the common dead time
every detector is live at every kept click, and the parity of close pairs is a fair coin.
The mock is seeded, so these tests are deterministic; the slot counts give each filter-off run a
bias of many sigma and each filter-on run the sample size to see that bias if it were there.
"""

from __future__ import annotations

import numpy as np
import pytest

from drivers.mock import LinkParams
from node.runtime.simulation import simulate_detections

MARGIN_PS = 10_000.0


def close_pair_parity(km: float, n_slots: int, common_dead_time: bool) -> tuple[float, int, float]:
    """(P(Alice's bits differ), pairs, one sigma) over consecutive kept Z-key detections closer than
    two dead times."""
    params = LinkParams(fibre_length_km=km, p_z=0.8, bob_p_z=0.8)
    dead = max(params.dead_time_ps) + MARGIN_PS
    det = simulate_detections(params, n_slots=n_slots, seed=3, common_dead_time_ps=dead if common_dead_time else None)
    key = (det.basis == 0) & (det.alice_basis == 0)
    t, bit = det.time[key], det.alice_bit[key]
    close = np.diff(t) < 2 * dead
    differ = (bit[1:] != bit[:-1])[close]
    m = int(differ.size)
    return float(differ.mean()), m, 0.5 / np.sqrt(m)


@pytest.mark.parametrize("km,n_slots", [(25.0, 2_000_000), (0.0, 4_000_000)])
def test_close_key_pairs_are_a_fair_coin_with_the_common_dead_time(km: float, n_slots: int) -> None:
    p, m, sigma = close_pair_parity(km, n_slots, common_dead_time=True)
    assert m >= 1_000  # enough pairs: the bias seen without the filter (> 0.15) would be > 10 sigma
    assert abs(p - 0.5) < 3 * sigma


@pytest.mark.parametrize("km,n_slots", [(25.0, 2_000_000), (0.0, 4_000_000)])
def test_close_key_pairs_betray_their_parity_without_the_common_dead_time(km: float, n_slots: int) -> None:
    p, _m, sigma = close_pair_parity(km, n_slots, common_dead_time=False)
    assert p - 0.5 > 10 * sigma  # the attack works: bias detected

"""The link model against the mock it describes: Bob's common dead time (kept share), the passive
receiver's squashing and afterpulses in random slots, so that the link bench's ideal and
`qkdnode simulate` have the mock's physics."""

from __future__ import annotations

import math

import numpy as np
import pytest

from drivers.mock import LinkParams
from node.runtime.mockmodel import common_dead_time_ps, finitekey_link
from node.runtime.simulation import simulate_detections
from postprocessing.finitekey import LIM2014_SECTION_IV, LinkParameters, ProtocolSettings, expected_block
from postprocessing.finitekey.linkmodel import kept_fraction


def _mock_vs_model(km: float, n_slots: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    p = LinkParams(
        fibre_length_km=km, p_z=0.8, bob_p_z=0.8, intensities=(0.5, 0.15, 0.0), class_probabilities=(0.6, 0.3, 0.1)
    )
    dead = common_dead_time_ps(p)
    d = simulate_detections(p, n_slots=n_slots, seed=4, common_dead_time_ps=dead)
    det, err = np.zeros((2, 3)), np.zeros((2, 3))
    for b in range(2):
        for k in range(3):
            m = (d.basis == d.alice_basis) & (d.basis == b) & (d.intensity == k)
            det[b, k], err[b, k] = m.sum(), (m & (d.bit != d.alice_bit)).sum()
    block = expected_block(
        finitekey_link(p, common_dead_time=dead),
        ProtocolSettings(p.intensities, p.class_probabilities, 0.8),
        km,
        det[0].sum(),
    )
    return det, err, block.stats.detections, n_slots / block.pulses


@pytest.mark.parametrize("km,n_slots,tolerance", [(25.0, 10_000_000, 0.02), (0.0, 4_000_000, 0.05)])
def test_common_dead_time_kept_share_matches_the_mock(km: float, n_slots: int, tolerance: float) -> None:
    """At 25 km a third, at 0 km a ninth of the clicks survive; the model's pulses per block agree
    (its neglected terms: per-detector blocking beyond the independent-detector product,
    afterpulse correlations; ~3 % at 0 km, < 1 % at 25 km)."""
    det, _, model, ratio = _mock_vs_model(km, n_slots)
    assert abs(ratio - 1.0) < tolerance
    # per basis and class (signal, decoy): within 4 sigma of the model
    for b in range(2):
        for k in range(2):
            assert abs(det[b, k] - model[b, k]) < 4 * math.sqrt(model[b, k]) + 0.01 * model[b, k]


def test_kept_share_formula_by_hand() -> None:
    link = LinkParameters(dead_time_s=50e-9, common_dead_time_s=55e-9, repetition_rate_hz=1e9)
    got = kept_fraction(link, 0.02, 0.8)
    want = 1.0
    for share in (0.4, 0.4, 0.1, 0.1):
        lam = 1e9 * 0.02 * share
        want *= math.exp(-lam * 5e-9) / (1 + lam * 50e-9)
    assert got == pytest.approx(want)
    # without the common dead time: Rusca et al. (B3)
    assert kept_fraction(LinkParameters(dead_time_s=50e-9), 0.02) == pytest.approx(1 / (1 + 1e9 * 50e-9 * 0.02))


def test_without_dead_time_and_afterpulses_the_passive_receiver_keeps_lims_ratios() -> None:
    """With q = 1/2 the passive receiver sifts what Lim's active one does, up to double clicks and
    the dark counts of the other basis's two detectors (which only the near-vacuum class sees)."""
    settings = ProtocolSettings((0.5, 0.1, 2e-4), (0.7, 0.2, 0.1), 0.5)
    active = LinkParameters.from_mapping({"afterpulse_probability": 0.0}, LIM2014_SECTION_IV)
    passive = LinkParameters.from_mapping({"afterpulse_probability": 0.0, "receiver": "passive"}, LIM2014_SECTION_IV)
    a, p = expected_block(active, settings, 10.0, 1e6), expected_block(passive, settings, 10.0, 1e6)
    assert np.allclose(a.stats.detections[:, :2], p.stats.detections[:, :2], rtol=2e-3)
    # squashed double clicks (a random bit, or a random basis and bit) add errors Lim's model has not
    assert p.stats.qber() > a.stats.qber()


def test_bad_receiver_and_afterpulse_model_name_the_key() -> None:
    with pytest.raises(ValueError, match="receiver"):
        LinkParameters(receiver="x")
    with pytest.raises(ValueError, match="afterpulse_slot"):
        LinkParameters(afterpulse_slot="later")
    with pytest.raises(ValueError, match="common_dead_time_s"):
        LinkParameters(dead_time_s=50e-9, common_dead_time_s=10e-9)

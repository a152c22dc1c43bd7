"""The analytic model's own consistency (the Monte-Carlo is held to it in test_link)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.mock.analytic import expected_statistics, gate_acceptance, squash
from drivers.mock.link import LinkParams


@given(st.lists(st.floats(0.0, 1.0), min_size=4, max_size=4))
def test_squash_distributes_exactly_the_probability_of_any_click(p: list[float]) -> None:
    out = squash(np.array(p))
    assert out.sum() == pytest.approx(1.0 - np.prod(1.0 - np.array(p)), abs=1e-12)
    assert np.all(out >= 0)


def test_squash_single_detector_gives_its_own_result() -> None:
    for j, (b, y) in enumerate(itertools.product(range(2), range(2))):
        click = np.zeros(4)
        click[j] = 1.0
        expect = np.zeros((2, 2))
        expect[b, y] = 1.0
        assert np.array_equal(squash(click), expect)
    assert np.allclose(squash(np.array([1.0, 1.0, 0.0, 0.0])), [[0.5, 0.5], [0.0, 0.0]])
    assert np.allclose(squash(np.array([1.0, 0.0, 0.0, 1.0])), 0.25)


def test_lossless_ideal_link_has_misalignment_qber_and_textbook_sifting() -> None:
    p = LinkParams(
        fibre_length_km=0.0,
        insertion_loss_db=0.0,
        efficiency=1.0,
        dark_count_hz=0.0,
        misalignment=0.0,
        intensities=(1e-6,),
        class_probabilities=(1.0,),
    )
    m = expected_statistics(p)
    assert np.allclose(m.qber, 0.0, atol=1e-6)
    # a single photon is measured in Bob's passive basis choice: half the detections sift
    assert np.allclose(m.p_measured[0] / m.p_detect[0][:, None], 0.5, atol=1e-6)


def test_gate_acceptance_of_a_centred_gaussian() -> None:
    assert gate_acceptance(50.0, None) == 1.0
    assert gate_acceptance(50.0, 100.0) == pytest.approx(0.682689, abs=1e-5)
    assert gate_acceptance(50.0, 2000.0) == 1.0


def test_expected_statistics_rejects_a_gate_longer_than_a_slot() -> None:
    with pytest.raises(ValueError, match="gate_ps"):
        expected_statistics(LinkParams(), gate_ps=2000.0)


def test_detection_probability_falls_with_fibre_loss() -> None:
    near = expected_statistics(LinkParams(fibre_length_km=10.0, dark_count_hz=0.0))
    far = expected_statistics(LinkParams(fibre_length_km=60.0, dark_count_hz=0.0))
    ratio = far.p_detect[0, 0] / near.p_detect[0, 0]
    assert ratio == pytest.approx(10 ** (-50 * 0.2 / 10), rel=0.05)

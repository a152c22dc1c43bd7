"""Block-granularity mock statistics and the injectable conditions: the clean model equals the
analytic model of the Monte-Carlo link, each condition moves the statistics the way its physics says."""

from __future__ import annotations

import numpy as np
import pytest

from drivers.mock.analytic import expected_statistics
from drivers.mock.blockstats import Drift, draw_block, expected_rates, simulate_run
from drivers.mock.conditions import CONDITIONS, Condition
from drivers.mock.link import LinkParams

LINK = LinkParams(
    p_z=0.8, bob_p_z=0.8, intensities=(0.5, 0.15, 0.0), class_probabilities=(0.6, 0.3, 0.1), fibre_length_km=30.0
)
GATE = 1000.0


def _reference_sifted(params: LinkParams) -> tuple[np.ndarray, np.ndarray]:
    """Matched-basis detections and errors per slot from drivers.mock.analytic (slot fractions times
    its per-slot probabilities)."""
    m = expected_statistics(params, GATE)
    det, err = np.zeros((2, 3)), np.zeros((2, 3))
    for k in range(3):
        for b in range(2):
            frac = m.slot_fraction(k, b)
            det[b, k] = frac * m.p_measured[k, b, b]
            err[b, k] = frac * m.p_error[k, b]
    return det, err


@pytest.mark.parametrize("eve", [0.0, 0.05, 0.5])
def test_clean_and_intercept_resend_models_equal_the_analytic_model(eve: float) -> None:
    cond = Condition("intercept-resend", eve) if eve else None
    e = expected_rates(LINK, cond, eve, GATE)
    det, err = _reference_sifted(LINK.replace(eve_fraction=eve))
    np.testing.assert_allclose(e["detections"], det, rtol=1e-12)
    np.testing.assert_allclose(e["errors"], err, rtol=1e-12, atol=1e-18)


def test_intercept_resend_adds_a_quarter_of_its_fraction_to_the_qber() -> None:
    clean = expected_rates(LINK, None, 0.0)
    ir = expected_rates(LINK, Condition("intercept-resend"), 0.05)
    q = lambda e: e["errors"][0, 0] / e["detections"][0, 0]  # noqa: E731
    assert q(ir) - q(clean) == pytest.approx(0.05 / 4, rel=0.05)
    assert q(ir) < 0.11


def test_blinding_removes_errors_and_multi_clicks_but_keeps_the_signal_rate() -> None:
    clean = expected_rates(LINK, None, 0.0)
    full = expected_rates(LINK, Condition("blinding", 1.0), 1.0)
    assert full["detections"][:, 0].sum() == pytest.approx(clean["detections"][:, 0].sum(), rel=0.02)
    assert full["errors"][:, :2].sum() == 0.0
    assert float(full["multi_clicks"]) == 0.0
    assert full["detections"][:, 2].sum() == 0.0  # no dark counts: the vacuum class goes silent
    assert float(full["timing_spread_ps"]) < float(clean["timing_spread_ps"])


def test_pns_lowers_the_decoy_yield_relative_to_the_signal() -> None:
    clean = expected_rates(LINK, None, 0.0)
    pns = expected_rates(LINK, Condition("pns", 1.0), 1.0)
    ratio = lambda e: e["detections"][0, 1] / e["detections"][0, 0]  # noqa: E731
    assert pns["detections"][0, 0] == pytest.approx(clean["detections"][0, 0], rel=0.02)
    assert ratio(pns) < 0.6 * ratio(clean)


def test_tap_and_laser_drift_scale_the_photon_clicks() -> None:
    clean = expected_rates(LINK, None, 0.0)["detections"][0, 0]
    assert expected_rates(LINK, Condition("tap", 3.0), 3.0)["detections"][0, 0] / clean == pytest.approx(
        10**-0.3, rel=0.02
    )
    assert expected_rates(LINK, Condition("laser-drift", 0.1), 0.1)["detections"][0, 0] / clean == pytest.approx(
        1.1, rel=0.02
    )
    drift = Condition("laser-drift", 0.05, onset_block=10)
    assert [drift.level(b) for b in (9, 10, 12, 30)] == [0.0, 0.01, 0.03, 0.05]


def test_drawn_blocks_are_seeded_and_centred_on_the_expectation() -> None:
    a = simulate_run(LINK, 40, 2e7, seed=3, power_noise=0.0)
    b = simulate_run(LINK, 40, 2e7, seed=3, power_noise=0.0)
    assert all(np.array_equal(x.detections, y.detections) for x, y in zip(a, b))
    e = expected_rates(LINK, None, 0.0)
    mean_det = np.mean([x.detections for x in a], axis=0) / 2e7
    np.testing.assert_allclose(mean_det[:, :2], e["detections"][:, :2], rtol=0.01)
    mean_q = np.mean([x.qber(0) for x in a])
    assert mean_q == pytest.approx(e["errors"][0].sum() / e["detections"][0].sum(), rel=0.02)


def test_drift_moves_the_qber() -> None:
    drift = Drift(misalignment=np.linspace(0.0, 0.03, 30))
    run = simulate_run(LINK, 30, 2e7, seed=4, drift=drift)
    assert run[-1].qber(0) - run[0].qber(0) == pytest.approx(0.03, abs=0.004)


@pytest.mark.parametrize(
    "name,strength,fragment",
    [
        ("eavesdrop", None, "allowed: intercept-resend, blinding, pns, tap, laser-drift"),
        ("tap", -1.0, "tap takes a dB in [0, 30]"),
        ("intercept-resend", 1.5, "fraction of slots in [0, 1]"),
    ],
)
def test_bad_conditions_are_one_line_errors(name: str, strength: float | None, fragment: str) -> None:
    with pytest.raises(ValueError) as err:
        Condition(name, strength)
    assert fragment in str(err.value) and "\n" not in str(err.value)


def test_every_condition_draws_a_block() -> None:
    rng = np.random.default_rng(0)
    for name in CONDITIONS:
        blk = draw_block(LINK, 1e6, rng, Condition(name), Condition(name).level(0))
        assert blk.detections.shape == (2, 3) and np.all(blk.errors <= blk.detections)


def test_vectorised_squash_equals_the_analytic_one() -> None:
    from drivers.mock.analytic import multi_clicks, squash
    from drivers.mock.blockstats import multi_all, squash_all

    click = np.random.default_rng(1).random((5, 4))
    np.testing.assert_allclose(squash_all(click), np.array([squash(c) for c in click]), rtol=1e-14)
    np.testing.assert_allclose(multi_all(click), [sum(multi_clicks(c)) for c in click], rtol=1e-14)

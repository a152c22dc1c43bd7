"""Detector blinding and photon-number splitting in the Monte-Carlo link (drivers.mock.eve,
switched on by drivers.mock.onset): the virtual classes stay inside Alice's true class, the click
probabilities equal slow references, and the simulated link shows each attack's physics."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.mock.alice import _states_kernel, alice_states
from drivers.mock.conditions import CONDITIONS, Condition
from drivers.mock.counter import STREAM_ALICE, derive_key
from drivers.mock.eve import (
    blinding_model,
    nested_class_cdf,
    pns_click_probability,
    pns_model,
)
from drivers.mock.link import LinkEvents, LinkSimulator
from drivers.mock.onset import ScheduledCondition, photon_model, set_photon_model
from drivers.mock.params import CHANNEL_SYNC, DETECTOR_CHANNELS, LinkParams
from postprocessing import slotting

LINK = LinkParams(p_z=0.8, bob_p_z=0.8, intensities=(0.5, 0.15, 0.0), class_probabilities=(0.6, 0.3, 0.1))
SLOTS = 4_000_000


def _reference_pns_click(mu: float, q: float) -> float:
    """Sum over photon numbers, term by term: blocked below two, n - 1 photons forwarded."""
    total, p_n = 0.0, math.exp(-mu)
    for n in range(1, 200):
        p_n *= mu / n
        if n >= 2:
            total += p_n * (1.0 - (1.0 - q) ** (n - 1))
    return total


@given(st.floats(0.0, 2.0), st.floats(0.0, 1.0))
@settings(max_examples=200, deadline=None)
def test_pns_click_probability_equals_the_term_by_term_sum(mu: float, q: float) -> None:
    assert pns_click_probability(mu, q) == pytest.approx(_reference_pns_click(mu, q), rel=1e-9, abs=1e-15)


@given(st.integers(0, 2**62), st.sampled_from(["blinding", "pns"]), st.floats(0.0, 1.0))
@settings(max_examples=60, deadline=None)
def test_every_slots_virtual_class_lies_in_its_true_class(seed: int, name: str, fraction: float) -> None:
    model = blinding_model(LINK, fraction) if name == "blinding" else pns_model(LINK, fraction)
    cdf = nested_class_cdf(model, LINK.class_probabilities)
    slots = np.arange(seed % 1000, seed % 1000 + 20_000, dtype=np.int64)
    basis, bit, virtual = (np.empty(slots.size, np.uint8) for _ in range(3))
    _states_kernel(derive_key(seed, STREAM_ALICE), slots, LINK.p_z, cdf, basis, bit, virtual)
    a_basis, a_bit, a_class = alice_states(seed, slots, LINK.p_z, LINK.class_probabilities)
    np.testing.assert_array_equal(np.asarray(model.parent)[virtual], a_class)
    np.testing.assert_array_equal(basis, a_basis)
    np.testing.assert_array_equal(bit, a_bit)


def _run(
    condition: Condition | None, seed: int = 5, params: LinkParams = LINK
) -> tuple[slotting.Detections, LinkSimulator]:
    """Bob's squashed detections (with Alice's truth) of SLOTS slots under the condition throughout."""
    sim = LinkSimulator(params, seed)
    if condition is not None:
        assert condition.strength is not None  # Condition resolves its default strength
        set_photon_model(sim, photon_model(params, condition, float(condition.strength)))
    ev = LinkEvents.concatenate([sim.run(SLOTS), sim.flush()])
    fit = slotting.fit_clock(ev.time[ev.channel == CHANNEL_SYNC], params.period_ps, params.sync_every)
    sl = slotting.assign_slots(
        ev.time, ev.channel, fit, 0.5 * params.period_ps, params.channel_delays_ps(), DETECTOR_CHANNELS
    )
    keep = sl.slot < SLOTS
    det = slotting.resolve_clicks(
        sl.slot[keep], sl.channel[keep], sl.time[keep], DETECTOR_CHANNELS, rng=np.random.default_rng(1)
    )
    return det, sim


def _sifted(det: slotting.Detections, seed: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """Matched-basis detections and errors per (basis, class)."""
    ab, ax, ak = alice_states(seed, det.slot, LINK.p_z, LINK.class_probabilities)
    n, e = np.zeros((2, 3)), np.zeros((2, 3))
    for b in range(2):
        for k in range(3):
            m = (det.basis == b) & (ab == b) & (ak == k)
            n[b, k], e[b, k] = m.sum(), (det.bit[m] != ax[m]).sum()
    return n, e


def test_full_blinding_gives_deterministic_error_free_clicks_without_darks_or_afterpulses() -> None:
    det, sim = _run(Condition("blinding", 1.0), params=LINK.replace(afterpulse_probability=0.05))
    n, e = _sifted(det)
    assert n[0, 0] > 1000 and e.sum() == 0  # Bob's basis is Eve's; sifted, Eve's basis is Alice's
    assert det.n_double == 0 and det.n_cross == 0
    assert sim.counters.dark_counts.sum() == 0 and sim.counters.afterpulses.sum() == 0
    clean, _ = _run(None)
    n_clean, _ = _sifted(clean)
    # Eve keeps the signal class's clicks (within 5 sigma), not the decoy's
    assert abs(n[0, 0] - n_clean[0, 0]) < 5 * math.sqrt(2 * n_clean[0, 0])
    assert n[0, 1] > n_clean[0, 1] + 5 * math.sqrt(2 * n_clean[0, 1])


def test_pns_keeps_the_qber_and_lowers_the_decoy_yield_against_the_signal() -> None:
    det, _ = _run(Condition("pns", 1.0))
    clean, _ = _run(None)
    n, e = _sifted(det)
    n_clean, e_clean = _sifted(clean)
    q, q_clean = e[0, 0] / n[0, 0], e_clean[0, 0] / n_clean[0, 0]
    assert abs(q - q_clean) < 5 * math.sqrt(q_clean / n[0, 0])
    assert n[0, 1] / n[0, 0] < 0.5 * n_clean[0, 1] / n_clean[0, 0]
    # the simulated yields follow the attacked photon model (5 sigma)
    model = photon_model(LINK, Condition("pns", 1.0), 1.0)
    expected = (
        -np.expm1(-model.lam[3, 0, :, :2].sum(axis=1)).mean() * 0.8 * 0.8 * 0.3 * SLOTS
    )  # Z decoys (virtual class 3: attacked class 1)
    assert abs(n[0, 1] - expected) < 5 * math.sqrt(expected)


def test_every_condition_has_a_monte_carlo_model_switched_on_at_its_onset() -> None:
    for name in CONDITIONS:
        condition = Condition(name)
        assert condition.strength is not None  # the condition's default strength
        model = photon_model(LINK, condition, float(condition.strength))
        assert model.lam.shape[0] == model.cdf.size == len(model.params.class_probabilities)
    sim = LinkSimulator(LINK, 3)
    before = sim._lam.copy()
    schedule = ScheduledCondition(Condition("blinding", 0.2), onset_slot=1_000_000)

    class Tagger:
        simulator = sim

        def start(self) -> None:
            pass

    tagger = Tagger()
    schedule.attach(tagger)
    tagger.start()
    sim.run(1_000_000)
    np.testing.assert_array_equal(sim._lam, before)
    sim.run(1_000)
    assert sim._lam.shape[0] == 15 and sim.params.dark_count_hz == tuple(0.8 * d for d in LINK.dark_count_hz)

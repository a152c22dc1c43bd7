"""The link's figures against the mock's truth: QBER, decoy statistics, finite-key length, Eve."""

from __future__ import annotations

import numpy as np
import pytest

from drivers.mock import LinkParams, expected_statistics
from node.link.distill import block_key_length
from node.runtime.simulation import simulate_detections
from postprocessing.sifting import SiftCounts
from tests.node.link.harness import as_detections, link_pair, run_all, settings_for

BASE = LinkParams(
    fibre_length_km=25.0,
    p_z=0.8,
    bob_p_z=0.8,
    intensities=(0.5, 0.15, 0.0),
    class_probabilities=(0.6, 0.3, 0.1),
    dead_time_ps=(0.0,) * 4,
    afterpulse_probability=(0.0,) * 4,
)
SEED = 21


@pytest.fixture(scope="module")
def sim_25km():
    return simulate_detections(BASE, n_slots=250_000_000, seed=SEED)


def test_measured_qber_and_key_length_follow_the_truth_at_25_km(tmp_path, sim_25km) -> None:
    sim = sim_25km
    with link_pair(tmp_path, BASE, SEED, settings_for(BASE)) as pair:
        run_all(pair, as_detections(sim))
        last = pair.bob.last_block
        assert pair.bob.counters["blocks"] >= 2 and not pair.alarms
    # the truth of the whole run: Alice's prepared bits against Bob's over matched Z detections
    z = (sim.alice_basis == sim.basis) & (sim.basis == 0)
    true_qber = float(np.mean(sim.alice_bit[z] != sim.bit[z]))
    model = expected_statistics(BASE)
    w = np.array([model.slot_fraction(k, 0) * model.p_measured[k, 0, 0] for k in range(3)])
    q = np.nan_to_num(model.qber[:, 0])  # a class the model never detects has no QBER and no weight
    model_qber = float(np.dot(w, q) / w.sum())
    assert abs(last["qber"] - true_qber) < 0.002
    assert abs(true_qber - model_qber) < 0.002
    # the counts Alice disclosed are the true per-class counts, so the finite-key length computed
    # from the truth with the same leak is the node's, to well within 1 %
    counts = SiftCounts(
        np.array(last["detections"]), np.zeros((2, 3), np.int64), np.array([[0, 0, 0], last["errors_x"]])
    )
    truth = block_key_length(pair.bob.settings, counts, last["z_errors"], last["leaked_bits"], last["n_bits"])
    assert abs(truth.length - last["secret_bits"]) <= 0.01 * truth.length


def test_intercept_resend_on_every_slot_yields_no_key_and_an_alarm(tmp_path) -> None:
    params = BASE.replace(eve_fraction=1.0)
    sim = simulate_detections(params, n_slots=80_000_000, seed=SEED)
    with link_pair(tmp_path, params, SEED, settings_for(params, block_bits=400_000)) as pair:
        run_all(pair, as_detections(sim))
        assert pair.bob.counters["blocks"] == 0 and pair.bob.counters["aborted"] >= 1
        assert not pair.alice_keys and not pair.bob_keys
        assert any("QBER" in text for _, text in pair.alarms)


def test_intercept_resend_on_a_fifth_of_slots_raises_qber_and_shortens_the_key(tmp_path, sim_25km) -> None:
    params = BASE.replace(eve_fraction=0.2)
    sim = simulate_detections(params, n_slots=250_000_000, seed=SEED)
    with link_pair(tmp_path, BASE, SEED, settings_for(BASE)) as clean:
        run_all(clean, as_detections(sim_25km))
        clean_last = clean.bob.last_block
    with link_pair(tmp_path / "eve", params, SEED, settings_for(params)) as attacked:
        run_all(attacked, as_detections(sim))
        last = attacked.bob.last_block
    # intercept-resend adds 25 % errors on the attacked fifth: about 5 points of QBER
    assert 0.03 < last["qber"] - clean_last["qber"] < 0.07
    assert last["secret_bits"] < clean_last["secret_bits"]
    assert last["secret_bits"] == last["finite_key"]["length"] if last["finite_key"]["length"] >= 256 else True

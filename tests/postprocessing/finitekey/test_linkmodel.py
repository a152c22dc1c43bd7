"""The link model's expected counts (Lim et al. 2014 section IV) and the parameter files."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from postprocessing.finitekey import (
    LIM2014_SECTION_IV,
    RUSCA2018_SETUP,
    LinkParameters,
    ProtocolSettings,
    expected_block,
    load_link_parameters,
)
from postprocessing.finitekey.linkmodel import detection_probabilities

SETTINGS = ProtocolSettings((0.5, 0.1, 2e-4), (0.7, 0.2, 0.1), 0.8)


def test_detection_and_error_probabilities_by_hand() -> None:
    link = LIM2014_SECTION_IV
    eta = 10 ** (-0.2 * 50 / 10) * 0.1
    rate, error = detection_probabilities(link, np.array([0.5]), 50.0)
    d = 1 - (1 - 2 * 6e-7) * math.exp(-eta * 0.5)
    assert rate[0] == pytest.approx(d * 1.04, rel=1e-12)
    assert error[0] == pytest.approx(6e-7 + 5e-3 * (1 - math.exp(-eta * 0.5)) + 0.04 * d / 2, rel=1e-12)


def test_block_holds_the_requested_key_basis_detections() -> None:
    b = expected_block(LIM2014_SECTION_IV, SETTINGS, 80.0, 1e6)
    assert b.stats.block_size == pytest.approx(1e6)
    # sifting: X gets (1-q)^2 / q^2 of Z's detections, class by class
    assert np.allclose(b.stats.detections[1] / b.stats.detections[0], (0.2 / 0.8) ** 2)
    # pulses: n_Z / (q^2 sum_k p_k R_k)
    rate, _ = detection_probabilities(LIM2014_SECTION_IV, np.array(SETTINGS.intensities), 80.0)
    assert b.pulses == pytest.approx(1e6 / (0.64 * float(np.dot(SETTINGS.probabilities, rate))))
    assert b.lambda_ec == pytest.approx(1.16 * 1e6 * _h(b.stats.qber()))


def test_qber_at_short_distance_is_misalignment_plus_half_the_afterpulses() -> None:
    b = expected_block(LIM2014_SECTION_IV, SETTINGS, 0.0, 1e6)
    assert b.stats.qber() == pytest.approx(5e-3 + 0.02, abs=1e-3)


def test_dead_time_scales_detections_per_pulse() -> None:
    settings = ProtocolSettings((0.5, 0.1), (0.7, 0.3), 0.8)
    with_dead = expected_block(RUSCA2018_SETUP, settings, 0.0, 1e6)
    without = expected_block(LinkParameters.from_mapping({"dead_time_s": 0.0}, RUSCA2018_SETUP), settings, 0.0, 1e6)
    rate, _ = detection_probabilities(RUSCA2018_SETUP, np.array(settings.intensities), 0.0)
    factor = 1 / (1 + 1e9 * 100e-9 * float(np.dot(settings.probabilities, rate)))
    assert with_dead.dead_time_factor == pytest.approx(factor)
    assert with_dead.pulses == pytest.approx(without.pulses / factor)


def test_parameters_load_from_toml_and_json(tmp_path) -> None:
    toml = tmp_path / "link.toml"
    toml.write_text("detector_efficiency = 0.2\nmisalignment = 0.01\neps_sec = 1e-9\n")
    link = load_link_parameters(toml, LIM2014_SECTION_IV)
    assert (link.detector_efficiency, link.misalignment, link.eps_sec, link.secrecy_per_bit) == (0.2, 0.01, 1e-9, None)
    assert link.dark_count_probability == LIM2014_SECTION_IV.dark_count_probability
    nested = tmp_path / "nested.toml"
    nested.write_text("[link]\nfibre_loss_db_per_km = 0.16\n")
    assert load_link_parameters(nested, LIM2014_SECTION_IV).fibre_loss_db_per_km == 0.16
    js = tmp_path / "link.json"
    js.write_text(json.dumps({"dead_time_s": 5e-8, "repetition_rate_hz": 2.5e9}))
    link = load_link_parameters(js, RUSCA2018_SETUP)
    assert (link.dead_time_s, link.repetition_rate_hz, link.eps_sec) == (5e-8, 2.5e9, 1e-9)


@pytest.mark.parametrize(
    "text,name",
    [
        ("detector_efficiency = 1.5\n", "detector_efficiency"),
        ("detector_efficiency = 0.0\n", "detector_efficiency"),
        ("misalignment = -0.1\n", "misalignment"),
        ("ec_efficiency = 0.9\n", "ec_efficiency"),
        ("dark_count_probability = 'high'\n", "dark_count_probability"),
        ("fibre_loss = 0.2\n", "fibre_loss.*allowed"),
        ("eps_sec = 1.0\n", "eps_sec"),
        ("eps_sec = 1e-9\nsecrecy_per_bit = 1e-15\n", "eps_sec, secrecy_per_bit"),
        ("dead_time_s = true\n", "dead_time_s"),
        ("not toml at all [\n", "params"),
    ],
)
def test_bad_parameter_files_name_the_key(tmp_path, text: str, name: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ValueError, match=name):
        load_link_parameters(path, LIM2014_SECTION_IV)


def test_missing_parameter_file_is_a_value_error(tmp_path) -> None:
    with pytest.raises(ValueError, match="params"):
        load_link_parameters(tmp_path / "absent.toml", LIM2014_SECTION_IV)


def test_bad_json_parameter_file_is_refused(tmp_path) -> None:
    path = tmp_path / "bad.json"
    path.write_text("[1, 2]")
    with pytest.raises(ValueError, match="params"):
        load_link_parameters(path, LIM2014_SECTION_IV)


def test_basis_probability_must_lie_in_open_unit_interval() -> None:
    with pytest.raises(ValueError, match="basis_probability"):
        ProtocolSettings((0.5, 0.1), (0.5, 0.5), 1.0)


def _h(x: float) -> float:
    return -x * math.log2(x) - (1 - x) * math.log2(1 - x)

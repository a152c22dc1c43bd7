"""QL02: the shipped parameter models against the numeric optimiser on held-out links (rows drawn
with a seed not used in training; their numeric optima are stored beside this test and two are
re-derived live), the constraints of every prediction, and `qkdnode simulate --optimiser ml`."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node.cli import main
from node.ml.parameters import parameter_model
from node.ml.training.ql02_data import RANGES, link_of
from postprocessing.finitekey import optimise

HELD_OUT = json.loads((Path(__file__).with_name("ql02_heldout.json")).read_text())


@pytest.mark.parametrize("protocol", ["lim2014", "rusca2018"])
def test_predicted_settings_keep_the_numeric_key_rate(protocol: str) -> None:
    rows = HELD_OUT[protocol]["evenly_spaced"]
    model = parameter_model(protocol)
    ratios = []
    for r in rows:
        link, d, n = link_of(protocol, np.array(r["row"]))
        got = model.predict(link, d, n).point.key_rate_per_pulse
        if r["numeric_rate"] > 0:
            assert got > 0, f"a positive-rate point turned to zero: {r['row']}"
            ratios.append(got / r["numeric_rate"])
    assert np.median(ratios) >= 0.98
    assert np.percentile(ratios, 5) >= 0.95


@pytest.mark.parametrize("protocol", ["lim2014", "rusca2018"])
def test_the_lowest_rate_points_keep_a_key_and_keyless_points_stay_keyless(protocol: str) -> None:
    model = parameter_model(protocol)
    for r in HELD_OUT[protocol]["lowest_rate"]:
        link, d, n = link_of(protocol, np.array(r["row"]))
        assert model.predict(link, d, n).point.key_rate_per_pulse > 0, (
            f"a positive-rate point turned to zero: {r['row']}"
        )
    for r in HELD_OUT[protocol]["keyless"]:
        link, d, n = link_of(protocol, np.array(r["row"]))
        assert model.predict(link, d, n).point.key_rate_per_pulse == 0.0


@pytest.mark.parametrize("protocol", ["rusca2018"])
def test_stored_numeric_optima_are_what_the_optimiser_finds(protocol: str) -> None:
    for r in HELD_OUT[protocol]["evenly_spaced"][:2]:
        link, d, n = link_of(protocol, np.array(r["row"]))
        assert optimise(protocol, link, d, n).key_rate_per_pulse == pytest.approx(
            r["numeric_rate"], rel=1e-6, abs=1e-15
        )


@settings(max_examples=40, deadline=None)
@given(st.sampled_from(["lim2014", "rusca2018"]), st.lists(st.floats(0, 1), min_size=len(RANGES), max_size=len(RANGES)))
def test_every_prediction_satisfies_the_protocol_constraints(protocol: str, u: list[float]) -> None:
    lo = np.array([r[0] for r in RANGES.values()])
    hi = np.array([r[1] for r in RANGES.values()])
    link, d, n = link_of(protocol, lo + (hi - lo) * np.array(u))
    s, outside = parameter_model(protocol).settings(link, d, n)
    assert outside == ()
    mu, p = s.intensities, s.probabilities
    assert all(a > b for a, b in itertools.pairwise(mu)) and math.isclose(sum(p), 1.0) and all(x > 0 for x in p)
    assert 0 < s.basis_probability < 1
    if protocol == "lim2014":
        assert mu[0] > mu[1] + mu[2] and mu[2] == link.vacuum_intensity


def test_simulate_ml_prints_the_numeric_document(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["simulate", "--protocol", "rusca2018", "--distance", "20,80", "--block-size", "1e6", "--json"]
    assert main(args + ["--optimiser", "ml"]) == 0
    ml = json.loads(capsys.readouterr().out)
    assert main(args + ["--optimiser", "numeric"]) == 0
    num = json.loads(capsys.readouterr().out)
    assert [set(p) for p in ml["points"]] == [set(p) for p in num["points"]]
    assert [set(p["parameters"]) for p in ml["points"]] == [set(p["parameters"]) for p in num["points"]]
    for a, b in zip(ml["points"], num["points"]):
        assert a["key_rate_per_pulse"] >= 0.98 * b["key_rate_per_pulse"] > 0


def test_out_of_range_links_are_noted_not_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(["simulate", "--optimiser", "ml", "--protocol", "rusca2018", "--distance", "400", "--block-size", "1e6"])
        == 0
    )
    assert "outside the model's range (log10_transmittance)" in capsys.readouterr().err

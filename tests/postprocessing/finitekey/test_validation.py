"""Bad input is refused with a ValueError naming the parameter; the registry takes new proofs."""

from __future__ import annotations

import math

import numpy as np
import pytest

from postprocessing.finitekey import (
    DecoyStatistics,
    FiniteKeyBound,
    FiniteKeyResult,
    available_bounds,
    base,
    finite_key_length,
    get_bound,
    register_bound,
)

MU3, P3 = (0.5, 0.1, 0.0), (0.5, 0.25, 0.25)
N3 = [[400_000, 50_000, 8_000], [40_000, 5_000, 800]]
M3 = [[8_000, 4_500, 4_000], [800, 450, 400]]


def stats3(**changes) -> DecoyStatistics:
    kw = {"intensities": MU3, "probabilities": P3, "detections": N3, "errors": M3} | changes
    return DecoyStatistics(**kw)


@pytest.mark.parametrize(
    "changes,name",
    [
        ({"detections": [[400_000, -1, 8_000], [40_000, 5_000, 800]]}, "detections"),
        ({"errors": [[8_000, 4_500, -3], [800, 450, 400]]}, "errors"),
        ({"detections": [[400_000, 50_000.5, 8_000], [40_000, 5_000, 800]]}, "detections"),
        ({"errors": [[8_000, 4_500, 4_000], [800, 450.25, 400]]}, "errors"),
        ({"detections": [[400_000, 50_000, math.nan], [40_000, 5_000, 800]]}, "detections"),
        ({"detections": [[1, 2, 3]]}, "detections"),
        ({"detections": [[10, 2, 3], [1, 1, 1]]}, "errors"),  # more errors than detections
        ({"intensities": (0.1, 0.5, 0.0)}, "intensities"),
        ({"intensities": (0.5, 0.1, 0.1)}, "intensities"),
        ({"intensities": (0.5, 0.1, -0.01)}, "intensities"),
        ({"probabilities": (0.5, 0.25, 0.2)}, "probabilities"),
        ({"probabilities": (0.75, 0.25, 0.0)}, "probabilities"),
        ({"probabilities": (0.5, 0.5)}, "probabilities"),
    ],
)
def test_bad_statistics_raise_value_error_naming_the_parameter(changes: dict, name: str) -> None:
    with pytest.raises(ValueError, match=name):
        stats3(**changes)


def test_expected_statistics_may_be_fractional() -> None:
    s = DecoyStatistics(MU3, P3, np.asarray(N3) + 0.5, np.asarray(M3) + 0.25, expected=True)
    assert s.block_size == pytest.approx(458_001.5)


@pytest.mark.parametrize("eps", [0.0, 1.0, -1e-10, 2.0, math.nan, math.inf])
@pytest.mark.parametrize("name", ["eps_sec", "eps_cor"])
def test_epsilon_outside_open_unit_interval_is_refused(name: str, eps: float) -> None:
    kw = {"eps_sec": 1e-10, "eps_cor": 1e-15} | {name: eps}
    with pytest.raises(ValueError, match=name):
        finite_key_length("lim2014", stats3(), 0.0, **kw)


@pytest.mark.parametrize("leak", [-1.0, math.nan, math.inf, "x"])
def test_bad_leak_is_refused(leak) -> None:
    with pytest.raises(ValueError, match="lambda_ec"):
        finite_key_length("lim2014", stats3(), leak, 1e-15, 1e-10)


def test_lim2014_needs_signal_above_decoy_plus_vacuum() -> None:
    s = stats3(intensities=(0.3, 0.2, 0.15))  # 0.3 < 0.2 + 0.15
    with pytest.raises(ValueError, match="intensities"):
        finite_key_length("lim2014", s, 0.0, 1e-15, 1e-10)


def test_protocols_check_the_number_of_intensities() -> None:
    with pytest.raises(ValueError, match="intensities"):
        finite_key_length("rusca2018", stats3(), 0.0, 1e-15, 1e-10)
    two = DecoyStatistics((0.5, 0.1), (0.7, 0.3), [[10, 2], [1, 1]], [[0, 0], [0, 0]])
    with pytest.raises(ValueError, match="intensities"):
        finite_key_length("lim2014", two, 0.0, 1e-15, 1e-10)


def test_unknown_protocol_names_the_allowed_ones() -> None:
    with pytest.raises(ValueError, match=r"protocol.*lim2014.*rusca2018"):
        finite_key_length("gllp", stats3(), 0.0, 1e-15, 1e-10)


def test_stats_must_be_decoy_statistics() -> None:
    with pytest.raises(ValueError, match="stats"):
        get_bound("lim2014").key_length({"detections": N3}, 0.0, 1e-15, 1e-10)  # type: ignore[arg-type]


def test_a_new_proof_is_added_by_registering_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(base, "_REGISTRY", dict(base._REGISTRY))

    class Trivial(FiniteKeyBound):
        name = "test-trivial"
        n_intensities = 3

        def _key_length(self, stats, lambda_ec, eps_cor, eps_sec) -> FiniteKeyResult:
            return finite_key_length("lim2014", stats, lambda_ec, eps_cor, eps_sec)

    register_bound(Trivial())
    assert "test-trivial" in available_bounds()
    assert (
        finite_key_length("test-trivial", stats3(), 0.0, 1e-15, 1e-10).length
        == finite_key_length("lim2014", stats3(), 0.0, 1e-15, 1e-10).length
    )


def test_statistics_arrays_are_read_only() -> None:
    s = stats3()
    with pytest.raises(ValueError):
        s.detections[0, 0] = 1


def test_statistics_count_per_detection_events() -> None:
    rng = np.random.default_rng(7)
    bases = rng.integers(0, 2, 5_000)
    classes = rng.integers(0, 3, 5_000)
    errs = rng.random(5_000) < 0.1
    s = DecoyStatistics.from_events(MU3, P3, bases, classes, errs)
    for b in range(2):
        for k in range(3):
            sel = (bases == b) & (classes == k)
            assert s.detections[b, k] == sel.sum()
            assert s.errors[b, k] == (sel & errs).sum()


@pytest.mark.parametrize(
    "bases,classes,errs,name",
    [
        ([0, 2], [0, 1], [False, True], "bases"),
        ([0, 1], [0, 3], [False, True], "classes"),
        ([0, 1], [0, -1], [False, True], "classes"),
        ([0, 1], [0, 1], [0, 1], "bit_errors"),
        ([0, 1], [0], [False, True], "bases, classes, bit_errors"),
        ([0.0, 1.0], [0, 1], [False, True], "bases"),
    ],
)
def test_bad_events_are_refused(bases, classes, errs, name: str) -> None:
    with pytest.raises(ValueError, match=name):
        DecoyStatistics.from_events(MU3, P3, np.asarray(bases), np.asarray(classes), np.asarray(errs))

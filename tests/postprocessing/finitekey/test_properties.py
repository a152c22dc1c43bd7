"""Hypothesis properties of both bounds on realistic statistics: more errors, more leak, smaller
eps or fewer detections never give a longer key.

"More errors" and "fewer detections" are the perturbations under which the decoy bounds are
monotone by construction: errors added to the key basis, to any test-basis intensity but the
weakest (whose counts the decoy method subtracts: a surplus there lowers the single-photon error
bound), or to every class in proportion; and a smaller block with the same rates (every count and
the leak divided by the same integer). Adding detections to one intensity class alone is not
monotone in the papers' bounds (e.g. fewer signal detections raise s_1 of Eq. (3)), so it is not
claimed here.
"""

from __future__ import annotations

import numpy as np
from hypothesis import assume, given
from hypothesis import strategies as st

from postprocessing.finitekey import (
    LIM2014_SECTION_IV,
    RUSCA2018_SETUP,
    DecoyStatistics,
    ProtocolSettings,
    expected_block,
    finite_key_length,
)


@st.composite
def observed_block(draw: st.DrawFn) -> tuple[str, DecoyStatistics, float, float, float]:
    """(protocol, integer statistics of a plausible link, lambda_EC, eps_cor, eps_sec)."""
    protocol = draw(st.sampled_from(["lim2014", "rusca2018"]))
    distance = draw(st.floats(0.0, 200.0))
    block = 10 ** draw(st.floats(4.0, 9.0))
    q = draw(st.floats(0.3, 0.95))
    mu1 = draw(st.floats(0.2, 0.8))
    mu2 = draw(st.floats(0.02, 0.9)) * mu1
    p1 = draw(st.floats(0.05, 0.9))
    if protocol == "lim2014":
        mu3 = draw(st.sampled_from([0.0, 2e-4]))
        assume(mu2 > mu3 + 1e-3 and mu1 > mu2 + mu3)
        p2 = draw(st.floats(0.05, 0.9)) * (1 - p1)
        settings = ProtocolSettings((mu1, mu2, mu3), (p1, p2, 1 - p1 - p2), q)
        link = LIM2014_SECTION_IV
    else:
        settings = ProtocolSettings((mu1, mu2), (p1, 1 - p1), q)
        link = RUSCA2018_SETUP
    b = expected_block(link, settings, distance, block)
    stats = DecoyStatistics(
        settings.intensities,
        settings.probabilities,
        np.round(b.stats.detections),
        np.minimum(np.round(b.stats.errors), np.round(b.stats.detections)),
    )
    leak = b.lambda_ec * draw(st.floats(0.5, 1.5))
    eps_cor = 10 ** draw(st.floats(-20.0, -3.0))
    eps_sec = 10 ** draw(st.floats(-20.0, -3.0))
    return protocol, stats, leak, eps_cor, eps_sec


def length(protocol: str, stats: DecoyStatistics, leak: float, eps_cor: float, eps_sec: float) -> int:
    return finite_key_length(protocol, stats, leak, eps_cor, eps_sec).length


def with_errors(stats: DecoyStatistics, errors: np.ndarray) -> DecoyStatistics:
    return DecoyStatistics(stats.intensities, stats.probabilities, stats.detections, errors)


@given(observed_block(), st.floats(0.0, 1e9))
def test_more_leak_never_gives_a_longer_key(block, extra: float) -> None:
    protocol, stats, leak, eps_cor, eps_sec = block
    assert length(protocol, stats, leak + extra, eps_cor, eps_sec) <= length(protocol, stats, leak, eps_cor, eps_sec)


@given(observed_block(), st.floats(1e-6, 1.0), st.sampled_from(["eps_sec", "eps_cor"]))
def test_smaller_epsilon_never_gives_a_longer_key(block, factor: float, which: str) -> None:
    protocol, stats, leak, eps_cor, eps_sec = block
    smaller = (eps_cor * factor, eps_sec) if which == "eps_cor" else (eps_cor, eps_sec * factor)
    assert length(protocol, stats, leak, *smaller) <= length(protocol, stats, leak, eps_cor, eps_sec)


@given(observed_block(), st.data())
def test_more_errors_never_give_a_longer_key(block, data: st.DataObject) -> None:
    protocol, stats, leak, eps_cor, eps_sec = block
    k = stats.n_classes
    basis = data.draw(st.sampled_from([0, 1]))
    klass = data.draw(st.integers(0, k - 1 if basis == 0 else k - 2))  # never the weakest test class
    room = int(stats.detections[basis, klass] - stats.errors[basis, klass])
    assume(room > 0)
    errors = stats.errors.copy()
    errors[basis, klass] += data.draw(st.integers(1, room))
    more = with_errors(stats, errors)
    assert length(protocol, more, leak, eps_cor, eps_sec) <= length(protocol, stats, leak, eps_cor, eps_sec)


@given(observed_block(), st.integers(2, 5))
def test_proportionally_more_errors_never_give_a_longer_key(block, factor: int) -> None:
    protocol, stats, leak, eps_cor, eps_sec = block
    errors = stats.errors * factor
    assume(np.all(errors <= stats.detections))
    more = with_errors(stats, errors)
    assert length(protocol, more, leak, eps_cor, eps_sec) <= length(protocol, stats, leak, eps_cor, eps_sec)


@given(observed_block(), st.integers(2, 10))
def test_fewer_detections_never_give_a_longer_key(block, factor: int) -> None:
    """The same link observed for 1/factor of the time: every count and the leak divided by factor."""
    protocol, stats, leak, eps_cor, eps_sec = block
    bigger = DecoyStatistics(stats.intensities, stats.probabilities, stats.detections * factor, stats.errors * factor)
    assert length(protocol, stats, leak, eps_cor, eps_sec) <= length(protocol, bigger, leak * factor, eps_cor, eps_sec)

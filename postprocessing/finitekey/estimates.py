"""The statistical pieces every decoy-state bound is built from: photon-number probabilities,
Hoeffding deviations, the random-sampling deviation of the phase error and the binary entropy."""

from __future__ import annotations

import math
from collections.abc import Sequence


def photon_number_probability(n: int, intensities: Sequence[float], probabilities: Sequence[float]) -> float:
    """tau_n = sum_k p_k e^{-k} k^n / n!: the probability that Alice emits an n-photon pulse
    (Lim et al. 2014, definition under Eq. (2); Rusca et al. 2018, Eq. (A5))."""
    return sum(p * math.exp(-k) * k**n for k, p in zip(intensities, probabilities)) / math.factorial(n)


def hoeffding_deviation(count: float, eps: float) -> float:
    """delta(n, eps) = sqrt(n/2 ln(1/eps)): how far a count attributed to one intensity may lie from
    its expectation, except with probability 2 eps (Lim et al. 2014, Eq. (A1))."""
    return math.sqrt(max(count, 0.0) / 2.0 * math.log(1.0 / eps))


def sampling_deviation(eps: float, rate: float, n_test: float, n_key: float) -> float:
    """gamma(a, b, c, d) of Lim et al. 2014, Eq. (B2), with a = eps (the failure probability of this
    one estimate), b = the test-basis single-photon error rate, c, d = the single-photon counts of the
    two bases: how much larger the key basis's phase-error rate can be than the test basis's error
    rate when both are random samples of the same single-photon events (Fung et al. 2010).

    The main-text form gamma(eps_sec, ...) with 21^2/eps_sec^2 (Lim Eq. (5)) is this function with
    eps = eps_sec/21. Returns 0 where the rate is 0 (the limit b -> 0) and infinity where a count is
    not positive (no information).
    """
    if n_test <= 0.0 or n_key <= 0.0:
        return math.inf
    if rate <= 0.0:
        return 0.0
    if rate >= 1.0:
        return math.inf
    spread = (n_test + n_key) * (1.0 - rate) * rate / (n_test * n_key * math.log(2.0))
    argument = (n_test + n_key) / (n_test * n_key * (1.0 - rate) * rate) / eps**2
    if argument <= 1.0 or spread == 0.0 or argument == math.inf:  # b underflows: the limit b -> 0
        return 0.0
    return math.sqrt(spread * math.log2(argument))


def lower_bound(value: float) -> float:
    """A lower bound on a count as a plain float: never below 0 (a count is not negative), and 0
    when the arithmetic broke down (degenerate intensities or probabilities overflow to inf/nan)."""
    value = float(value)
    return value if value > 0.0 and math.isfinite(value) else 0.0


def upper_bound(value: float) -> float:
    """An upper bound on a count as a plain float: never below 0, infinity when not finite."""
    value = float(value)
    if math.isnan(value) or value == math.inf:
        return math.inf
    return max(value, 0.0)


def binary_entropy(x: float) -> float:
    """h(x) = -x log2 x - (1-x) log2(1-x) on [0, 1/2], and 1 above 1/2: a phase-error bound of 1/2
    or more leaves the single-photon events no secrecy."""
    if x <= 0.0:
        return 0.0
    if x >= 0.5:
        return 1.0
    return -x * math.log2(x) - (1.0 - x) * math.log2(1.0 - x)


def sampling_tail_bound(eps: float, rate: float, n_test: float, n_key: float) -> float:
    """Upper bound on the key basis's phase-error rate from the test basis's error rate `rate`,
    valid for every rate including 0 (no observed error is not no phase error).

    The test events are a random sample of size c = n_test, without replacement, of the c + d
    single-photon events (the basis is chosen independently of the photon number); sampling without
    replacement obeys the binomial Chernoff bound (Hoeffding 1963, Theorem 4), so for a population
    error fraction lam > rate, P(sample fraction <= rate) <= exp(-c D(rate || lam)), D the binary
    relative entropy. Inverting it (the Clopper-Pearson construction, monotone in the observed
    rate, so valid for the observed value) gives lam* with c D(rate || lam*) = ln(1/eps), and the
    key's share of the errors is at most (lam* (c + d) - rate c) / d. At rate 0, lam* = 1 - eps^(1/c)
    ~ ln(1/eps) / c and the bound is lam* (1 + c/d): the zero-error case of the random-sampling
    argument Tomamichel et al. (Nat. Commun. 3, 634, 2012) bound with Serfling's inequality,
    tighter there because it keeps the rate dependence of the relative entropy. Returns infinity where a count is not
    positive (no information)."""
    if n_test <= 0.0 or n_key <= 0.0:
        return math.inf
    rate = min(max(rate, 0.0), 1.0)
    if rate >= 1.0:
        return math.inf
    target = math.log(1.0 / eps) / n_test
    if rate == 0.0:
        lam = -math.expm1(-target)  # D(0 || lam) = -ln(1 - lam)
    else:
        lo, hi = rate, 1.0
        for _ in range(100):  # bisection: D(rate || lam) grows with lam above rate
            lam = 0.5 * (lo + hi)
            d = rate * math.log(rate / lam) + (1.0 - rate) * math.log((1.0 - rate) / (1.0 - lam))
            if d < target:
                lo = lam
            else:
                hi = lam
            if hi - lo <= 1e-15 * hi:
                break
        lam = hi
    return (lam * (n_test + n_key) - rate * n_test) / n_key


def phase_error_bound(
    eps: float, errors_test: float, singles_test: float, singles_key: float
) -> tuple[float, float, float]:
    """Upper bound on the key basis's single-photon phase-error rate from the test basis's
    single-photon errors: returns (v/s, gamma, v/s + gamma).

    gamma is the larger of two bounds on the same random-sampling deviation, each failing with
    probability at most `eps`: Lim et al. 2014 Eq. (5) / (B2) (Rusca et al. 2018 (A23)), as the
    papers print it, and the Chernoff tail of `sampling_tail_bound`. Lim's gamma is an
    approximation that vanishes as v/s -> 0 (it is 0 at zero observed errors, and too small for a
    handful of errors); the tail bound is exact in the small-error regime and looser than Lim's
    only where Lim's is the larger anyway, so the maximum keeps the published figures wherever
    they hold and never gives phi = 0. With no single-photon events in the test basis nothing is
    known and the bound is infinite (h = 1)."""
    if singles_test <= 0.0 or singles_key <= 0.0:
        return 0.5, math.inf, math.inf
    rate = min(max(errors_test, 0.0) / singles_test, 1.0)
    lim = sampling_deviation(eps, rate, singles_test, singles_key)
    tail = sampling_tail_bound(eps, rate, singles_test, singles_key) - rate
    gamma = max(lim, tail)
    return rate, gamma, rate + gamma

"""Two-decoy (three-intensity) BB84: Lim, Curty, Walenta, Xu, Zbinden, "Concise security bounds for
practical decoy-state quantum key distribution", PRA 89, 022307 (2014), arXiv:1311.7129.

Equation numbers are the paper's. The paper extracts key from its X basis and estimates phase
errors from Z; here the key basis is Z and the test basis X (DESIGN.md), so the paper's X is our Z.
"""

from __future__ import annotations

import math

import numpy as np

from postprocessing.finitekey.base import (
    KEY_BASIS,
    TEST_BASIS,
    DecoyStatistics,
    FiniteKeyBound,
    FiniteKeyResult,
    register_bound,
)
from postprocessing.finitekey.estimates import (
    hoeffding_deviation,
    lower_bound,
    photon_number_probability,
    upper_bound,
)


class Lim2014(FiniteKeyBound):
    """Lim et al. 2014: intensities mu1 > mu2 + mu3, mu2 > mu3 >= 0; eps_sec = 21 eps (Eq. (B4))."""

    name = "lim2014"
    reference = "Lim, Curty, Walenta, Xu, Zbinden, PRA 89, 022307 (2014), arXiv:1311.7129"
    n_intensities = 3
    proof_terms = 21

    def check_intensities(self, intensities: np.ndarray) -> None:
        super().check_intensities(intensities)
        mu1, mu2, mu3 = (float(x) for x in intensities)
        if not (mu1 > mu2 + mu3 and mu2 > mu3 >= 0.0):
            raise ValueError(
                "intensities: lim2014 needs mu1 > mu2 + mu3 and mu2 > mu3 >= 0 (signal, decoy, vacuum-like decoy), "
                f"got {mu1!r}, {mu2!r}, {mu3!r}"
            )

    def _key_length(self, stats: DecoyStatistics, lambda_ec: float, eps_cor: float, eps_sec: float) -> FiniteKeyResult:
        mu = [float(x) for x in stats.intensities]
        p = [float(x) for x in stats.probabilities]
        n_all, m_all = stats.detections.tolist(), stats.errors.tolist()  # plain floats: scalar maths is faster
        eps = eps_sec / self.proof_terms
        tau0 = photon_number_probability(0, mu, p)
        tau1 = photon_number_probability(1, mu, p)

        vac_key, single_key, d_key = _vacuum_and_single(n_all[KEY_BASIS], mu, p, tau0, tau1, eps)
        vac_test, single_test, d_test = _vacuum_and_single(n_all[TEST_BASIS], mu, p, tau0, tau1, eps)

        # Eq. (4), for the test basis: v_1 <= tau1 (m+_{mu2} - m-_{mu3}) / (mu2 - mu3), with
        # m+-_k = e^k/p_k (m_k +- sqrt(m/2 ln(21/eps_sec))), m = errors of the basis over all k.
        m = m_all[TEST_BASIS]
        d_err = hoeffding_deviation(float(sum(m)), eps)
        m_plus_2 = math.exp(mu[1]) / p[1] * (m[1] + d_err)
        m_minus_3 = math.exp(mu[2]) / p[2] * (m[2] - d_err)
        errors_test = upper_bound(tau1 * (m_plus_2 - m_minus_3) / (mu[1] - mu[2]))

        # Eq. (5) (phi <= v/s + gamma(eps_sec, v/s, s_test, s_key), gamma with 21^2/eps_sec^2 = 1/eps^2) and
        # Eq. (1): l = floor(s0 + s1 - s1 h(phi) - lambda_EC - 6 log2(21/eps_sec) - log2(2/eps_cor)).
        key_bounds, test_bounds = (vac_key, single_key), (vac_test, single_test, errors_test)
        deviations = {"detections": d_key, "detections_test": d_test, "errors_test": d_err}
        return self._assemble(stats, lambda_ec, eps_cor, eps_sec, eps, key_bounds, test_bounds, deviations=deviations)


def _vacuum_and_single(
    n: list[float], mu: list[float], p: list[float], tau0: float, tau1: float, eps: float
) -> tuple[float, float, float]:
    """Eqs. (2) and (3) for one basis: lower bounds on the vacuum and single-photon detections, and
    the Hoeffding deviation delta(n_basis, eps_sec/21) used."""
    mu1, mu2, mu3 = mu
    d = hoeffding_deviation(float(sum(n)), eps)
    # n+-_k = e^k / p_k (n_k +- sqrt(n/2 ln(21/eps_sec)))  (definition under Eq. (2))
    plus = [math.exp(k) / pk * (nk + d) for k, pk, nk in zip(mu, p, n)]
    minus = [math.exp(k) / pk * (nk - d) for k, pk, nk in zip(mu, p, n)]
    # Eq. (2): s0 >= tau0 (mu2 n-_{mu3} - mu3 n+_{mu2}) / (mu2 - mu3); a count is never negative.
    vacuum = lower_bound(tau0 * (mu2 * minus[2] - mu3 * plus[1]) / (mu2 - mu3))
    # Eq. (3): s1 >= tau1 mu1 [n-_{mu2} - n+_{mu3} - (mu2^2 - mu3^2)/mu1^2 (n+_{mu1} - s0/tau0)]
    #                 / (mu1 (mu2 - mu3) - mu2^2 + mu3^2);
    # the denominator equals (mu2 - mu3)(mu1 - mu2 - mu3) > 0, computed in that form for accuracy.
    numerator = minus[1] - plus[2] - (mu2**2 - mu3**2) / mu1**2 * (plus[0] - vacuum / tau0)
    single = lower_bound(tau1 * mu1 * numerator / ((mu2 - mu3) * (mu1 - mu2 - mu3)))
    return vacuum, single, d


LIM2014 = register_bound(Lim2014())

"""One-decoy (two-intensity) BB84: Rusca, Boaron, Gruenenfelder, Martin, Zbinden, "Finite-key
analysis for the 1-decoy state QKD protocol", APL 112, 171104 (2018), arXiv:1801.03443.

Equation numbers are those of the paper's appendix A. The paper uses Z as the key basis, as we do.
Two transcription points, both settled by the paper's own derivation:
- n+-_{Z,k} carry the factor e^k / p_k as in Lim et al. (the derivation (A6)-(A10) needs it);
- every estimate fails with the same probability eps = eps_sec / 19, the composition (A24) with all
  error terms equal: the Hoeffding deviations use ln(19/eps_sec), gamma uses 19^2/eps_sec^2.
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


class Rusca2018(FiniteKeyBound):
    """Rusca et al. 2018: intensities mu1 > mu2 > 0, no vacuum decoy; eps_sec = 19 eps (Eq. (A24))."""

    name = "rusca2018"
    reference = "Rusca, Boaron, Gruenenfelder, Martin, Zbinden, APL 112, 171104 (2018), arXiv:1801.03443"
    n_intensities = 2
    proof_terms = 19

    def check_intensities(self, intensities: np.ndarray) -> None:
        super().check_intensities(intensities)
        mu1, mu2 = (float(x) for x in intensities)
        if not mu1 > mu2 > 0.0:
            raise ValueError(f"intensities: rusca2018 needs mu1 > mu2 > 0 (signal, decoy), got {mu1!r}, {mu2!r}")

    def _key_length(self, stats: DecoyStatistics, lambda_ec: float, eps_cor: float, eps_sec: float) -> FiniteKeyResult:
        mu = [float(x) for x in stats.intensities]
        p = [float(x) for x in stats.probabilities]
        n_all, m_all = stats.detections.tolist(), stats.errors.tolist()  # plain floats: scalar maths is faster
        eps = eps_sec / self.proof_terms
        tau0 = photon_number_probability(0, mu, p)
        tau1 = photon_number_probability(1, mu, p)

        key = _basis_bounds(n_all[KEY_BASIS], m_all[KEY_BASIS], mu, p, tau0, tau1, eps)
        test = _basis_bounds(n_all[TEST_BASIS], m_all[TEST_BASIS], mu, p, tau0, tau1, eps)
        vac_key, vac_up_key, single_key, d_key, d_err_key = key
        vac_test, vac_up_test, single_test, d_test, d_err_test = test

        # (A22): v_{X,1} <= tau1 / (mu1 - mu2) (m+_{X,mu1} - m-_{X,mu2}).
        m = m_all[TEST_BASIS]
        m_plus_1 = math.exp(mu[0]) / p[0] * (m[0] + d_err_test)
        m_minus_2 = math.exp(mu[1]) / p[1] * (m[1] - d_err_test)
        errors_test = upper_bound(tau1 * (m_plus_1 - m_minus_2) / (mu[0] - mu[1]))

        # (A20), (A21), (A23) (phi_Z <= v/s + gamma(eps, v/s, s_{Z,1}, s_{X,1})) and
        # (A25): l = s^l_{Z,0} + s^l_{Z,1} (1 - h(phi)) - lambda_EC - 6 log2(19/eps_sec) - log2(2/eps_cor).
        key_bounds, test_bounds = (vac_key, single_key), (vac_test, single_test, errors_test)
        deviations = {"detections": d_key, "errors": d_err_key, "detections_test": d_test, "errors_test": d_err_test}
        return self._assemble(
            stats,
            lambda_ec,
            eps_cor,
            eps_sec,
            eps,
            key_bounds,
            test_bounds,
            vacuum_upper=vac_up_key,
            vacuum_upper_test=vac_up_test,
            deviations=deviations,
        )


def _basis_bounds(
    n: list[float], m: list[float], mu: list[float], p: list[float], tau0: float, tau1: float, eps: float
) -> tuple[float, float, float, float, float]:
    """For one basis: (s^l_0, s^u_0, s^l_1, delta(n, eps), delta(m, eps))."""
    mu1, mu2 = mu
    w1, w2 = math.exp(mu1) / p[0], math.exp(mu2) / p[1]
    d = hoeffding_deviation(float(sum(n)), eps)  # (A2)
    d_err = hoeffding_deviation(float(sum(m)), eps)  # (A4)
    # (A16) with k = mu2, the decoy (its errors hold the smallest multi-photon share):
    # s_0 <= 2 [tau0 e^{mu2}/p_{mu2} (m_{mu2} + delta(m, eps)) + delta(n, eps)].
    vacuum_upper = upper_bound(2.0 * (tau0 * w2 * (m[1] + d_err) + d))
    # (A19): s_0 >= tau0 / (mu1 - mu2) (mu1 n-_{mu2} - mu2 n+_{mu1}); a count is never negative.
    n_minus_2 = w2 * (n[1] - d)
    n_plus_1 = w1 * (n[0] + d)
    vacuum = lower_bound(tau0 / (mu1 - mu2) * (mu1 * n_minus_2 - mu2 * n_plus_1))
    # (A17): s_1 >= tau1 mu1 / (mu2 (mu1 - mu2)) [n-_{mu2} - mu2^2/mu1^2 n+_{mu1}
    #                                            - (mu1^2 - mu2^2)/mu1^2 s^u_0 / tau0].
    bracket = n_minus_2 - mu2**2 / mu1**2 * n_plus_1 - (mu1**2 - mu2**2) / mu1**2 * vacuum_upper / tau0
    single = lower_bound(tau1 * mu1 / (mu2 * (mu1 - mu2)) * bracket)
    return vacuum, vacuum_upper, single, d, d_err


RUSCA2018 = register_bound(Rusca2018())

"""Slow, obviously-correct re-derivations of the finite-key bounds for the tests, written from the
papers' appendix forms (Lim et al. 2014, Eqs. (A4)-(A6), (B2), (B3); Rusca et al. 2018, (A10),
(A16)-(A25)) rather than the main-text forms the package implements, so a transcription error in
either shows up as a disagreement."""

from __future__ import annotations

import math


def h(x: float) -> float:
    if x <= 0:
        return 0.0
    if x >= 0.5:
        return 1.0
    return -x * math.log2(x) - (1 - x) * math.log2(1 - x)


def tau(n: int, mu: list[float], p: list[float]) -> float:
    total = 0.0
    for k, pk in zip(mu, p):
        total += pk * math.exp(-k) * k**n / math.factorial(n)
    return total


def delta(n: float, eps: float) -> float:
    return math.sqrt(n / 2 * math.log(1 / eps))


def gamma(a: float, b: float, c: float, d: float) -> float:
    """Lim Eq. (B2): a is the failure probability of this estimate."""
    if b <= 0:
        return 0.0
    if b >= 1:
        return math.inf
    return math.sqrt((c + d) * (1 - b) * b / (c * d * math.log(2)) * math.log2((c + d) / (c * d * (1 - b) * b) / a**2))


def lim2014_length(n, m, mu, p, lambda_ec, eps_cor, eps_sec):
    """n[b][k], m[b][k]: detections / errors, b = 0 key, 1 test. Returns (l, s0, s1, v1, phi)."""
    eps = eps_sec / 21
    mu1, mu2, mu3 = mu
    t0, t1 = tau(0, mu, p), tau(1, mu, p)

    def singles(counts):
        dn = delta(sum(counts), eps)
        # asymptotic-count stand-ins of Eqs. (A7), (A8), weighted as in (A4), (A5)
        up = [c + dn for c in counts]
        lo = [c - dn for c in counts]
        s0 = t0 / (mu2 - mu3) * (mu2 * math.exp(mu3) * lo[2] / p[2] - mu3 * math.exp(mu2) * up[1] / p[1])  # (A4)
        s0 = max(s0, 0.0)
        s1 = (
            mu1
            * t1
            / (mu1 * (mu2 - mu3) - (mu2**2 - mu3**2))
            * (
                math.exp(mu2) * lo[1] / p[1]
                - math.exp(mu3) * up[2] / p[2]
                + (mu2**2 - mu3**2) / mu1**2 * (s0 / t0 - math.exp(mu1) * up[0] / p[0])
            )
        )  # (A5)
        return s0, max(s1, 0.0)

    s0_key, s1_key = singles(n[0])
    _, s1_test = singles(n[1])
    dm = delta(sum(m[1]), eps)
    v1 = t1 / (mu2 - mu3) * (math.exp(mu2) * (m[1][1] + dm) / p[1] - math.exp(mu3) * (m[1][2] - dm) / p[2])  # (A6)
    v1 = max(v1, 0.0)
    if s1_test <= 0 or s1_key <= 0:
        phi = math.inf  # nothing is known about the phase errors
    else:
        b = min(v1 / s1_test, 1.0)
        phi = b + gamma(eps, b, s1_test, s1_key)  # (B2) with alpha_1 = eps
    ell = s0_key + s1_key * (1 - h(phi)) - lambda_ec - 6 * math.log2(21 / eps_sec) - math.log2(2 / eps_cor)  # (1)
    return max(math.floor(ell), 0), s0_key, s1_key, v1, phi


def rusca2018_length(n, m, mu, p, lambda_ec, eps_cor, eps_sec):
    """As `lim2014_length` for the one-decoy bound. Returns (l, s0_lower, s0_upper, s1, v1, phi)."""
    eps = eps_sec / 19
    mu1, mu2 = mu
    t0, t1 = tau(0, mu, p), tau(1, mu, p)

    def bounds(counts, errs):
        dn, dm = delta(sum(counts), eps), delta(sum(errs), eps)
        s0u = 2 * (t0 * math.exp(mu2) / p[1] * (errs[1] + dm) + dn)  # (A16), k = mu2
        n2 = math.exp(mu2) / p[1] * (counts[1] - dn)
        n1 = math.exp(mu1) / p[0] * (counts[0] + dn)
        s0l = max(t0 / (mu1 - mu2) * (mu1 * n2 - mu2 * n1), 0.0)  # (A19)
        s1 = (
            t1 * mu1 / (mu2 * (mu1 - mu2)) * (n2 - (mu2 / mu1) ** 2 * n1 - (mu1**2 - mu2**2) / mu1**2 * s0u / t0)
        )  # (A17)
        return s0l, s0u, max(s1, 0.0)

    s0l, s0u, s1_key = bounds(n[0], m[0])
    _, _, s1_test = bounds(n[1], m[1])
    dm = delta(sum(m[1]), eps)
    v1 = max(
        t1 / (mu1 - mu2) * (math.exp(mu1) / p[0] * (m[1][0] + dm) - math.exp(mu2) / p[1] * (m[1][1] - dm)), 0.0
    )  # (A22)
    if s1_test <= 0 or s1_key <= 0:
        phi = math.inf
    else:
        b = min(v1 / s1_test, 1.0)
        phi = b + gamma(eps, b, s1_test, s1_key)  # (A23)
    ell = s0l + s1_key * (1 - h(phi)) - lambda_ec - 6 * math.log2(19 / eps_sec) - math.log2(2 / eps_cor)  # (A25)
    return max(math.floor(ell), 0), s0l, s0u, s1_key, v1, phi

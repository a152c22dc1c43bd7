"""The analytic model of the mock link: expected detection probability and QBER per intensity
class and basis, to hold the Monte-Carlo to in tests.

Per slot of class k with (after Eve) state (a, x), detector j registers a photon with the
Poisson probability `1 - exp(-lam[k, a, x, j] * g_j)`, where `g_j` is the chance that its
Gaussian jitter (truncated at 8 sigma) keeps the click inside the gate, and a dark count with
`1 - exp(-dark_j * gate)`; the four detectors are independent. The 16 click patterns are then
squashed as `postprocessing.slotting.resolve_clicks` does. Exact for zero dead time and zero
afterpulsing (which couple slots); with them on it is the low-rate limit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from drivers.mock.detectors import N_DETECTORS
from drivers.mock.params import JITTER_TRUNCATION, LinkParams


@dataclass(frozen=True)
class AnalyticModel:
    """Expected statistics per slot. Indices: k intensity class, a Alice's basis, x Alice's bit,
    b Bob's measured basis, y Bob's bit.

    `outcome[k, a, x, b, y]`: P(detection with result (b, y) | k, a, x), Eve included.
    `p_detect[k, a]`: P(any detection | k, a). `p_measured[k, a, b]`: P(detection in basis b | k, a).
    `p_error[k, b]`: P(detection in basis b with a wrong bit | k, Alice's basis b).
    `qber[k, b]`: the sifted error rate of class k in basis b.
    `p_double[k, a]`, `p_cross[k, a]`: P(multi-click squashed to a random bit | k, a), resp. to a
    random basis and bit.
    """

    click: NDArray[np.float64]  # [k, a, x, j]
    outcome: NDArray[np.float64]
    p_detect: NDArray[np.float64]
    p_measured: NDArray[np.float64]
    p_error: NDArray[np.float64]
    qber: NDArray[np.float64]
    p_double: NDArray[np.float64]  # [k, a]: both detectors of one basis fired, none of the other
    p_cross: NDArray[np.float64]  # [k, a]: detectors of both bases fired
    class_probabilities: tuple[float, ...]
    p_z: float

    def slot_fraction(self, k: int, a: int) -> float:
        """Probability that a slot is of class k and Alice's basis a."""
        return self.class_probabilities[k] * (self.p_z if a == 0 else 1.0 - self.p_z)


def gate_acceptance(jitter_ps: float, gate_ps: float | None) -> float:
    """Probability that a click's truncated-Gaussian jitter stays within a centred gate."""
    if gate_ps is None or jitter_ps == 0.0:
        return 1.0
    h = 0.5 * gate_ps / jitter_ps
    if h >= JITTER_TRUNCATION:
        return 1.0
    return math.erf(h / math.sqrt(2.0)) / math.erf(JITTER_TRUNCATION / math.sqrt(2.0))


def multi_clicks(click: NDArray[np.float64]) -> tuple[float, float]:
    """(P(double click within one basis only), P(clicks in both bases)) from the four click probabilities."""
    q = 1.0 - click
    z_double = click[0] * click[1]
    x_double = click[2] * click[3]
    z_none, x_none = q[0] * q[1], q[2] * q[3]
    cross = (1.0 - z_none) * (1.0 - x_none)
    return float(z_double * x_none + x_double * z_none), float(cross)


def squash(click: NDArray[np.float64]) -> NDArray[np.float64]:
    """Outcome distribution `[b, y]` of one slot from the four independent click probabilities."""
    out = np.zeros((2, 2))
    for mask in range(1, 16):
        p = 1.0
        for j in range(N_DETECTORS):
            p *= click[j] if mask >> j & 1 else 1.0 - click[j]
        z, x = mask & 3, mask >> 2
        if z and x:
            out += 0.25 * p
            continue
        b, bits = (0, z) if z else (1, x)
        if bits == 3:
            out[b] += 0.5 * p
        else:
            out[b, bits - 1] += p
    return out


def expected_statistics(params: LinkParams, gate_ps: float | None = None) -> AnalyticModel:
    """The analytic model of `params`, for detections slotted with a gate of `gate_ps` centred on
    each channel's delay (None: no gate, and no dark counts either)."""
    if gate_ps is not None and not 0 < gate_ps <= params.period_ps:
        raise ValueError(f"gate_ps must be in (0, period {params.period_ps:.1f} ps] or None, got {gate_ps}")
    lam = params.mean_photons_detected()
    g = np.array([gate_acceptance(params.jitter_ps[j], gate_ps) for j in range(N_DETECTORS)])
    if gate_ps is None:
        dark = np.zeros(N_DETECTORS)
    else:
        dark = -np.expm1(-np.asarray(params.dark_count_hz) * gate_ps * 1e-12)
    click = 1.0 - np.exp(-lam * g) * (1.0 - dark)
    n_k = len(params.intensities)
    bare = np.zeros((n_k, 2, 2, 2, 2))
    multi = np.zeros((n_k, 2, 2, 2))  # [k, a, x, double/cross]
    for k in range(n_k):
        for a in range(2):
            for x in range(2):
                bare[k, a, x] = squash(click[k, a, x])
                multi[k, a, x] = multi_clicks(click[k, a, x])
    f = params.eve_fraction
    outcome = (1.0 - f) * bare.copy()
    multi_eve = (1.0 - f) * multi.copy()
    if f > 0:
        for a in range(2):
            for x in range(2):
                # Eve picks her basis at random; in the other basis her result is a random bit
                outcome[:, a, x] += f * (0.5 * bare[:, a, x] + 0.25 * bare[:, 1 - a, 0] + 0.25 * bare[:, 1 - a, 1])
                multi_eve[:, a, x] += f * (0.5 * multi[:, a, x] + 0.25 * multi[:, 1 - a, 0] + 0.25 * multi[:, 1 - a, 1])
    p_double = 0.5 * multi_eve[..., 0].sum(axis=2)
    p_cross = 0.5 * multi_eve[..., 1].sum(axis=2)
    p_measured = 0.5 * outcome.sum(axis=4).sum(axis=2)  # [k, a, b]
    p_detect = p_measured.sum(axis=2)
    p_error = np.zeros((n_k, 2))
    for b in range(2):
        p_error[:, b] = 0.5 * (outcome[:, b, 0, b, 1] + outcome[:, b, 1, b, 0])
    diag = np.stack([p_measured[:, 0, 0], p_measured[:, 1, 1]], axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        qber = np.where(diag > 0, p_error / np.where(diag > 0, diag, 1.0), np.nan)
    return AnalyticModel(
        click, outcome, p_detect, p_measured, p_error, qber, p_double, p_cross, params.class_probabilities, params.p_z
    )

"""Eavesdroppers of the mock link.

Intercept-resend on a given fraction of slots (`resend_state`, in the photon kernel): on an
attacked slot Eve measures Alice's pulse in a random basis with an ideal detector and re-prepares
a pulse of the same mean photon number in her basis and result (she cannot tell the intensity
class, so she leaves it). Detection rates are unchanged; in the sifted key half of the attacked
slots carry a random bit, so a full attack adds 25 % QBER. Which slots, Eve's basis and her
random result come from `hash64(eve_key, slot)`.

Detector blinding and photon-number splitting (`blinding_model`, `pns_model`) replace the photon
model of the attacked slots (see below); `drivers.mock.onset` switches them on in a running link.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from drivers.jit import kernel
from drivers.mock.counter import hash64, unit
from drivers.mock.detectors import routing

_ONE = np.uint64(1)


@kernel
def resend_state(
    eve_key: np.uint64, slot: np.int64, fraction: float, basis: np.int64, bit: np.int64
) -> tuple[np.int64, np.int64]:
    """The (basis, bit) that leaves Eve for this slot: Alice's own when the slot is not attacked."""
    if fraction <= 0.0:
        return basis, bit
    h = hash64(eve_key, np.uint64(slot))
    if unit(h) >= fraction:
        return basis, bit
    eve_basis = np.int64(h & _ONE)
    if eve_basis == basis:
        return basis, bit
    return eve_basis, np.int64((h >> _ONE) & _ONE)


# --- Attacks that change the click process (detector blinding, photon-number splitting) --------
#
# On an attacked slot Bob's detectors see Eve's light instead of Alice's. The Monte-Carlo link
# draws a slot's detections from a per-(class, state, detector) table of mean detected photons;
# these attacks act on a random fraction of slots, independent of Alice's basis and bit, which is
# the same as splitting each intensity class k into "virtual classes" (k not attacked, k attacked
# in one of Eve's ways) of probabilities p_k (1 - f), p_k f w, nested inside class k's range of
# Alice's class uniform, so a slot's virtual class always lies within Alice's true class.

PNS_MAX_PHOTONS = 64  # photon numbers summed over for the forwarded-pulse click probability


@dataclass(frozen=True)
class AttackedPhotonModel:
    """Per-slot photon model of a link under a click-process attack: virtual class v (of
    probability `probabilities[v]`, Alice's class `parent[v]`) has mean detected photons
    `lam[v, a, x, j]`."""

    probabilities: tuple[float, ...]
    parent: tuple[int, ...]
    lam: NDArray[np.float64]


def _normal_click(params: Any) -> float:
    """Bob's click probability for a signal-class pulse on the normal link (Eve's target rate)."""
    lam = params.mean_photons_detected()
    return float(-np.expm1(-lam[0].sum(axis=2)).mean())


def pns_click_probability(mu: float, q: float) -> float:
    """P(Bob detects | photon-number splitting): Eve blocks pulses of 0 or 1 photon, keeps one
    photon of each multi-photon pulse, and forwards the other n - 1, each detected with probability
    `q` (her transmittance times Bob's routing and efficiency)."""
    if mu <= 0 or q <= 0:
        return 0.0
    n = np.arange(2, PNS_MAX_PHOTONS + 1, dtype=np.float64)
    p_n = np.exp(-mu + n * math.log(mu) - np.array([math.lgamma(v + 1.0) for v in n]))
    return float((p_n * -np.expm1((n - 1.0) * math.log1p(-min(q, 1.0 - 1e-15)))).sum())


def _bob_routing(params: Any) -> NDArray[np.float64]:
    """`r[a, x, j]` of Bob's receiver (drivers.mock.detectors.routing) for the link's settings."""
    return routing(params.bob_p_z, params.misalignment, params.efficiency)


def pns_transmittance(params: Any) -> float:
    """Eve's channel transmittance to Bob that keeps the signal class's click rate (her lossless
    channel caps it at 1: on a short link she cannot make up the blocked single photons)."""
    mu = float(params.intensities[0])
    detected = _bob_routing(params).sum(axis=2).ravel()  # P(Bob registers a photon | a, x)
    target = _normal_click(params)

    def click(t: float) -> float:
        return float(np.mean([pns_click_probability(mu, t * r) for r in detected]))

    if mu <= 0 or click(1.0) <= target:
        return 1.0
    lo, hi = 0.0, 1.0
    for _ in range(60):  # bisection: the click probability rises with t
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if click(mid) < target else (lo, mid)
    return 0.5 * (lo + hi)


def pns_model(params: Any, fraction: float) -> AttackedPhotonModel:
    """Photon-number splitting on `fraction` of slots: attacked slots of class k click with
    `pns_click_probability` (exact), spread over the detectors as Bob's routing spreads a photon;
    the detected photon number of an attacked click is drawn as a zero-truncated Poisson of that
    click probability (exact to first order in it: only multi-clicks differ)."""
    lam = params.mean_photons_detected()
    r = _bob_routing(params)
    t = pns_transmittance(params)
    probs, parent, tables = [], [], []
    for k, (mu, p_k) in enumerate(zip(params.intensities, params.class_probabilities)):
        attacked = np.zeros_like(lam[k])
        for a in range(2):
            for x in range(2):
                detected = float(r[a, x].sum())
                if detected > 0:
                    p = pns_click_probability(mu, t * detected)
                    attacked[a, x] = -math.log1p(-p) * r[a, x] / detected
        probs += [p_k * (1.0 - fraction), p_k * fraction]
        parent += [k, k]
        tables += [lam[k], attacked]
    return AttackedPhotonModel(tuple(probs), tuple(parent), np.ascontiguousarray(tables))


def blinding_model(params: Any, fraction: float) -> AttackedPhotonModel:
    """Detector blinding on `fraction` of slots: Eve measures Alice's pulse with an ideal detector
    (a result with probability 1 - exp(-mu_k)) in basis Z with Bob's p_z, and on a fraction rho of
    her results sends a bright trigger that fires Bob's detector of her basis and result and no
    other (a deterministic click, whatever Bob's passive basis choice, so never a multi-click and
    never an error when Bob's basis is Alice's); rho keeps the signal class's click rate. Virtual
    classes: (k, Eve's basis e, her random bit y for a basis that is not Alice's)."""
    lam = params.mean_photons_detected()
    target = _normal_click(params)
    eve_result = -np.expm1(-np.asarray(params.intensities))
    rho = min(1.0, target / eve_result[0]) if eve_result[0] > 0 else 0.0
    probs, parent, tables = [], [], []
    for k, p_k in enumerate(params.class_probabilities):
        probs.append(p_k * (1.0 - fraction))
        parent.append(k)
        tables.append(lam[k])
        click = min(rho * float(eve_result[k]), 1.0 - 1e-12)
        for e in range(2):
            p_e = params.bob_p_z if e == 0 else 1.0 - params.bob_p_z
            for y in range(2):
                table = np.zeros_like(lam[k])
                for a in range(2):
                    for x in range(2):
                        table[a, x, 2 * e + (x if e == a else y)] = -math.log1p(-click)
                probs.append(p_k * fraction * p_e * 0.5)
                parent.append(k)
                tables.append(table)
    return AttackedPhotonModel(tuple(probs), tuple(parent), np.ascontiguousarray(tables))


def nested_class_cdf(model: AttackedPhotonModel, class_probabilities: tuple[float, ...]) -> NDArray[np.float64]:
    """Cumulative probabilities of the virtual classes, each class's last one ending exactly where
    Alice's class ends (`drivers.mock.alice.class_cdf`), so a slot's virtual class is within its
    true class for every value of Alice's class uniform."""
    alice = np.cumsum(np.asarray(class_probabilities, dtype=np.float64))
    alice[-1] = 1.0
    cdf = np.cumsum(np.asarray(model.probabilities, dtype=np.float64))
    parent = np.asarray(model.parent)
    last = np.r_[parent[1:] != parent[:-1], True]
    cdf[last] = alice[parent[last]]
    inner = ~last
    cdf[inner] = np.minimum(cdf[inner], alice[parent[inner]])
    return cdf

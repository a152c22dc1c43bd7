"""Key rate of a simulated link under a finite-key bound, and the intensities, their probabilities
and the basis probability that maximise it (as in Lim et al. 2014, section IV)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.optimize import differential_evolution, minimize

from postprocessing.finitekey.base import FiniteKeyBound, FiniteKeyResult, get_bound
from postprocessing.finitekey.linkmodel import ExpectedBlock, LinkParameters, ProtocolSettings, expected_block

_SECRECY_ITERATIONS = 8


@dataclass(frozen=True)
class SimulationPoint:
    """The finite-key result of one simulated block and the rates it implies."""

    protocol: str
    distance_km: float
    block_size: float
    settings: ProtocolSettings
    result: FiniteKeyResult
    pulses: float

    @property
    def key_rate_per_pulse(self) -> float:
        """l / N: secret bits per pulse Alice sends."""
        return self.result.length / self.pulses

    def key_rate_bps(self, link: LinkParameters) -> float:
        """Secret bits per second at the link's repetition rate."""
        return self.key_rate_per_pulse * link.repetition_rate_hz

    def objective(self) -> float:
        """What the optimiser maximises: the unfloored key per pulse where positive; where not, the
        unfloored key per block bit, so that a search far from any key still climbs towards one
        (dividing a deficit by the pulses would instead reward wasting pulses). Both are 0 at l = 0."""
        bound = self.result.length_bound
        return bound / self.pulses if bound > 0 else bound / self.block_size


def simulate(
    protocol: str, link: LinkParameters, settings: ProtocolSettings, distance_km: float, block_size: float
) -> SimulationPoint:
    """Finite-key result for the expected statistics of one block. With eps_sec = kappa l (the
    link's `secrecy_per_bit`) l is found as the fixed point of l -> l(kappa l), approached from
    above, starting at eps_sec = kappa n."""
    bound = get_bound(protocol)
    block = expected_block(link, settings, distance_km, block_size)
    if link.eps_sec is not None:
        result = bound.key_length(block.stats, block.lambda_ec, link.eps_cor, link.eps_sec)
    else:
        result = _fixed_point_secrecy(bound, block, link)
    return SimulationPoint(protocol, float(distance_km), float(block_size), settings, result, block.pulses)


def _fixed_point_secrecy(bound: FiniteKeyBound, block: ExpectedBlock, link: LinkParameters) -> FiniteKeyResult:
    """l with eps_sec = kappa l: iterate l -> l(kappa l) from l = n (eps_sec too large, l too long);
    l(eps) grows only logarithmically, so a few steps settle it to a thousandth of a bit."""
    kappa = float(link.secrecy_per_bit)  # type: ignore[arg-type]
    length = max(block.stats.block_size, 1.0)
    result = bound.key_length(block.stats, block.lambda_ec, link.eps_cor, min(kappa * length, 0.5))
    for _ in range(_SECRECY_ITERATIONS):
        new_length = max(result.length_bound, 1.0)
        if abs(new_length - length) <= 1e-3:
            break
        length = new_length
        result = bound.key_length(block.stats, block.lambda_ec, link.eps_cor, min(kappa * length, 0.5))
    return result


def _settings_from_vector(protocol: str, z: np.ndarray, link: LinkParameters) -> ProtocolSettings:
    """Unconstrained vector -> settings that satisfy the protocol's ordering by construction."""
    q = 1.0 / (1.0 + math.exp(-z[0]))
    if protocol == "lim2014":
        w = np.exp(np.clip([z[1], z[2], 0.0], -30, 30))
        p = w / w.sum()
        mu3 = link.vacuum_intensity
        mu2 = mu3 + math.exp(z[4])
        mu1 = mu2 + mu3 + math.exp(z[3])
        return ProtocolSettings((mu1, mu2, mu3), tuple(p), q)
    p1 = 1.0 / (1.0 + math.exp(-z[1]))
    mu2 = math.exp(z[3])
    mu1 = mu2 + math.exp(z[2])
    return ProtocolSettings((mu1, mu2), (p1, 1.0 - p1), q)


def _logit(x: float) -> float:
    return math.log(x / (1.0 - x))


def _vector_from_settings(protocol: str, s: ProtocolSettings, link: LinkParameters) -> np.ndarray:
    """Inverse of `_settings_from_vector`."""
    q = _logit(s.basis_probability)
    if protocol == "lim2014":
        mu1, mu2, mu3 = s.intensities
        p1, p2, p3 = s.probabilities
        return np.array([q, math.log(p1 / p3), math.log(p2 / p3), math.log(mu1 - mu2 - mu3), math.log(mu2 - mu3)])
    mu1, mu2 = s.intensities
    return np.array([q, _logit(s.probabilities[0]), math.log(mu1 - mu2), math.log(mu2)])


# Search box of the optimiser's variables: basis probability in [0.0025, 0.9999], probability ratios
# within e^{+-9}, intensity gaps in [1e-3, 1.5] photons. Keeps the bounds away from degenerate
# settings whose arithmetic would only measure rounding.
_Q_BOX = (-6.0, 9.2)
_RATIO_BOX = (-9.0, 9.0)
_GAP_BOX = (math.log(1e-3), math.log(1.5))
_BOXES = {
    "lim2014": [_Q_BOX, _RATIO_BOX, _RATIO_BOX, _GAP_BOX, _GAP_BOX],
    "rusca2018": [_Q_BOX, _RATIO_BOX, _GAP_BOX, _GAP_BOX],
}


def default_starts(protocol: str, link: LinkParameters) -> list[ProtocolSettings]:
    """Starting points for the optimiser: typical optima at short and long distance."""
    if protocol == "lim2014":
        mu3 = link.vacuum_intensity
        return [
            ProtocolSettings((0.5, 0.15 + mu3, mu3), (0.7, 0.2, 0.1), 0.9),
            ProtocolSettings((0.5, 0.1 + mu3, mu3), (0.05, 0.5, 0.45), 0.25),
        ]
    return [
        ProtocolSettings((0.5, 0.15), (0.7, 0.3), 0.9),
        ProtocolSettings((0.5, 0.1), (0.2, 0.8), 0.3),
    ]


def optimise(
    protocol: str,
    link: LinkParameters,
    distance_km: float,
    block_size: float,
    starts: list[ProtocolSettings] | None = None,
    global_search: bool = True,
) -> SimulationPoint:
    """The settings that maximise the key rate per pulse (Nelder-Mead from each start, on variables
    that keep every constraint of the protocol; if none gives a key and `global_search`, a
    differential evolution over the whole box). Where no setting gives a key the best point found
    is returned with length 0."""
    get_bound(protocol)  # validates the name
    if protocol not in ("lim2014", "rusca2018"):
        raise ValueError(f"protocol: the optimiser knows lim2014 and rusca2018, not {protocol!r}")
    cache: dict[bytes, SimulationPoint] = {}

    def point(z: np.ndarray) -> SimulationPoint:
        key = z.tobytes()
        if key not in cache:
            cache[key] = simulate(protocol, link, _settings_from_vector(protocol, z, link), distance_km, block_size)
        return cache[key]

    def cost(z: np.ndarray) -> float:
        try:
            return -point(z).objective() * 1e6
        except (ValueError, OverflowError, ZeroDivisionError):
            return math.inf

    box = _BOXES[protocol]
    lower, upper = [b[0] for b in box], [b[1] for b in box]

    def polish(z0: np.ndarray) -> np.ndarray:
        res = minimize(
            cost,
            np.clip(z0, lower, upper),
            method="Nelder-Mead",
            bounds=box,
            options={"xatol": 1e-4, "fatol": 1e-12, "maxfev": 1500},
        )
        return res.x

    candidates = [
        polish(_vector_from_settings(protocol, s, link)) for s in list(starts or []) + default_starts(protocol, link)
    ]
    best = max((point(z) for z in candidates), key=SimulationPoint.objective)
    if best.result.length_bound <= 0 and global_search:
        # No key from the local searches: where the bound is negative it is flat in most directions,
        # so search the whole box before concluding there is none.
        res = differential_evolution(cost, box, seed=0, maxiter=60, popsize=12, tol=1e-8, polish=False)
        found = point(polish(res.x))
        if found.objective() > best.objective():
            best = found
    return best


def max_distance(
    protocol: str,
    link: LinkParameters,
    block_size: float,
    low_km: float = 0.0,
    high_km: float = 400.0,
    tolerance_km: float = 0.5,
) -> tuple[float, SimulationPoint | None]:
    """The largest distance with a positive optimised key (bisection on distance, each step warm
    started from the last positive point, local search only), and that point."""
    best = optimise(protocol, link, low_km, block_size)
    if best.result.length <= 0:
        return low_km, None
    while high_km - low_km > tolerance_km:
        mid = 0.5 * (low_km + high_km)
        candidate = optimise(protocol, link, mid, block_size, starts=[best.settings], global_search=False)
        if candidate.result.length > 0:
            low_km, best = mid, candidate
        else:
            high_km = mid
    return low_km, best

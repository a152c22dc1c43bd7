"""Expected detections and errors of a fibre link with weak coherent pulses and two threshold
detectors, from its physical parameters (Lim et al. 2014, section IV; dead time as Rusca et al.
2018, Eq. (B3)), and the parameter sets of both papers' simulations."""

from __future__ import annotations

import json
import math
import tomllib
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np

from postprocessing.finitekey.base import DecoyStatistics
from postprocessing.finitekey.estimates import binary_entropy


@dataclass(frozen=True)
class ProtocolSettings:
    """What Alice and Bob choose: intensities (decreasing, class 0 the signal), their probabilities,
    and the probability that each of them picks the key basis Z."""

    intensities: tuple[float, ...]
    probabilities: tuple[float, ...]
    basis_probability: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "intensities", tuple(float(x) for x in self.intensities))
        object.__setattr__(self, "probabilities", tuple(float(x) for x in self.probabilities))
        if not 0.0 < float(self.basis_probability) < 1.0:
            raise ValueError(f"basis_probability: must lie in (0, 1), got {self.basis_probability!r}")

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "intensities": list(self.intensities),
            "probabilities": list(self.probabilities),
            "basis_probability": self.basis_probability,
        }


# name -> (lowest, highest, lowest inclusive, highest inclusive): the allowed values of each field
_RANGES: dict[str, tuple[float, float, bool, bool]] = {
    "fibre_loss_db_per_km": (0.0, math.inf, True, False),
    "extra_loss_db": (0.0, math.inf, True, False),
    "detector_efficiency": (0.0, 1.0, False, True),
    "dark_count_probability": (0.0, 0.5, True, False),
    "afterpulse_probability": (0.0, 1.0, True, False),
    "misalignment": (0.0, 0.5, True, True),
    "ec_efficiency": (1.0, math.inf, True, False),
    "repetition_rate_hz": (0.0, math.inf, False, False),
    "dead_time_s": (0.0, math.inf, True, False),
    "eps_cor": (0.0, 1.0, False, False),
    "eps_sec": (0.0, 1.0, False, False),
    "secrecy_per_bit": (0.0, 1.0, False, False),
    "vacuum_intensity": (0.0, math.inf, True, False),
}


@dataclass(frozen=True)
class LinkParameters:
    """Physical and security parameters of a simulated link. Defaults: Lim et al. 2014, section IV
    (dedicated fibre). Exactly one of `eps_sec` (fixed) and `secrecy_per_bit` (eps_sec = kappa * l,
    as in Lim's evaluation) is set."""

    fibre_loss_db_per_km: float = 0.2
    extra_loss_db: float = 0.0
    detector_efficiency: float = 0.10  # eta_Bob
    dark_count_probability: float = 6e-7  # p_dc, per detector and pulse
    afterpulse_probability: float = 0.04  # p_ap
    misalignment: float = 5e-3  # e_mis
    ec_efficiency: float = 1.16  # f_EC: lambda_EC = f_EC n h(QBER)
    repetition_rate_hz: float = 1e9
    dead_time_s: float = 0.0
    eps_cor: float = 1e-15
    eps_sec: float | None = None
    secrecy_per_bit: float | None = 1e-15  # kappa
    vacuum_intensity: float = 2e-4  # mu3 of the two-decoy protocol (fixed, not optimised)

    def __post_init__(self) -> None:
        for name, (lo, hi, lo_in, hi_in) in _RANGES.items():
            value = getattr(self, name)
            if value is None and name in ("eps_sec", "secrecy_per_bit"):
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"{name}: must be a number, got {value!r}")
            value = float(value)
            ok = math.isfinite(value) and (value >= lo if lo_in else value > lo)
            if not ok or not (value <= hi if hi_in else value < hi):
                raise ValueError(f"{name}: must lie in {'[' if lo_in else '('}{lo:g}, {hi:g}{']' if hi_in else ')'}, got {value!r}")
            object.__setattr__(self, name, value)
        if (self.eps_sec is None) == (self.secrecy_per_bit is None):
            raise ValueError("eps_sec, secrecy_per_bit: set exactly one (fixed eps_sec, or eps_sec = secrecy_per_bit * l)")

    @classmethod
    def from_mapping(cls, values: dict[str, Any], base: LinkParameters | None = None) -> LinkParameters:
        """`base` (default: Lim et al. 2014) with the given keys replaced; unknown keys are errors.
        Setting one of eps_sec / secrecy_per_bit clears the other unless both are given."""
        allowed = {f.name for f in fields(cls)}
        for key in values:
            if key not in allowed:
                raise ValueError(f"{key}: unknown link parameter; allowed: {', '.join(sorted(allowed))}")
        changes = dict(values)
        if "eps_sec" in changes and "secrecy_per_bit" not in changes:
            changes["secrecy_per_bit"] = None
        if "secrecy_per_bit" in changes and "eps_sec" not in changes:
            changes["eps_sec"] = None
        return replace(base if base is not None else LIM2014_SECTION_IV, **changes)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)

    def transmittance(self, distance_km: float) -> float:
        """eta_sys = eta_ch eta_Bob, eta_ch = 10^(-(alpha L + extra loss)/10) (Lim section IV)."""
        loss_db = self.fibre_loss_db_per_km * distance_km + self.extra_loss_db
        return 10.0 ** (-loss_db / 10.0) * self.detector_efficiency


LIM2014_SECTION_IV = LinkParameters()
"""Lim et al. 2014, section IV, dedicated fibre: mu3 = 2e-4, eta_Bob = 10 %, p_dc = 6e-7,
p_ap = 4e-2, 0.2 dB/km, e_mis = 5e-3, f_EC = 1.16, eps_cor = 1e-15, eps_sec = kappa l with
kappa = 1e-15. The paper states no repetition rate or dead time (neither changes a rate per pulse
without dead time); 1 GHz and none are assumed."""

RUSCA2018_SETUP = LinkParameters(
    detector_efficiency=0.5,
    dark_count_probability=5e-9,
    afterpulse_probability=0.0,
    misalignment=0.01,
    ec_efficiency=1.16,
    repetition_rate_hz=1e9,
    dead_time_s=100e-9,
    eps_cor=1e-15,
    eps_sec=1e-9,
    secrecy_per_bit=None,
    vacuum_intensity=0.0,
)
"""The simulated setup of Rusca et al. 2018 (appendix B): superconducting detectors of 50 %
efficiency, dark-count probability 1e-8 per pulse in total (5e-9 per detector), 1 % optical error,
1 GHz source, 100 ns dead time, eps_sec = 1e-9, eps_cor = 1e-15; the 2-decoy comparison uses a
true vacuum as third intensity. Attenuation is given as 0.2 dB/km of fibre (use extra_loss_db or
distance = dB / 0.2 for a pure attenuation axis)."""

PRESETS: dict[str, LinkParameters] = {"lim2014": LIM2014_SECTION_IV, "rusca2018": RUSCA2018_SETUP}


def load_link_parameters(path: str | Path, base: LinkParameters) -> LinkParameters:
    """Read a TOML or JSON file of link parameters (a flat table; a TOML file may put them under
    [link]) on top of `base`; errors name the offending key and the allowed values."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"params: cannot read {path}: {exc.strerror if isinstance(exc, OSError) else exc}") from None
    try:
        if path.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            data = tomllib.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(f"params: {path} is not valid {'JSON' if path.suffix.lower() == '.json' else 'TOML'}: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError(f"params: {path} must hold a table of link parameters")
    if set(data) == {"link"} and isinstance(data["link"], dict):
        data = data["link"]
    return LinkParameters.from_mapping(data, base)


@dataclass(frozen=True)
class ExpectedBlock:
    """The expected statistics of one block of `block_size` key-basis detections, how many pulses
    it takes, and the error-correction leak the link's f_EC implies."""

    stats: DecoyStatistics
    pulses: float
    lambda_ec: float
    dead_time_factor: float


def detection_probabilities(link: LinkParameters, intensities: np.ndarray, distance_km: float) -> tuple[np.ndarray, np.ndarray]:
    """Per pulse of each intensity: probability of a detection R_k and of a bit error e_k in a
    matched basis (Lim et al. 2014, section IV):
    D_k = 1 - (1 - 2 p_dc) exp(-eta_sys k),  R_k = D_k (1 + p_ap),
    e_k = p_dc + e_mis (1 - exp(-eta_sys k)) + p_ap D_k / 2.
    The paper prints eta_ch in e_k; the optical error can only act on photons that are detected,
    so eta_sys is used (with eta_ch the QBER would be e_mis / eta_Bob = 5 %)."""
    eta = link.transmittance(distance_km)
    p_dc, p_ap = link.dark_count_probability, link.afterpulse_probability
    photon = -np.expm1(-eta * intensities)  # 1 - exp(-eta k), exact for small eta k
    d = 1.0 - (1.0 - 2.0 * p_dc) * (1.0 - photon)
    rate = d * (1.0 + p_ap)
    error = p_dc + link.misalignment * photon + p_ap * d / 2.0
    return rate, error


def expected_block(link: LinkParameters, settings: ProtocolSettings, distance_km: float, block_size: float) -> ExpectedBlock:
    """Expected detections and errors per basis and intensity for a block of `block_size` key-basis
    detections. Both parties pick Z with probability q, so a pulse is sifted into Z with q^2 and
    into X with (1-q)^2; a detector dead time scales every detection by
    1 / (1 + f_rep t_dead P_det) (Rusca et al. 2018, Eq. (B3)), P_det the click probability per pulse."""
    mu = np.asarray(settings.intensities, dtype=np.float64)
    p = np.asarray(settings.probabilities, dtype=np.float64)
    q = settings.basis_probability
    rate, error = detection_probabilities(link, mu, distance_km)
    click = float(np.dot(p, rate))
    dead = 1.0 / (1.0 + link.repetition_rate_hz * link.dead_time_s * click)
    per_pulse_key = q * q * dead * click
    pulses = block_size / per_pulse_key
    detections = np.vstack([pulses * q * q * dead * p * rate, pulses * (1 - q) ** 2 * dead * p * rate])
    errors = np.vstack([pulses * q * q * dead * p * error, pulses * (1 - q) ** 2 * dead * p * error])
    stats = DecoyStatistics(mu, p, detections, errors, expected=True)
    lambda_ec = link.ec_efficiency * block_size * binary_entropy(stats.qber())
    return ExpectedBlock(stats=stats, pulses=pulses, lambda_ec=lambda_ec, dead_time_factor=dead)

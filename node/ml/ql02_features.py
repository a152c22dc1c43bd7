"""QL02 link features: the few numbers of a link that decide the best decoy-BB84 settings.

Loss and detector efficiency enter the link model only through their product eta_sys, and the
repetition rate and dead time only through their product, so each pair is one feature."""

from __future__ import annotations

import math

import numpy as np

from postprocessing.finitekey import LinkParameters

FEATURES = (
    "log10_transmittance",  # eta_sys = 10^(-(alpha L + extra)/10) eta_Bob
    "log10_dark_count_probability",
    "misalignment",
    "afterpulse_probability",
    "dead_time_pulses",  # f_rep t_dead: pulses one click blinds the detectors for
    "log10_block_size",
)


def link_features(link: LinkParameters, distance_km: float, block_size: float) -> np.ndarray:
    """The feature vector (in `FEATURES` order) of one link, distance and block size."""
    eta = link.transmittance(distance_km)
    return np.array(
        [
            math.log10(max(eta, 1e-300)),
            math.log10(max(link.dark_count_probability, 1e-300)),
            link.misalignment,
            link.afterpulse_probability,
            link.repetition_rate_hz * link.dead_time_s,
            math.log10(block_size),
        ]
    )

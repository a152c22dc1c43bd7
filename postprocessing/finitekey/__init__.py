"""Finite-key security of decoy-state BB84 behind one interface: Lim et al. 2014 (two decoys) and
Rusca et al. 2018 (one decoy), a fibre link model and an optimiser of the protocol settings."""

from __future__ import annotations

from postprocessing.finitekey.base import (
    DecoyStatistics,
    FiniteKeyBound,
    FiniteKeyResult,
    available_bounds,
    finite_key_length,
    get_bound,
    register_bound,
)
from postprocessing.finitekey.lim2014 import LIM2014, Lim2014
from postprocessing.finitekey.linkmodel import (
    LIM2014_SECTION_IV,
    PRESETS,
    RUSCA2018_SETUP,
    ExpectedBlock,
    LinkParameters,
    ProtocolSettings,
    expected_block,
    load_link_parameters,
)
from postprocessing.finitekey.optimise import SimulationPoint, max_distance, optimise, simulate
from postprocessing.finitekey.rusca2018 import RUSCA2018, Rusca2018

__all__ = [
    "DecoyStatistics",
    "ExpectedBlock",
    "FiniteKeyBound",
    "FiniteKeyResult",
    "LIM2014",
    "LIM2014_SECTION_IV",
    "Lim2014",
    "LinkParameters",
    "PRESETS",
    "ProtocolSettings",
    "RUSCA2018",
    "RUSCA2018_SETUP",
    "Rusca2018",
    "SimulationPoint",
    "available_bounds",
    "expected_block",
    "finite_key_length",
    "get_bound",
    "load_link_parameters",
    "max_distance",
    "optimise",
    "register_bound",
    "simulate",
]

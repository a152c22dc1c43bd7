"""`qkdnode demo --attack`: the [hardware.mock] keys that switch a condition on in Bob's mock link
once the node's KM03 monitor has its commissioning blocks (node.ml.pipeline.CALIBRATION_BLOCKS)."""

from __future__ import annotations

from typing import Any

from drivers.mock.blockstats import expected_rates
from drivers.mock.conditions import Condition
from drivers.mock.link import LinkParams
from node.ml.pipeline import CALIBRATION_BLOCKS

ONSET_MARGIN = 2.0  # blocks after the commissioning window before the attack starts


def attack_table(mock: dict[str, Any], name: str, strength: float | None, block_bits: int) -> dict[str, Any]:
    """attack, attack_strength and attack_onset_slot for the mock table (ValueError naming the option)."""
    cond = Condition(name, strength)
    fields = {k: tuple(v) if isinstance(v, list) else v for k, v in mock.items()
              if k in ("fibre_length_km", "repetition_rate_hz", "p_z", "bob_p_z", "intensities", "class_probabilities")}
    params = LinkParams(**fields)
    rates = expected_rates(params, None, 0.0)
    # the detectors' common dead time lowers the rate by about 1 / (1 + clicks per slot x dead slots)
    dead_slots = max(params.dead_time_ps) / params.period_ps
    z_per_slot = float(rates["detections"][0].sum()) / (1.0 + float(rates["clicks"].sum()) * dead_slots)
    slots_per_block = block_bits / z_per_slot
    onset = int((CALIBRATION_BLOCKS + ONSET_MARGIN) * slots_per_block)
    return {"attack": cond.name, "attack_strength": cond.strength, "attack_onset_slot": onset}


def blocks_needed(block_bits: int) -> int:
    """Blocks a demo with an attack runs by default: commissioning, the onset margin and eight more."""
    return int(CALIBRATION_BLOCKS + ONSET_MARGIN + 8)  # the onset's block is an estimate: leave room

"""`qkdnode demo --attack`: the [hardware.mock] keys that switch a condition on in Bob's mock link
once the node's KM03 monitor has its commissioning blocks (node.ml.pipeline.CALIBRATION_BLOCKS)."""

from __future__ import annotations

from typing import Any

from drivers.mock.blockstats import expected_rates
from drivers.mock.conditions import Condition
from drivers.mock.link import LinkParams
from node.ml.pipeline import CALIBRATION_BLOCKS

ONSET_MARGIN = 3.0  # blocks after the commissioning window before the attack starts (estimated)


def attack_table(mock: dict[str, Any], name: str, strength: float | None, block_bits: int) -> dict[str, Any]:
    """attack, attack_strength and attack_onset_slot for the mock table (ValueError naming the option)."""
    cond = Condition(name, strength)
    fields: dict[str, Any] = {
        k: tuple(v) if isinstance(v, list) else v
        for k, v in mock.items()
        if k in ("fibre_length_km", "repetition_rate_hz", "p_z", "bob_p_z", "intensities", "class_probabilities")
    }
    params = LinkParams(**fields)
    rates = expected_rates(params, None, 0.0)
    # Bob's common dead time (the longest detector's plus its margin, node.runtime.hardware) lowers
    # the rate by about 1 / (1 + clicks per slot x dead slots); measured on the demo's link the rate
    # is 16 % under even that (afterpulses, multi-click slots), hence a margin of three blocks
    longest = max(params.dead_time_ps)
    dead_slots = (longest + max(0.1 * longest, 1_000.0)) / params.period_ps
    z_per_slot = float(rates["detections"][0].sum()) / (1.0 + float(rates["clicks"].sum()) * dead_slots)
    slots_per_block = block_bits / z_per_slot
    onset = int((CALIBRATION_BLOCKS + ONSET_MARGIN) * slots_per_block)
    return {"attack": cond.name, "attack_strength": cond.strength, "attack_onset_slot": onset}


def blocks_needed(block_bits: int) -> int:
    """Blocks a demo with an attack runs by default: commissioning, the onset margin and eight more."""
    return int(CALIBRATION_BLOCKS + ONSET_MARGIN + 8)  # the onset's block is an estimate: leave room

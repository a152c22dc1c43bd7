"""A condition of drivers.mock.conditions switched on inside the Monte-Carlo link at a given slot
(`qkdnode demo --attack`): from then on Bob's tagger sees the attacked or faulty link, while
Alice's transmitter is untouched. Intercept-resend, the fibre tap and laser power drift act on the
per-slot photon model of `LinkSimulator`; blinding and photon-number splitting change the click
process itself and exist only in the block-level mock (drivers.mock.blockstats)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from drivers.mock.conditions import Condition
from drivers.mock.link import LinkParams, LinkSimulator

MONTE_CARLO_CONDITIONS = ("intercept-resend", "tap", "laser-drift")
LASER_DRIFT_STEP_SLOTS = 20_000_000  # laser drift: +1 % (of the power) per this many slots


def attacked_params(params: LinkParams, condition: Condition, level: float) -> LinkParams:
    """The link's parameters with the condition acting at `level`."""
    if condition.name == "intercept-resend":
        return params.replace(eve_fraction=level)
    if condition.name == "tap":
        return params.replace(insertion_loss_db=params.insertion_loss_db + level)
    if condition.name == "laser-drift":
        return params.replace(intensities=tuple(m * (1.0 + level) for m in params.intensities))
    raise ValueError(f"--attack: {condition.name} is only in the block-level mock; the Monte-Carlo link "
                     f"takes {', '.join(MONTE_CARLO_CONDITIONS)}")


def set_photon_model(sim: LinkSimulator, params: LinkParams) -> None:
    """Swap the simulator's per-slot photon model (mean detected photons per class, state and
    detector) for that of `params`; Alice's choices, clocks, detectors' state and seeds stay."""
    sim.params = params
    sim._lam = params.mean_photons_detected()
    sim._lam_tot = sim._lam.sum(axis=3)
    sim._lam_cum = np.ascontiguousarray(np.cumsum(sim._lam, axis=3))
    p_c = -math.expm1(-float(sim._lam_tot.max()))
    sim._log_q = math.log1p(-p_c) if p_c < 1.0 else -math.inf
    sim._p_c = p_c
    sim._exp_neg = np.exp(-sim._lam_tot)
    sim._accept = np.where(p_c > 0, -np.expm1(-sim._lam_tot) / max(p_c, 1e-300), 0.0)


class ScheduledCondition:
    """Switches `condition` on at `onset_slot` in a tagger's simulation (after each start)."""

    def __init__(self, condition: Condition, onset_slot: int) -> None:
        if condition.name not in MONTE_CARLO_CONDITIONS:
            attacked_params(LinkParams(), condition, 0.0)  # raises the one-line error
        self.condition, self.onset_slot = condition, int(onset_slot)

    def level_at(self, slot: int) -> float:
        if slot < self.onset_slot:
            return 0.0
        if self.condition.name == "laser-drift":
            return self.condition.level((slot - self.onset_slot) // LASER_DRIFT_STEP_SLOTS)
        return self.condition.level(0)

    def attach(self, tagger: Any) -> None:
        """Wrap the tagger's start so that every fresh simulation carries the schedule."""
        start = tagger.start

        def start_with_condition() -> None:
            start()
            sim = tagger.simulator
            clean, run = sim.params, sim.run
            state = {"level": 0.0}

            def run_scheduled(n_slots: int) -> Any:
                level = self.level_at(sim.next_slot)
                if level != state["level"]:
                    set_photon_model(sim, attacked_params(clean, self.condition, level))
                    state["level"] = level
                return run(n_slots)

            sim.run = run_scheduled

        tagger.start = start_with_condition


def from_mock_table(table: dict[str, Any]) -> ScheduledCondition | None:
    """The schedule named by [hardware.mock] keys `attack`, `attack_strength`, `attack_onset_slot`."""
    if "attack" not in table:
        return None
    cond = Condition(str(table["attack"]), table.get("attack_strength"))
    return ScheduledCondition(cond, int(table.get("attack_onset_slot", 0)))

"""A condition of drivers.mock.conditions switched on inside the Monte-Carlo link at a given slot
(`qkdnode demo --attack`): from then on Bob's tagger sees the attacked or faulty link, while
Alice's transmitter is untouched. Intercept-resend, the fibre tap and laser power drift change the
link's parameters; detector blinding and photon-number splitting replace the photon model of the
attacked slots (drivers.mock.eve) and, for blinding, the detectors' dark counts and afterpulsing
(drivers.mock.detectors.blinded)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from drivers.mock.alice import class_cdf
from drivers.mock.conditions import Condition
from drivers.mock.detectors import blinded
from drivers.mock.eve import blinding_model, nested_class_cdf, pns_model
from drivers.mock.link import LinkSimulator
from drivers.mock.params import LinkParams

LASER_DRIFT_STEP_SLOTS = 20_000_000  # laser drift: +1 % (of the power) per this many slots


@dataclass(frozen=True)
class PhotonModel:
    """What the simulator draws a slot from: the link's parameters (dark counts, afterpulsing,
    intercept-resend), the classes its kernel tells apart (Alice's, or virtual classes nested in
    them) with their cumulative probabilities, and mean detected photons per class and state."""

    params: LinkParams
    cdf: NDArray[np.float64]
    lam: NDArray[np.float64]


def attacked_params(params: LinkParams, condition: Condition, level: float) -> LinkParams:
    """The link's parameters with the condition acting at `level` (blinding: the blinded
    detectors'; photon-number splitting leaves them)."""
    if condition.name == "intercept-resend":
        return params.replace(eve_fraction=level)
    if condition.name == "tap":
        return params.replace(insertion_loss_db=params.insertion_loss_db + level)
    if condition.name == "laser-drift":
        return params.replace(intensities=tuple(m * (1.0 + level) for m in params.intensities))
    if condition.name == "blinding":
        return blinded(params, level)
    return params


def photon_model(params: LinkParams, condition: Condition | None = None, level: float = 0.0) -> PhotonModel:
    """The simulator's photon model of `params` with the condition acting at `level`."""
    if condition is None or level == 0.0:
        return PhotonModel(params, class_cdf(params.class_probabilities), params.mean_photons_detected())
    changed = attacked_params(params, condition, level)
    if condition.name not in ("blinding", "pns"):
        return photon_model(changed)
    # Eve's photon model follows the clean detectors (she keeps the click rate Bob expects)
    model = blinding_model(params, level) if condition.name == "blinding" else pns_model(params, level)
    mu = tuple(params.intensities[k] for k in model.parent)
    virtual = changed.replace(intensities=mu, class_probabilities=model.probabilities)
    return PhotonModel(virtual, nested_class_cdf(model, params.class_probabilities), model.lam)


def set_photon_model(sim: LinkSimulator, model: PhotonModel | LinkParams) -> None:
    """Swap the simulator's per-slot photon model (classes, mean detected photons per class, state
    and detector; dark-count and afterpulse rates) for `model`; Alice's choices, clocks, the
    detectors' state and seeds stay."""
    if isinstance(model, LinkParams):
        model = photon_model(model)
    params = model.params
    sim.params = params
    sim._cdf = model.cdf
    sim._lam = model.lam
    sim._lam_tot = sim._lam.sum(axis=3)
    sim._lam_cum = np.ascontiguousarray(np.cumsum(sim._lam, axis=3))
    p_c = -math.expm1(-float(sim._lam_tot.max()))
    sim._log_q = math.log1p(-p_c) if p_c < 1.0 else -math.inf
    sim._p_c = p_c
    sim._exp_neg = np.exp(-sim._lam_tot)
    sim._accept = np.where(p_c > 0, -np.expm1(-sim._lam_tot) / max(p_c, 1e-300), 0.0)
    sim._dark_rate_per_ps = np.asarray(params.dark_count_hz) * 1e-12
    sim._ap_prob = np.asarray(params.afterpulse_probability)


class ScheduledCondition:
    """Switches `condition` on at `onset_slot` in a tagger's simulation (after each start)."""

    def __init__(self, condition: Condition, onset_slot: int) -> None:
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
            run = sim.run
            state: dict[str, Any] = {"level": 0.0, "source": sim.source_params}

            def run_scheduled(n_slots: int) -> Any:
                # the condition acts on the link as Alice emits now (a re-tune changes her settings)
                level, source = self.level_at(sim.next_slot), sim.source_params
                if level != state["level"] or source is not state["source"]:
                    set_photon_model(sim, photon_model(source, self.condition, level))
                    state.update(level=level, source=source)
                return run(n_slots)

            sim.run = run_scheduled

        tagger.start = start_with_condition


def from_mock_table(table: dict[str, Any]) -> ScheduledCondition | None:
    """The schedule named by [hardware.mock] keys `attack`, `attack_strength`, `attack_onset_slot`."""
    if "attack" not in table:
        return None
    cond = Condition(str(table["attack"]), table.get("attack_strength"))
    return ScheduledCondition(cond, int(table.get("attack_onset_slot", 0)))

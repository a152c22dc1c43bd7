"""QL02 policy: re-tune the transmitter's settings from the parameter model when the measured link
has changed, with a hysteresis so that counting noise never makes the settings flap.

A re-tune needs the measured channel loss to have moved by at least `hysteresis_db` since the last
tune and the predicted settings to beat the current ones by `min_gain` under the exact bound at
the measured link; each re-tune is logged and raised as an alarm (severity "warning"), and handed
to the distributor callback (the transmitter driver, or a test)."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import replace

from node.ml.parameters import ParameterModel, parameter_model
from postprocessing.finitekey import LinkParameters, ProtocolSettings, simulate

log = logging.getLogger(__name__)


class RetunePolicy:
    """Decides when Alice's intensities, their probabilities and the basis probability change."""

    def __init__(
        self,
        protocol: str,
        link: LinkParameters,
        block_size: float,
        settings: ProtocolSettings,
        distribute: Callable[[ProtocolSettings], None],
        alarm: Callable[[str, str], None],
        hysteresis_db: float = 0.5,
        min_gain: float = 0.02,
        model: ParameterModel | None = None,
        basis_fixed: bool = False,
    ) -> None:
        if not hysteresis_db > 0 or not min_gain >= 0:
            raise ValueError("hysteresis_db must be > 0 dB and min_gain >= 0")
        self.protocol, self.link, self.block_size, self.settings = protocol, link, block_size, settings
        self.distribute, self.alarm = distribute, alarm
        self.hysteresis_db, self.min_gain = hysteresis_db, min_gain
        self.model = model or parameter_model(protocol)
        self.basis_fixed = basis_fixed  # Bob's passive basis split: only intensities and classes change
        self.tuned_loss_db: float | None = None

    def observe(self, measured_loss_db: float) -> ProtocolSettings | None:
        """One measurement of the channel loss (dB, fibre plus extra); the new settings if re-tuned."""
        if not math.isfinite(measured_loss_db) or measured_loss_db < 0:
            return None
        if self.tuned_loss_db is not None and abs(measured_loss_db - self.tuned_loss_db) < self.hysteresis_db:
            return None
        link = replace(self.link, extra_loss_db=measured_loss_db)
        current = simulate(self.protocol, link, self.settings, 0.0, self.block_size).key_rate_per_pulse
        pred = self.model.predict(link, 0.0, self.block_size).point
        if self.basis_fixed:  # the predicted intensities and classes at the basis probability in force
            fixed = replace(pred.settings, basis_probability=self.settings.basis_probability)
            pred = simulate(self.protocol, link, fixed, 0.0, self.block_size)
        self.tuned_loss_db = measured_loss_db
        if pred.key_rate_per_pulse <= current * (1.0 + self.min_gain):
            return None
        text = (
            f"QL02 re-tune at {measured_loss_db:.2f} dB channel loss: intensities "
            f"{'/'.join(f'{m:.3g}' for m in pred.settings.intensities)}, key rate per pulse "
            f"{current:.3g} -> {pred.key_rate_per_pulse:.3g}"
        )
        log.info("%s", text)
        self.alarm("warning", text)
        self.settings = pred.settings
        self.distribute(pred.settings)
        return pred.settings

"""Injectable attacks and faults of the mock link (labelled data for KM03 detection, drifts for
QL01 forecasting). Each condition changes the per-slot physics of `blockstats`; the names are the
ones `qkdnode demo --attack` takes.

- `intercept-resend`: Eve measures a fraction of slots in a random basis and re-prepares (eve.py).
- `blinding`: on a fraction of slots Eve has blinded Bob's detectors (no dark counts, no double
  clicks) and fakes a click of her own result; it lands only when Bob's basis equals hers, so she
  adds no errors; she forwards just enough to keep the signal click rate.
- `pns`: on a fraction of slots Eve blocks single photons and sends multi-photon pulses on over a
  better channel, scaled to keep the signal click rate: the decoy yields fall behind the signal's.
- `tap`: a loss step of `strength` dB in the fibre.
- `laser-drift`: Alice's mean photon numbers drift by `strength` (relative), ramping 1 % per block.
"""

from __future__ import annotations

from dataclasses import dataclass

CONDITIONS = ("intercept-resend", "blinding", "pns", "tap", "laser-drift")
DEFAULT_STRENGTH = {"intercept-resend": 0.05, "blinding": 0.2, "pns": 0.2, "tap": 1.0, "laser-drift": 0.10}
_LIMITS = {
    "intercept-resend": (0.0, 1.0),
    "blinding": (0.0, 1.0),
    "pns": (0.0, 1.0),
    "tap": (0.0, 30.0),
    "laser-drift": (-0.9, 1.0),
}
_UNITS = {"tap": "dB", "laser-drift": "relative power change"}
LASER_DRIFT_PER_BLOCK = 0.01


@dataclass(frozen=True)
class Condition:
    """One injected condition: its name, strength and the block it starts at."""

    name: str
    strength: float | None = None
    onset_block: int = 0

    def __post_init__(self) -> None:
        if self.name not in CONDITIONS:
            raise ValueError(f"--attack: {self.name!r} is not a condition; allowed: {', '.join(CONDITIONS)}")
        s = DEFAULT_STRENGTH[self.name] if self.strength is None else float(self.strength)
        lo, hi = _LIMITS[self.name]
        if not lo <= s <= hi:
            unit = _UNITS.get(self.name, "fraction of slots")
            raise ValueError(f"--attack-strength: {self.name} takes a {unit} in [{lo:g}, {hi:g}], got {s!r}")
        object.__setattr__(self, "strength", s)

    def level(self, block: int) -> float:
        """How strongly the condition acts in `block` (0 before its onset; laser drift ramps)."""
        if block < self.onset_block:
            return 0.0
        s = float(self.strength)  # type: ignore[arg-type]
        if self.name == "laser-drift":
            ramp = LASER_DRIFT_PER_BLOCK * (block - self.onset_block + 1)
            return max(s, -ramp) if s < 0 else min(s, ramp)
        return s

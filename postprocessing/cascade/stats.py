"""Per-block statistics of a Cascade run: what leaked, what it cost on the channel, how long it took."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["CascadeStats", "binary_entropy"]


def binary_entropy(p: float) -> float:
    """h(p) = -p log2 p - (1-p) log2 (1-p), with h(0) = h(1) = 0."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"p must be in [0, 1], got {p}")
    if p in (0.0, 1.0):
        return 0.0
    return -p * math.log2(p) - (1.0 - p) * math.log2(1.0 - p)


@dataclass
class CascadeStats:
    """What one block cost. `leaked_bits` counts every parity bit Alice revealed (block parities of
    every pass and every answer of the binary searches): the finite-key bound subtracts it."""

    block_id: int
    n: int
    variant: str
    qber_estimate: float
    leaked_bits: int = 0
    round_trips: int = 0
    messages: int = 0
    bytes_sent: int = 0
    bytes_received: int = 0
    passes: int = 0
    errors_corrected: int = 0
    time_s: float = 0.0
    actual_errors: int | None = None  # known only where both keys are at hand (loopback, tests)

    @property
    def bytes_on_wire(self) -> int:
        """Bytes both ways (frames as encoded, without the channel's own framing or MAC)."""
        return self.bytes_sent + self.bytes_received

    @property
    def actual_qber(self) -> float:
        """The frame's true error rate where known, else the rate of the errors Cascade corrected."""
        errors = self.actual_errors if self.actual_errors is not None else self.errors_corrected
        return errors / self.n if self.n else 0.0

    @property
    def efficiency(self) -> float:
        """f = leaked / (n h(actual QBER)); inf when the frame held no error but parities leaked."""
        h = self.n * binary_entropy(self.actual_qber)
        if h == 0.0:
            return math.inf if self.leaked_bits else 1.0
        return self.leaked_bits / h

    def as_dict(self) -> dict[str, Any]:
        """Plain figures for logs, metrics and the bench table."""
        d = asdict(self)
        d.update(bytes_on_wire=self.bytes_on_wire, actual_qber=self.actual_qber, efficiency=self.efficiency)
        return d

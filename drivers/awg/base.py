"""What the AWG transmitter needs from a signal source, met by every AWG driver."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np
from numpy.typing import NDArray


@runtime_checkable
class WaveformGenerator(Protocol):
    """A multi-channel arbitrary waveform generator playing one looping waveform per channel."""

    @property
    def channels(self) -> tuple[int, ...]:
        """Channel numbers as the front panel names them."""
        ...

    @property
    def sample_rate_hz(self) -> float:
        """Samples per second, common to all channels."""
        ...

    def check_length(self, n_samples: int) -> None:
        """`ValueError` unless a waveform of `n_samples` fits (minimum, granularity, memory)."""
        ...

    def upload(self, channel: int, samples: NDArray[np.float64], amplitude_vpp: float) -> None:
        """Load `samples` (normalised to [-1, 1]) on `channel`, full scale = `amplitude_vpp`, output off.

        The samples encode Alice's choices: drivers keep them out of logs and exception messages.
        """
        ...

    def run(self) -> None:
        """Start all channels together from sample 0 with their outputs on."""
        ...

    def stop(self) -> None:
        """Stop playing and switch the outputs off."""
        ...

    def shutdown(self) -> None:
        """Outputs off (no modulator drive); idempotent."""
        ...


def normalised(owner: object, samples: NDArray[np.float64]) -> NDArray[np.float64]:
    """`samples` as a 1-D float64 array in [-1, 1]; `ValueError` otherwise."""
    arr = np.asarray(samples, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"{type(owner).__name__}.upload: samples must be 1-D, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)) or (arr.size and (arr.min() < -1.0 or arr.max() > 1.0)):
        raise ValueError(f"{type(owner).__name__}.upload: samples must be finite and within [-1, 1]")
    return arr

"""The `TagBlock` stream type and the `TimeTagger` protocol shared by real and mock backends (DESIGN §3–4)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np
from numpy.typing import NDArray


@dataclass(frozen=True)
class TagBlock:
    """One block of time tags: parallel arrays sorted by time, plus what the hardware lost.

    `time` is int64 picoseconds since the start of acquisition, `channel` the input number
    (uint8). `lost` counts events the hardware reported as lost in this block (overflow, FIFO
    full); a backend never drops events silently. `overflow` is True when the hardware signalled
    an overflow inside the block, so times next to the gap are not contiguous.
    """

    time: NDArray[np.int64]
    channel: NDArray[np.uint8]
    lost: int = 0
    overflow: bool = False
    meta: dict[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.time, np.ndarray) or self.time.dtype != np.int64 or self.time.ndim != 1:
            raise ValueError("TagBlock.time must be a 1-D int64 array of picoseconds")
        if not isinstance(self.channel, np.ndarray) or self.channel.dtype != np.uint8 or self.channel.ndim != 1:
            raise ValueError("TagBlock.channel must be a 1-D uint8 array")
        if self.time.size != self.channel.size:
            raise ValueError(
                f"TagBlock.time and TagBlock.channel must have equal length, got {self.time.size} and {self.channel.size}"
            )
        if self.lost < 0:
            raise ValueError(f"TagBlock.lost must be >= 0, got {self.lost}")

    def __len__(self) -> int:
        return int(self.time.size)

    @classmethod
    def empty(cls, lost: int = 0) -> TagBlock:
        """A block with no tags (a read that timed out, or one that only reports losses)."""
        return cls(np.empty(0, np.int64), np.empty(0, np.uint8), lost=lost)


class TaggerCounters:
    """The `channels`/`resolution_ps`/`lost_total` accessors a hardware backend reads from its own state."""

    _channels: tuple[int, ...]
    _resolution_ps: int
    _lost: int

    @property
    def channels(self) -> tuple[int, ...]:
        return self._channels

    @property
    def resolution_ps(self) -> int:
        """The bin width the instrument reports (read when it is configured)."""
        return self._resolution_ps

    @property
    def lost_total(self) -> int:
        return self._lost


@runtime_checkable
class TimeTagger(Protocol):
    """A time-tagger streaming `TagBlock`s; real instruments and the mock implement it alike."""

    @property
    def channels(self) -> tuple[int, ...]:
        """The input channels this tagger records."""
        ...

    @property
    def resolution_ps(self) -> int:
        """Time resolution (bin width) in picoseconds."""
        ...

    def start(self) -> None:
        """Start acquisition; times count from here."""
        ...

    def read_block(self, timeout_s: float) -> TagBlock:
        """The tags recorded since the previous read; an empty block if none came within `timeout_s`."""
        ...

    @property
    def lost_total(self) -> int:
        """Events the hardware reported lost since `start()`."""
        ...

    def stop(self) -> None:
        """Stop acquisition (tags already recorded can still be read)."""
        ...

    def close(self) -> None:
        """Release the instrument; idempotent."""
        ...

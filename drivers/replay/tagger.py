"""The replay `TimeTagger`: a recording's tag blocks (or a PTU file's), one per read, unpaced.

Nothing is dropped or paced: each read hands the next recorded block at once, so Bob's node takes
tags as fast as it can process them (the node's acquisition waits on a full queue rather than
dropping). At the end of the recording a read waits `timeout_s` and returns an empty block, as a
tagger with no light would.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

from drivers.replay.recording import ClosedOnExit, RecordingInfo, iter_tag_file
from drivers.timetagger import TagBlock


class ReplayTimeTagger(ClosedOnExit):
    """Bob's tagger replaying a recording (`RecordingInfo`); see the module docstring."""

    def __init__(self, info: RecordingInfo, records_per_block: int = 1 << 20) -> None:
        self.info = info
        self._records_per_block = int(records_per_block)
        self._blocks: Iterator[TagBlock] | None = None
        self._lost_total = 0
        self._closed = False
        self.exhausted = False
        self.tags_replayed = 0

    @property
    def channels(self) -> tuple[int, ...]:
        """The sync channel and the four detectors of the recording."""
        s = self.info.slotting
        return (s.sync_channel, *s.detector_channels)

    @property
    def resolution_ps(self) -> int:
        """Tag resolution of the recording in picoseconds."""
        return self.info.resolution_ps

    @property
    def detector_dead_time_ps(self) -> tuple[float, ...]:
        """The detectors' dead times recorded with the run (Bob's common dead time is built from them)."""
        return self.info.detector_dead_time_ps

    @property
    def lost_total(self) -> int:
        """Events the recording reports lost, over the blocks replayed so far."""
        return self._lost_total

    def start(self) -> None:
        """Start replaying from the recording's first block."""
        if self._closed:
            raise RuntimeError("time tagger is closed")
        if self.info.tag_format == "ptu":
            from drivers.picoquant import iter_tag_blocks

            self._blocks = iter_tag_blocks(self.info.tags, self._records_per_block)
        else:
            self._blocks = iter_tag_file(self.info.tags)
        self._lost_total = 0
        self.exhausted = False

    def read_block(self, timeout_s: float) -> TagBlock:
        """The next recorded block; an empty one after `timeout_s` once the recording has ended."""
        if not timeout_s >= 0:
            raise ValueError(f"timeout_s must be >= 0, got {timeout_s}")
        if self._closed:
            raise RuntimeError("time tagger is closed")
        if self._blocks is not None:
            block = next(self._blocks, None)
            if block is not None:
                self._lost_total += block.lost
                self.tags_replayed += len(block)
                return block
            self._blocks = None
            self.exhausted = True
        time.sleep(timeout_s)  # no more tags: wait as a real tagger would, never spin
        return TagBlock.empty()

    def stop(self) -> None:
        """Stop replaying (the rest of the recording is not read)."""
        self._blocks = None

    def close(self) -> None:
        """Release the recording; idempotent."""
        self._blocks = None
        self._closed = True

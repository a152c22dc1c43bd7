"""Bob's acquisition on the mock link as the daemon runs it, for tests that need the physics to follow
the protocol (a re-tune changes Alice's emission from a slot): the mock tagger in fast mode, the
stream slotter, batches of `batch_detections`, each handed to Bob's protocol at once."""

from __future__ import annotations

from collections.abc import Callable

from drivers.mock import LinkParams, MockTimeTagger, MockTransmitter, mock_link_pair
from drivers.mock.conditions import Condition
from drivers.mock.onset import ScheduledCondition
from node.link import BobLink
from node.runtime.daemon import _concat
from postprocessing.slotting import Detections, StreamSlotter


class StreamingLink:
    """Alice's mock source and Bob's tagger coupled by one emission schedule, with a loss step (`tap`
    of `tap_db`) that a test switches on at the first slot not yet simulated (`tap_now`)."""

    def __init__(self, params: LinkParams, seed: int, tap_db: float = 0.0, block_s: float = 2e-3) -> None:
        self.params = params
        self.transmitter, self.tagger = mock_link_pair(params, seed, block_s=block_s)
        self.tap = ScheduledCondition(Condition("tap", tap_db), onset_slot=1 << 62)
        if tap_db:
            self.tap.attach(self.tagger)
        self.tagger.start()
        self.slotter = StreamSlotter(
            params.period_ps, params.sync_every, 0.5 * params.period_ps, delay_ps=params.channel_delays_ps()
        )

    @property
    def next_slot(self) -> int:
        sim = self.tagger.simulator
        assert sim is not None
        return sim.next_slot

    def tap_now(self) -> int:
        """The loss step from the first slot not yet simulated; returns it."""
        self.tap.onset_slot = self.next_slot
        return self.tap.onset_slot

    def batch(self, detections: int) -> Detections:
        """The next batch of at least `detections` detections."""
        parts, have = [], 0
        while have < detections:
            block = self.tagger.read_block(timeout_s=0.0)
            det = self.slotter.push(block.time, block.channel)
            if len(det):
                parts.append(det)
                have += len(det)
        return _concat(parts)

    def run(self, bob: BobLink, until: Callable[[], bool], detections: int, max_batches: int = 400) -> None:
        """Feed Bob batches until `until()` (or `max_batches`)."""
        for _ in range(max_batches):
            if until():
                return
            bob.process(self.batch(detections))
        raise AssertionError(f"not done after {max_batches} batches")


__all__ = ["MockTimeTagger", "MockTransmitter", "StreamingLink"]

"""Bob's distillation workers: key blocks reconciled side by side, closed in block order.

The protocol thread sifts; each block it completes goes to one of `workers` threads, which runs
`BobLink.reconcile_block` (BLOCK_START, Cascade, VERIFY, privacy amplification) over the block's
own channel of the `BlockMux` while the protocol thread sifts on and the other workers reconcile
their blocks. Each round trip's wait for Alice is filled with other blocks' work on both nodes, and
the numba kernels (which release the GIL) run on several cores. Then the worker waits for its turn:
`BobLink.close_block` (the monitor and Cascade's next estimate, the outbox as unconfirmed,
BLOCK_DONE, the authentication refill or rekey, confirm) runs one block at a time in the order the
blocks were sifted. So keys reach the outbox and the key manager in block order, refill decisions
see the pools as a serial node would, and a block still reaches both key managers or neither (the
outbox's two phases; HELLO settles the unconfirmed ones).

A failing block aborts alone: BLOCK_ABORT for it, the other blocks go on. When the channel itself
is out of step (Alice refused a BLOCK_START, a reply did not come within the link's timeout, a
message outside every block was refused) the next `check` raises, and the daemon resynchronises
with HELLO, which first cancels every block in flight (`cancel_all`). Until then no later block
closes: a block left unconfirmed holds a refill (or rekey) that HELLO applies first, so a later
block's refill applied before it would part the two ends' authentication keys.

Cascade's QBER estimate for the i-th block sifted in a session is the estimate left by the close
of block i - workers (the session's first blocks: the session's estimate, or their own X-basis QBER),
so a block's leak and key length do not depend on thread timing.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from node.classical import AuthenticationLocked, ChannelTimeout, ClassicalChannelError
from node.link.blocks import KeyBlock
from node.link.cascadechannel import CascadeOverSecureChannel
from node.link.mux import POLL_S, BlockMux
from postprocessing.cascade import CascadeReconciler
from postprocessing.errors import ProtocolError

log = logging.getLogger(__name__)


class BlockOutOfStep(ProtocolError):
    """Alice's block differs from Bob's (or she has none): the two accumulators lost step."""


class BlockUnsettled(ProtocolError):
    """A block's closing failed after Bob stored its key unconfirmed: only HELLO can tell whether
    Alice committed it (an unauthenticated abort could be Eve's)."""


@dataclass
class _Job:
    block: KeyBlock
    index: int  # position among the blocks sifted this session
    sifted_total: int  # Bob's sifted bits up to the block's last batch
    collected: Any = field(repr=False)  # the monitor's view of the block (`LinkMonitor.end_block`)


class DistillPool:
    """`workers` threads distilling Bob's blocks of one link (see the module docstring)."""

    def __init__(self, bob: Any, mux: BlockMux, workers: int) -> None:
        self.bob, self.mux, self.workers = bob, mux, workers
        self._cond = threading.Condition()
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._order: deque[int] = deque()  # blocks submitted and not finished, in sifting order
        self._index = 0
        self._estimates: dict[int, float | None] = {}  # Cascade's estimate after block index i finished
        self._base_estimate: float | None = bob.qber_estimate
        self._out_of_step: str | None = None
        self._fatal: BaseException | None = None
        self._closed = False
        self._threads = []
        for i in range(workers):
            channel = CascadeOverSecureChannel(None)
            reconciler = CascadeReconciler(channel, bob.settings.cascade_variant, timeout_s=bob.settings.timeout_s)
            t = threading.Thread(target=self._work, args=(channel, reconciler), name=f"distill-{i}", daemon=True)
            t.start()
            self._threads.append(t)

    @property
    def in_flight(self) -> int:
        """Blocks handed to the workers and not finished (closed or aborted)."""
        with self._cond:
            return len(self._order)

    # -- the protocol thread --------------------------------------------------------------------

    def submit(self, block: KeyBlock, sifted_total: int, collected: Any) -> None:
        """Hand a completed block to a worker; waits while every worker is busy (sifting pauses)."""
        with self._cond:
            while len(self._order) >= self.workers and self._fatal is None:
                self._cond.wait(POLL_S)
            if self._fatal is not None:
                raise self._fatal
            index = self._index
            self._index += 1
            self._order.append(block.block_id)
        self._jobs.put(_Job(block, index, sifted_total, collected))

    def check(self) -> None:
        """Raise what stops the protocol thread: a locked link, or a channel out of step (resynchronise)."""
        if self._fatal is not None:
            raise self._fatal
        failure = self.mux.session_failure()
        if failure is not None:
            raise failure
        if self._out_of_step is not None:
            raise ProtocolError(f"link out of step, resynchronising: {self._out_of_step}")

    def wait_idle(self, stop: threading.Event | None = None) -> None:
        """Wait until every block handed out has closed or aborted (or `stop` is set)."""
        with self._cond:
            while self._order and not (stop is not None and stop.is_set()) and self._fatal is None:
                self._cond.wait(POLL_S)

    def cancel_all(self, reason: str) -> None:
        """Abort every block in flight and wait for the workers (before HELLO restarts the session)."""
        with self._cond:
            blocks = list(self._order)
        for block_id in blocks:
            self.mux.cancel(block_id, ProtocolError(f"cancelled: {reason}"))
        with self._cond:
            while self._order:
                self._cond.wait(POLL_S)
            self._index = 0
            self._estimates.clear()
            self._base_estimate = self.bob.qber_estimate
            self._out_of_step = None
        self.mux.release_all()

    def close(self) -> None:
        """Stop the workers (blocks in flight are cancelled) and the channel's I/O thread."""
        if self._closed:
            return
        self._closed = True
        self.cancel_all("the link is stopping")
        for _ in self._threads:
            self._jobs.put(None)
        for t in self._threads:
            t.join(10)
        self.mux.close()

    # -- the workers ------------------------------------------------------------------------------

    def _estimate_for(self, index: int) -> float | None:
        """Cascade's QBER estimate for the index-th block of the session: the session's own for the first
        `workers` blocks (None: each block's X-basis QBER, as the serial path gives its first block),
        then the one left by block index - workers. The first blocks do not wait for each other: the
        X-basis guess runs ~25 % above the key basis's QBER on the mock link, and Cascade's frame error
        rate is flat in the estimate (1e6-bit block at Q 1.40 %, 2000 runs each: 2.5e-3 at 1.73 %,
        3.5e-3 at 1.40 %, 5e-3 at 1.0 %), so waiting gained nothing and serialised them."""
        if index < self.workers:
            return self._base_estimate
        with self._cond:
            while index - self.workers not in self._estimates:  # at once: a free worker means it finished
                self._cond.wait(POLL_S)
            return self._estimates[index - self.workers]

    def _wait_turn(self, block_id: int) -> None:
        with self._cond:
            while self._order[0] != block_id:
                self._cond.wait(POLL_S)

    def _work(self, cascade_channel: Any, reconciler: CascadeReconciler) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            try:
                self._distil(job, cascade_channel, reconciler)
            finally:
                self.mux.release(job.block.block_id)
                with self._cond:
                    self._estimates[job.index] = self.bob.qber_estimate
                    self._estimates.pop(job.index - 2 * self.workers, None)
                    self._order.remove(job.block.block_id)
                    self._cond.notify_all()

    def _distil(self, job: _Job, cascade_channel: Any, reconciler: CascadeReconciler) -> None:
        bob, block_id = self.bob, job.block.block_id
        channel = self.mux.view(block_id)
        cascade_channel.channel = channel
        try:
            try:
                verified = bob.reconcile_block(
                    job.block, channel, reconciler, cascade_channel, self._estimate_for(job.index)
                )
                self._wait_turn(block_id)
                if self._out_of_step is not None:
                    # an earlier block is unsettled (or the channel lost step): closing this one would apply
                    # its refill or rekey before that block's, which HELLO applies first, and the two ends'
                    # authentication keys would part; HELLO cancels it anyway
                    raise ProtocolError(f"cancelled: the link is out of step ({self._out_of_step})")
                bob.close_block(verified, channel, job.sifted_total, job.collected)
                return
            except AuthenticationLocked:
                raise
            except (ProtocolError, ClassicalChannelError) as exc:
                failure: Exception = exc
                self._note_out_of_step(block_id, exc)
            except Exception as exc:  # a bug must not stop the node: this block aborts, the others go on
                log.exception("link %s: block %d failed", bob.settings.link_id, block_id)
                failure = ProtocolError(f"internal error: {type(exc).__name__}")
            self._wait_turn(block_id)  # counted in block order, as a serial node would
            bob.abort_block(block_id, failure, channel)
        except AuthenticationLocked as exc:
            self._fatal = exc  # the session stops: the protocol thread raises it

    def _note_out_of_step(self, block_id: int, exc: Exception) -> None:
        """A timeout, a refused BLOCK_START or a block left unconfirmed need the link resynchronised."""
        if isinstance(exc, (BlockOutOfStep, BlockUnsettled)) or (
            isinstance(exc, ChannelTimeout) and not self.mux.stop.is_set()
        ):
            with self._cond:
                if self._out_of_step is None:
                    self._out_of_step = f"block {block_id}: {exc}"

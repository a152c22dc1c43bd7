"""Bob's side of Cascade: ask Alice parities pass by pass, one batch of questions per tree level,
correct his frame, and count every parity bit that leaked. Several blocks share one channel."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from postprocessing.bits import check_bits
from postprocessing.cascade import kernels, shuffle
from postprocessing.cascade.channel import ChannelTimeout, ClassicalChannel, Message
from postprocessing.cascade.passes import PassTables
from postprocessing.cascade.protocol import ASK, DONE, ERROR, MAX_BLOCK_ID, MAX_N, MAX_PASSES, PARITY, header_seed
from postprocessing.cascade.scratch import POOL
from postprocessing.cascade.stats import CascadeStats
from postprocessing.cascade.variants import BICONF, BLOCK, Variant, default_variant, get_variant
from postprocessing.errors import ProtocolError

__all__ = ["CascadeReconciler", "CascadeOutcome"]

log = logging.getLogger(__name__)

_NO_SEARCHES = np.zeros((0, kernels.SEARCH_COLUMNS), dtype=np.int64)
_EMPTY_U8 = np.zeros(0, dtype=np.uint8)
_EMPTY_U4 = np.zeros(0, dtype=np.uint32)


@dataclass
class CascadeOutcome:
    """One block's result: Bob's corrected frame and statistics, or the protocol error that ended it."""

    block_id: int
    bits: NDArray[np.uint8] | None = field(repr=False)  # key material: never in a repr
    stats: CascadeStats
    error: ProtocolError | None = None


class _BobBlock:
    """The state machine of one block on Bob's side."""

    def __init__(self, block_id: int, bits: NDArray[np.uint8], qber: float, variant: Variant | None) -> None:
        self.block_id = block_id
        n = bits.size
        variant = variant if variant is not None else default_variant(n)
        self.variant = variant
        self.n = n
        self.specs = variant.first_passes(n, qber)
        self.max_passes = min(MAX_PASSES, variant.max_passes if variant.biconf_streak else len(self.specs))
        if len(self.specs) > self.max_passes:
            raise ValueError(f"variant {variant.name} has more than {MAX_PASSES} passes")
        self.n_block = n_block = sum(s.kind == BLOCK for s in self.specs)
        t = PassTables(
            bits, self.max_passes, keep_inverse=True, mask_capacity=self.max_passes - n_block, row_capacity=1 + n_block
        )
        for j in range(self.max_passes):
            if j < len(self.specs):
                t.plan(j, self.specs[j].kind, self.specs[j].block_size)
            else:
                t.plan(j, BICONF, n)
        self.tables = t
        self.state, self.resident = POOL.take_state(int(t.base[self.max_passes]))
        self.flipmap = np.zeros((n + 63) // 64, dtype=np.uint64)
        self.bob_seed = shuffle.draw_seed()
        self.seed: bytes | None = None
        self.seq = 0
        self.stats = CascadeStats(block_id=block_id, n=n, variant=variant.name, qber_estimate=qber)
        self.q = (_EMPTY_U8, _EMPTY_U4, _EMPTY_U4)
        self.searches = _NO_SEARCHES  # the searches waiting for Alice's answers (kernels.SEARCH_COLUMNS)
        self.requested: list[int] = []
        self.alice_tops: dict[int, NDArray[np.uint8]] = {}
        self.biconf_streak = 0
        self.judged_pass = -1
        self.pass_started_for = -2
        self.flips_at_pass_start = 0
        self.deadline = 0.0
        self.t0 = time.perf_counter()

    # -- messages ---------------------------------------------------------------------------------
    def _pass_headers(self, passes: range) -> list[dict[str, int]]:
        t = self.tables
        self.requested = list(passes)
        return [{"index": j, "kind": int(t.kind[j]), "size": int(t.ksz[j])} for j in passes]

    def first_message(self) -> Message:
        """Starts the block and asks Alice's block parities of every pass of the fixed schedule at
        once (they are revealed whatever happens, so asking early leaks nothing more and saves a
        round trip per pass); BICONF passes, which may not happen, are asked one at a time."""
        header = {
            "block": self.block_id,
            "seq": 0,
            "start": {"n": self.n, "seed": self.bob_seed.hex(), "shuffle_first": self.variant.shuffle_first_pass},
            "passes": self._pass_headers(range(len(self.specs))),
        }
        return self._ask(header)

    def _ask(self, header: dict[str, object]) -> Message:
        qp, qb, qn = self.q
        return Message(ASK, header, (qp, qb, qn))

    def done_message(self, aborted: bool) -> Message:
        return Message(
            DONE, {"block": self.block_id, "seq": self.seq + 1, "leaked": self.stats.leaked_bits, "aborted": aborted}
        )

    def on_reply(self, msg: Message) -> Message | None:
        """Take Alice's reply; the next ASK, or None when the block is reconciled."""
        if msg.type == ERROR:
            raise ProtocolError(f"cascade: Alice refused block {self.block_id}: {msg.header.get('reason')!r}")
        if msg.type != PARITY:
            raise ProtocolError(f"cascade: unexpected message type {msg.type!r}")
        if msg.header.get("seq") != self.seq:
            raise ProtocolError(
                f"cascade: reply out of order (sequence {msg.header.get('seq')!r}, expected {self.seq})"
            )
        if len(msg.buffers) != 2 or any(b.dtype != np.uint8 for b in msg.buffers):
            raise ProtocolError("cascade: PARITY must carry two u1 buffers")
        t = self.tables
        qp, qb, qn = self.q
        n_top = int(sum(int(t.nb[j]) for j in self.requested)) if self.requested else 0
        packed_a, packed_t = msg.buffers
        if packed_a.size != (qp.size + 7) // 8 or packed_t.size != (n_top + 7) // 8:
            raise ProtocolError("cascade: PARITY answers do not match the questions")
        answers = np.unpackbits(packed_a, count=qp.size, bitorder="little")
        top = np.unpackbits(packed_t, count=n_top, bitorder="little") if n_top else _EMPTY_U8
        if self.seq == 0:
            self.seed = shuffle.shared_seed(self.bob_seed, header_seed(msg.header, "seed", shuffle.SEED_BYTES))
        self.stats.round_trips += 1
        self.stats.leaked_bits += answers.size + top.size
        at = 0
        for j in self.requested:
            self.alice_tops[j] = top[at : at + int(t.nb[j])]
            at += int(t.nb[j])
        self.requested = []
        searches = self.searches
        self.seq += 1
        header: dict[str, object] = {"block": self.block_id, "seq": self.seq}
        while True:
            qp, qb, qn, searches, nflip = kernels.bob_round(
                *t.layout,
                t.prow,
                t.started,
                self.n,
                self.state,
                t.rows,
                t.masks,
                t.perms,
                t.poss,
                answers,
                searches,
                self.flipmap,
            )
            if nflip < 0:
                raise ProtocolError(f"cascade: Alice's parities for block {self.block_id} are inconsistent")
            self.stats.errors_corrected += nflip
            if qp.size or searches.shape[0]:
                break
            nxt = self._next_pass()
            if nxt is None:
                self.stats.time_s = time.perf_counter() - self.t0
                return None
            if nxt not in self.alice_tops:
                # BICONF passes: the streak needs at least (target - streak) more passes whatever
                # they find, so their parities are asked together (the same bits leak either way)
                sure = max(1, self.variant.biconf_streak - self.biconf_streak)
                header["passes"] = self._pass_headers(range(nxt, min(self.max_passes, nxt + sure)))
                break
            # the next pass's block parities are at hand: start it without a round trip
            t.start(nxt, self.seed, shuffle_block=(nxt > 0 or self.variant.shuffle_first_pass))
            self.stats.passes = t.started
            odd = kernels.set_roots(
                nxt,
                *t.layout,
                self.n,
                self.state,
                t.rows,
                t.masks,
                self.alice_tops.pop(nxt),
            )
            searches = kernels.root_searches(nxt, odd, t.kind, t.ksz, self.n)
            answers = _EMPTY_U8
        if qp.size == 0 and searches.shape[0]:
            raise ProtocolError("cascade: internal error, searches wait without a question")  # pragma: no cover
        self.q = (qp, qb, qn)
        self.searches = searches
        return self._ask(header)

    def _next_pass(self) -> int | None:
        """The pass to run next, or None when the schedule (or the BICONF streak) is complete."""
        t = self.tables
        j = t.started
        ended = j - 1
        if ended >= len(self.specs) and ended != self.judged_pass:  # a BICONF pass ended: did it find anything?
            self.judged_pass = ended
            found = self.stats.errors_corrected - self.flips_at_pass_start
            self.biconf_streak = 0 if found else self.biconf_streak + 1
            if self.biconf_streak >= self.variant.biconf_streak:
                return None
        if ended != self.pass_started_for:
            self.pass_started_for = ended
            self.flips_at_pass_start = self.stats.errors_corrected
        if j >= self.max_passes:
            return None
        return j

    @property
    def bits(self) -> NDArray[np.uint8]:
        return self.tables.bits()

    def release(self) -> None:
        """Clear the parity trees and give the block's arrays back to the pool (after `bits` was read)."""
        t = self.tables
        if self.state.size == 0:
            return
        deep = kernels.clear_trees(t.kind, t.ksz, t.nb, t.stride, t.base, t.started, self.n, self.state)
        small = int(t.base[self.n_block])  # the BLOCK passes' trees come first and are paged in whole
        POOL.give_state(self.state, max(self.resident, small) + 4096 * int(deep))
        self.state = np.zeros(0, dtype=np.int8)
        t.release()


class CascadeReconciler:
    """Bob: reconciles his frames against Alice's over `channel`, up to `max_in_flight` blocks at once.

    Every wait is bounded by `timeout_s`: a silent peer, an ERROR reply or a malformed message ends
    the blocks concerned with a `ProtocolError` and the next blocks proceed.
    """

    def __init__(
        self,
        channel: ClassicalChannel,
        variant: str | Variant | None = None,
        timeout_s: float = 10.0,
        max_in_flight: int = 4,
    ) -> None:
        if not timeout_s > 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s!r}")
        if not isinstance(max_in_flight, int) or max_in_flight < 1:
            raise ValueError(f"max_in_flight must be an int >= 1, got {max_in_flight!r}")
        self.channel = channel
        self.variant = get_variant(variant)  # None: the default for each frame's length
        self.timeout_s = timeout_s
        self.max_in_flight = max_in_flight

    def reconcile(
        self, bob_bits: NDArray[np.uint8], qber: float, block_id: int = 0
    ) -> tuple[NDArray[np.uint8], CascadeStats]:
        """Correct one frame; raises ProtocolError if the exchange fails."""
        out = self.reconcile_many([(block_id, bob_bits, qber)])[0]
        if out.error is not None:
            raise out.error
        assert out.bits is not None
        return out.bits, out.stats

    def reconcile_many(self, frames: Iterable[tuple[int, NDArray[np.uint8], float]]) -> list[CascadeOutcome]:
        """Correct frames `(block_id, bob_bits, qber)` with several blocks in flight; one outcome per frame,
        in input order."""
        todo = []
        for block_id, bits, qber in frames:
            if not isinstance(block_id, int) or not 0 <= block_id <= MAX_BLOCK_ID:
                raise ValueError(f"block_id must be an int in [0, 2**63), got {block_id!r}")
            check_bits(bits, "bob_bits")
            if not 1 <= bits.size <= MAX_N:
                raise ValueError(f"bob_bits must hold 1 to {MAX_N} bits, got {bits.size}")
            if not isinstance(qber, float | int) or not 0.0 <= qber < 0.5:
                raise ValueError(f"qber must be in [0, 0.5), got {qber!r}")
            todo.append((block_id, bits, float(qber)))
        if len({b for b, _, _ in todo}) != len(todo):
            raise ValueError("block ids must be distinct")
        outcomes: dict[int, CascadeOutcome] = {}
        active: dict[int, _BobBlock] = {}
        nxt = 0
        while nxt < len(todo) or active:
            while nxt < len(todo) and len(active) < self.max_in_flight:
                block_id, bits, qber = todo[nxt]
                nxt += 1
                blk = _BobBlock(block_id, bits, qber, self.variant)
                active[block_id] = blk
                self._send(blk, blk.first_message())
            wait = min(b.deadline for b in active.values()) - time.monotonic()
            before = self.channel.bytes_received
            try:
                msg = self.channel.recv(max(wait, 0.0))
            except ProtocolError as exc:
                now = time.monotonic()
                # a timeout ends the blocks whose deadline passed; a malformed message cannot be
                # attributed to one block, so it ends every block in flight
                timed_out = isinstance(exc, ChannelTimeout)
                late = [b for b in active.values() if b.deadline <= now] if timed_out else list(active.values())
                for blk in late:
                    self._fail(blk, exc, active, outcomes)
                continue
            reply_id = msg.header.get("block")
            found = active.get(reply_id) if isinstance(reply_id, int) else None
            if found is None:
                log.warning("cascade: reply for no block in flight dropped")
                continue
            blk = found
            blk.stats.messages += 1
            blk.stats.bytes_received += self.channel.bytes_received - before
            try:
                ask = blk.on_reply(msg)
            except ProtocolError as exc:
                self._fail(blk, exc, active, outcomes)
                continue
            if ask is None:
                self._send(blk, blk.done_message(aborted=False))
                del active[blk.block_id]
                outcomes[blk.block_id] = CascadeOutcome(blk.block_id, blk.bits, blk.stats)
                blk.release()
            else:
                self._send(blk, ask)
        return [outcomes[b] for b, _, _ in todo]

    def _send(self, blk: _BobBlock, msg: Message) -> None:
        before = self.channel.bytes_sent
        self.channel.send(msg)
        blk.stats.messages += 1
        blk.stats.bytes_sent += self.channel.bytes_sent - before
        blk.deadline = time.monotonic() + self.timeout_s

    def _fail(
        self, blk: _BobBlock, exc: ProtocolError, active: dict[int, _BobBlock], outcomes: dict[int, CascadeOutcome]
    ) -> None:
        log.warning("cascade: block %d failed: %s", blk.block_id, exc)
        try:
            self.channel.send(blk.done_message(aborted=True))
        except Exception:  # noqa: BLE001, S110 - the channel may be what failed
            pass
        blk.stats.time_s = time.perf_counter() - blk.t0
        blk.release()
        active.pop(blk.block_id, None)
        outcomes[blk.block_id] = CascadeOutcome(blk.block_id, None, blk.stats, exc)

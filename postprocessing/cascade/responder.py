"""Alice's side of Cascade: answer Bob's parity questions about her frames, and count what leaks."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from postprocessing.bits import check_bits
from postprocessing.cascade import kernels, shuffle
from postprocessing.cascade.channel import ClassicalChannel, LoopbackEnd, Message
from postprocessing.cascade.passes import PassTables
from postprocessing.cascade.protocol import (
    ASK,
    DONE,
    ERROR,
    MAX_BLOCK_ID,
    MAX_N,
    MAX_PASSES,
    PARITY,
    header_dict,
    header_int,
    header_seed,
)
from postprocessing.cascade.variants import BICONF, BLOCK
from postprocessing.errors import ProtocolError

__all__ = ["CascadeResponder", "ResponderResult"]

log = logging.getLogger(__name__)

_NO_BITS = np.zeros(0, dtype=np.uint8)


@dataclass
class ResponderResult:
    """Alice's account of one block: the parity bits she revealed, and how it ended."""

    block_id: int
    leaked_bits: int
    completed: bool
    reason: str = ""


class _AliceBlock:
    def __init__(self, block_id: int, bits: NDArray[np.uint8]) -> None:
        self.block_id = block_id
        self.bits = bits
        self.tables: PassTables | None = None
        self.seed: bytes | None = None
        self.seq = 0
        self.leaked = 0
        self.shuffle_first = False
        self.touched = time.monotonic()

    def handle_ask(self, msg: Message) -> Message:
        h = msg.header
        seq = header_int(h, "seq", 0, 2**62)
        if seq != self.seq:
            raise ProtocolError(f"cascade: ASK out of order (sequence {seq}, expected {self.seq})")
        self.seq += 1
        reply: dict[str, object] = {"block": self.block_id, "seq": seq}
        start = header_dict(h, "start")
        if (start is None) != (seq != 0):
            raise ProtocolError("cascade: the first ASK of a block, and only it, carries 'start'")
        if start is not None:
            n = header_int(start, "n", 1, MAX_N)
            if n != self.bits.size:
                raise ProtocolError(f"cascade: Bob's frame has {n} bits, Alice's {self.bits.size}")
            bob_seed = header_seed(start, "seed", shuffle.SEED_BYTES)
            alice_seed = shuffle.draw_seed()
            self.seed = shuffle.shared_seed(bob_seed, alice_seed)
            self.shuffle_first = bool(start.get("shuffle_first", False))
            self.tables = PassTables(self.bits, MAX_PASSES, keep_inverse=False, mask_capacity=16, range_tables=True)
            reply["seed"] = alice_seed.hex()
        t = self.tables
        assert t is not None
        if len(msg.buffers) != 3:
            raise ProtocolError("cascade: ASK must carry 3 question buffers")
        q_pass, q_blk, q_node = msg.buffers
        if not (
            q_pass.dtype == np.uint8
            and q_blk.dtype == np.uint32
            and q_node.dtype == np.uint32
            and q_pass.size == q_blk.size == q_node.size
        ):
            raise ProtocolError("cascade: question buffers must be u1, u4, u4 of equal length")
        passes = h.get("passes", [])
        if not isinstance(passes, list) or len(passes) > MAX_PASSES:
            raise ProtocolError("cascade header field 'passes' must be a list of pass descriptions")
        tops = []
        n = self.bits.size
        for spec in passes:
            if not isinstance(spec, dict):
                raise ProtocolError("cascade: a pass description must be an object")
            j = header_int(spec, "index", 0, MAX_PASSES - 1)
            if j != t.started:
                raise ProtocolError(f"cascade: pass {j} started out of order (next is {t.started})")
            kind = header_int(spec, "kind", BLOCK, BICONF)
            size = header_int(spec, "size", 1, n) if kind == BLOCK else header_int(spec, "size", n, n)
            shuffled = kind == BLOCK and (j > 0 or self.shuffle_first)
            if shuffled and t.n_rows >= 8:
                raise ProtocolError("cascade: too many shuffled passes")
            t.plan(j, kind, size)
            t.start(j, self.seed, shuffle_block=shuffled)
            mr = int(t.mrow[j]) if t.mrow[j] >= 0 else 0
            tops.append(kernels.top_parities(kind, size, int(t.nb[j]), t.n, t.rows[t.rowi[j]], t.masks[mr]))
        packed, valid = kernels.pack_answers(
            kernels.answer_questions(
                t.kind,
                t.ksz,
                t.nb,
                t.stride,
                t.rowi,
                t.mrow,
                t.trow,
                t.ranges,
                t.started,
                t.n,
                t.rows,
                t.masks,
                q_pass,
                q_blk,
                q_node,
            )
        )
        if not valid:
            raise ProtocolError("cascade: a question names no block or tree node")
        if tops:
            top = np.concatenate(tops)
            packed_top = np.packbits(top, bitorder="little")
        else:  # most rounds start no pass
            top = packed_top = _NO_BITS
        # Eve learns one parity per answer and per block of each newly started pass: all counted
        self.leaked += q_pass.size + top.size
        self.touched = time.monotonic()
        return Message(PARITY, reply, (packed, packed_top))


class CascadeResponder:
    """Alice: holds her frames by block id and answers Bob's questions over `channel`.

    Register a frame with `add_block` before Bob asks about it. `serve_pending()` answers every
    message already delivered (single-thread loopback); `serve(duration_s)` loops for a thread.
    A malformed message or a question about an unknown block is answered with ERROR where the block
    can be named and never crashes the responder; a block Bob stops asking about expires after
    `timeout_s`.
    """

    def __init__(self, channel: ClassicalChannel, timeout_s: float = 10.0, keep_results: int = 4096) -> None:
        if not timeout_s > 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s!r}")
        self.channel = channel
        self.timeout_s = timeout_s
        self._blocks: dict[int, _AliceBlock] = {}
        self.results: dict[int, ResponderResult] = {}  # the last `keep_results` finished blocks
        self.keep_results = keep_results
        self.tamper_answers: Callable[[np.ndarray], np.ndarray] | None = (
            None  # tests: a callable(answers) -> answers modelling a lying responder
        )

    def add_block(self, block_id: int, alice_bits: NDArray[np.uint8]) -> None:
        """Make Alice's frame `alice_bits` (one uint8 0/1 per bit) available for block `block_id`."""
        check_bits(alice_bits, "alice_bits")
        if not isinstance(block_id, int) or not 0 <= block_id <= MAX_BLOCK_ID:
            raise ValueError(f"block_id must be an int in [0, 2**63), got {block_id!r}")
        if not 1 <= alice_bits.size <= MAX_N:
            raise ValueError(f"alice_bits must hold 1 to {MAX_N} bits, got {alice_bits.size}")
        if block_id in self._blocks:
            raise ValueError(f"block_id {block_id} is already registered")
        self._blocks[block_id] = _AliceBlock(block_id, alice_bits)

    @property
    def pending_blocks(self) -> list[int]:
        """Block ids registered and not finished."""
        return list(self._blocks)

    def handle(self, msg: Message) -> Message | None:
        """Alice's reply to one message from Bob (None where none is due)."""
        block_id = msg.header.get("block")
        if not isinstance(block_id, int) or isinstance(block_id, bool) or block_id not in self._blocks:
            log.warning("cascade: message %s about an unknown block dropped", msg.type)
            if isinstance(block_id, int) and not isinstance(block_id, bool):
                return Message(ERROR, {"block": block_id, "seq": msg.header.get("seq"), "reason": "unknown block"})
            return None
        blk = self._blocks[block_id]
        if msg.type == DONE:
            leaked = msg.header.get("leaked")
            aborted = bool(msg.header.get("aborted", False))
            ok = not aborted and leaked == blk.leaked
            if not aborted and leaked != blk.leaked:
                log.error("cascade: block %d: Bob counted %r leaked bits, Alice %d", block_id, leaked, blk.leaked)
            self._finish(blk, ok, "" if ok else ("aborted by Bob" if aborted else "leak count mismatch"))
            return None
        if msg.type != ASK:
            self._finish(blk, False, f"unexpected message type {msg.type!r}")
            return Message(ERROR, {"block": block_id, "seq": msg.header.get("seq"), "reason": "unexpected type"})
        try:
            reply = blk.handle_ask(msg)
        except ProtocolError as exc:
            log.warning("cascade: block %d: %s", block_id, exc)
            self._finish(blk, False, str(exc))
            return Message(ERROR, {"block": block_id, "seq": msg.header.get("seq"), "reason": str(exc)})
        if self.tamper_answers is not None:
            reply = Message(reply.type, reply.header, tuple(self.tamper_answers(b) for b in reply.buffers))
        return reply

    def _finish(self, blk: _AliceBlock, completed: bool, reason: str) -> None:
        self._blocks.pop(blk.block_id, None)
        if blk.tables is not None:
            blk.tables.release()
            blk.tables = None
        self.results[blk.block_id] = ResponderResult(blk.block_id, blk.leaked, completed, reason)
        while len(self.results) > self.keep_results:
            del self.results[next(iter(self.results))]  # oldest first (dicts keep insertion order)

    def serve_pending(self, end: LoopbackEnd | None = None) -> None:
        """Answer every message already delivered on the channel (does not wait); only a loopback
        end can say what is already delivered."""
        ch = end if end is not None else self.channel
        if not isinstance(ch, LoopbackEnd):
            raise TypeError(f"serve_pending needs a LoopbackEnd (it polls), got {type(ch).__name__}")
        poll = ch.poll
        while True:
            try:
                msg = poll()
            except ProtocolError as exc:
                log.warning("cascade: malformed message dropped: %s", exc)
                continue
            if msg is None:
                break
            self._reply(msg)
        self.expire()

    def serve(self, duration_s: float, poll_s: float = 0.05) -> None:
        """Answer messages for `duration_s` seconds (for a responder thread or process)."""
        end = time.monotonic() + duration_s
        while time.monotonic() < end:
            try:
                msg = self.channel.recv(min(poll_s, max(0.0, end - time.monotonic())))
            except ProtocolError:
                self.expire()
                continue
            self._reply(msg)

    def _reply(self, msg: Message) -> None:
        try:
            reply = self.handle(msg)
        except Exception:  # one bad message must never stop Alice
            log.exception("cascade: handler failed on %s", msg.type)
            return
        if reply is not None:
            self.channel.send(reply)

    def expire(self) -> None:
        """Drop blocks Bob has not asked about for `timeout_s` (silent peer)."""
        now = time.monotonic()
        for blk in [b for b in self._blocks.values() if b.seq > 0 and now - b.touched > self.timeout_s]:
            self._finish(blk, False, "peer silent")

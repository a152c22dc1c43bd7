"""Bob's end of a link: drives sifting, Cascade, verification and privacy amplification.

`BobLink.process(detections)` runs one sift batch; when the batch completes a key block the block
is distilled at once (Bob asks, Alice answers). A protocol violation, a timeout, a failed
verification or a QBER above the threshold abort that block only: an alarm is raised, Alice is
told, and the next block proceeds. Bob persists his key as unconfirmed in the outbox before
telling Alice (BLOCK_DONE) and confirms it on her acknowledgement; after a crash, HELLO settles
which unconfirmed keys Alice also holds, so the key managers get a block on both sides or neither.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from node.classical import AuthenticationLocked, ClassicalChannelError, Message
from node.classical.errors import AuthenticationError
from node.link import protocol as P
from node.link.blocks import KeyBlock, KeyBlockAccumulator
from node.link.cascadechannel import CascadeOverSecureChannel
from node.link.distill import (
    DistilledKey,
    LinkSettings,
    block_key_length,
    privacy_amplification,
    refill_needed,
    split_secret,
    z_errors_by_class,
)
from node.link.mux import SESSION, BlockMux
from node.link.outbox import Outbox
from node.link.pool import BlockOutOfStep, BlockUnsettled, DistillPool
from node.link.retune import BobRetune
from node.ml.pipeline import LinkMonitor
from node.ml.retune import LinkRetuner
from postprocessing.cascade import CascadeReconciler
from postprocessing.errors import ProtocolError, VerificationFailed
from postprocessing.sifting import bob_request, bob_sift
from postprocessing.slotting import Detections
from postprocessing.verification import draw_seed, tags_match, verification_tag_bits

log = logging.getLogger(__name__)

MIN_QBER_ESTIMATE = 0.002


@dataclass(frozen=True)
class VerifiedBlock:
    """A block reconciled and verified with Alice, its key length agreed and its key amplified: what
    the in-order closing of the block needs (`secret` is None when the block yields no key)."""

    block: KeyBlock
    stats: Any  # Cascade's outcome statistics (leaked bits, round trips, time)
    qber_x: float
    qber_z: float
    z_errors: list[int]
    fk: Any  # the finite-key result
    length: int
    secret: np.ndarray | None = field(repr=False)
    t0: float


class BobLink:
    """Bob's protocol state for one link over `channel` (a node.classical.SecureChannel).

    With `workers` > 1 the channel is shared through a `BlockMux` and completed blocks are distilled
    by a `DistillPool` while sifting goes on (`close` stops both)."""

    def __init__(
        self,
        settings: LinkSettings,
        channel: object,
        outbox: Outbox,
        refill_auth: Callable[[bytes], None] | None = None,
        alarm: Callable[[str, str], None] | None = None,
        auth_available: Callable[[], tuple[int, int]] | None = None,
        rekey_auth: Callable[[bytes], None] | None = None,
        workers: int = 1,
        stop: threading.Event | None = None,
    ) -> None:
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise ValueError(f"workers must be an integer >= 1 (key blocks distilled at once), got {workers!r}")
        self.settings = settings
        self.channel = channel
        self.outbox = outbox
        self.refill_auth = refill_auth
        self.rekey_auth = rekey_auth
        self.auth_available = auth_available or (lambda: (0, 0))
        self.alarm = alarm or (lambda severity, text: log.warning("alarm %s: %s", severity, text))
        self.blocks = KeyBlockAccumulator(
            settings.block_bits, settings.n_intensities, next_block_id=outbox.max_block_id(settings.link_id) + 1
        )
        self.slot_hwm = -1
        self._cascade_channel = CascadeOverSecureChannel(channel)
        self.reconciler = CascadeReconciler(
            self._cascade_channel, settings.cascade_variant, timeout_s=settings.timeout_s
        )
        self.next_batch = 0
        self.qber_estimate: float | None = None
        self.counters = {
            "batches": 0,
            "detections": 0,
            "sifted_bits": 0,
            "blocks": 0,
            "aborted": 0,
            "key_bits": 0,
            "leaked_bits": 0,
            "auth_failures": 0,
            "auth_bits": 0,
            "finite_key_bits": 0,
        }
        self.last_block: dict[str, Any] = {}  # a JSON-ready report of the last block
        self.history: deque[dict[str, float]] = deque(maxlen=1000)  # per block: when, sifted so far, secret
        self._auth_mark = self._auth_consumed()
        self.monitor = LinkMonitor(
            settings.link_id,
            settings.qber_abort,
            self.alarm,  # KM03 detection, QL01 forecast
            retuner=LinkRetuner(settings, self.alarm),
        )  # QL02 re-tune advice
        self.pool: DistillPool | None = None
        self._stop = stop
        if workers > 1:
            mux = BlockMux(channel, stop)
            self.channel = mux.view(SESSION)
            self.pool = DistillPool(self, mux, workers)
        self.retune = BobRetune(self)  # the settings in force (persisted) and the RETUNE step

    def close(self) -> None:
        """Stop the distillation workers and the channel's I/O thread (blocks in flight are aborted)."""
        if self.pool is not None:
            self.pool.close()

    def _request(
        self, msg: Message, expected: str, frames: int, channel: object = None, refused_means_out_of_step: bool = False
    ) -> Message:
        channel = self.channel if channel is None else channel
        channel.send(msg)  # type: ignore[attr-defined]
        reply = channel.recv(timeout=self.settings.timeout_s)  # type: ignore[attr-defined]
        try:
            P.expect(reply, expected, frames)
        except ProtocolError as exc:
            if refused_means_out_of_step:  # Alice has no such block, or another one: the sifting lost step
                raise BlockOutOfStep(str(exc)) from None
            raise
        P.require_verified(reply)
        return reply

    @property
    def link(self) -> object | None:
        """The channel's `SecureLink` (None for a channel without one, e.g. in unit tests)."""
        return getattr(self.channel, "link", None)

    def _auth_consumed(self) -> int:
        """Authentication key bits consumed so far on this link (masks both ways and hash keys)."""
        link = self.link
        if link is None:
            return 0
        return (
            link.send_pool.consumed_bits  # type: ignore[attr-defined]
            + link.recv_pool.consumed_bits  # type: ignore[attr-defined]
            + getattr(link, "rekeyed_bits", 0)
        )

    def hello(self) -> None:
        """Start the session: check Alice runs the same settings, settle half-confirmed keys, agree
        on the next block id and learn which slots were already sifted (raises ProtocolError).

        HELLO carries a fresh nonce that HELLO_ACK must echo, so a HELLO_ACK recorded in an earlier
        session (before a restart) is refused even if its tag is authentic."""
        link = self.settings.link_id
        if self.pool is not None:  # a new session drops every block in flight on both sides
            self.pool.cancel_all("the session restarts (HELLO)")
            self.pool.mux.session_failure()  # what was refused before belongs to the old session
        unconfirmed = self.outbox.block_ids(link, "unconfirmed")
        nonce = os.urandom(16).hex()  # public and random: it tells Eve nothing, it only dates the reply
        self.channel.send(  # type: ignore[attr-defined]
            Message(
                P.HELLO,
                {
                    "settings": self.settings.fingerprint(),
                    "unconfirmed": unconfirmed,
                    "next_block": self.blocks.next_block_id,
                    "nonce": nonce,
                },
            )
        )
        deadline = time.monotonic() + self.settings.timeout_s
        while True:  # what Alice sent before she saw HELLO belongs to the old session: skip it
            reply = self.channel.recv(timeout=max(0.0, deadline - time.monotonic()))  # type: ignore[attr-defined]
            if reply.type == P.HELLO_ACK:
                break
        P.expect(reply, P.HELLO_ACK, 0)
        P.require_verified(reply)
        if reply.header.get("nonce") != nonce:
            raise ProtocolError("HELLO_ACK does not echo this session's nonce: replayed from an earlier session")
        if self.link is not None:
            self.link.clear_transcripts()  # type: ignore[attr-defined]
        if reply.header.get("ok") is not True:
            if self.retune.adopt_from_hello(reply):  # Alice's later re-tune, whose ACK Bob missed
                self.hello()
                return
            raise ProtocolError(f"link {link}: Alice's settings differ: {reply.header.get('settings')}")
        confirmed = reply.header.get("confirmed")
        if not isinstance(confirmed, list) or not set(confirmed) <= set(unconfirmed):
            raise ProtocolError("HELLO_ACK: 'confirmed' must list block ids Bob reported")
        self.outbox.confirm(link, confirmed)
        for block_id in self.outbox.pending_refills(link):  # Alice refilled with these before Bob stopped
            self._apply_refill(block_id)
        self.outbox.drop(link, [b for b in unconfirmed if b not in confirmed])
        if self.blocks.pending_bits:  # a partial block dies with the session it was sifted in
            self.counters["aborted"] += 1
        self.blocks.discard()
        self.monitor.discard_block()
        self.blocks.next_block_id = P.header_int(reply, "next_block")
        self.slot_hwm = P.header_int(reply, "slot_hwm", -1)

    # -- sifting ----------------------------------------------------------------------------------

    def process(self, detections: Detections) -> list[DistilledKey]:
        """Sift one batch of detections with Alice; distil the block it completes, if any (with
        `workers` > 1 the block goes to the pool and its key reaches the outbox later, in block order)."""
        if self.pool is not None:
            self.pool.check()  # the channel fell out of step in a block in flight: resynchronise first
        if len(detections) and int(detections.slot[0]) <= self.slot_hwm:
            keep = detections.slot > self.slot_hwm  # sifted before a restart: never again
            detections = Detections(
                detections.slot[keep],
                detections.basis[keep],
                detections.bit[keep],
                detections.clicks[keep],
                detections.time[keep],
                0,
                0,
            )
        if len(detections) == 0:
            return []
        self.monitor.on_batch(int(detections.slot[0]), int(detections.slot[-1]), detections)
        batch = self.next_batch
        self.next_batch += 1
        block_id = self.blocks.next_block_id  # the sift exchange belongs to the transcript of the block it fills
        channel = self.channel if self.pool is None else self.pool.mux.view(block_id)
        request = bob_request(detections.slot, detections.basis)
        reply_msg = self._request(
            P.in_block(P.sift_request(batch, request), block_id), P.SIFT_REPLY, 5, channel=channel
        )
        sifted, report = bob_sift(request, detections.bit, P.parse_sift_reply(reply_msg, batch))
        channel.send(P.in_block(P.sift_report(batch, report), block_id))  # type: ignore[attr-defined]
        self.counters["batches"] += 1
        self.counters["detections"] += len(detections)
        self.counters["sifted_bits"] += int(sifted.bits.size)
        block = self.blocks.add(batch, sifted)
        if block is None:
            return []
        if self.pool is not None:
            self.pool.submit(block, self.counters["sifted_bits"], self.monitor.end_block())
            if self.retune.pending is not None:  # a re-tune falls between blocks: every block in flight closes first
                self.pool.wait_idle(self._stop)
            self.retune.after_block()
            return []
        key = self.distill(block)
        self.retune.after_block()  # a re-tune, if due, at this block boundary
        return [] if key is None else [key]

    # -- one block ----------------------------------------------------------------------------------

    def distill(self, block: KeyBlock) -> DistilledKey | None:
        """Reconcile, verify and amplify one block with Alice; None when the block yields no key."""
        try:
            estimate = self.qber_estimate
            verified = self.reconcile_block(block, self.channel, self.reconciler, self._cascade_channel, estimate)
            return self.close_block(verified, self.channel, self.counters["sifted_bits"])
        except AuthenticationLocked:
            raise  # the session stops: the daemon raises the critical alarm
        except (ProtocolError, ClassicalChannelError) as exc:
            self.abort_block(block.block_id, exc, self.channel)
            self._drain()
            # resynchronise with an authenticated HELLO exchange: it settles whether Alice committed a
            # block Bob holds unconfirmed, and restarts both block accumulators in step (an altered
            # message may have left Alice with other batches than Bob)
            try:
                self.hello()
            except AuthenticationLocked:
                raise
            except (ProtocolError, ClassicalChannelError) as exc2:
                log.warning(
                    "link %s: resynchronising after block %d failed: %s", self.settings.link_id, block.block_id, exc2
                )
            return None

    def abort_block(self, block_id: int, exc: Exception, channel: object) -> None:
        """Count and alarm a failed block, tell Alice, and forget its transcript (no key on either side)."""
        self.counters["aborted"] += 1
        if isinstance(exc, AuthenticationError) or isinstance(exc.__cause__, AuthenticationError):
            self.counters["auth_failures"] += 1
        self.alarm("major", f"link {self.settings.link_id}: block {block_id} aborted: {exc}")
        try:
            channel.send(P.in_block(P.abort(block_id, str(exc)), block_id))  # type: ignore[attr-defined]
        except AuthenticationLocked:
            raise
        except ClassicalChannelError:
            pass
        if self.link is not None:
            self.link.end_transcript(block_id)  # type: ignore[attr-defined]

    def reconcile_block(
        self,
        block: KeyBlock,
        channel: object,
        reconciler: CascadeReconciler,
        cascade_channel: CascadeOverSecureChannel,
        estimate: float | None,
    ) -> VerifiedBlock:
        """Cascade, verification and privacy amplification of one block over `channel`: what depends on
        this block alone (blocks in flight run it side by side; `close_block` then runs in block order).
        `estimate` is Cascade's QBER estimate (None: this block's X-basis QBER)."""
        t0 = time.perf_counter()
        s = self.settings
        qber_x = block.counts.qber(1)
        cascade_channel.block = block.block_id
        self._request(
            P.in_block(
                Message(
                    P.BLOCK_START, {"block": block.block_id, "n_bits": block.n_bits, "last_batch": block.last_batch}
                ),
                block.block_id,
            ),
            P.BLOCK_READY,
            0,
            channel=channel,
            refused_means_out_of_step=qber_x <= s.qber_abort,
        )
        if qber_x > s.qber_abort:
            raise ProtocolError(f"X-basis QBER {qber_x:.4f} above the abort threshold {s.qber_abort}")
        estimate = estimate if estimate is not None else qber_x
        corrected, stats = reconciler.reconcile(block.bits, max(estimate, MIN_QBER_ESTIMATE), block.block_id)
        # Disclosed in VERIFY below: Eve learns the Z error count of each intensity class; each count is
        # paid for as log2(n_k + 1) bits in `block_key_length` (distill.py), beside Cascade's parities
        # and the verification tag's length.
        z_errors = z_errors_by_class(block.bits, corrected, block.classes, s.n_intensities)
        qber_z = sum(z_errors) / block.n_bits
        if qber_z > s.qber_abort:
            raise ProtocolError(f"QBER {qber_z:.4f} found by error correction is above the threshold {s.qber_abort}")
        seed = draw_seed(s.tag_bits)
        tag = verification_tag_bits(corrected, seed)
        channel.send(  # type: ignore[attr-defined]
            P.in_block(
                Message(
                    P.VERIFY,
                    {"block": block.block_id, "z_errors": z_errors},
                    [seed, tag],
                ),
                block.block_id,
            )
        )
        reply = channel.recv(timeout=s.timeout_s)  # type: ignore[attr-defined]
        P.expect(reply, P.VERIFY_RESULT, len(reply.frames) if reply.type == P.VERIFY_RESULT else 0)
        if P.header_int(reply, "block") != block.block_id or not reply.frames or not isinstance(reply.frames[0], bytes):
            raise ProtocolError("VERIFY_RESULT does not answer this block's verification")
        if not tags_match(tag, reply.frames[0]):
            raise VerificationFailed("verification tags differ: residual errors after Cascade")
        fk = block_key_length(s, block.counts, z_errors, stats.leaked_bits, block.n_bits)
        length = P.header_int(reply, "length", 0)
        own = fk.length if fk.length >= 256 else 0
        if length != own:
            raise ProtocolError(f"Alice computed a key length of {length} bits, Bob {own}")
        secret = None
        if length:
            seed_words = P.frame_array(reply, 1, np.uint64, "toeplitz seed")
            if seed_words.size != (block.n_bits + length - 1 + 63) // 64:
                raise ProtocolError("VERIFY_RESULT: Toeplitz seed of the wrong length")
            try:
                secret = privacy_amplification(corrected, seed_words, length)
            except ValueError as exc:
                raise ProtocolError(f"VERIFY_RESULT: bad Toeplitz seed: {exc}") from None
        return VerifiedBlock(block, stats, qber_x, qber_z, z_errors, fk, length, secret, t0)

    def close_block(
        self, v: VerifiedBlock, channel: object, sifted_total: int, collected: Any = None
    ) -> DistilledKey | None:
        """The steps that must follow block order: the monitor and Cascade's next estimate, the records,
        the outbox (unconfirmed), BLOCK_DONE, the refill or rekey of the authentication pools, confirm.
        `sifted_total` is the sifted bits up to this block's end; `collected` the monitor's view of it
        (None: taken now)."""
        s = self.settings
        block, stats, length, fk = v.block, v.stats, v.length, v.fk
        self.qber_estimate = self.monitor.on_block(block.counts, v.z_errors, v.qber_z, collected)
        self.last_block = {
            "block": block.block_id,
            "n_bits": block.n_bits,
            "qber": v.qber_z,
            "qber_x": v.qber_x,
            "leaked_bits": stats.leaked_bits,
            "round_trips": stats.round_trips,
            "detections": block.counts.detections.tolist(),
            "errors_x": block.counts.errors[1].tolist(),
            "z_errors": v.z_errors,
            "secret_bits": length,
            "finite_key": fk.as_dict(),
            "time_s": time.perf_counter() - v.t0,
        }
        self.history.append(
            {
                "block": block.block_id,
                "t": time.monotonic(),
                "n_bits": block.n_bits,
                "qber": v.qber_z,
                "sifted_total": sifted_total,
                "secret_bits": length,
                "leaked_bits": stats.leaked_bits,
                "round_trips": stats.round_trips,
                "cascade_s": stats.time_s,
            }
        )
        self.counters["leaked_bits"] += stats.leaked_bits
        if length == 0:
            log.info("link %s: block %d leaves no secret key", s.link_id, block.block_id)
            if self.link is not None:
                self.link.end_transcript(block.block_id)  # type: ignore[attr-defined]
            self.counters["aborted"] += 1  # as Alice counts it, so both ends stop at the same max_blocks
            return None
        assert v.secret is not None
        refill_bits = refill_needed(*self.auth_available(), s.auth_reserve_bits, length)
        rekey = self.rekey_auth is not None and (block.block_id + 1) % P.REKEY_EVERY_BLOCKS == 0
        if rekey:  # fresh hash keys from this block's key, on the schedule (the refill path carries them)
            refill_bits = min(refill_bits + P.REKEY_BITS, (length // 256) * 256)
            rekey = refill_bits >= P.REKEY_BITS
        refill, key_bytes = split_secret(v.secret, length, refill_bits)
        fk_record = {**fk.as_dict()}
        key = DistilledKey(
            s.link_id,
            block.block_id,
            key_bytes,
            8 * len(key_bytes),
            v.qber_z,
            stats.leaked_bits,
            block.n_bits,
            fk_record,
        )
        self.outbox.put(key, "unconfirmed", bytes([rekey]) + refill)
        # Bob's closing tag over the whole transcript: Alice commits only if it matches her view
        self._block_done(block.block_id, refill_bits, rekey, channel)
        # Alice's closing tag verified (in `_request`): both views of the transcript agree
        eps_auth = 2 * self.link.transcript_epsilon(block.block_id) if self.link is not None else 0.0  # type: ignore[attr-defined]
        if self.link is not None:
            self.link.end_transcript(block.block_id)  # type: ignore[attr-defined]
        self.outbox.confirm(s.link_id, [block.block_id])
        self._apply_refill(block.block_id)
        auth_now = self._auth_consumed()
        auth_bits = auth_now - self._auth_mark
        self._auth_mark = auth_now
        fk_record["eps_auth"] = eps_auth
        self.last_block.update(
            eps_auth=eps_auth, auth_bits=auth_bits, rekey=rekey, refill_bits=refill_bits, net_key_bits=key.length_bits
        )
        self.history[-1].update(eps_auth=eps_auth, auth_bits=auth_bits, net_key_bits=key.length_bits)
        self.last_block["finite_key"]["eps_auth"] = eps_auth
        self.counters["blocks"] += 1
        self.counters["key_bits"] += key.length_bits
        self.counters["finite_key_bits"] += length
        self.counters["auth_bits"] += auth_bits
        return key

    def _block_done(self, block_id: int, refill_bits: int, rekey: bool, channel: Any) -> None:
        """BLOCK_DONE -> BLOCK_DONE_ACK for a block Bob holds unconfirmed. An abort with Alice's own
        tag says she committed nothing: Bob forgets his copy (`ProtocolError`); any other failure
        leaves it unconfirmed for the next HELLO to settle (`BlockUnsettled`)."""
        done = Message(P.BLOCK_DONE, {"block": block_id, "refill_bits": refill_bits, "rekey": rekey})
        try:
            channel.send(P.in_block(done, block_id, closing=True))
            reply = channel.recv(timeout=self.settings.timeout_s)
            refused = reply.type == P.BLOCK_ABORT and reply.verified and reply.transcript is None
            if refused and reply.header.get("block") == block_id:
                self.outbox.drop(self.settings.link_id, [block_id])
            else:
                P.expect(reply, P.BLOCK_DONE_ACK, 0)
                P.require_verified(reply)
                return
        except AuthenticationLocked:
            raise
        except (ProtocolError, ClassicalChannelError) as exc:
            raise BlockUnsettled(f"block {block_id} left unconfirmed, for HELLO to settle: {exc}") from exc
        raise ProtocolError(f"Alice refused block {block_id}'s closing tag: {reply.header.get('reason', '')}")

    def _apply_refill(self, block_id: int) -> None:
        stored = self.outbox.refill_of(self.settings.link_id, block_id)
        rekey, refill = (stored[0] == 1, stored[1:]) if stored else (False, b"")
        if rekey and self.rekey_auth is not None:
            self.rekey_auth(refill[: P.REKEY_BITS // 8])
            refill = refill[P.REKEY_BITS // 8 :]
        if self.refill_auth is not None and refill:
            self.refill_auth(refill)
        self.outbox.refill_applied(self.settings.link_id, block_id)

    def _drain(self) -> None:
        """After an abort, drop what Alice still had in flight for the dead block."""
        while True:
            try:
                self.channel.recv(timeout=0.05)  # type: ignore[attr-defined]
            except ClassicalChannelError:
                return

"""Alice's end of a link: answers Bob's sifting, Cascade and verification, draws the Toeplitz seed.

Alice never starts a conversation: `handle(message)` returns her replies, and `serve()` loops on
the channel. Per block she holds her secret key in memory until Bob reports (BLOCK_DONE) that he
has persisted the same key; she then persists hers as confirmed in the outbox, from which it goes
to the key manager. Any protocol violation aborts that block only. Slots are sifted at most once:
requests at or below the persisted high-water mark are refused.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, NoReturn

import numpy as np

from drivers.transmitter import SlotStates, StateReuseError, Transmitter, fresh_slots
from node.classical import (
    AuthenticationLocked,
    ChannelTimeout,
    ClassicalChannelError,
    Message,
    TranscriptAuthenticationError,
    UnknownMessageType,
)
from node.classical.dispatch import DispatchTable
from node.link import protocol as P
from node.link.blocks import KeyBlock, KeyBlockAccumulator
from node.link.distill import (
    DistilledKey,
    LinkSettings,
    block_key_length,
    privacy_amplification,
    split_secret,
)
from node.link.outbox import Outbox
from node.link.retune import AliceRetune
from postprocessing.bits import n_words
from postprocessing.cascade import CascadeResponder, ClassicalChannel
from postprocessing.cascade import Message as CascadeMessage
from postprocessing.errors import ProtocolError, VerificationFailed
from postprocessing.sifting import SiftedKey, alice_complete, alice_sift
from postprocessing.verification import tags_match, verification_tag_bits

log = logging.getLogger(__name__)

MAX_PENDING_BATCHES = 64


class _NoChannel(ClassicalChannel):
    """Alice's Cascade responder answers through `handle`; it never touches a channel itself."""

    def send(self, msg: CascadeMessage) -> None:  # pragma: no cover - never called
        raise RuntimeError("the responder's replies go through AliceLink.handle")

    def recv(self, timeout_s: float) -> CascadeMessage:  # pragma: no cover - never called
        raise RuntimeError("the responder's questions come through AliceLink.handle")


@dataclass
class _StagedKey:
    secret: Future[np.ndarray]  # packed secret bits of the block, amplified off the protocol thread
    length: int
    qber: float
    leaked_bits: int
    sifted_bits: int
    finite_key: dict
    refill_bits: int | None = None  # set by BLOCK_DONE
    rekey: bool = False  # set by BLOCK_DONE: the refill's first bits become the new hash keys


class AliceLink:
    """Alice's protocol state for one link."""

    def __init__(
        self,
        settings: LinkSettings,
        transmitter: Transmitter,
        outbox: Outbox,
        refill_auth: Callable[[bytes], None] | None = None,
        alarm: Callable[[str, str], None] | None = None,
        rekey_auth: Callable[[bytes], None] | None = None,
    ) -> None:
        self.settings = settings
        self.transmitter = transmitter
        self.outbox = outbox
        self.slot_hwm = outbox.get_counter(f"{settings.link_id}:slot_hwm", -1)
        self.refill_auth = refill_auth
        self.rekey_auth = rekey_auth
        self.alarm = alarm or (lambda severity, text: log.warning("alarm %s: %s", severity, text))
        self.blocks = KeyBlockAccumulator(
            settings.block_bits, settings.n_intensities, next_block_id=outbox.max_block_id(settings.link_id) + 1
        )
        self._pending: dict[int, SiftedKey] = {}
        self._ready: dict[int, KeyBlock] = {}
        self._active: dict[int, KeyBlock] = {}
        self._staged: dict[int, _StagedKey] = {}
        self.responder = CascadeResponder(_NoChannel(), timeout_s=settings.timeout_s)
        self.counters = {
            "batches": 0,
            "blocks": 0,
            "aborted": 0,
            "key_bits": 0,
            "auth_failures": 0,
            "stale_slots": 0,
            "state_reuse_refused": 0,
        }
        self.retune = AliceRetune(self)  # the re-tune in force (persisted) and the RETUNE step
        # CPU seconds of the handling thread spent in each message type's handler, and both figures
        # as they stood at each commit (the capacity bench's split of Alice's serial thread)
        self.handler_cpu_s: dict[str, float] = {}
        self.cpu_at_commit: deque[dict[str, Any]] = deque(maxlen=64)
        self._amplifier: ThreadPoolExecutor | None = None  # privacy amplification's thread, from the first VERIFY
        # Bob's requests -> Alice's handlers, built once; any other type is answered with ERROR and alarmed
        self.table: DispatchTable[Callable[[Message], list[Message]]] = DispatchTable(
            {
                P.HELLO: self._on_hello,
                P.SIFT_REQUEST: self._on_sift_request,
                P.SIFT_REPORT: self._on_sift_report,
                P.BLOCK_START: self._on_block_start,
                P.CASCADE: self._on_cascade,
                P.VERIFY: self._on_verify,
                P.BLOCK_DONE: self._on_block_done,
                P.BLOCK_ABORT: self._on_abort,
                P.RETUNE: self.retune.on_retune,
            },
            name=f"link {settings.link_id} (Alice)",
            on_unknown=self._unknown_type,
            logger=log,
        )
        # committed blocks whose refill (and new hash keys) are not applied yet: those a crash left
        # behind are applied now (key epochs let the peer be ahead or behind: `SecureLink.rekey`)
        self._deferred_auth: list[int] = outbox.pending_refills(settings.link_id)
        self.apply_auth_updates()

    # -- message handling ------------------------------------------------------------------------

    def handle(self, msg: Message) -> list[Message]:
        """Alice's replies to one message from Bob (a protocol violation aborts only its block).

        Replies belong to the transcript of the message they answer; HELLO_ACK carries its own tag."""
        replies = self._handle(msg)
        for reply in replies:
            if reply.transcript is None and reply.type not in P.TAGGED and msg.transcript is not None:
                reply.transcript = msg.transcript
        return replies

    def _unknown_type(self, msg: Message) -> None:
        self.alarm(
            "major",
            f"link {self.settings.link_id}: Bob sent a message of unknown type "
            f"{str(msg.type)[:64]}; answered with ERROR",
        )

    def _handle(self, msg: Message) -> list[Message]:
        try:
            handler = self.table.handler_for(msg)
        except UnknownMessageType as exc:
            error = self.table.failed(msg, exc)
            return [] if error is None else [error]
        started = time.thread_time()
        try:
            P.require_verified(msg)
            return handler(msg)
        except ProtocolError as exc:
            block = msg.header.get("block")
            log.error("link %s: %s: %s", self.settings.link_id, msg.type, exc)
            if isinstance(block, int) and not isinstance(block, bool):
                self._drop_block(block, str(exc))
                return [P.abort(block, str(exc))]
            return [P.abort(-1, str(exc))]  # a refused sift batch: Bob must not wait for a reply
        finally:
            kind = str(msg.type)
            self.handler_cpu_s[kind] = self.handler_cpu_s.get(kind, 0.0) + time.thread_time() - started

    def _on_hello(self, msg: Message) -> list[Message]:
        """Bob (re)starts the session: forget partial work, settle keys left half-confirmed."""
        theirs = msg.header.get("settings")
        mine = self.settings.fingerprint()
        nonce = msg.header.get("nonce")
        if not isinstance(nonce, str) or not 16 <= len(nonce) <= 64:
            raise ProtocolError("HELLO: 'nonce' must be a string of 16..64 characters (fresh per session)")
        if theirs != mine:
            if not self.retune.peer_behind(theirs):  # else Bob missed our last RETUNE_ACK: he adopts it
                self.alarm("critical", f"link {self.settings.link_id}: peer settings differ from ours")
            return [Message(P.HELLO_ACK, {"ok": False, "settings": mine, "nonce": nonce, **self.retune.hello_fields()})]
        unconfirmed = msg.header.get("unconfirmed", [])
        if not isinstance(unconfirmed, list) or not all(
            isinstance(b, int) and not isinstance(b, bool) for b in unconfirmed
        ):
            raise ProtocolError("HELLO: 'unconfirmed' must be a list of block ids")
        link = self.settings.link_id
        held = set(self.outbox.block_ids(link, "confirmed")) | set(self.outbox.block_ids(link, "delivered"))
        confirmed = []
        for block_id in unconfirmed:
            staged = self._staged.get(block_id)
            if staged is not None and staged.refill_bits is not None:
                self._commit(block_id, staged)
                held.add(block_id)
            if block_id in held:
                confirmed.append(block_id)
        if self.blocks.pending_bits or self._ready or self._active:
            self.counters["aborted"] += 1
        self.blocks.discard()
        for table in (self._pending, self._ready, self._active, self._staged):
            table.clear()
        bob_next = P.header_int(msg, "next_block")
        self.blocks.next_block_id = max(self.blocks.next_block_id, bob_next, self.outbox.max_block_id(link) + 1)
        return [
            Message(
                P.HELLO_ACK,
                {
                    "ok": True,
                    "settings": mine,
                    "nonce": nonce,
                    "confirmed": confirmed,
                    "next_block": self.blocks.next_block_id,
                    "slot_hwm": self.slot_hwm,
                },
            )
        ]

    def _on_sift_request(self, msg: Message) -> list[Message]:
        batch, request = P.parse_sift_request(msg)
        if len(self._pending) >= MAX_PENDING_BATCHES:
            raise ProtocolError(f"too many sift batches awaiting Bob's report (limit {MAX_PENDING_BATCHES})")
        if request.slot.size and int(request.slot[0]) <= self.slot_hwm:
            self._refuse_reuse(
                f"SIFT_REQUEST for slot {int(request.slot[0])}, at or below slots already sifted "
                f"(up to {self.slot_hwm}): a state is never used twice"
            )
        states = self._fresh_states(request.slot, request.basis)
        sifted, reply = alice_sift(request, states, self.settings.n_intensities)
        if request.slot.size:
            # The request is not authenticated yet (its block's transcript tag comes at the end), so
            # Eve may have forged it to learn Alice's bases, intensity classes and test bits for
            # slots of her choice, even slots not yet emitted. What she learns is worthless: the high-
            # water mark is raised, durably, before the reply leaves, and no slot at or below it is
            # ever sifted again, so the disclosed slots never enter a key. The cost of a forgery is
            # the raw key of those slots (a forged mark far ahead stops sifting until the operator
            # resets the link: denial of service, which Eve on the fibre can always cause).
            self.slot_hwm = int(request.slot[-1])
            self.outbox.set_counter(f"{self.settings.link_id}:slot_hwm", self.slot_hwm)
        self._pending[batch] = sifted
        return [P.sift_reply(batch, reply)]

    def _refuse_reuse(self, reason: str) -> NoReturn:
        """A state that was already used (or replayed by the source) is never sifted: error and alarm."""
        self.counters["state_reuse_refused"] += 1
        self.alarm("critical", f"link {self.settings.link_id}: state reuse refused: {reason}")
        raise ProtocolError(f"state reuse refused: {reason}")

    def _fresh_states(self, slots: np.ndarray, bob_basis: np.ndarray) -> SlotStates:
        """The states of the requested slots, with the slots whose state was not fresh (an AWG that
        replayed its pattern while the next upload ran) sifted out: Alice answers them as a basis
        mismatch, which discloses nothing of any fresh state. Counted in `stale_slots`."""
        fresh = fresh_slots(self.transmitter, slots)
        stale = int(fresh.size - np.count_nonzero(fresh))
        try:
            if not stale:
                return self.transmitter.states(slots)
            self.counters["stale_slots"] += stale
            states = self.transmitter.states(slots[fresh])
        except StateReuseError as exc:
            self._refuse_reuse(str(exc))
        basis = (np.asarray(bob_basis, np.uint8) ^ np.uint8(1)).astype(np.uint8)  # mismatch: never sifted
        bit = np.zeros(slots.size, np.uint8)
        intensity = np.zeros(slots.size, np.uint8)
        basis[fresh], bit[fresh], intensity[fresh] = states.basis, states.bit, states.intensity
        return SlotStates(np.asarray(slots).copy(), basis, bit, intensity)

    def _on_sift_report(self, msg: Message) -> list[Message]:
        batch, report = P.parse_sift_report(msg)
        sifted = self._pending.pop(batch, None)
        if sifted is None:
            raise ProtocolError(f"SIFT_REPORT for batch {batch}, which has no pending request")
        block = self.blocks.add(batch, alice_complete(sifted, report))
        self.counters["batches"] += 1
        if block is not None:
            self._ready[block.block_id] = block
        return []

    def _on_block_start(self, msg: Message) -> list[Message]:
        block_id = P.header_int(msg, "block")
        n_bits = P.header_int(msg, "n_bits", 1)
        block = self._ready.pop(block_id, None)
        if block is None:
            raise ProtocolError(f"BLOCK_START for block {block_id}, which Alice has not completed")
        if block.n_bits != n_bits or block.last_batch != P.header_int(msg, "last_batch"):
            raise ProtocolError(
                f"BLOCK_START: Bob's block {block_id} ({n_bits} bits) differs from Alice's ({block.n_bits} bits)"
            )
        qber_x = block.counts.qber(1)
        if qber_x > self.settings.qber_abort:
            self.alarm(
                "major",
                f"link {self.settings.link_id}: block {block_id} X-basis QBER {qber_x:.4f} "
                f"above the abort threshold {self.settings.qber_abort}",
            )
            raise ProtocolError(f"X-basis QBER {qber_x:.4f} above the abort threshold")
        self._active[block_id] = block
        self.responder.add_block(block_id, block.bits)
        return [Message(P.BLOCK_READY, {"block": block_id})]

    def _on_cascade(self, msg: Message) -> list[Message]:
        cmsg = P.unwrap_cascade(msg)
        reply = self.responder.handle(cmsg)
        return [] if reply is None else [P.wrap_cascade(reply)]

    def _on_verify(self, msg: Message) -> list[Message]:
        block_id = P.header_int(msg, "block")
        block = self._active.get(block_id)
        if block is None:
            raise ProtocolError(f"VERIFY for block {block_id}, which is not being reconciled")
        result = self.responder.results.get(block_id)
        if result is None or not result.completed:
            reason = result.reason if result is not None else "Cascade did not finish"
            raise ProtocolError(f"block {block_id}: Cascade failed on Alice's side ({reason})")
        seed, bob_tag = msg.frames if len(msg.frames) == 2 else (None, None)
        if not isinstance(seed, bytes) or not isinstance(bob_tag, bytes):
            raise ProtocolError("VERIFY: needs two raw frames (seed, Bob's tag)")
        z_errors = msg.header.get("z_errors")
        if (
            not isinstance(z_errors, list)
            or len(z_errors) != self.settings.n_intensities
            or not all(isinstance(e, int) and not isinstance(e, bool) and e >= 0 for e in z_errors)
            or np.any(np.asarray(z_errors) > block.counts.detections[0])
        ):
            raise ProtocolError("VERIFY: 'z_errors' must list one error count per intensity class")
        try:
            tag = verification_tag_bits(block.bits, seed)
        except ValueError as exc:
            raise ProtocolError(f"VERIFY: {exc}") from None
        if not tags_match(tag, bob_tag):
            self.alarm("major", f"link {self.settings.link_id}: block {block_id} verification tags differ")
            raise VerificationFailed("verification tags differ: residual errors after Cascade")
        fk = block_key_length(self.settings, block.counts, z_errors, result.leaked_bits, block.n_bits)
        length = fk.length
        reply_header = {"block": block_id, "length": length, "leaked": result.leaked_bits}
        if length < 256:
            self._drop_block(block_id, "finite-key length leaves no key")
            reply_header["length"] = 0
            return [Message(P.VERIFY_RESULT, reply_header, [tag])]
        seed_words = np.frombuffer(os.urandom(8 * n_words(block.n_bits + length - 1)), dtype=np.uint64).copy()
        tail = (block.n_bits + length - 1) % 64
        if tail:
            seed_words[-1] &= np.uint64((1 << tail) - 1)
        # The secret itself is sent nowhere (the seed is, below): it is computed on the amplification
        # thread (the Toeplitz product in C, without the GIL) while this thread answers the other
        # blocks' messages, and `_commit` takes it. The messages, their order and tags are unchanged.
        if self._amplifier is None:
            self._amplifier = ThreadPoolExecutor(1, thread_name_prefix="amplify")
        secret = self._amplifier.submit(privacy_amplification, block.bits, seed_words, length)
        qber = float(sum(z_errors)) / block.n_bits
        self._staged[block_id] = _StagedKey(secret, length, qber, result.leaked_bits, block.n_bits, fk.as_dict())
        self._active.pop(block_id, None)
        return [Message(P.VERIFY_RESULT, reply_header, [tag, seed_words])]

    def _on_block_done(self, msg: Message) -> list[Message]:
        block_id = P.header_int(msg, "block")
        staged = self._staged.get(block_id)
        if staged is None:
            raise ProtocolError(f"BLOCK_DONE for block {block_id}, which has no staged key")
        refill_bits = P.header_int(msg, "refill_bits", 0, staged.length)
        if refill_bits % 256:
            raise ProtocolError(f"BLOCK_DONE: refill_bits must be a multiple of 256, got {refill_bits}")
        rekey = msg.header.get("rekey", False)
        if not isinstance(rekey, bool) or (rekey and (refill_bits < P.REKEY_BITS or self.rekey_auth is None)):
            raise ProtocolError(
                "BLOCK_DONE: 'rekey' must be a boolean, true only with a refill of at least "
                f"{P.REKEY_BITS} bits on a link that can rekey"
            )
        # Bob's closing tag over the block's transcript verified (`require_verified`): commit
        staged.refill_bits = refill_bits
        staged.rekey = rekey
        self._commit(block_id, staged)
        return [P.in_block(Message(P.BLOCK_DONE_ACK, {"block": block_id}), block_id, closing=True)]

    def _commit(self, block_id: int, staged: _StagedKey) -> None:
        """Bob holds the block's key: persist ours as confirmed and refill the authentication pools."""
        assert staged.refill_bits is not None
        self._staged.pop(block_id, None)
        refill, key_bytes = split_secret(staged.secret.result(), staged.length, staged.refill_bits)
        key = DistilledKey(
            self.settings.link_id,
            block_id,
            key_bytes,
            8 * len(key_bytes),
            staged.qber,
            staged.leaked_bits,
            staged.sifted_bits,
            staged.finite_key,
        )
        # the refill is kept with the key until applied, so a crash before then applies it at restart
        self.outbox.put(key, "confirmed", bytes([staged.rekey]) + refill)
        # the pools and hash keys change only after BLOCK_DONE_ACK, tagged under the current ones, has left
        self._deferred_auth.append(block_id)
        self.counters["blocks"] += 1
        self.counters["key_bits"] += key.length_bits
        self.cpu_at_commit.append(
            {"block": block_id, "thread_cpu_s": time.thread_time(), "handler_cpu_s": dict(self.handler_cpu_s)}
        )

    def apply_auth_updates(self) -> None:
        """Apply the hash-key replacements and refills of committed blocks (after their replies left)."""
        link = self.settings.link_id
        while self._deferred_auth:
            block_id = self._deferred_auth.pop(0)
            stored = self.outbox.refill_of(link, block_id)
            rekey, refill = (stored[0] == 1, stored[1:]) if stored else (False, b"")
            if rekey and self.rekey_auth is not None:
                self.rekey_auth(refill[: P.REKEY_BITS // 8])
                refill = refill[P.REKEY_BITS // 8 :]
            if refill and self.refill_auth is not None:
                self.refill_auth(refill)
            self.outbox.refill_applied(link, block_id)

    def _on_abort(self, msg: Message) -> list[Message]:
        block = msg.header.get("block")
        reason = str(msg.header.get("reason", ""))[:200]
        if isinstance(block, int) and not isinstance(block, bool):
            self._drop_block(block, f"Bob aborted: {reason}")
        return []

    def _drop_block(self, block_id: int, reason: str) -> None:
        dropped = any(d.pop(block_id, None) is not None for d in (self._ready, self._active, self._staged))
        if dropped:
            self.counters["aborted"] += 1
            log.warning("link %s: block %d aborted: %s", self.settings.link_id, block_id, reason)

    def _locked_out(self, link: Any) -> bool:
        """True, with a critical alarm, once too many tags failed under the link's hash key: the
        session must stop until a fresh bootstrap secret is provisioned."""
        if link is None or not link.locked:
            return False
        self.alarm(
            "critical",
            f"link {self.settings.link_id}: {link.failed_tags} failed tags under one "
            "hash key: the session stops; provision a fresh bootstrap secret",
        )
        return True

    # -- loop ---------------------------------------------------------------------------------------

    def serve(
        self, channel: object, stop: threading.Event, poll_s: float = 0.2, until: Callable[[], bool] | None = None
    ) -> None:
        """Answer Bob on `channel` (a node.classical.SecureChannel) until `stop` is set (or `until()`).

        A message that fails authentication or decoding is dropped with an alarm; Bob's block then
        times out and is aborted, and the session goes on.
        """
        while not stop.is_set() and not (until is not None and until()):
            link = getattr(channel, "link", None)
            try:
                msg = channel.recv(timeout=poll_s)  # type: ignore[attr-defined]
            except ChannelTimeout:
                self.responder.expire()
                continue
            except AuthenticationLocked as exc:
                self.alarm("critical", f"link {self.settings.link_id}: authentication stopped the session: {exc}")
                return
            except TranscriptAuthenticationError as exc:
                # Bob's view of the block differs from ours: no commit, no refill; the mask is spent
                self.counters["auth_failures"] += 1
                self.alarm(
                    "major",
                    f"link {self.settings.link_id}: block {exc.transcript} transcript authentication "
                    f"failed, block aborted: {exc}",
                )
                self._drop_block(exc.transcript, "transcript authentication failed")
                if link is not None:
                    link.end_transcript(exc.transcript)
                if self._locked_out(link):
                    return
                try:
                    # with its own tag (outside the transcript): Bob may trust that Alice committed
                    # nothing of this block and drop his unconfirmed copy at once, without a HELLO
                    channel.send(P.abort(exc.transcript, "transcript authentication failed"))  # type: ignore[attr-defined]
                except ClassicalChannelError:
                    pass
                continue
            except ClassicalChannelError as exc:
                self.alarm("major", f"link {self.settings.link_id}: rejected classical message: {exc}")
                if self._locked_out(link):
                    return
                continue
            if msg.type == P.HELLO and msg.verified and link is not None:
                link.clear_transcripts()  # a new session: blocks of the old one are gone on both sides
            try:
                replies = self.handle(msg)
                if msg.type == P.BLOCK_ABORT and link is not None and msg.transcript is not None:
                    link.end_transcript(msg.transcript)  # Bob gave the block up: its transcript is done
            except Exception as exc:  # a bug in one handler must not stop Alice: abort that block only
                log.exception("link %s: handling %s failed", self.settings.link_id, msg.type)
                self.alarm("major", f"link {self.settings.link_id}: internal error on {msg.type}: {type(exc).__name__}")
                block = msg.header.get("block")
                block = block if isinstance(block, int) and not isinstance(block, bool) else -1
                self._drop_block(block, "internal error")
                replies = [P.abort(block, "internal error at Alice")]
            try:
                for reply in replies:
                    channel.send(reply)  # type: ignore[attr-defined]
                    if (
                        link is not None
                        and reply.transcript is not None
                        and (reply.closing or reply.type == P.BLOCK_ABORT)
                    ):
                        link.end_transcript(reply.transcript)
            except AuthenticationLocked as exc:
                self.alarm("critical", f"link {self.settings.link_id}: authentication stopped the session: {exc}")
                return
            except ClassicalChannelError as exc:
                self.alarm("major", f"link {self.settings.link_id}: cannot answer Bob: {exc}")
            finally:
                self.apply_auth_updates()

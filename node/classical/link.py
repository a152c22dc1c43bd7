"""An authenticated link between two peers: seal and open envelopes with the Wegman–Carter MAC.

Key layout. Both peers hold the same pre-shared bootstrap secret (a multiple of 32 bytes). It is cut
into 16-byte chunks; even-numbered chunks (0, 2, 4, ...) form the initiator->responder stream and
odd-numbered chunks (1, 3, 5, ...) the responder->initiator stream, so the two directions never
share a bit. In each stream the first chunk is that direction's Poly1305 hash key r (reused for
every message, as Wegman–Carter allows); the chunks after it fill that direction's `AuthKeyPool`
of one-time masks. `refill(material)` splits fresh secret bits (e.g. reserved from a distilled key
block, identical on both peers) the same way and appends them to the two pools.

Sequence numbers. Message number `seq` (0, 1, 2, ... per direction) is masked by the 128 bits at
pool position 128·seq, so a mask is never reused and a lost message cannot desynchronise the peers.
The receiver accepts only seq greater than the last accepted one (replays and reordering are
rejected) and reads the mask without consuming it until the tag verifies, so forgeries cannot burn
key; on success every mask up to and including seq's is consumed (the skipped ones as discarded).

Wire: the MAC frame (last frame) is the 8-byte little-endian seq followed by the 16-byte tag over
seq, the frame count and every other frame (length-prefixed). Per-message forgery probability:
`forgery_probability(L)` = 8·⌈L/16⌉/2^106 for a MAC input of L bytes (2^-83 for a 16 MiB message).

Transcript mode (`mode="transcript"`, the node link). A message with `Message.transcript` set (a block
ID) carries no tag: it is hashed into that block's transcript (`node.classical.transcript`), and the
closing messages of the block carry one tag each over the whole transcript, both directions. A
message without a transcript carries its own tag. Masks are taken in order from the pool; their
stream position travels in the MAC frame (kind, seq, block, position, key epochs, tag) and the receiver accepts
only a position within `MASK_WINDOW` masks of its own. Hash keys come in epochs: `rekey` starts a
new one, a tag names the epoch of its keys and the newest epoch its sender holds, and a sender uses
the newest epoch both ends hold, keeping older keys until the peer's authenticated tags show it has
the new ones. Every checked tag consumes its mask, failed
ones included; `max_failed_tags` failures under one hash key lock the link (`AuthenticationLocked`)
until `rekey` or a new bootstrap. An attempt by Eve on a mask the sender has not used yet makes
the sender's next tag on it be refused (not counted); the sender's next tag uses the next mask, so
the two ends fall back into step. Tagged messages are persisted (through `set_persistence`) before
`seal` returns their frames and before `open` returns them: masks are never reused and replays of
tagged messages are refused after a restart.

Persistence is the caller's: `state()` / `SecureLink.from_state()`. A sender that restarts must
never reuse a seq: persist `state()` before sealed frames leave, or persist `state(send_reserve=n)`
once per n messages — `set_persistence(persist, reserve=n)` makes `seal` do the latter itself. A
receiver that restarts from an older state would accept replays of the messages it accepted since:
persist after each accepted message that changes durable state.
"""

from __future__ import annotations

import struct
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from node.classical.envelope import (
    MAX_MESSAGE_BYTES,
    Message,
    as_buffer,
    check_version,
    decode_body,
    encode_body,
)
from node.classical.errors import (
    AuthenticationError,
    AuthenticationLocked,
    AuthKeyExhausted,
    MessageFormatError,
    ReplayError,
    TranscriptAuthenticationError,
)
from node.classical.keypool import AuthKeyPool
from node.classical.mac import (
    HASH_KEY_BYTES,
    MASK_BYTES,
    TAG_BITS,
    TAG_BYTES,
    forgery_probability,
    tags_equal,
    wc_tag,
)
from node.classical.transcript import TranscriptHash, closing_tag

__all__ = [
    "Role",
    "Mode",
    "SecureLink",
    "LinkStats",
    "MAC_FRAME_BYTES",
    "TRANSCRIPT_MAC_FRAME_BYTES",
    "MASK_BITS",
    "REKEY_BYTES",
    "split_directions",
]

Role = Literal["initiator", "responder"]
Mode = Literal["message", "transcript"]

# transcript mode: MAC frame = kind (1) | seq (8) | block (8) | mask position in bits (8) | key epoch of this
# tag (4) | newest key epoch the sender holds (4) | tag (16)
_TMAC = struct.Struct("<BQQQII")
TRANSCRIPT_MAC_FRAME_BYTES = _TMAC.size + TAG_BYTES
KIND_TAGGED, KIND_MEMBER, KIND_CLOSING = 0, 1, 2
MASK_WINDOW = 8
"""A tagged message may name a mask at most this many masks ahead of the receive pool position: a
forged position can then burn at most 8 masks per attempt, and attempts are capped."""
MAX_OPEN_TRANSCRIPTS = 64
"""Block transcripts open at once: a node distils up to 32 blocks in parallel (`[link] workers`) and
sifts the next; forged block ids beyond this evict the oldest, so they cannot grow memory."""
REKEY_BYTES = 64
"""Fresh hash keys for both directions (outer + inner per direction), split like any refill."""
DEFAULT_MAX_FAILED_TAGS = 3

MASK_BITS = 8 * MASK_BYTES
MAC_FRAME_BYTES = 8 + TAG_BYTES
_CHUNK = 16

_REJECTION_COUNTERS: tuple[tuple[type[Exception], str], ...] = (
    (ReplayError, "rejected_replay"),
    (AuthenticationLocked, "rejected_no_key"),
    (AuthenticationError, "rejected_auth"),
    (AuthKeyExhausted, "rejected_no_key"),
    (MessageFormatError, "rejected_format"),
)
"""Which `LinkStats` counter a refused message adds to: the first class that matches (a `ReplayError` is
also an `AuthenticationError`)."""
_REJECTED = tuple(kind for kind, _ in _REJECTION_COUNTERS)


def split_directions(material: bytes) -> tuple[bytes, bytes]:
    """Split secret bytes into (initiator->responder, responder->initiator) halves by alternate 16-byte chunks."""
    if not isinstance(material, (bytes, bytearray, memoryview)):
        raise ValueError(f"material must be bytes, got {type(material).__name__}")
    material = bytes(material)
    if len(material) % (2 * _CHUNK):
        raise ValueError(f"material must be a multiple of {2 * _CHUNK} bytes, got {len(material)}")
    chunks = [material[i : i + _CHUNK] for i in range(0, len(material), _CHUNK)]
    return b"".join(chunks[0::2]), b"".join(chunks[1::2])


@dataclass
class LinkStats:
    """Counters of one link (no key material): messages, rejections and key bits per direction."""

    sealed: int = 0
    opened: int = 0
    rejected_auth: int = 0
    rejected_replay: int = 0
    rejected_format: int = 0
    rejected_no_key: int = 0
    tags_verified: int = 0
    tags_failed: int = 0


class SecureLink:
    """Seals outgoing and opens incoming messages of one peer link; both directions' keys in one place."""

    def __init__(
        self,
        *,
        send_hash_key: bytes,
        recv_hash_key: bytes,
        send_pool: AuthKeyPool,
        recv_pool: AuthKeyPool,
        send_seq: int = 0,
        recv_last_seq: int = -1,
        role: Role = "initiator",
        max_message_bytes: int = MAX_MESSAGE_BYTES,
        mode: Mode = "message",
        send_inner_key: bytes | None = None,
        recv_inner_key: bytes | None = None,
        max_failed_tags: int = DEFAULT_MAX_FAILED_TAGS,
        failed_tags: int = 0,
    ) -> None:
        """Build a link from explicit keys; most callers use `from_bootstrap` or `from_state`.

        `mode="message"`: every message has its own tag, the mask of seq n at pool position 128·n.
        `mode="transcript"`: messages with a `transcript` (block ID) are hashed into that block's
        transcript and only its closing messages carry a tag (`node.classical.transcript`); the rest
        carry their own tag; masks are taken in order and their position travels in the MAC frame.
        """
        if mode not in ("message", "transcript"):
            raise ValueError(f"mode must be 'message' or 'transcript', got {mode!r}")
        if mode == "transcript" and (
            send_inner_key is None
            or recv_inner_key is None
            or len(send_inner_key) != HASH_KEY_BYTES
            or len(recv_inner_key) != HASH_KEY_BYTES
        ):
            raise ValueError(
                f"a transcript-mode link needs send_inner_key and recv_inner_key of {HASH_KEY_BYTES} bytes"
            )
        if not isinstance(max_failed_tags, int) or max_failed_tags < 1:
            raise ValueError(f"max_failed_tags must be a positive integer, got {max_failed_tags!r}")
        if len(send_hash_key) != HASH_KEY_BYTES or len(recv_hash_key) != HASH_KEY_BYTES:
            raise ValueError(f"send_hash_key and recv_hash_key must be {HASH_KEY_BYTES} bytes each")
        if role not in ("initiator", "responder"):
            raise ValueError(f"role must be 'initiator' or 'responder', got {role!r}")
        if not isinstance(send_seq, int) or send_seq < 0:
            raise ValueError(f"send_seq must be a non-negative integer, got {send_seq!r}")
        if not isinstance(recv_last_seq, int) or recv_last_seq < -1:
            raise ValueError(f"recv_last_seq must be an integer >= -1, got {recv_last_seq!r}")
        if mode == "message" and send_pool.position_bits > send_seq * MASK_BITS:
            raise ValueError(
                f"send_seq {send_seq} is behind the send pool (position {send_pool.position_bits} bits): "
                "its mask was already consumed"
            )
        if not isinstance(max_message_bytes, int) or max_message_bytes <= 0:
            raise ValueError(f"max_message_bytes must be a positive integer, got {max_message_bytes!r}")
        self.role: Role = role
        self.max_message_bytes = max_message_bytes
        self._send_key = bytes(send_hash_key)
        self._recv_key = bytes(recv_hash_key)
        self.send_pool = send_pool
        self.recv_pool = recv_pool
        self._send_seq = send_seq
        self._recv_last = recv_last_seq
        self._lock = threading.RLock()
        self.stats = LinkStats()
        self._persist: Callable[[dict[str, Any]], None] | None = None
        self._reserve = 0
        self._reserved_until = 0
        self._counters_only = False
        self.mode: Mode = mode
        self._send_inner = bytes(send_inner_key) if send_inner_key is not None else b""
        self._recv_inner = bytes(recv_inner_key) if recv_inner_key is not None else b""
        self.max_failed_tags = max_failed_tags
        self.failed_tags = int(failed_tags)
        """Tags that failed under the current hash keys (each consumed its mask); reset by `rekey`."""
        self._transcripts: dict[int, TranscriptHash] = {}
        # hash keys by epoch (transcript mode): (send outer, send inner, recv outer, recv inner)
        self._epochs: dict[int, tuple[bytes, bytes, bytes, bytes]] = {
            0: (self._send_key, self._send_inner, self._recv_key, self._recv_inner)
        }
        self.epoch = 0
        """Rekeys applied here; tags are sealed under epoch min(epoch, peer_epoch)."""
        self.peer_epoch = 0
        """The newest key epoch of a tag from the peer that verified (the peer holds those keys)."""
        self.peer_seal_epoch = 0
        """The key epoch of the newest verified tag from the peer: it seals nothing under older keys
        any more (its sealing epoch never falls), so those may go; until then messages of blocks in
        flight may still come under them."""
        self.rekeyed_bits = 0
        """Secret bits that replaced hash keys since this object was built (accounting)."""

    @classmethod
    def from_bootstrap(
        cls,
        secret: bytes,
        role: Role,
        *,
        max_message_bytes: int = MAX_MESSAGE_BYTES,
        mode: Mode = "message",
        max_failed_tags: int = DEFAULT_MAX_FAILED_TAGS,
    ) -> SecureLink:
        """The link of `role` from the pre-shared bootstrap `secret` (>= 32 bytes, a multiple of 32).

        In transcript mode each direction's stream starts with its outer and then its inner hash
        key (64 bytes of the secret in all); the rest are masks.
        """
        if role not in ("initiator", "responder"):
            raise ValueError(f"role must be 'initiator' or 'responder', got {role!r}")
        if mode == "transcript":
            if not isinstance(secret, (bytes, bytearray, memoryview)) or len(secret) < REKEY_BYTES:
                raise ValueError(f"secret must be at least {REKEY_BYTES} bytes (four hash keys)")
            i2r, r2i = split_directions(secret)
            keys = {"i2r": (i2r[:16], i2r[16:32]), "r2i": (r2i[:16], r2i[16:32])}
            pools = {"i2r": AuthKeyPool(i2r[32:]), "r2i": AuthKeyPool(r2i[32:])}
            out, inn = ("i2r", "r2i") if role == "initiator" else ("r2i", "i2r")
            return cls(
                send_hash_key=keys[out][0],
                recv_hash_key=keys[inn][0],
                send_pool=pools[out],
                recv_pool=pools[inn],
                role=role,
                max_message_bytes=max_message_bytes,
                mode=mode,
                send_inner_key=keys[out][1],
                recv_inner_key=keys[inn][1],
                max_failed_tags=max_failed_tags,
            )
        if not isinstance(secret, (bytes, bytearray, memoryview)) or len(secret) < 2 * _CHUNK:
            raise ValueError(f"secret must be at least {2 * _CHUNK} bytes (two hash keys)")
        i2r, r2i = split_directions(secret)
        k_i2r, k_r2i = i2r[:HASH_KEY_BYTES], r2i[:HASH_KEY_BYTES]
        p_i2r, p_r2i = AuthKeyPool(i2r[HASH_KEY_BYTES:]), AuthKeyPool(r2i[HASH_KEY_BYTES:])
        if role == "initiator":
            return cls(
                send_hash_key=k_i2r,
                recv_hash_key=k_r2i,
                send_pool=p_i2r,
                recv_pool=p_r2i,
                role=role,
                max_message_bytes=max_message_bytes,
            )
        return cls(
            send_hash_key=k_r2i,
            recv_hash_key=k_i2r,
            send_pool=p_r2i,
            recv_pool=p_i2r,
            role=role,
            max_message_bytes=max_message_bytes,
        )

    # -- sequence numbers and key accounting ----------------------------------------------------

    @property
    def send_seq(self) -> int:
        """The seq the next sealed message will carry."""
        return self._send_seq

    @property
    def recv_last_seq(self) -> int:
        """The last accepted incoming seq (-1 before the first)."""
        return self._recv_last

    @property
    def messages_left(self) -> int:
        """How many more tags can be sealed before the send pool must be refilled."""
        if self.mode == "transcript":
            return self.send_pool.available_bits // MASK_BITS
        return max(0, (self.send_pool.end_bits - self._send_seq * MASK_BITS) // MASK_BITS)

    @property
    def locked(self) -> bool:
        """True once `max_failed_tags` tags failed under the current hash keys: nothing is sealed or opened."""
        return self.failed_tags >= self.max_failed_tags

    def rekey(self, material: bytes) -> None:
        """Replace all hash keys with `REKEY_BYTES` fresh shared secret bytes (identically on both peers).

        Attempts counted so far were against the old keys, so the failure count starts again.
        """
        if not isinstance(material, (bytes, bytearray, memoryview)) or len(material) != REKEY_BYTES:
            raise ValueError(f"rekey material must be {REKEY_BYTES} bytes")
        i2r, r2i = split_directions(bytes(material))
        out, inn = (i2r, r2i) if self.role == "initiator" else (r2i, i2r)
        with self._lock:
            # a new key epoch; the old keys stay until the peer shows (by a verified tag) it has the
            # new ones, so a lost acknowledgement or a crash between the two ends' rekeys cannot
            # leave them on different keys
            self.epoch += 1
            self._epochs[self.epoch] = (out[:16], out[16:32], inn[:16], inn[16:32])
            self._send_key, self._send_inner = out[:16], out[16:32]
            self._recv_key, self._recv_inner = inn[:16], inn[16:32]
            self._prune_epochs()
            self.failed_tags = 0
            self.rekeyed_bits += 8 * REKEY_BYTES
            if self._persist is not None:
                self._persist_reservation()

    def _prune_epochs(self) -> None:
        keep = min(self.epoch, self.peer_epoch, self.peer_seal_epoch)
        for e in [e for e in self._epochs if e < keep]:
            del self._epochs[e]

    @property
    def seal_epoch(self) -> int:
        """The key epoch outgoing tags use: the newest both ends are known to hold."""
        return min(self.epoch, self.peer_epoch)

    # -- transcripts ------------------------------------------------------------------------------

    def _transcript(self, block: int) -> TranscriptHash:
        t = self._transcripts.get(block)
        if t is None:
            while len(self._transcripts) >= MAX_OPEN_TRANSCRIPTS:  # forged block ids cannot grow memory
                del self._transcripts[min(self._transcripts)]
            t = self._transcripts[block] = TranscriptHash(block)
        return t

    def end_transcript(self, block: int) -> None:
        """Forget the transcript of `block` (closed or abandoned); other blocks in flight keep theirs."""
        with self._lock:
            self._transcripts.pop(block, None)

    def clear_transcripts(self) -> None:
        """Forget every open transcript (a new session starts: HELLO)."""
        with self._lock:
            self._transcripts.clear()

    def transcript_epsilon(self, block: int) -> float:
        """ε of one closing tag over `block`'s transcript as it stands (0 when there is none)."""
        with self._lock:
            t = self._transcripts.get(block)
            return 0.0 if t is None else t.epsilon()

    def _direction(self, sending: bool) -> str:
        return "i2r" if (self.role == "initiator") == sending else "r2i"

    @property
    def tag_bits(self) -> int:
        """Length of each tag in bits."""
        return TAG_BITS

    def forgery_probability(self, n_bytes: int | None = None) -> float:
        """ε for one forgery attempt on a message of MAC input `n_bytes` (default: the link's size limit)."""
        return forgery_probability(self.max_message_bytes + 1024 if n_bytes is None else n_bytes)

    def refill(self, material: bytes) -> None:
        """Append fresh shared secret bits to both directions' pools (call identically on both peers)."""
        i2r, r2i = split_directions(material)
        send, recv = (i2r, r2i) if self.role == "initiator" else (r2i, i2r)
        self.send_pool.refill(send)
        self.recv_pool.refill(recv)

    def set_persistence(
        self, persist: Callable[[dict[str, Any]], None], *, reserve: int = 64, counters_only: bool = False
    ) -> None:
        """Have `seal` call `persist(state(send_reserve=reserve))` now and each time `reserve` seqs are used.

        `persist` must store the state durably before it returns (it holds key material); if it
        raises, the message is not sealed. After a crash, resume with `from_state(last persisted)`:
        at most `reserve` masks are skipped and none is reused. With `counters_only` (message mode,
        where a seq fixes its mask's position) `persist` gets only `counters(send_reserve=reserve)`:
        the caller rebuilds keys and pools from the bootstrap secret and its refills.
        """
        if not callable(persist):
            raise ValueError(f"persist must be callable, got {type(persist).__name__}")
        if not isinstance(reserve, int) or reserve < 1:
            raise ValueError(f"reserve must be a positive integer, got {reserve!r}")
        if counters_only and self.mode != "message":
            raise ValueError(
                "counters_only persistence needs a message-mode link: a transcript-mode link "
                "must persist its pool positions"
            )
        with self._lock:
            self._persist, self._reserve, self._counters_only = persist, reserve, counters_only
            self._persist_reservation()

    def persist(self) -> None:
        """Persist now, with a fresh send reservation (after a refill, at close); needs `set_persistence`."""
        if self._persist is None:
            raise ValueError("persist() needs set_persistence() first")
        with self._lock:
            self._persist_reservation()

    def _persist_reservation(self) -> None:
        assert self._persist is not None
        snapshot = self.counters if self._counters_only else self.state
        self._persist(snapshot(send_reserve=self._reserve))
        self._reserved_until = self._send_seq + self._reserve

    # -- seal and open ----------------------------------------------------------------------------

    def seal(self, message: Message) -> list[bytes | memoryview]:
        """The wire frames of `message` with the next seq and its tag; consumes one 128-bit mask
        (in transcript mode only a closing or an untranscribed message does)."""
        if self.mode == "transcript":
            return self._seal_transcript(message)
        body = encode_body(message)
        size = sum(len(f) for f in body) + MAC_FRAME_BYTES
        if size > self.max_message_bytes:
            raise ValueError(f"message is {size} bytes on the wire; this link allows at most {self.max_message_bytes}")
        with self._lock:
            seq = self._send_seq
            pos = seq * MASK_BITS
            if self._persist is not None and seq >= self._reserved_until:
                self._persist_reservation()
            if self.send_pool.end_bits < pos + MASK_BITS:
                raise AuthKeyExhausted(
                    f"no authentication key for outgoing message seq {seq}: the send pool ends at "
                    f"{self.send_pool.end_bits} bits; refill the link"
                )
            if self.send_pool.position_bits < pos:
                self.send_pool.discard_to(pos)
            mask = self.send_pool.take(MASK_BITS)
            self._send_seq = seq + 1
            self.stats.sealed += 1
        tag = wc_tag(self._send_key, mask, seq, body)
        message.seq = seq
        return [*body, struct.pack("<Q", seq) + tag]

    def open(self, frames: Sequence[Any]) -> Message:
        """Verify and decode received frames; `AuthenticationError`, `ReplayError`, `MessageFormatError`."""
        try:
            return self._open(frames)
        except _REJECTED as e:
            counter = next(name for kind, name in _REJECTION_COUNTERS if isinstance(e, kind))
            setattr(self.stats, counter, getattr(self.stats, counter) + 1)
            raise

    def _frame_buffers(self, frames: Sequence[Any]) -> list[Any]:
        """The frames as buffers once their count, total size and protocol version are acceptable
        (`MessageFormatError` otherwise); both modes check this before looking at the MAC frame."""
        if not isinstance(frames, (list, tuple)):
            raise MessageFormatError(f"frames must be a list of bytes-like frames, got {type(frames).__name__}")
        if len(frames) < 4:
            raise MessageFormatError(f"a message has at least 4 frames (version, type, header, MAC), got {len(frames)}")
        bufs = [as_buffer(f) for f in frames]
        total = sum(len(b) for b in bufs)
        if total > self.max_message_bytes:
            raise MessageFormatError(f"message is {total} bytes; this link allows at most {self.max_message_bytes}")
        check_version(bufs[0])
        return bufs

    def _open(self, frames: Sequence[Any]) -> Message:
        if self.mode == "transcript":
            return self._open_transcript(frames)
        bufs = self._frame_buffers(frames)
        mac = bufs[-1]
        if len(mac) != MAC_FRAME_BYTES:
            raise MessageFormatError(f"the MAC frame must be {MAC_FRAME_BYTES} bytes (seq + tag), got {len(mac)}")
        mac = bytes(mac)
        seq = struct.unpack_from("<Q", mac)[0]
        body = bufs[:-1]
        with self._lock:
            if seq <= self._recv_last:
                raise ReplayError(
                    f"message seq {seq} is not after the last accepted seq {self._recv_last}: replayed or reordered"
                )
            pos = seq * MASK_BITS
            try:
                mask = self.recv_pool.peek(pos, MASK_BITS)
            except AuthKeyExhausted:
                raise AuthKeyExhausted(
                    f"no authentication key for incoming message seq {seq}: the receive pool ends at "
                    f"{self.recv_pool.end_bits} bits (seq {self.recv_pool.end_bits // MASK_BITS - 1}); refill the link"
                ) from None
            if not tags_equal(wc_tag(self._recv_key, mask, seq, body), mac[8:]):
                raise AuthenticationError(f"message seq {seq} failed authentication: its tag does not verify")
            self.recv_pool.discard_to(pos)
            self.recv_pool.take(MASK_BITS)
            self._recv_last = seq
            self.stats.opened += 1
        message = decode_body(body)
        message.seq, message.verified = seq, True  # its own tag verified
        return message

    def _seal_transcript(self, message: Message) -> list[bytes | memoryview]:
        body = encode_body(message)
        size = sum(len(f) for f in body) + TRANSCRIPT_MAC_FRAME_BYTES
        if size > self.max_message_bytes:
            raise ValueError(f"message is {size} bytes on the wire; this link allows at most {self.max_message_bytes}")
        block = message.transcript
        if block is not None and (type(block) is not int or not 0 <= block < 1 << 63):
            raise ValueError(f"message.transcript must be None or a block id in [0, 2^63), got {block!r}")
        kind = KIND_TAGGED if block is None else (KIND_CLOSING if message.closing else KIND_MEMBER)
        with self._lock:
            if self.locked:
                raise AuthenticationLocked(
                    f"{self.failed_tags} tags failed under the current hash key (limit {self.max_failed_tags}); "
                    "the link needs a fresh bootstrap secret"
                )
            seq = self._send_seq
            if self._persist is not None and seq >= self._reserved_until:
                self._persist_reservation()
            pos = 0
            mask = b""
            if kind != KIND_MEMBER:
                if self.send_pool.available_bits < MASK_BITS:
                    raise AuthKeyExhausted(
                        f"no authentication key for outgoing tag (seq {seq}): the send pool is empty; refill the link"
                    )
                pos = self.send_pool.position_bits
                mask = self.send_pool.take(MASK_BITS)
            self._send_seq = seq + 1
            epoch = self.seal_epoch
            send_outer, send_inner, _, _ = self._epochs[epoch]
            header = _TMAC.pack(kind, seq, block or 0, pos, epoch, self.epoch)
            if kind == KIND_TAGGED:
                tag = wc_tag(send_outer, mask, seq, [header, *body])
            else:
                t = self._transcript(block)  # type: ignore[arg-type]
                t.absorb(self._direction(True), send_inner, [header, *body])
                tag = bytes(TAG_BYTES) if kind == KIND_MEMBER else closing_tag(send_outer, mask, t, self.role, pos)
            if kind != KIND_MEMBER and self._persist is not None:
                # the mask is consumed on disk before the tag leaves: a restart never reuses it
                self._persist(self.state(send_reserve=max(0, self._reserved_until - self._send_seq)))
            self.stats.sealed += 1
        message.seq = seq
        return [*body, header + tag]

    def _open_transcript(self, frames: Sequence[Any]) -> Message:
        bufs = self._frame_buffers(frames)
        mac = bytes(bufs[-1])
        if len(mac) != TRANSCRIPT_MAC_FRAME_BYTES:
            raise MessageFormatError(f"the MAC frame must be {TRANSCRIPT_MAC_FRAME_BYTES} bytes, got {len(mac)}")
        kind, seq, block, pos, epoch, peer_has = _TMAC.unpack_from(mac)
        header, tag = mac[: _TMAC.size], mac[_TMAC.size :]
        if kind not in (KIND_TAGGED, KIND_MEMBER, KIND_CLOSING) or block >= 1 << 63:
            raise MessageFormatError(f"the MAC frame names an unknown kind {kind} or a block id out of range")
        body = bufs[:-1]
        with self._lock:
            if self.locked:
                raise AuthenticationLocked(
                    f"{self.failed_tags} tags failed under the current hash key (limit {self.max_failed_tags}); "
                    "the link needs a fresh bootstrap secret"
                )
            if seq <= self._recv_last:
                raise ReplayError(
                    f"message seq {seq} is not after the last accepted seq {self._recv_last}: replayed or reordered"
                )
            keys = self._epochs.get(epoch)
            if keys is None:
                raise AuthenticationError(
                    f"message seq {seq} is tagged under key epoch {epoch}; this end holds epochs {sorted(self._epochs)}"
                )
            _, _, recv_outer, recv_inner = keys
            if kind == KIND_MEMBER:
                message = decode_body(body)  # malformed members are rejected before they enter the transcript
                self._transcript(block).absorb(self._direction(False), recv_inner, [header, *body])
                self._recv_last = seq
                self.stats.opened += 1
                message.seq, message.transcript, message.verified = seq, block, False
                return message
            start = self.recv_pool.position_bits
            if pos % MASK_BITS or not start <= pos < start + MASK_WINDOW * MASK_BITS:
                raise AuthenticationError(
                    f"message seq {seq} names a mask at stream position {pos}; expected one in "
                    f"[{start}, {start + MASK_WINDOW * MASK_BITS}) in steps of {MASK_BITS}"
                )
            try:
                mask = self.recv_pool.peek(pos, MASK_BITS)
            except AuthKeyExhausted:
                raise AuthKeyExhausted(
                    f"no authentication key for incoming tag seq {seq}: the receive pool ends at "
                    f"{self.recv_pool.end_bits} bits; refill the link"
                ) from None
            if kind == KIND_TAGGED:
                expected = wc_tag(recv_outer, mask, seq, [header, *body])
            else:
                t = self._transcript(block)
                t.absorb(self._direction(False), recv_inner, [header, *body])
                sender: Role = "responder" if self.role == "initiator" else "initiator"
                expected = closing_tag(recv_outer, mask, t, sender, pos)
            ok = tags_equal(expected, tag)
            # the mask is consumed whether or not the tag verifies: an attempt is never repeated on it
            self.recv_pool.discard_to(pos)
            self.recv_pool.take(MASK_BITS)
            if ok:
                self._recv_last = seq
                self.stats.tags_verified += 1
                if peer_has > self.peer_epoch or epoch > self.peer_seal_epoch:  # authenticated
                    self.peer_epoch = max(self.peer_epoch, peer_has)  # the peer holds keys up to this epoch
                    self.peer_seal_epoch = max(self.peer_seal_epoch, epoch)  # and seals under no older ones
                    self._prune_epochs()
            else:
                self.failed_tags += 1
                self.stats.tags_failed += 1
            if self._persist is not None:  # durable before anything acts on it (replays after a restart)
                self._persist(self.state(send_reserve=max(0, self._reserved_until - self._send_seq)))
            if not ok:
                what = "its tag" if kind == KIND_TAGGED else f"the closing tag of block {block}'s transcript"
                text = (
                    f"message seq {seq} failed authentication: {what} does not verify "
                    f"({self.failed_tags} of {self.max_failed_tags} failures allowed under this hash key)"
                )
                if kind == KIND_CLOSING:
                    raise TranscriptAuthenticationError(text, block)
                raise AuthenticationError(text)
            self.stats.opened += 1
        message = decode_body(body)
        message.seq, message.verified = seq, True
        message.transcript = block if kind == KIND_CLOSING else None
        message.closing = kind == KIND_CLOSING
        return message

    # -- persistence ------------------------------------------------------------------------------

    def counters(self, send_reserve: int = 0) -> dict[str, int]:
        """The sequence counters alone (no key material): `send_seq` (+ `send_reserve`) and `recv_last_seq`."""
        with self._lock:
            return {"send_seq": self._send_seq + send_reserve, "recv_last_seq": self._recv_last}

    def state(self, send_reserve: int = 0) -> dict[str, Any]:
        """Everything needed to resume this link (secret: holds hash keys and unconsumed masks).

        With `send_reserve = n` the state resumes sending at `send_seq + n`: persist it once, then
        up to n messages may leave before the next persist and a restart still never reuses a mask.
        """
        if not isinstance(send_reserve, int) or send_reserve < 0:
            raise ValueError(f"send_reserve must be a non-negative integer, got {send_reserve!r}")
        with self._lock:
            return {
                "role": self.role,
                "send_hash_key": self._send_key,
                "recv_hash_key": self._recv_key,
                "send_seq": self._send_seq + send_reserve,
                "recv_last_seq": self._recv_last,
                "send_pool": self.send_pool.state(),
                "recv_pool": self.recv_pool.state(),
                "max_message_bytes": self.max_message_bytes,
                "mode": self.mode,
                "send_inner_key": self._send_inner,
                "recv_inner_key": self._recv_inner,
                "max_failed_tags": self.max_failed_tags,
                "failed_tags": self.failed_tags,
                "epoch": self.epoch,
                "peer_epoch": self.peer_epoch,
                "peer_seal_epoch": self.peer_seal_epoch,
                "epochs": [[e, *keys] for e, keys in sorted(self._epochs.items())],
            }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> SecureLink:
        """Resume a link from `state()`."""
        link = cls._from_state(state)
        try:
            if "epochs" in state:
                link._epochs = {
                    int(e[0]): (bytes(e[1]), bytes(e[2]), bytes(e[3]), bytes(e[4])) for e in state["epochs"]
                }
                link.epoch, link.peer_epoch = int(state["epoch"]), int(state["peer_epoch"])
                link.peer_seal_epoch = int(state.get("peer_seal_epoch", 0))
                if link.epoch not in link._epochs or link.seal_epoch not in link._epochs:
                    raise ValueError("state epochs do not hold the current keys")
        except (KeyError, TypeError, IndexError) as exc:
            raise ValueError(f"state must be a dict from SecureLink.state(), missing or bad {exc}") from None
        return link

    @classmethod
    def _from_state(cls, state: dict[str, Any]) -> SecureLink:
        try:
            return cls(
                send_hash_key=state["send_hash_key"],
                recv_hash_key=state["recv_hash_key"],
                send_pool=AuthKeyPool.from_state(state["send_pool"]),
                recv_pool=AuthKeyPool.from_state(state["recv_pool"]),
                send_seq=state["send_seq"],
                recv_last_seq=state["recv_last_seq"],
                role=state["role"],
                max_message_bytes=state.get("max_message_bytes", MAX_MESSAGE_BYTES),
                mode=state.get("mode", "message"),
                send_inner_key=state.get("send_inner_key") or None,
                recv_inner_key=state.get("recv_inner_key") or None,
                max_failed_tags=state.get("max_failed_tags", DEFAULT_MAX_FAILED_TAGS),
                failed_tags=state.get("failed_tags", 0),
            )
        except (KeyError, TypeError) as exc:
            raise ValueError(f"state must be a dict from SecureLink.state(), missing or bad {exc}") from None

    def accounting(self) -> dict[str, int]:
        """Key bits per direction: used for masks, discarded, still available (and the hash keys)."""
        return {
            "hash_key_bits": (4 if self.mode == "transcript" else 2) * 8 * HASH_KEY_BYTES,
            "failed_tags": self.failed_tags,
            "send_used_bits": self.send_pool.used_bits,
            "send_discarded_bits": self.send_pool.discarded_bits,
            "send_available_bits": self.send_pool.available_bits,
            "recv_used_bits": self.recv_pool.used_bits,
            "recv_discarded_bits": self.recv_pool.discarded_bits,
            "recv_available_bits": self.recv_pool.available_bits,
        }

    def __repr__(self) -> str:
        return (
            f"SecureLink(role={self.role!r}, send_seq={self._send_seq}, recv_last_seq={self._recv_last}, "
            f"messages_left={self.messages_left})"
        )

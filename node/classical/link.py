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

Persistence is the caller's: `state()` / `SecureLink.from_state()`. A sender that restarts must
never reuse a seq: persist `state()` before sealed frames leave, or persist `state(send_reserve=n)`
once per n messages — `set_persistence(persist, reserve=n)` makes `seal` do the latter itself. A receiver that restarts from an older state would accept replays of the
messages it accepted since: persist after each accepted message that changes durable state.
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
from node.classical.errors import AuthenticationError, AuthKeyExhausted, MessageFormatError, ReplayError
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

__all__ = ["Role", "SecureLink", "LinkStats", "MAC_FRAME_BYTES", "MASK_BITS", "split_directions"]

Role = Literal["initiator", "responder"]

MASK_BITS = 8 * MASK_BYTES
MAC_FRAME_BYTES = 8 + TAG_BYTES
_CHUNK = 16


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
    ) -> None:
        """Build a link from explicit keys; most callers use `from_bootstrap` or `from_state`."""
        if len(send_hash_key) != HASH_KEY_BYTES or len(recv_hash_key) != HASH_KEY_BYTES:
            raise ValueError(f"send_hash_key and recv_hash_key must be {HASH_KEY_BYTES} bytes each")
        if role not in ("initiator", "responder"):
            raise ValueError(f"role must be 'initiator' or 'responder', got {role!r}")
        if not isinstance(send_seq, int) or send_seq < 0:
            raise ValueError(f"send_seq must be a non-negative integer, got {send_seq!r}")
        if not isinstance(recv_last_seq, int) or recv_last_seq < -1:
            raise ValueError(f"recv_last_seq must be an integer >= -1, got {recv_last_seq!r}")
        if send_pool.position_bits > send_seq * MASK_BITS:
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

    @classmethod
    def from_bootstrap(cls, secret: bytes, role: Role, *, max_message_bytes: int = MAX_MESSAGE_BYTES) -> SecureLink:
        """The link of `role` from the pre-shared bootstrap `secret` (>= 32 bytes, a multiple of 32)."""
        if role not in ("initiator", "responder"):
            raise ValueError(f"role must be 'initiator' or 'responder', got {role!r}")
        if not isinstance(secret, (bytes, bytearray, memoryview)) or len(secret) < 2 * _CHUNK:
            raise ValueError(f"secret must be at least {2 * _CHUNK} bytes (two hash keys)")
        i2r, r2i = split_directions(secret)
        k_i2r, k_r2i = i2r[:HASH_KEY_BYTES], r2i[:HASH_KEY_BYTES]
        p_i2r, p_r2i = AuthKeyPool(i2r[HASH_KEY_BYTES:]), AuthKeyPool(r2i[HASH_KEY_BYTES:])
        if role == "initiator":
            return cls(send_hash_key=k_i2r, recv_hash_key=k_r2i, send_pool=p_i2r, recv_pool=p_r2i,
                       role=role, max_message_bytes=max_message_bytes)
        return cls(send_hash_key=k_r2i, recv_hash_key=k_i2r, send_pool=p_r2i, recv_pool=p_i2r,
                   role=role, max_message_bytes=max_message_bytes)

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
        """How many more messages can be sealed before the send pool must be refilled."""
        return max(0, (self.send_pool.end_bits - self._send_seq * MASK_BITS) // MASK_BITS)

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

    def set_persistence(self, persist: Callable[[dict[str, Any]], None], *, reserve: int = 64) -> None:
        """Have `seal` call `persist(state(send_reserve=reserve))` now and each time `reserve` seqs are used.

        `persist` must store the state durably before it returns (it holds key material); if it
        raises, the message is not sealed. After a crash, resume with `from_state(last persisted)`:
        at most `reserve` masks are skipped and none is reused.
        """
        if not callable(persist):
            raise ValueError(f"persist must be callable, got {type(persist).__name__}")
        if not isinstance(reserve, int) or reserve < 1:
            raise ValueError(f"reserve must be a positive integer, got {reserve!r}")
        with self._lock:
            self._persist, self._reserve = persist, reserve
            self._persist_reservation()

    def _persist_reservation(self) -> None:
        assert self._persist is not None
        self._persist(self.state(send_reserve=self._reserve))
        self._reserved_until = self._send_seq + self._reserve

    # -- seal and open ----------------------------------------------------------------------------

    def seal(self, message: Message) -> list[bytes | memoryview]:
        """The wire frames of `message` with the next seq and its tag; consumes one 128-bit mask."""
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
        except ReplayError:
            self.stats.rejected_replay += 1
            raise
        except AuthenticationError:
            self.stats.rejected_auth += 1
            raise
        except AuthKeyExhausted:
            self.stats.rejected_no_key += 1
            raise
        except MessageFormatError:
            self.stats.rejected_format += 1
            raise

    def _open(self, frames: Sequence[Any]) -> Message:
        if not isinstance(frames, (list, tuple)):
            raise MessageFormatError(f"frames must be a list of bytes-like frames, got {type(frames).__name__}")
        if len(frames) < 4:
            raise MessageFormatError(
                f"a message has at least 4 frames (version, type, header, MAC), got {len(frames)}"
            )
        bufs = [as_buffer(f) for f in frames]
        total = sum(len(b) for b in bufs)
        if total > self.max_message_bytes:
            raise MessageFormatError(f"message is {total} bytes; this link allows at most {self.max_message_bytes}")
        check_version(bufs[0])
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
        message.seq = seq
        return message

    # -- persistence ------------------------------------------------------------------------------

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
            }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> SecureLink:
        """Resume a link from `state()`."""
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
            )
        except (KeyError, TypeError) as exc:
            raise ValueError(f"state must be a dict from SecureLink.state(), missing or bad {exc}") from None

    def accounting(self) -> dict[str, int]:
        """Key bits per direction: used for masks, discarded, still available (and the hash keys)."""
        return {
            "hash_key_bits": 2 * 8 * HASH_KEY_BYTES,
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

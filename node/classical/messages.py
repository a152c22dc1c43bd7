"""Every message type on the classical channel, and the typed bodies both ends share (DESIGN §4–5).

`MessageType` names each wire type once: the node link (Bob asks, Alice answers), ingest (a QKD
node hands key blocks to its key manager), KM-KM synchronisation and the relay service. A
`MessageType` is a `str`, so it goes straight into `Message.type` and compares with received
types. The typed bodies below (`ErrorBody`, `KeyBlockHeader`, `KeyBlockAck`, `KeyBlockNack`) are
the only way these headers are written or read: `decode` checks every field and raises
`BodyError` naming the field and what is allowed, never anything else.

Eve learns nothing from these bodies beyond what the sender chose to disclose: they carry IDs,
lengths, counters and reasons, never key bits (the key of a `KEY_BLOCK` travels as its payload
frame, which leaves the node only to its own key manager).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum
from itertools import pairwise
from typing import Any

from node.classical.envelope import Message
from node.classical.errors import MessageFormatError

__all__ = [
    "INGEST_TYPES",
    "KM_TYPES",
    "LINK_TYPES",
    "MAX_BLOCK_ID",
    "MAX_ERROR_CHARS",
    "MAX_LINK_ID_CHARS",
    "RELAY_TYPES",
    "BodyError",
    "ErrorBody",
    "KeyBlockAck",
    "KeyBlockHeader",
    "KeyBlockNack",
    "KeyBlockReply",
    "MessageType",
    "RetuneAck",
    "RetuneProposal",
    "RetuneSettings",
    "decode_key_block_reply",
]


class MessageType(StrEnum):
    """Wire names of every message type (frame 1 of the envelope)."""

    # node link, Bob -> Alice (node.link.protocol)
    HELLO = "HELLO"
    SIFT_REQUEST = "SIFT_REQUEST"
    SIFT_REPORT = "SIFT_REPORT"
    BLOCK_START = "BLOCK_START"
    CASCADE = "CASCADE"
    VERIFY = "VERIFY"
    BLOCK_DONE = "BLOCK_DONE"
    RETUNE = "RETUNE"
    # node link, Alice -> Bob
    HELLO_ACK = "HELLO_ACK"
    SIFT_REPLY = "SIFT_REPLY"
    BLOCK_READY = "BLOCK_READY"
    VERIFY_RESULT = "VERIFY_RESULT"
    BLOCK_DONE_ACK = "BLOCK_DONE_ACK"
    RETUNE_ACK = "RETUNE_ACK"
    # node link, either way
    BLOCK_ABORT = "BLOCK_ABORT"
    # ingest, QKD node -> its key manager, and the answers (node.keymanager.ingest)
    KEY_BLOCK = "KEY_BLOCK"
    KEY_BLOCK_ACK = "KEY_BLOCK_ACK"
    KEY_BLOCK_NACK = "KEY_BLOCK_NACK"
    # KM <-> KM synchronisation, request -> reply (node.keymanager.peer)
    BLOCKS_HAVE = "BLOCKS_HAVE"
    BLOCKS_HELD = "BLOCKS_HELD"
    KEY_ALLOC = "KEY_ALLOC"
    KEY_ALLOC_ACK = "KEY_ALLOC_ACK"
    RECONCILE = "RECONCILE"
    RECONCILE_REPORT = "RECONCILE_REPORT"
    KEY_QUERY = "KEY_QUERY"
    KEY_STATES = "KEY_STATES"
    KEYS_UNANSWERED = "KEYS_UNANSWERED"
    KEYS_UNANSWERED_ACK = "KEYS_UNANSWERED_ACK"
    AUTH_REFILL = "AUTH_REFILL"
    AUTH_REFILL_ACK = "AUTH_REFILL_ACK"
    # relay service between key managers (node.keymanager.relay)
    LINK_STATE = "LINK_STATE"
    LINK_STATE_ACK = "LINK_STATE_ACK"
    RELAY_FORWARD = "RELAY_FORWARD"
    RELAY_STORED = "RELAY_STORED"
    # any request that could not be handled, on every channel
    ERROR = "ERROR"


T = MessageType
LINK_TYPES = frozenset(
    {
        T.HELLO,
        T.SIFT_REQUEST,
        T.SIFT_REPORT,
        T.BLOCK_START,
        T.CASCADE,
        T.VERIFY,
        T.BLOCK_DONE,
        T.HELLO_ACK,
        T.SIFT_REPLY,
        T.BLOCK_READY,
        T.VERIFY_RESULT,
        T.BLOCK_DONE_ACK,
        T.BLOCK_ABORT,
        T.RETUNE,
        T.RETUNE_ACK,
    }
)
INGEST_TYPES = frozenset({T.KEY_BLOCK, T.KEY_BLOCK_ACK, T.KEY_BLOCK_NACK})
KM_TYPES = frozenset(
    {
        T.BLOCKS_HAVE,
        T.BLOCKS_HELD,
        T.KEY_ALLOC,
        T.KEY_ALLOC_ACK,
        T.RECONCILE,
        T.RECONCILE_REPORT,
        T.KEY_QUERY,
        T.KEY_STATES,
        T.KEYS_UNANSWERED,
        T.KEYS_UNANSWERED_ACK,
        T.AUTH_REFILL,
        T.AUTH_REFILL_ACK,
    }
)
RELAY_TYPES = frozenset({T.LINK_STATE, T.LINK_STATE_ACK, T.RELAY_FORWARD, T.RELAY_STORED})

MAX_ERROR_CHARS = 500
"""An error or refusal reason is cut to this many characters (it is logged and alarmed, never parsed)."""
MAX_LINK_ID_CHARS = 128
MAX_BLOCK_ID = 1 << 62
MAX_KEY_BLOCK_BYTES = 32 << 20
"""The largest key a `KEY_BLOCK` may carry (a 2.7e8-bit block)."""


class BodyError(MessageFormatError, ValueError):
    """An authentic message whose header does not fit its type's schema (field named, rule stated);
    a `ValueError` too, as every refused input of the key manager is."""


def _fields(
    msg: Any, msg_type: MessageType, required: frozenset[str], optional: frozenset[str] = frozenset()
) -> dict[str, Any]:
    """The header of `msg`, checked to be of `msg_type` with exactly the `required` (+ `optional`) fields."""
    if not isinstance(msg, Message):
        raise BodyError(f"expected a Message, got {type(msg).__name__}")
    if msg.type != msg_type:
        raise BodyError(f"expected a {msg_type} message, got {str(msg.type)[:64]!r}")
    h = msg.header
    if not isinstance(h, dict):
        raise BodyError(f"{msg_type}: the header must be an object")
    missing = sorted(required - set(h))
    if missing:
        raise BodyError(f"{msg_type}: header field {missing[0]!r} is missing; required: {sorted(required)}")
    unknown = sorted(set(h) - required - optional)
    if unknown:
        raise BodyError(
            f"{msg_type}: header field {str(unknown[0])[:40]!r} is unknown; allowed: {sorted(required | optional)}"
        )
    return h


def _text(h: dict[str, Any], msg_type: MessageType, name: str, limit: int, *, empty: bool = False) -> str:
    value = h[name]
    if not isinstance(value, str) or len(value) > limit or (not value and not empty):
        raise BodyError(
            f"{msg_type}: {name} must be a{'' if empty else ' non-empty'} string of at most {limit} characters"
        )
    return value


def _block_id(h: dict[str, Any], msg_type: MessageType, *, nullable: bool = False) -> int | None:
    value = h["block_id"]
    if value is None and nullable:
        return None
    if type(value) is not int or not 0 <= value < MAX_BLOCK_ID:
        raise BodyError(f"{msg_type}: block_id must be an integer in [0, 2^62){' or null' if nullable else ''}")
    return value


@dataclass(frozen=True, slots=True)
class ErrorBody:
    """The one answer to a request that could not be handled, on every channel: what went wrong
    (`error`, a short reason), the type of the request and its seq (None when it had none)."""

    error: str
    type: str
    seq: int | None = None

    FIELDS = frozenset({"error", "type", "seq"})

    def message(self, re: int | None = None) -> Message:
        """The `ERROR` message answering seq `re` (default: `seq`)."""
        return Message(
            MessageType.ERROR,
            {"error": self.error[:MAX_ERROR_CHARS], "type": self.type[:64], "seq": self.seq},
            re=self.seq if re is None else re,
        )

    @classmethod
    def answering(cls, request: Message, error: str) -> ErrorBody:
        """The error body answering `request` with reason `error`."""
        return cls(str(error)[:MAX_ERROR_CHARS], str(request.type)[:64], request.seq)

    @classmethod
    def decode(cls, msg: Message) -> ErrorBody:
        """The body of an `ERROR` message; `BodyError` if it is not one or a field is malformed."""
        h = _fields(msg, MessageType.ERROR, cls.FIELDS)
        seq = h["seq"]
        if seq is not None and (type(seq) is not int or not 0 <= seq < 1 << 64):
            raise BodyError("ERROR: seq must be null or an integer in [0, 2^64)")
        return cls(_text(h, MessageType.ERROR, "error", MAX_ERROR_CHARS), _text(h, MessageType.ERROR, "type", 64), seq)


@dataclass(frozen=True, slots=True)
class KeyBlockHeader:
    """The header of a `KEY_BLOCK`: which link and block, how many key bits, the block's QBER and
    free-form parameters. The key itself is the one payload frame (bit i at byte i >> 3, bit i & 7)."""

    link_id: str
    block_id: int
    length_bits: int
    qber: float | None = None
    params: dict[str, Any] | None = None

    FIELDS = frozenset({"link_id", "block_id", "length_bits", "qber", "params"})

    def message(self, key: bytes) -> Message:
        """The `KEY_BLOCK` message carrying `key`."""
        return Message(
            MessageType.KEY_BLOCK,
            {
                "link_id": self.link_id,
                "block_id": self.block_id,
                "length_bits": self.length_bits,
                "qber": self.qber,
                "params": self.params or {},
            },
            [key],
        )

    @classmethod
    def decode(cls, msg: Message) -> tuple[KeyBlockHeader, bytes]:
        """Header and key of a `KEY_BLOCK`; `BodyError` naming the field and what is allowed."""
        t = MessageType.KEY_BLOCK
        h = _fields(msg, t, frozenset({"link_id", "block_id", "length_bits"}), frozenset({"qber", "params"}))
        link_id = _text(h, t, "link_id", MAX_LINK_ID_CHARS)
        block_id = _block_id(h, t)
        assert block_id is not None
        if len(msg.frames) != 1 or not isinstance(msg.frames[0], bytes):
            raise BodyError("KEY_BLOCK must carry exactly one payload frame of raw bytes (the key)")
        key = msg.frames[0]
        if not 0 < len(key) <= MAX_KEY_BLOCK_BYTES:
            raise BodyError(f"KEY_BLOCK key must hold 1 to {MAX_KEY_BLOCK_BYTES} bytes, got {len(key)}")
        length_bits = h["length_bits"]
        if type(length_bits) is not int or length_bits <= 0 or math.ceil(length_bits / 8) != len(key):
            raise BodyError("KEY_BLOCK length_bits must be a positive integer with ceil(length_bits / 8) == len(key)")
        qber = h.get("qber")
        if qber is not None and (type(qber) not in (int, float) or not 0.0 <= qber <= 0.5):
            raise BodyError("KEY_BLOCK qber must be null or a number in [0, 0.5]")
        params = h.get("params", {})
        if not isinstance(params, dict):
            raise BodyError("KEY_BLOCK params must be a JSON object")
        return cls(link_id, block_id, length_bits, None if qber is None else float(qber), params), key


@dataclass(frozen=True, slots=True)
class KeyBlockAck:
    """The key manager holds block `block_id` of `link_id` durably: `status` "stored" (now) or
    "duplicate" (it already had it). Only this reply lets a node mark a block delivered."""

    link_id: str
    block_id: int
    status: str

    STATUSES = ("stored", "duplicate")
    FIELDS = frozenset({"link_id", "block_id", "status"})

    def message(self) -> Message:
        """The `KEY_BLOCK_ACK` message."""
        if self.status not in self.STATUSES:
            raise ValueError(f"KEY_BLOCK_ACK status must be one of {self.STATUSES}, got {self.status!r}")
        return Message(
            MessageType.KEY_BLOCK_ACK, {"link_id": self.link_id, "block_id": self.block_id, "status": self.status}
        )

    @classmethod
    def decode(cls, msg: Message) -> KeyBlockAck:
        """The body of a `KEY_BLOCK_ACK`; `BodyError` if a field is missing, unknown or malformed."""
        t = MessageType.KEY_BLOCK_ACK
        h = _fields(msg, t, cls.FIELDS)
        status = h["status"]
        if status not in cls.STATUSES:
            raise BodyError(f"KEY_BLOCK_ACK status must be one of {list(cls.STATUSES)}")
        block_id = _block_id(h, t)
        assert block_id is not None
        return cls(_text(h, t, "link_id", MAX_LINK_ID_CHARS), block_id, status)

    def answers(self, link_id: str, block_id: int) -> bool:
        """Whether this acknowledges exactly block `block_id` of `link_id`."""
        return self.link_id == link_id and self.block_id == block_id


@dataclass(frozen=True, slots=True)
class KeyBlockNack:
    """The key manager refuses block `block_id` of `link_id` (None when the request named no valid
    block): `error` says why (pool full, malformed field, store failure). Nothing was stored."""

    link_id: str
    block_id: int | None
    error: str

    FIELDS = frozenset({"link_id", "block_id", "error"})

    def message(self) -> Message:
        """The `KEY_BLOCK_NACK` message."""
        return Message(
            MessageType.KEY_BLOCK_NACK,
            {
                "link_id": self.link_id[:MAX_LINK_ID_CHARS],
                "block_id": self.block_id,
                "error": self.error[:MAX_ERROR_CHARS] or "refused",
            },
        )

    @classmethod
    def decode(cls, msg: Message) -> KeyBlockNack:
        """The body of a `KEY_BLOCK_NACK`; `BodyError` if a field is missing, unknown or malformed."""
        t = MessageType.KEY_BLOCK_NACK
        h = _fields(msg, t, cls.FIELDS)
        return cls(
            _text(h, t, "link_id", MAX_LINK_ID_CHARS, empty=True),
            _block_id(h, t, nullable=True),
            _text(h, t, "error", MAX_ERROR_CHARS),
        )

    def answers(self, link_id: str, block_id: int) -> bool:
        """Whether this refuses exactly block `block_id` of `link_id`."""
        return self.link_id == link_id and self.block_id == block_id


KeyBlockReply = KeyBlockAck | KeyBlockNack


def decode_key_block_reply(msg: Message) -> KeyBlockReply:
    """A key manager's answer to a `KEY_BLOCK`: its typed ACK or NACK; `BodyError` for anything else
    (an `ERROR` answer included, with its reason)."""
    if not isinstance(msg, Message):
        raise BodyError(f"expected a Message, got {type(msg).__name__}")
    if msg.type == MessageType.KEY_BLOCK_ACK:
        return KeyBlockAck.decode(msg)
    if msg.type == MessageType.KEY_BLOCK_NACK:
        return KeyBlockNack.decode(msg)
    if msg.type == MessageType.ERROR:
        raise BodyError(f"the key manager could not handle the KEY_BLOCK: {ErrorBody.decode(msg).error}")
    raise BodyError(f"expected KEY_BLOCK_ACK or KEY_BLOCK_NACK, got {str(msg.type)[:64]!r}")


# -- link re-tune (node.link.retune) -----------------------------------------------------------------

MAX_CLASSES = 16
"""Intensity classes a re-tune may name (postprocessing.sifting.MAX_INTENSITIES)."""
MAX_RETUNES = 1 << 31
MAX_SLOT = 1 << 62
NONCE_CHARS = (16, 64)


def _finite(value: Any) -> bool:
    """A JSON number that is a finite float (an int beyond a float's range is not)."""
    if type(value) is int:
        return abs(value) < 2**1023
    return type(value) is float and math.isfinite(value)


def _number(h: dict[str, Any], msg_type: str, name: str, low: float, high: float) -> float:
    value: Any = h.get(name)
    if not _finite(value) or not low <= value <= high:
        raise BodyError(f"{msg_type}: {name} must be a finite number in [{low:g}, {high:g}]")
    return float(value)


def _counter(h: dict[str, Any], msg_type: str, name: str, low: int, high: int) -> int:
    value = h.get(name)
    if type(value) is not int or not low <= value < high:
        raise BodyError(f"{msg_type}: {name} must be an integer in [{low}, {high})")
    return value


def _numbers(h: dict[str, Any], msg_type: str, name: str, n: int | None = None) -> tuple[float, ...]:
    value = h.get(name)
    if (
        not isinstance(value, list)
        or not 2 <= len(value) <= MAX_CLASSES
        or (n is not None and len(value) != n)
        or not all(_finite(v) and v >= 0 for v in value)
    ):
        what = (
            f"{n} finite numbers >= 0 (one per intensity)"
            if n is not None
            else f"2 to {MAX_CLASSES} finite numbers >= 0"
        )
        raise BodyError(f"{msg_type}: {name} must be a list of {what}")
    return tuple(float(v) for v in value)


def _nonce(h: dict[str, Any], msg_type: str) -> str:
    value = h.get("nonce")
    lo, hi = NONCE_CHARS
    if not isinstance(value, str) or not lo <= len(value) <= hi:
        raise BodyError(f"{msg_type}: nonce must be a string of {lo}..{hi} characters (fresh per proposal)")
    return value


@dataclass(frozen=True, slots=True)
class RetuneSettings:
    """Alice's transmitter settings after re-tune number `retune` (0: the configured ones):
    intensities (signal first, strictly decreasing) and their probabilities (summing to 1), what
    the link settings and the finite-key bound carry. The basis probability is not re-tuned: Bob's
    basis choice is a passive beam splitter. Public: Alice announces each slot's class anyway."""

    retune: int
    intensities: tuple[float, ...]
    class_probabilities: tuple[float, ...]

    FIELDS = frozenset({"retune", "intensities", "class_probabilities"})

    def header(self) -> dict[str, Any]:
        """The fields as a JSON-ready header part."""
        return {
            "retune": self.retune,
            "intensities": list(self.intensities),
            "class_probabilities": list(self.class_probabilities),
        }

    @classmethod
    def from_header(cls, h: Any, msg_type: str) -> RetuneSettings:
        """The settings in `h` (a header or a header's sub-object); `BodyError` naming the field."""
        if not isinstance(h, dict):
            raise BodyError(f"{msg_type}: the re-tune settings must be an object")
        retune = _counter(h, msg_type, "retune", 0, MAX_RETUNES)
        mu = _numbers(h, msg_type, "intensities")
        p = _numbers(h, msg_type, "class_probabilities", len(mu))
        if not mu[0] > 0 or any(a <= b for a, b in pairwise(mu)):
            raise BodyError(f"{msg_type}: intensities must be strictly decreasing, the signal (first) > 0")
        if not all(v > 0 for v in p) or abs(sum(p) - 1.0) > 1e-9:
            raise BodyError(f"{msg_type}: class_probabilities must each be > 0 and sum to 1 (within 1e-9)")
        return cls(retune, mu, p)


@dataclass(frozen=True, slots=True)
class RetuneProposal:
    """Bob asks Alice to switch her transmitter to `settings` (re-tune number `settings.retune`),
    measured at `loss_db` system loss; `nonce` is fresh and must come back in the answer."""

    link_id: str
    nonce: str
    settings: RetuneSettings
    loss_db: float

    FIELDS = frozenset({"link_id", "nonce", "loss_db"}) | RetuneSettings.FIELDS

    def message(self) -> Message:
        """The `RETUNE` message."""
        return Message(
            MessageType.RETUNE,
            {"link_id": self.link_id, "nonce": self.nonce, "loss_db": self.loss_db, **self.settings.header()},
        )

    @classmethod
    def decode(cls, msg: Message) -> RetuneProposal:
        """The body of a `RETUNE`; `BodyError` naming the field and what is allowed."""
        t = MessageType.RETUNE
        h = _fields(msg, t, cls.FIELDS)
        settings = RetuneSettings.from_header(h, t)
        if settings.retune < 1:
            raise BodyError(f"{t}: retune must be an integer in [1, {MAX_RETUNES}) (0 names the configured settings)")
        return cls(
            _text(h, t, "link_id", MAX_LINK_ID_CHARS), _nonce(h, t), settings, _number(h, t, "loss_db", 0.0, 200.0)
        )


@dataclass(frozen=True, slots=True)
class RetuneAck:
    """Alice's answer to a `RETUNE`: `ok` with the first slot `from_slot` her transmitter emits
    with the new settings, or a refusal with its `reason` (from_slot None). Echoes the nonce."""

    link_id: str
    nonce: str
    retune: int
    ok: bool
    from_slot: int | None = None
    reason: str = ""

    FIELDS = frozenset({"link_id", "nonce", "retune", "ok", "from_slot", "reason"})

    def message(self) -> Message:
        """The `RETUNE_ACK` message."""
        return Message(
            MessageType.RETUNE_ACK,
            {
                "link_id": self.link_id,
                "nonce": self.nonce,
                "retune": self.retune,
                "ok": self.ok,
                "from_slot": self.from_slot,
                "reason": self.reason[:MAX_ERROR_CHARS],
            },
        )

    @classmethod
    def decode(cls, msg: Message) -> RetuneAck:
        """The body of a `RETUNE_ACK`; `BodyError` naming the field and what is allowed."""
        t = MessageType.RETUNE_ACK
        h = _fields(msg, t, cls.FIELDS)
        ok = h["ok"]
        if type(ok) is not bool:
            raise BodyError(f"{t}: ok must be true or false")
        from_slot = h["from_slot"]
        if ok:
            from_slot = _counter(h, t, "from_slot", 0, MAX_SLOT)
        elif from_slot is not None:
            raise BodyError(f"{t}: from_slot must be null in a refusal")
        reason = _text(h, t, "reason", MAX_ERROR_CHARS, empty=ok)
        return cls(
            _text(h, t, "link_id", MAX_LINK_ID_CHARS),
            _nonce(h, t),
            _counter(h, t, "retune", 1, MAX_RETUNES),
            ok,
            from_slot,
            reason,
        )

"""The link protocol between Alice's and Bob's nodes: message types and their strict decoders.

Bob drives, Alice answers, over one authenticated `SecureChannel` (node.classical). Per batch of
detections: SIFT_REQUEST -> SIFT_REPLY, then SIFT_REPORT (no answer). Per key block:
BLOCK_START -> BLOCK_READY, CASCADE questions -> answers, VERIFY -> VERIFY_RESULT (with Alice's
Toeplitz seed when the block yields key), BLOCK_DONE -> BLOCK_DONE_ACK. Either side may send
BLOCK_ABORT. Every decoder checks types, shapes and ranges and raises `ProtocolError`.

Authentication (transcript mode, `node.classical.transcript`): every message of a block, the sift
batches that fill it included, belongs to that block's transcript (`Message.transcript` = block
ID) and carries no tag of its own. BLOCK_DONE (Bob) and BLOCK_DONE_ACK (Alice) close it with one
tag each over the whole transcript, both directions; Alice commits only after Bob's tag verifies,
Bob confirms only after Alice's. HELLO and HELLO_ACK change state beyond one block and carry their
own tags; HELLO holds a fresh nonce that HELLO_ACK must echo.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from node.classical import Message
from node.classical.messages import ErrorBody, MessageType
from postprocessing.cascade import Message as CascadeMessage
from postprocessing.errors import ProtocolError
from postprocessing.sifting import MAX_INTENSITIES, SiftReply, SiftReport, SiftRequest

# the link's wire names, defined once with every other type in node.classical.messages
SIFT_REQUEST = MessageType.SIFT_REQUEST
SIFT_REPLY = MessageType.SIFT_REPLY
SIFT_REPORT = MessageType.SIFT_REPORT
BLOCK_START = MessageType.BLOCK_START
BLOCK_READY = MessageType.BLOCK_READY
CASCADE = MessageType.CASCADE
VERIFY = MessageType.VERIFY
VERIFY_RESULT = MessageType.VERIFY_RESULT
BLOCK_DONE = MessageType.BLOCK_DONE
BLOCK_DONE_ACK = MessageType.BLOCK_DONE_ACK
BLOCK_ABORT = MessageType.BLOCK_ABORT
HELLO = MessageType.HELLO
HELLO_ACK = MessageType.HELLO_ACK
RETUNE = MessageType.RETUNE  # the re-tune step (node.link.retune)
RETUNE_ACK = MessageType.RETUNE_ACK
ERROR = MessageType.ERROR

MAX_ID = 2**62

TAGGED = frozenset({HELLO, HELLO_ACK, RETUNE, RETUNE_ACK})
"""Messages that must carry their own verified tag (they change state beyond one block)."""
CLOSING = frozenset({BLOCK_DONE, BLOCK_DONE_ACK})
"""Messages that must carry a verified closing tag over their block's transcript."""
REKEY_EVERY_BLOCKS = 16
"""Hash keys are replaced from distilled key at every REKEY_EVERY_BLOCKS-th block (ids 15, 31, ...)."""
REKEY_BITS = 512
"""Bits of a block's secret key that become the link's new hash keys (four 128-bit keys)."""


def in_block(msg: Message, block: int, closing: bool = False) -> Message:
    """`msg` as a member (or the closing message) of block `block`'s transcript."""
    msg.transcript = block
    msg.closing = closing
    return msg


def require_verified(msg: Message) -> None:
    """ProtocolError unless a state-changing message was authenticated the way its type requires."""
    if msg.type in TAGGED and not (msg.verified and msg.transcript is None):
        raise ProtocolError(f"{msg.type} must carry its own verified tag")
    if msg.type in CLOSING:
        block = msg.header.get("block")
        if not (msg.verified and msg.closing and msg.transcript == block):
            raise ProtocolError(f"{msg.type} must carry a verified closing tag over block {block!r}'s transcript")


def header_int(msg: Message, key: str, low: int = 0, high: int = MAX_ID) -> int:
    """An integer header field in [low, high], or ProtocolError naming it."""
    value = msg.header.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise ProtocolError(f"{msg.type}: header field {key!r} must be an integer in [{low}, {high}], got {value!r}")
    return value


def header_float(msg: Message, key: str, low: float, high: float) -> float:
    """A finite number header field in [low, high], or ProtocolError naming it."""
    value = msg.header.get(key)
    number = float(value) if isinstance(value, float) or (isinstance(value, int) and abs(value) < 2**1023) else None
    if isinstance(value, bool) or number is None or not low <= number <= high:  # JSON ints may exceed a float
        raise ProtocolError(f"{msg.type}: header field {key!r} must be a number in [{low}, {high}], got {value!r}")
    return number


def frame_array(msg: Message, index: int, dtype: type, name: str, ndim: int = 1) -> np.ndarray:
    """Payload frame `index` as a numpy array of `dtype` and `ndim`, or ProtocolError naming it."""
    if index >= len(msg.frames):
        raise ProtocolError(f"{msg.type}: missing payload frame {index} ({name})")
    arr = msg.frames[index]
    if not isinstance(arr, np.ndarray) or arr.dtype != np.dtype(dtype) or arr.ndim != ndim:
        got = f"{arr.dtype}{arr.shape}" if isinstance(arr, np.ndarray) else f"{len(arr)} raw bytes"
        raise ProtocolError(
            f"{msg.type}: payload frame {index} ({name}) must be a {ndim}-D {np.dtype(dtype)} array, got {got}"
        )
    return arr if arr.flags.c_contiguous else np.ascontiguousarray(arr)  # (ascontiguousarray makes 0-D 1-D)


def expect(msg: Message, msg_type: str, frames: int) -> None:
    """Check the message's type and payload count (BLOCK_ABORT and ERROR are turned into a ProtocolError)."""
    if msg.type == BLOCK_ABORT:
        raise ProtocolError(f"peer aborted: {str(msg.header.get('reason', ''))[:200]}")
    if msg.type == ERROR:
        try:
            why = ErrorBody.decode(msg).error[:200]
        except ValueError as exc:
            why = f"malformed ERROR ({exc})"
        raise ProtocolError(f"peer could not handle our {str(msg.header.get('type'))[:64]}: {why}")
    if msg.type != msg_type:
        raise ProtocolError(f"expected {msg_type}, got {msg.type}")
    if len(msg.frames) != frames:
        raise ProtocolError(f"{msg_type}: expected {frames} payload frames, got {len(msg.frames)}")


# -- sifting -------------------------------------------------------------------------------------


def sift_request(batch: int, request: SiftRequest) -> Message:
    """Bob's sift request for batch `batch`."""
    return Message(SIFT_REQUEST, {"batch": batch}, [request.slot, request.basis])


def parse_sift_request(msg: Message) -> tuple[int, SiftRequest]:
    """Batch number and request (slot order and bases are checked by `alice_sift`)."""
    expect(msg, SIFT_REQUEST, 2)
    slot = frame_array(msg, 0, np.int64, "slot")
    basis = frame_array(msg, 1, np.uint8, "basis")
    if slot.size != basis.size:
        raise ProtocolError(f"SIFT_REQUEST: {slot.size} slots but {basis.size} bases")
    return header_int(msg, "batch"), SiftRequest(slot, basis)


def sift_reply(batch: int, reply: SiftReply) -> Message:
    """Alice's sift reply for batch `batch`."""
    return Message(
        SIFT_REPLY,
        {"batch": batch, "k": reply.n_intensities},
        [reply.match, reply.intensity, reply.test_bits, reply.sample_index, reply.sample_bits],
    )


def parse_sift_reply(msg: Message, batch: int) -> SiftReply:
    """Alice's reply to batch `batch` (its fit to the request is checked by `bob_sift`)."""
    expect(msg, SIFT_REPLY, 5)
    if header_int(msg, "batch") != batch:
        raise ProtocolError(f"SIFT_REPLY for batch {msg.header.get('batch')}, expected {batch}")
    return SiftReply(
        frame_array(msg, 0, np.uint8, "match"),
        frame_array(msg, 1, np.uint8, "intensity"),
        frame_array(msg, 2, np.uint8, "test_bits"),
        frame_array(msg, 3, np.int64, "sample_index"),
        frame_array(msg, 4, np.uint8, "sample_bits"),
        header_int(msg, "k", 1, MAX_INTENSITIES),
    )


def sift_report(batch: int, report: SiftReport) -> Message:
    """Bob's error counts of batch `batch`."""
    return Message(SIFT_REPORT, {"batch": batch}, [np.ascontiguousarray(report.errors)])


def parse_sift_report(msg: Message) -> tuple[int, SiftReport]:
    """Batch number and Bob's error counts (checked against the counts by `alice_complete`)."""
    expect(msg, SIFT_REPORT, 1)
    return header_int(msg, "batch"), SiftReport(frame_array(msg, 0, np.int64, "errors", ndim=2))


# -- Cascade, carried inside our authenticated envelope ------------------------------------------


def wrap_cascade(cmsg: CascadeMessage) -> Message:
    """A Cascade message inside a CASCADE envelope."""
    return Message(CASCADE, {"t": cmsg.type, "h": cmsg.header}, [np.ascontiguousarray(b) for b in cmsg.buffers])


def unwrap_cascade(msg: Message) -> CascadeMessage:
    """The Cascade message inside a CASCADE envelope (its own fields are checked by Cascade)."""
    if msg.type == BLOCK_ABORT:
        raise ProtocolError(f"peer aborted: {str(msg.header.get('reason', ''))[:200]}")
    if msg.type != CASCADE:
        raise ProtocolError(f"expected {CASCADE}, got {msg.type}")
    ctype, header = msg.header.get("t"), msg.header.get("h")
    if not isinstance(ctype, str) or not isinstance(header, dict):
        raise ProtocolError("CASCADE: header needs 't' (a string) and 'h' (an object)")
    buffers = []
    for i, b in enumerate(msg.frames):
        if not isinstance(b, np.ndarray) or b.ndim != 1:
            raise ProtocolError(f"CASCADE: payload frame {i} must be a 1-D array")
        buffers.append(b)
    return CascadeMessage(ctype, header, tuple(buffers))


def abort(block: int, reason: str) -> Message:
    """Tell the peer that `block` is abandoned (no key from it on either side)."""
    return Message(BLOCK_ABORT, {"block": block, "reason": reason[:200]})


def header_of(msg: Message) -> dict[str, Any]:
    """The message header (for logs: headers never hold key material)."""
    return dict(msg.header)

"""Hands a node's confirmed keys from its outbox to its key manager, backing off while the KM refuses.

A key manager refuses a block it cannot store (most often: its pool is full, since SAEs fetch less
than the link distils). Re-sending every block at once would only repeat the refusal and flood the
log, so the node then probes with the oldest block alone, waiting twice as long after each refusal
(up to `max_backoff_s`), and raises one alarm carrying the KM's reason for as long as the refusals
last; the first acknowledged block clears it. Blocks stay in the outbox meanwhile: none is lost.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Protocol

from node.classical.messages import KeyBlockAck, KeyBlockNack, KeyBlockReply
from node.link.outbox import Outbox, OutboxEntry
from node.management.alarms import AlarmRegistry

log = logging.getLogger(__name__)

ALARM_KEY = "key manager refuses blocks"


class BlockSender(Protocol):
    """What this loop needs of `node.keymanager.ingest.KeyBlockSender`."""

    def send_block(
        self,
        link_id: str,
        block_id: int,
        key: bytes,
        length_bits: int | None = None,
        qber: float | None = None,
        params: dict[str, Any] | None = None,
        timeout_s: float = 2.0,
    ) -> KeyBlockReply: ...


def refusal_reason(reply: object, link_id: str, block_id: int) -> str:
    """Why `reply` does not deliver block `block_id` of `link_id`: the KM's typed NACK reason, or
    what was wrong with the reply; at most 200 characters."""
    if isinstance(reply, KeyBlockNack):
        return reply.error[:200]
    if isinstance(reply, KeyBlockAck):
        return f"the acknowledgement names block {reply.link_id[:40]}/{reply.block_id}, not {link_id}/{block_id}"
    return f"the key manager answered with {type(reply).__name__}, not KEY_BLOCK_ACK or KEY_BLOCK_NACK"


class KmDelivery:
    """The node's delivery loop (runs in its own thread until `stop` is set and nothing is pending)."""

    def __init__(
        self,
        outbox: Outbox,
        sender: BlockSender,
        alarms: AlarmRegistry,
        source: str,
        counters: dict[str, int],
        stop: threading.Event,
        *,
        min_backoff_s: float = 1.0,
        max_backoff_s: float = 30.0,
    ) -> None:
        if not 0 < min_backoff_s <= max_backoff_s:
            raise ValueError(
                f"backoff must satisfy 0 < min_backoff_s <= max_backoff_s, got {min_backoff_s}, {max_backoff_s}"
            )
        self.outbox, self.sender, self.alarms, self.source = outbox, sender, alarms, source
        self.counters, self.stop = counters, stop
        self.min_backoff_s, self.max_backoff_s = min_backoff_s, max_backoff_s
        for name in ("delivered_blocks", "delivered_bits", "km_timeouts", "km_refusals"):
            counters.setdefault(name, 0)
        self.backoff_s = 0.0  # 0 while the KM accepts blocks
        self._alarm_reason: str | None = None

    def run(self) -> None:
        """Deliver until stopped; while refused, only the oldest block is re-sent, after a growing wait."""
        while not self.stop.is_set() or self.outbox.pending_delivery(1):
            entries = self.outbox.pending_delivery(1 if self.backoff_s else 16)
            if not entries:
                self.stop.wait(0.1)
                continue
            for e in entries:
                outcome = self._send(e)
                if outcome == "timeout":
                    if self.stop.is_set():
                        return
                    self.stop.wait(0.5)
                    break
                if outcome == "refused":
                    if self.stop.is_set():
                        return  # the blocks stay in the outbox for the next start
                    self.stop.wait(self.backoff_s)
                    break

    def _send(self, e: OutboxEntry) -> str:
        if not e.key:
            # the block's secret key all went back into the authentication pools (or was under a
            # byte): nothing for the key manager, which refuses an empty block and, as the oldest
            # one, it would hold back every block after it
            log.info(
                "block %s/%s leaves no key for the key manager (its secret refilled authentication)",
                e.link_id,
                e.block_id,
            )
            self.outbox.delivered(e.link_id, e.block_id)
            self.counters["delivered_blocks"] += 1
            return "delivered"
        try:
            reply = self.sender.send_block(e.link_id, e.block_id, e.key, e.length_bits, e.qber, e.meta, timeout_s=2.0)
        except TimeoutError:
            self.counters["km_timeouts"] += 1
            return "timeout"
        if isinstance(reply, KeyBlockAck) and reply.answers(e.link_id, e.block_id):
            self.outbox.delivered(e.link_id, e.block_id)
            self.counters["delivered_blocks"] += 1
            self.counters["delivered_bits"] += e.length_bits
            self._accepted()
            return "delivered"
        self.counters["km_refusals"] += 1
        self._refused(e, refusal_reason(reply, e.link_id, e.block_id))
        return "refused"

    def _refused(self, e: OutboxEntry, reason: str) -> None:
        self.backoff_s = min(self.max_backoff_s, max(self.min_backoff_s, 2 * self.backoff_s))
        if self._alarm_reason is None:
            self._alarm_reason = reason
            self.alarms.raise_alarm(
                "major",
                self.source,
                f"key manager refuses key blocks (first: {e.link_id}/{e.block_id}): {reason}; "
                f"the node keeps them and retries with back-off up to {self.max_backoff_s:g} s",
                key=ALARM_KEY,
            )
        else:
            log.debug(
                "key manager still refuses block %s/%s: %s (next try in %.1f s)",
                e.link_id,
                e.block_id,
                reason,
                self.backoff_s,
            )

    def _accepted(self) -> None:
        self.backoff_s = 0.0
        if self._alarm_reason is not None:
            self._alarm_reason = None
            self.alarms.clear(self.source, ALARM_KEY)
            log.warning("key manager accepts key blocks again")

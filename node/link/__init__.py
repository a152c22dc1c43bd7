"""One QKD link end to end: Alice's and Bob's protocol roles, key blocks, and their distillation."""

from __future__ import annotations

from node.link.alice import AliceLink
from node.link.blocks import KeyBlock, KeyBlockAccumulator
from node.link.bob import BobLink
from node.link.distill import DistilledKey, LinkSettings

__all__ = ["AliceLink", "BobLink", "DistilledKey", "KeyBlock", "KeyBlockAccumulator", "LinkSettings"]

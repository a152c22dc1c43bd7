"""Cascade error correction (issue 3): Bob's reconciler and Alice's responder over a classical channel.

`reconcile_loopback` runs both roles in one thread over the in-process channel; the node plugs its
ZeroMQ channel into `CascadeReconciler` / `CascadeResponder` instead.
"""

from __future__ import annotations

from postprocessing.cascade.channel import ClassicalChannel, LoopbackLink, Message, decode_message, encode_message
from postprocessing.cascade.loopback import reconcile_loopback, reconcile_many_loopback
from postprocessing.cascade.reconciler import CascadeOutcome, CascadeReconciler
from postprocessing.cascade.responder import CascadeResponder, ResponderResult
from postprocessing.cascade.stats import CascadeStats, binary_entropy
from postprocessing.cascade.variants import (
    DEFAULT_VARIANT,
    VARIANTS,
    PassSpec,
    Variant,
    default_variant,
    get_variant,
)

__all__ = [
    "DEFAULT_VARIANT",
    "VARIANTS",
    "CascadeOutcome",
    "CascadeReconciler",
    "CascadeResponder",
    "CascadeStats",
    "ClassicalChannel",
    "LoopbackLink",
    "Message",
    "PassSpec",
    "ResponderResult",
    "Variant",
    "binary_entropy",
    "decode_message",
    "default_variant",
    "encode_message",
    "get_variant",
    "reconcile_loopback",
    "reconcile_many_loopback",
]

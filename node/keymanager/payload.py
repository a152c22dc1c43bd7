"""JSON bodies of the messages between key managers: one JSON object per payload frame."""

from __future__ import annotations

import json
from typing import Any

from node.classical import Message


def json_frame(doc: dict[str, Any]) -> bytes:
    """`doc` as one compact JSON payload frame."""
    return json.dumps(doc, separators=(",", ":")).encode()


def json_payload(msg: Message, frames: int = 1) -> dict[str, Any]:
    """The JSON object in the first of exactly `frames` byte payload frames; `ValueError` otherwise."""
    first = msg.frames[0] if msg.frames else None
    if len(msg.frames) != frames or not isinstance(first, bytes) or not all(isinstance(f, bytes) for f in msg.frames):
        raise ValueError(
            f"{msg.type} must carry {'one JSON payload frame' if frames == 1 else f'{frames} payload frames'}"
        )
    try:
        doc = json.loads(first)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ValueError(f"{msg.type} payload is not valid JSON") from None
    if not isinstance(doc, dict):
        raise ValueError(f"{msg.type} payload must be a JSON object")
    return doc

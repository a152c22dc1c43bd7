"""The key manager's audit trail: one JSON line per security-relevant event on its own logger.

Events: failed TLS handshakes (peer address, OpenSSL's reason), refused requests (status, SAE ID if
authenticated, method, path), parser refusals, client disconnects, key deliveries (key IDs and size,
never material), voided keys and relay events. Every field goes through `json.dumps`, so a path or a
certificate name cannot forge a second line. What Eve learns from this log: who asked for which key
ID and when, which she could see on the wire anyway (the IDs travel inside TLS, so the log must be
kept owner-only: `attach_audit_file` creates it 0600).
"""

from __future__ import annotations

import json
import logging
import os
import time
from typing import Any

from node.private_files import create_private_file

#: The audit logger. Refusals and handshake failures are WARNING, deliveries and disconnects INFO.
#: Without an audit file it follows the root logger's level (a KM inside another program, such as
#: the network demo, does not print every delivery); `attach_audit_file` records everything.
audit_log = logging.getLogger("qkdnode.audit")

_ENCODE = json.JSONEncoder(separators=(",", ":"), ensure_ascii=True, default=str).encode
MAX_FIELD = 300  # characters kept of any one text field (a 8 KiB path must not make an 8 KiB line)


def _clip(value: Any) -> Any:
    if isinstance(value, str):
        return value if len(value) <= MAX_FIELD else value[:MAX_FIELD] + "..."
    if isinstance(value, (list, tuple)):
        return [_clip(v) for v in value]
    return value


def audit(event: str, level: int = logging.INFO, **fields: Any) -> None:
    """Log one audit event as a single JSON line (`event` first, then `fields`); cheap when disabled."""
    if not audit_log.isEnabledFor(level):
        return
    doc = {"event": event, **{k: _clip(v) for k, v in fields.items() if v is not None}}
    # a record made here skips Logger.findCaller's stack walk (the caller is always this function)
    record = logging.LogRecord(audit_log.name, level, __file__, 0, _ENCODE(doc), None, None, "audit")
    audit_log.handle(record)


class _UtcJsonFormatter(logging.Formatter):
    """`2026-12-03T13:14:10.123Z audit {...}`: a sortable UTC time stamp before the JSON event."""

    _second = -1
    _stamp = ""

    def format(self, record: logging.LogRecord) -> str:
        second = int(record.created)
        if second != self._second:  # strftime once per second, not once per event
            self._second, self._stamp = second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        return f"{self._stamp}.{int(record.msecs):03d}Z {record.levelname.lower()} {record.getMessage()}"


def attach_audit_file(path: str | os.PathLike[str]) -> logging.Handler:
    """Append audit events to `path` (created owner-only whatever the umask); returns the handler."""
    create_private_file(path)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(_UtcJsonFormatter())
    handler.setLevel(logging.INFO)
    audit_log.addHandler(handler)
    audit_log.setLevel(logging.INFO)
    audit_log.propagate = False  # the file is the trail; stderr keeps warnings and errors only
    return handler


def detach_audit_file(handler: logging.Handler) -> None:
    """Stop writing to the file `handler` writes to, and close it."""
    audit_log.removeHandler(handler)
    handler.close()
    if not audit_log.handlers:
        audit_log.propagate = True
        audit_log.setLevel(logging.NOTSET)

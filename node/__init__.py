"""The QKD node: link sessions, key manager, network control and management, and the CLI."""

from __future__ import annotations

__version__ = "0.1.0"

"""Key manager (KMA + KSA): durable key store, ingest from QKD modules, KM-to-KM sync, ETSI GS QKD 014."""

from __future__ import annotations

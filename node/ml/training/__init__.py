"""Offline scripts that regenerate the shipped model arrays (need the `ml` extra: scikit-learn)."""

from __future__ import annotations

import json
from typing import Any


def publish_report(report: dict[str, Any], out: str | None) -> None:
    """Print a training script's evaluation report as JSON, and also write it to `out` when given."""
    print(json.dumps(report, indent=2))
    if out:
        with open(out, "w", encoding="utf-8") as fh:
            json.dump(report, fh, indent=2)

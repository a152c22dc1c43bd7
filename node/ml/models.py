"""Loading the shipped model arrays: plain `.npz` (no pickle) with a `.json` card beside each that
names the features and the range the model is valid in."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

MODEL_DIR = Path(__file__).with_name("shipped")


class ModelFileError(ValueError):
    """A shipped model is missing or malformed (reinstall, or retrain with node.ml.training)."""


def load_arrays(name: str, directory: Path | None = None) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """(arrays, card) of model `name`: `name.npz` read without pickle and `name.json`."""
    base = (directory or MODEL_DIR) / name
    try:
        with np.load(base.with_suffix(".npz"), allow_pickle=False) as data:
            arrays = {k: np.asarray(data[k]) for k in data.files}
        card = json.loads(base.with_suffix(".json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelFileError(f"model {name}: cannot load {base}.npz/.json: {exc}") from None
    if not isinstance(card, dict) or "features" not in card:
        raise ModelFileError(f"model {name}: {base}.json must be an object with a 'features' list")
    return arrays, card


def save_arrays(name: str, arrays: dict[str, np.ndarray], card: dict[str, Any], directory: Path | None = None) -> None:
    """Write `name.npz` and `name.json` (used by the training scripts)."""
    base = (directory or MODEL_DIR) / name
    base.parent.mkdir(parents=True, exist_ok=True)
    # numpy's stub types savez's allow_pickle keyword as bool, and mypy matches **dict against it too
    np.savez(base.with_suffix(".npz"), **{k: np.asarray(v, dtype=np.float64) for k, v in arrays.items()})  # type: ignore[arg-type]
    base.with_suffix(".json").write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")

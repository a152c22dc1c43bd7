"""QL01/CML03: QBER and key-rate forecasting a few blocks ahead from the link's own block history.

Model: for each horizon h, a linear autoregression on the last `LAGS` values taken relative to the
newest one, predicting the change to block t + h (least squares, learned offline on mock drift
scenarios). It extrapolates a drift's trend while averaging the counting noise, where "last value"
lags the drift and an exponentially weighted mean lags it more. Inference is a dot product."""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Sequence

import numpy as np
from numpy.typing import NDArray

from node.ml.models import ModelFileError, load_arrays

LAGS = 12
HORIZONS = (1, 2, 3)


def lag_matrix(series: Sequence[float] | NDArray[np.float64]) -> NDArray[np.float64]:
    """Rows of the last LAGS values minus the newest (oldest first), for each full window."""
    x = np.asarray(series, dtype=np.float64)
    windows = np.lib.stride_tricks.sliding_window_view(x, LAGS)
    return windows - windows[:, -1:]


class Forecaster:
    """Per-horizon autoregression coefficients of one quantity (QBER or relative key rate)."""

    def __init__(self, coefficients: NDArray[np.float64]) -> None:
        if coefficients.shape != (len(HORIZONS), LAGS + 1):
            raise ModelFileError(f"forecaster: coefficients must have shape ({len(HORIZONS)}, {LAGS + 1})")
        self.coefficients = coefficients

    @classmethod
    def load(cls, quantity: str = "qber") -> Forecaster:
        arrays, _ = load_arrays("ql01_forecaster")
        return cls(arrays[quantity])

    def predict(self, history: Sequence[float] | NDArray[np.float64], horizon: int = 3) -> float:
        """The value `horizon` blocks after the newest of `history` (the last value while the
        history is shorter than LAGS)."""
        h = np.asarray(history, dtype=np.float64)
        if h.size == 0:
            return math.nan
        if h.size < LAGS:
            return float(h[-1])
        c = self.coefficients[HORIZONS.index(horizon)]
        window = h[-LAGS:] - h[-1]
        return float(h[-1] + c[0] + window @ c[1:])

    def predict_all(self, series: NDArray[np.float64], horizon: int) -> NDArray[np.float64]:
        """Forecasts for every full window of `series` (row i predicts series[i + LAGS - 1 + horizon])."""
        c = self.coefficients[HORIZONS.index(horizon)]
        m = lag_matrix(series)
        return series[LAGS - 1 :] + c[0] + m @ c[1:]


def last_value(series: NDArray[np.float64], horizon: int) -> NDArray[np.float64]:
    """Baseline: the newest value stays."""
    return np.asarray(series, dtype=np.float64)[LAGS - 1 :]


def ewma(series: NDArray[np.float64], horizon: int, alpha: float = 0.3) -> NDArray[np.float64]:
    """Baseline: exponentially weighted mean of the history (aligned with `predict_all`)."""
    x = np.asarray(series, dtype=np.float64)
    out = np.empty_like(x)
    acc = x[0]
    for i, v in enumerate(x):
        acc = alpha * v + (1 - alpha) * acc if i else v
        out[i] = acc
    return out[LAGS - 1 :]


class QberWatch:
    """Bob's per-link forecast: seeds Cascade's QBER estimate with the one-block-ahead forecast and
    raises a "realign soon" warning when the forecast `horizon` blocks ahead reaches
    `warn_fraction` of the abort threshold while the measured QBER is still below it."""

    def __init__(
        self,
        link_id: str,
        qber_abort: float,
        alarm: Callable[[str, str], None],
        horizon: int = 3,
        warn_fraction: float = 0.8,
        forecaster: Forecaster | None = None,
    ) -> None:
        self.link_id, self.qber_abort, self.alarm = link_id, qber_abort, alarm
        self.horizon, self.warn_fraction = horizon, warn_fraction
        self.history: deque[float] = deque(maxlen=4 * LAGS)
        try:
            self.forecaster: Forecaster | None = forecaster or Forecaster.load("qber")
        except ModelFileError:
            self.forecaster = None
        self.warned = False

    def observe(self, qber: float) -> float:
        """Add one block's QBER; returns the estimate for the next block (never below the
        measured value's floor of 0, never above 0.5)."""
        self.history.append(float(qber))
        if self.forecaster is None:
            return float(qber)
        ahead = self.forecaster.predict(self.history, self.horizon)
        limit = self.warn_fraction * self.qber_abort
        if ahead >= limit and qber < self.qber_abort and not self.warned:
            self.alarm(
                "warning",
                f"link {self.link_id}: realign soon: QBER forecast {ahead:.4f} in {self.horizon} "
                f"blocks reaches {self.warn_fraction:.0%} of the abort threshold {self.qber_abort}",
            )
            self.warned = True
        elif ahead < 0.9 * limit:
            self.warned = False
        return float(min(0.5, max(0.0, self.forecaster.predict(self.history, 1))))

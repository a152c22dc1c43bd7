"""QL02: decoy-BB84 settings predicted from the link in microseconds, by a small multilayer
perceptron trained offline on `postprocessing.finitekey.optimise` (one model per bound).

The network maps the link features (node.ml.ql02_features) to the optimiser's own unconstrained
variables, so every prediction satisfies the protocol's ordering constraints by construction.
The rate reported for a prediction is always computed by the exact bound, never by the model."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from node.ml.models import ModelFileError, load_arrays
from node.ml.ql02_features import FEATURES, link_features
from postprocessing.finitekey import LinkParameters, ProtocolSettings, optimise, simulate
from postprocessing.finitekey.optimise import SimulationPoint, _settings_from_vector

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Prediction:
    """Predicted settings with the bound's result for them, and whether the link lay outside the
    model's range of validity (then the features were clamped to it)."""

    point: SimulationPoint
    outside_range: tuple[str, ...]
    seconds: float
    polished: bool = False  # the prediction gave no key, so the numeric optimiser started from it


class ParameterModel:
    """The shipped QL02 network of one protocol."""

    def __init__(
        self, protocol: str, arrays: dict[str, NDArray[np.float64]], feature_range: NDArray[np.float64]
    ) -> None:
        self.protocol = protocol
        self.layers = []
        i = 0
        while f"W{i}" in arrays:
            self.layers.append((arrays[f"W{i}"], arrays[f"b{i}"]))
            i += 1
        if not self.layers:
            raise ModelFileError(f"model ql02_{protocol}: no layers")
        self.x_mean, self.x_scale = arrays["x_mean"], arrays["x_scale"]
        self.y_mean, self.y_scale = arrays["y_mean"], arrays["y_scale"]
        self.feature_range = feature_range  # [feature, (low, high)]

    @classmethod
    def load(cls, protocol: str) -> ParameterModel:
        arrays, card = load_arrays(f"ql02_{protocol}")
        if tuple(card["features"]) != FEATURES:
            raise ModelFileError(f"model ql02_{protocol}: its feature list differs from node.ml.ql02_features.FEATURES")
        rng = np.array([card["valid_range"][f] for f in FEATURES], dtype=np.float64)
        return cls(protocol, arrays, rng)

    def forward(self, x: NDArray[np.float64]) -> NDArray[np.float64]:
        """Network output (the optimiser's variables) for feature rows `x`."""
        h = (np.atleast_2d(x) - self.x_mean) / self.x_scale
        for i, (w, b) in enumerate(self.layers):
            h = h @ w + b
            if i < len(self.layers) - 1:
                h = np.tanh(h)
        return h * self.y_scale + self.y_mean

    def settings(
        self, link: LinkParameters, distance_km: float, block_size: float
    ) -> tuple[ProtocolSettings, tuple[str, ...]]:
        """Predicted settings, and the names of features outside the valid range (clamped)."""
        x = link_features(link, distance_km, block_size)
        lo, hi = self.feature_range[:, 0], self.feature_range[:, 1]
        outside = tuple(f for f, v, a, b in zip(FEATURES, x, lo, hi) if not a <= v <= b)
        z = self.forward(np.clip(x, lo, hi))[0]
        return _settings_from_vector(self.protocol, z, link), outside

    def predict(self, link: LinkParameters, distance_km: float, block_size: float) -> Prediction:
        """Predicted settings and the exact bound's key for them."""
        t0 = time.perf_counter()
        s, outside = self.settings(link, distance_km, block_size)
        point = simulate(self.protocol, link, s, distance_km, block_size)
        polished = False
        if point.result.length <= 0:
            # Near the end of the key (the bound falls steeply there) a small error in the settings
            # can cost the whole key: then search locally from the prediction rather than report none.
            found = optimise(self.protocol, link, distance_km, block_size, starts=[s], global_search=False)
            if found.result.length > 0:
                point, polished = found, True
        return Prediction(point, outside, time.perf_counter() - t0, polished)


_CACHE: dict[str, ParameterModel] = {}


def parameter_model(protocol: str) -> ParameterModel:
    """The shipped model of `protocol` (loaded once)."""
    if protocol not in _CACHE:
        _CACHE[protocol] = ParameterModel.load(protocol)
    return _CACHE[protocol]


def predicted_points(
    protocol: str, link: LinkParameters, distances: list[float], blocks: list[float]
) -> list[SimulationPoint]:
    """`qkdnode simulate --optimiser ml`: one predicted point per (block size, distance), in the
    numeric optimiser's order; a one-line note on stderr for points outside the model's range."""
    import sys

    try:
        model = parameter_model(protocol)
    except ModelFileError as exc:
        raise ValueError(f"--optimiser ml: {exc}") from None
    out: list[SimulationPoint] = []
    outside: set[str] = set()
    for n in blocks:
        for d in distances:
            pred = model.predict(link, d, n)
            outside.update(pred.outside_range)
            out.append(pred.point)
    if outside:
        print(
            f"note: --optimiser ml: some points lie outside the model's range ({', '.join(sorted(outside))}); "
            "their settings are extrapolated, compare with --optimiser numeric",
            file=sys.stderr,
        )
    return out

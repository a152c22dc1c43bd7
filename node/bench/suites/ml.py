"""Bench of the ML models (node/ml): QL02 settings predicted by the shipped network and rated by the
exact bound, against `postprocessing.finitekey.optimise` on the same points (the reference), in
points per second (`unit` Mpoint/s); the row carries the rate ratio to the numeric optimum. Plus
KM03 scoring and QL01 forecasting throughput in blocks per second."""

from __future__ import annotations

from typing import Any

import numpy as np

from node.bench.core import BenchCase, BenchProfile

STAGE = "ml"
# Held-out-style points (not training rows): (distance km, block size) on each preset link.
_POINTS = ((15.0, 3e5), (65.0, 3e6), (110.0, 3e7))


def cases(profile: BenchProfile) -> list[BenchCase]:
    """ml.ql02.<protocol> (three points per run, reference: the numeric optimiser), ml.km03, ml.ql01."""
    from postprocessing.finitekey import PRESETS, optimise

    out: list[BenchCase] = []
    for protocol in ("lim2014", "rusca2018"):

        def setup(protocol: str = protocol) -> Any:
            from node.ml.parameters import parameter_model

            return parameter_model(protocol)

        def run(model: Any, protocol: str = protocol) -> dict[str, Any]:
            rates = [model.predict(PRESETS[protocol], d, n).point.key_rate_per_pulse for d, n in _POINTS]
            return {"key_rate_per_pulse": rates}

        def reference(_: Any, protocol: str = protocol) -> dict[str, Any]:
            rates = [optimise(protocol, PRESETS[protocol], d, n).key_rate_per_pulse for d, n in _POINTS]
            return {"numeric_key_rate_per_pulse": rates}

        out.append(
            BenchCase(
                stage=f"{STAGE}.ql02.{protocol}",
                n=len(_POINTS),
                setup=setup,
                run=run,
                reference=reference,
                unit="Mpoint/s",
                reference_name="finitekey.optimise",
                reference_max_runs=1,
                params={"points": [list(p) for p in _POINTS]},
                max_runs=3 if profile.quick else 20,
            )
        )

    def km03_setup() -> Any:
        from drivers.mock.blockstats import simulate_run
        from node.ml.detection import AttackDetector, Reference, block_features
        from node.ml.training.km03_train import random_link

        link = random_link(np.random.default_rng(5))
        run = simulate_run(link, 116, 2e7, 5)
        ref = Reference.from_blocks(run[:16])
        return AttackDetector.load(), [block_features(b, ref) for b in run[16:]]

    def km03_run(state: Any) -> dict[str, Any]:
        det, feats = state
        return {"alarms": sum(det.check(z).anomalous for z in feats)}

    out.append(
        BenchCase(
            stage=f"{STAGE}.km03",
            n=100,
            setup=km03_setup,
            run=km03_run,
            unit="Mblock/s",
            max_runs=3 if profile.quick else 10,
        )
    )

    def ql01_setup() -> Any:
        from node.ml.forecasting import Forecaster

        return Forecaster.load("qber"), np.random.default_rng(1).normal(0.02, 3e-4, 112)

    def ql01_run(state: Any) -> dict[str, Any]:
        f, series = state
        return {"last_forecast": [f.predict(series[: i + 12], 3) for i in range(100)][-1]}

    out.append(
        BenchCase(
            stage=f"{STAGE}.ql01",
            n=100,
            setup=ql01_setup,
            run=ql01_run,
            unit="Mblock/s",
            max_runs=3 if profile.quick else 10,
        )
    )
    return out

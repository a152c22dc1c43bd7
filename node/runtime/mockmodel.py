"""The mock link's physics as the finite-key link model's parameters, so that `qkdnode simulate`,
the link bench's "ideal" and the mock describe the same link (Bob's common dead time included)."""

from __future__ import annotations

from drivers.mock.params import LinkParams
from postprocessing.deadtime import default_margin_ps
from postprocessing.finitekey import LinkParameters

__all__ = ["common_dead_time_ps", "finitekey_link"]


def common_dead_time_ps(params: LinkParams, margin_ps: float | None = None) -> float:
    """The common dead time the node applies for these detectors: the longest dead time plus the
    margin (default as node.runtime.hardware: `postprocessing.deadtime.default_margin_ps`)."""
    longest = max(params.dead_time_ps)
    return longest + (default_margin_ps(longest) if margin_ps is None else margin_ps)


def finitekey_link(
    params: LinkParams,
    *,
    common_dead_time: float | None,
    ec_efficiency: float = 1.16,
    eps_sec: float = 1e-9,
    eps_cor: float = 1e-30,
    gate_ps: float | None = None,
) -> LinkParameters:
    """`postprocessing.finitekey.LinkParameters` for the mock link: its loss, mean detector
    efficiency, dark counts per gate, afterpulses landing in random later slots (free-running
    detectors), the passive receiver (beam splitter, four detectors, squashing), and the dead time,
    with Bob's common dead time `common_dead_time` ps (None: no common dead time, only the
    per-detector one)."""
    gate_s = (0.5 / params.repetition_rate_hz) if gate_ps is None else gate_ps * 1e-12
    n = len(params.efficiency)
    return LinkParameters(
        fibre_loss_db_per_km=params.fibre_loss_db_per_km,
        extra_loss_db=params.insertion_loss_db,
        detector_efficiency=float(sum(params.efficiency) / n),
        dark_count_probability=float(sum(params.dark_count_hz) / n) * gate_s,
        # an afterpulse comes at a random time: a detection only when it falls in a gate
        afterpulse_probability=float(sum(params.afterpulse_probability) / n)
        * min(1.0, gate_s * params.repetition_rate_hz),
        afterpulse_slot="random",
        afterpulse_time_s=float(sum(params.afterpulse_time_ps) / n) * 1e-12,
        misalignment=params.misalignment,
        ec_efficiency=max(ec_efficiency, 1.0),
        repetition_rate_hz=params.repetition_rate_hz,
        dead_time_s=float(max(params.dead_time_ps)) * 1e-12,
        common_dead_time_s=0.0 if common_dead_time is None else common_dead_time * 1e-12,
        eps_cor=eps_cor,
        eps_sec=eps_sec,
        secrecy_per_bit=None,
        receiver="passive",
    )

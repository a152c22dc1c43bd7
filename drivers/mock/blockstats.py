"""Per-block statistics of the mock link drawn at block granularity: the counts a node sees in one
key block (detections and errors per basis and intensity class, clicks per detector, multi-clicks,
dead-time discards, click-time spread), from the analytic slot model with conditions and slow
drifts applied. Seeded, for training and evaluating the ML models; the node itself runs the
Monte-Carlo link.

Counts are binomial/Poisson draws around the slot model's expectation: detections of class k in
basis b are Binomial(slots of (k, b), P(detect in b)), their errors Binomial(detections, QBER)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from drivers.mock.analytic import gate_acceptance
from drivers.mock.conditions import Condition
from drivers.mock.detectors import N_DETECTORS
from drivers.mock.link import LinkParams

BLINDED_JITTER_FRACTION = 0.2  # Eve's bright trigger pulses cross the threshold far more sharply


@dataclass(frozen=True)
class BlockStatistics:
    """What one block shows the node. `detections[b, k]`, `errors[b, k]`: sifted (matched-basis)
    detections and bit errors of basis b (0 = Z, 1 = X) and class k; `clicks[j]`: clicks of
    detector j (Z0, Z1, X0, X1); `multi_clicks`: slots with more than one click; `dead_time_discards`:
    clicks inside the common dead time; `timing_spread_ps`: standard deviation of click times."""

    slots: float
    detections: NDArray[np.float64]
    errors: NDArray[np.float64]
    clicks: NDArray[np.float64]
    multi_clicks: float
    dead_time_discards: float
    timing_spread_ps: float

    def qber(self, basis: int) -> float:
        """Sifted error rate of one basis over all classes."""
        d = float(self.detections[basis].sum())
        return float(self.errors[basis].sum()) / d if d else math.nan


@dataclass(frozen=True)
class Drift:
    """Slow changes of a normal link, per block: misalignment (phase/polarisation drift) and extra
    loss (temperature, fibre strain) follow these functions of the block index."""

    misalignment: NDArray[np.float64] = field(default_factory=lambda: np.zeros(0))
    extra_loss_db: NDArray[np.float64] = field(default_factory=lambda: np.zeros(0))

    def at(self, block: int) -> tuple[float, float]:
        m = float(self.misalignment[block]) if block < self.misalignment.size else 0.0
        loss = float(self.extra_loss_db[block]) if block < self.extra_loss_db.size else 0.0
        return m, loss


def squash_all(click: NDArray[np.float64]) -> NDArray[np.float64]:
    """`drivers.mock.analytic.squash` over the last axis of `click` (any leading shape): the
    outcome distribution [..., b, y] of the 16 click patterns."""
    out = np.zeros(click.shape[:-1] + (2, 2))
    for mask in range(1, 16):
        p = np.ones(click.shape[:-1])
        for j in range(N_DETECTORS):
            p = p * (click[..., j] if mask >> j & 1 else 1.0 - click[..., j])
        z, x = mask & 3, mask >> 2
        if z and x:
            out += 0.25 * p[..., None, None]
            continue
        b, bits = (0, z) if z else (1, x)
        if bits == 3:
            out[..., b, :] += 0.5 * p[..., None]
        else:
            out[..., b, bits - 1] += p
    return out


def multi_all(click: NDArray[np.float64]) -> NDArray[np.float64]:
    """P(more than one click in a slot) over the last axis of `click` (as analytic.multi_clicks, summed)."""
    q = 1.0 - click
    z_none, x_none = q[..., 0] * q[..., 1], q[..., 2] * q[..., 3]
    return (
        click[..., 0] * click[..., 1] * x_none
        + click[..., 2] * click[..., 3] * z_none
        + (1.0 - z_none) * (1.0 - x_none)
    )


def _slot_model(params: LinkParams, gate_ps: float, class_scale: NDArray[np.float64]) -> tuple[np.ndarray, ...]:
    """(outcome[k,a,x,b,y], click[k,a,x,j], multi[k,a,x]) of the normal link with each class's
    detected photon number scaled by `class_scale[k]`."""
    lam = params.mean_photons_detected() * class_scale[:, None, None, None]
    g = np.array([gate_acceptance(params.jitter_ps[j], gate_ps) for j in range(N_DETECTORS)])
    dark = -np.expm1(-np.asarray(params.dark_count_hz) * gate_ps * 1e-12)
    click = 1.0 - np.exp(-lam * g) * (1.0 - dark)
    return squash_all(click), click, multi_all(click)


def _intercept_resend(model: tuple[np.ndarray, ...], f: float) -> tuple[np.ndarray, ...]:
    """Eve in a random basis on a fraction f of slots (as drivers.mock.eve)."""
    out = []
    for arr in model:
        mixed = (1.0 - f) * arr.copy()
        for a in range(2):
            for x in range(2):
                mixed[:, a, x] += f * (0.5 * arr[:, a, x] + 0.25 * arr[:, 1 - a, 0] + 0.25 * arr[:, 1 - a, 1])
        out.append(mixed)
    return tuple(out)


def _blinded(params: LinkParams, outcome: np.ndarray) -> tuple[np.ndarray, ...]:
    """Slot model when Eve controls the detectors: she detects Alice's pulse (ideal detector,
    no loss), fakes her result at Bob; Bob clicks only if his basis is hers. Forwarding fraction r
    keeps the signal class's click rate."""
    mu = np.asarray(params.intensities)
    n_k = mu.size
    pz = params.bob_p_z
    eve_det = -np.expm1(-mu)
    normal_signal = outcome[0].sum(axis=(2, 3)).mean()
    fake_signal = eve_det[0] * (0.5 * pz + 0.5 * (1 - pz))
    r = min(1.0, normal_signal / fake_signal) if fake_signal > 0 else 0.0
    out = np.zeros_like(outcome)
    click = np.zeros((n_k, 2, 2, N_DETECTORS))
    for k in range(n_k):
        for a in range(2):
            for x in range(2):
                for e in range(2):  # Eve's basis
                    arm = pz if e == 0 else 1 - pz
                    for y in range(2):
                        pe = 0.5 * (1.0 if (e == a and y == x) else 0.0 if e == a else 0.5)
                        p = r * eve_det[k] * pe * arm
                        out[k, a, x, e, y] += p
                        click[k, a, x, 2 * e + y] += p
    return out, click, np.zeros((n_k, 2, 2))


def _pns_scale(params: LinkParams) -> NDArray[np.float64]:
    """Class scaling of detected photons when Eve passes only multi-photon pulses, keeping the
    signal class's rate: P(n >= 2 | mu_k) t / (eta mu_k), t fixed by the signal class."""
    mu = np.asarray(params.intensities)
    eta = float(params.channel_transmittance)
    multi = -np.expm1(-mu) - mu * np.exp(-mu)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = eta * mu[0] / multi[0]
        return np.where(mu > 0, multi * t / (eta * mu), 1.0)


def expected_rates(
    params: LinkParams, condition: Condition | None, level: float, gate_ps: float = 1000.0
) -> dict[str, np.ndarray]:
    """Per-slot expectations of every statistic under `condition` acting at `level`."""
    name = condition.name if condition is not None and level != 0.0 else None
    if name == "tap":
        params = params.replace(insertion_loss_db=params.insertion_loss_db + level)
    elif name == "laser-drift":
        params = params.replace(intensities=tuple(m * (1.0 + level) for m in params.intensities))
    n_k = len(params.intensities)
    base = _slot_model(params, gate_ps, np.ones(n_k))
    blinded_fraction = 0.0
    if name == "intercept-resend":
        base = _intercept_resend(base, level)
    elif name == "pns":
        attacked = _slot_model(params, gate_ps, _pns_scale(params))
        base = tuple((1 - level) * b + level * c for b, c in zip(base, attacked))
    elif name == "blinding":
        attacked = _blinded(params, base[0])
        base = tuple((1 - level) * b + level * c for b, c in zip(base, attacked))
        blinded_fraction = level
    outcome, click, multi = base
    pk = np.asarray(params.class_probabilities)
    pa = np.array([params.p_z, 1.0 - params.p_z])
    w = np.repeat(pk[:, None, None] * pa[None, :, None] * 0.5, 2, axis=2)  # [k, a, x]
    det = np.zeros((2, n_k))
    err = np.zeros((2, n_k))
    for b in range(2):
        det[b] = (w[:, b, :, None] * outcome[:, b, :, b, :]).sum(axis=(1, 2))
        err[b] = w[:, b, 0] * outcome[:, b, 0, b, 1] + w[:, b, 1] * outcome[:, b, 1, b, 0]
    clicks = (w[..., None] * click).sum(axis=(0, 1, 2))
    multi_rate = float((w * multi).sum())
    all_clicks = float(clicks.sum())
    dead_slots = np.mean(params.dead_time_ps) / params.period_ps
    honest_clicks = all_clicks * (1.0 - blinded_fraction)
    jitter = float(np.mean(params.jitter_ps))
    spread2 = (
        honest_clicks * jitter**2 + (all_clicks - honest_clicks) * (BLINDED_JITTER_FRACTION * jitter) ** 2
    ) / max(all_clicks, 1e-300)
    return {
        "detections": det,
        "errors": err,
        "clicks": clicks,
        "multi_clicks": np.array(multi_rate),
        "dead_time_discards": np.array(all_clicks * -math.expm1(-all_clicks * dead_slots)),
        "timing_spread_ps": np.array(math.sqrt(spread2)),
    }


def draw_block(
    params: LinkParams,
    slots: float,
    rng: np.random.Generator,
    condition: Condition | None = None,
    level: float = 0.0,
    gate_ps: float = 1000.0,
) -> BlockStatistics:
    """One block's statistics: counts drawn around the expectation (seeded `rng`, mock only)."""
    e = expected_rates(params, condition, level, gate_ps)
    det = rng.poisson(e["detections"] * slots).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        q = np.where(e["detections"] > 0, e["errors"] / np.where(e["detections"] > 0, e["detections"], 1), 0.0)
    err = rng.binomial(det.astype(np.int64), np.clip(q, 0, 1)).astype(np.float64)
    clicks = rng.poisson(e["clicks"] * slots).astype(np.float64)
    n_clicks = max(float(clicks.sum()), 2.0)
    spread = float(e["timing_spread_ps"]) * math.sqrt(rng.chisquare(n_clicks - 1) / (n_clicks - 1))
    return BlockStatistics(
        float(slots),
        det,
        err,
        clicks,
        float(rng.poisson(float(e["multi_clicks"]) * slots)),
        float(rng.poisson(float(e["dead_time_discards"]) * slots)),
        spread,
    )


def simulate_run(
    params: LinkParams,
    blocks: int,
    slots: float,
    seed: int,
    condition: Condition | None = None,
    drift: Drift | None = None,
    power_noise: float = 0.002,
) -> list[BlockStatistics]:
    """A run of `blocks` blocks of `slots` slots each, with the condition from its onset, slow drifts
    and a white relative jitter `power_noise` of the laser's power from block to block."""
    rng = np.random.default_rng(seed)
    out = []
    for b in range(blocks):
        p = params
        if drift is not None:
            m, loss = drift.at(b)
            p = p.replace(
                misalignment=min(0.5, max(0.0, params.misalignment + m)),
                insertion_loss_db=max(0.0, params.insertion_loss_db + loss),
            )
        if power_noise:
            jitter = 1.0 + power_noise * rng.standard_normal()
            p = p.replace(intensities=tuple(m * jitter for m in p.intensities))
        level = condition.level(b) if condition is not None else 0.0
        out.append(draw_block(p, slots, rng, condition, level))
    return out

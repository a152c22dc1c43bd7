"""QL02 in the running node: Bob's link measures its system loss from each key block's decoy
yields and hands it to the re-tune policy (node.ml.policy), whose re-tunes are logged, raised as
warnings and kept as the link's recommended transmitter settings (shown in the node's status).

Measured per block: the signal class's yield over the vacuum class's (detections per slot of the
class, all bases: sifted counts over the block's sifted fraction, and corrected for Bob's common
dead time by the share of clicks it discarded), so eta_sys = -ln(1 - (Y_0 - Y_vac)) / mu_0; the
basis probability from the sifted Z share (q^2 / (q^2 + (1 - q)^2)); the misalignment as the
signal class's Z error rate. The link's other parameters (dark counts, afterpulsing, f_EC) are
those of the protocol's preset. The first measured block is the baseline (no re-tune), so only a
change of the link moves the settings.

Applying a recommendation takes both ends switching intensities, probabilities and the finite-key
settings at one block boundary: the RETUNE step of node.link.retune, with `[link] retune = "apply"`
(it sets `distribute`); otherwise the recommendation is advice for the operator. The basis
probability is held (Bob's basis choice is a passive beam splitter). What Eve learns: nothing;
every input is already public (sift counts) or local to Bob."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import replace
from typing import Protocol

import numpy as np

from node.ml.policy import RetunePolicy
from postprocessing.finitekey import PRESETS, ProtocolSettings
from postprocessing.sifting import SiftCounts


class LinkSettings(Protocol):
    """What the re-tuner reads of the link's settings (node.link.distill.LinkSettings, a frozen
    dataclass, hence read-only properties)."""

    @property
    def link_id(self) -> str: ...
    @property
    def protocol(self) -> str: ...
    @property
    def intensities(self) -> tuple[float, ...]: ...
    @property
    def class_probabilities(self) -> tuple[float, ...]: ...


log = logging.getLogger(__name__)


def measured_link(
    settings: LinkSettings,
    counts: SiftCounts,
    z_errors: list[int],
    slots: float,
    detections: float,
    live_fraction: float = 1.0,
) -> tuple[float, float, float] | None:
    """(system loss in dB, basis probability, misalignment) of one block, or None when the block
    cannot tell (no signal detections, or an unphysical yield)."""
    mu = np.asarray(settings.intensities, dtype=float)
    p = np.asarray(settings.class_probabilities, dtype=float)
    sifted = np.asarray(counts.detections, dtype=float)
    total_sifted = float(sifted.sum())
    if total_sifted <= 0 or detections <= 0 or slots <= 0 or mu[0] <= 0 or not 0 < live_fraction <= 1:
        return None
    per_class = sifted.sum(axis=0) * (detections / total_sifted) / live_fraction  # all bases
    yields = per_class / (slots * p)
    vacuum = float(yields[mu == 0].mean()) if np.any(mu == 0) else 0.0
    signal = float(yields[0]) - vacuum
    if not 0 < signal < 1:
        return None
    eta = -math.log1p(-signal) / float(mu[0])
    f_z = float(sifted[0].sum()) / total_sifted
    q = 1.0 / (1.0 + math.sqrt((1.0 - f_z) / f_z)) if 0 < f_z < 1 else math.nan
    e_mis = float(z_errors[0]) / float(sifted[0, 0]) if sifted[0, 0] > 0 else math.nan
    return -10.0 * math.log10(eta), q, e_mis


class LinkRetuner:
    """The Policy stage of QL02 for one link: one call per block; `recommended` holds the latest
    re-tuned settings (None before the first re-tune)."""

    def __init__(
        self,
        settings: LinkSettings,
        alarm: Callable[[str, str], None],
        distribute: Callable[[ProtocolSettings], None] | None = None,
        hysteresis_db: float = 0.5,
    ) -> None:
        self.settings, self.alarm, self.hysteresis_db = settings, alarm, hysteresis_db
        self.distribute = distribute
        self.policy: RetunePolicy | None = None
        self.recommended: ProtocolSettings | None = None
        self.last_loss_db: float | None = None  # the last block's measured system loss
        self.off = settings.protocol not in PRESETS

    def _hand_out(self, tuned: ProtocolSettings) -> None:
        self.recommended = tuned
        if self.distribute is not None:
            self.distribute(tuned)

    def on_block(
        self, counts: SiftCounts, z_errors: list[int], slots: float, detections: float, live_fraction: float = 1.0
    ) -> ProtocolSettings | None:
        """Measure the link from one block; the new settings when the policy re-tunes."""
        if self.off:
            return None
        measured = measured_link(self.settings, counts, z_errors, slots, detections, live_fraction)
        if measured is None or not all(math.isfinite(v) for v in measured):
            return None
        loss_db, q, e_mis = measured
        self.last_loss_db = loss_db
        if self.policy is None:  # the baseline: the settings the link was commissioned with
            s = self.settings
            link = replace(PRESETS[s.protocol], detector_efficiency=1.0, misalignment=min(max(e_mis, 1e-3), 0.05))
            if s.protocol == "lim2014":
                link = replace(link, vacuum_intensity=float(s.intensities[-1]))
            try:
                current = ProtocolSettings(s.intensities, s.class_probabilities, min(max(q, 0.01), 0.99))
                self.policy = RetunePolicy(
                    s.protocol,
                    link,
                    slots,
                    current,
                    self._hand_out,
                    self.alarm,
                    hysteresis_db=self.hysteresis_db,
                    basis_fixed=True,  # Bob's basis choice is a passive beam splitter
                )
            except (ValueError, KeyError) as exc:  # settings the protocol's model does not cover
                log.warning("link %s: QL02 re-tuning off: %s", s.link_id, exc)
                self.off = True
                return None
            self.policy.tuned_loss_db = loss_db
            log.info("link %s: QL02 baseline at %.2f dB system loss", s.link_id, loss_db)
            return None
        self.policy.block_size = slots
        try:
            return self.policy.observe(loss_db)
        except ValueError as exc:  # a link outside what the bound takes: no re-tune, the link goes on
            log.warning("link %s: QL02 re-tune skipped: %s", self.settings.link_id, exc)
            return None

"""The node's hardware, from its configuration: the mock link, or lab instruments via drivers.registry.

Alice needs a `Transmitter`; Bob needs a `TimeTagger` and the timing to slot its tags. Both come
back with a `close()` that leaves the hardware safe (lasers and outputs off), called on shutdown
whatever happened before.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, field
from typing import Any

from drivers.timetagger import TimeTagger
from drivers.transmitter import Transmitter
from node.runtime.config import DEAD_TIME_FROM_INSTRUMENT, NodeConfig
from postprocessing.deadtime import CommonDeadTime
from postprocessing.slotting import StreamSlotter

log = logging.getLogger(__name__)


@dataclass
class Hardware:
    """What a node drives: Alice's transmitter or Bob's tagger and slotter, and every instrument to shut down."""

    transmitter: Transmitter | None = None
    tagger: TimeTagger | None = None
    slotter: StreamSlotter | None = None
    dead_time: CommonDeadTime | None = None  # Bob's common dead time, applied before the slotter
    instruments: dict[str, Any] = field(default_factory=dict)
    description: dict[str, Any] = field(default_factory=dict)

    def close(self) -> None:
        """Stop acquisition and leave every instrument safe; never raises."""
        if self.tagger is not None:
            with contextlib.suppress(Exception):
                self.tagger.stop()
            with contextlib.suppress(Exception):
                self.tagger.close()
        if self.transmitter is not None:
            with contextlib.suppress(Exception):
                self.transmitter.shutdown()
        from drivers.bringup import SHUTDOWN_ORDER, role_of

        # light sources first (laser, attenuator shutter), then modulator drive, bias, taggers
        ranked = sorted(self.instruments.items(), key=lambda kv: SHUTDOWN_ORDER.index(role_of(kv[1]))
                        if role_of(kv[1]) in SHUTDOWN_ORDER else len(SHUTDOWN_ORDER))
        for name, inst in ranked:
            for method in ("shutdown", "close"):
                fn = getattr(inst, method, None)
                if fn is None:
                    continue
                try:
                    fn()
                except Exception as exc:  # shutdown must reach every instrument
                    log.error("instrument %s: %s failed: %s", name, method, exc)


_ATTACK_KEYS = ("attack", "attack_strength", "attack_onset_slot")  # drivers.mock.onset (qkdnode demo --attack)


def mock_params(cfg: NodeConfig) -> Any:
    """The mock link's `LinkParams` from [hardware.mock] (both nodes must use the same values)."""
    from drivers.mock import LinkParams

    fields = {k: v for k, v in cfg.mock.items() if k not in ("seed", "realtime", "block_s", *_ATTACK_KEYS)}
    for key, value in list(fields.items()):
        if isinstance(value, list):
            fields[key] = tuple(value)
    try:
        return LinkParams(**fields)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"config table [hardware.mock]: {exc}") from None


def common_dead_time(cfg: NodeConfig, tagger: Any, slotter: StreamSlotter) -> CommonDeadTime:
    """Bob's common dead time (DESIGN §5): the longest detector dead time from [hardware.dead_time]
    (or read from the tagger driver, where it can) plus the margin; refuses to start without one.
    Clicks of one pulse (within the gate, never reaching the next slot's gate) stay together."""
    spec = cfg.dead_time.get("detector_ps")
    if spec is None or spec == DEAD_TIME_FROM_INSTRUMENT:
        reported = getattr(tagger, "detector_dead_time_ps", None)
        if reported is None:
            raise ValueError(f"config key 'hardware.dead_time.detector_ps': the {type(tagger).__name__} driver cannot "
                             "read the detectors' dead times; give them in ps (one per detector)")
        spec = tuple(float(v) for v in reported)
    longest = max(spec)
    margin = cfg.dead_time.get("margin_ps", max(0.1 * longest, 1_000.0))
    window = min(slotter.gate_ps, slotter.nominal_period_ps - slotter.gate_ps)
    dead = longest + margin
    if window >= dead:
        raise ValueError(f"config key 'hardware.dead_time.detector_ps': a dead time of {dead:g} ps is shorter than one "
                         "slot's gate; give the detectors' real dead times")
    return CommonDeadTime(dead, slotter.detector_channels, coincidence_ps=window)


def open_hardware(cfg: NodeConfig, alarm: Any = None) -> Hardware:
    """Open (and start) the hardware this node's role needs; `alarm(severity, text)` hears a failed bring-up."""
    if cfg.hardware == "mock":
        return _open_mock(cfg)
    if cfg.hardware == "replay":  # benchmarks only: the states are not fresh (node.runtime.replay_source)
        from node.runtime.replay_source import open_replay

        return open_replay(cfg, alarm)  # type: ignore[no-any-return]
    return _open_lab(cfg, alarm)


def _open_mock(cfg: NodeConfig) -> Hardware:
    from drivers.mock import MockTimeTagger, MockTransmitter

    params = mock_params(cfg)
    seed = int(cfg.mock.get("seed", 0))
    desc = {"kind": "mock", "distance_km": params.fibre_length_km, "rate_hz": params.repetition_rate_hz,
            "eve_fraction": params.eve_fraction}
    if cfg.role == "alice":
        tx = MockTransmitter(params, seed)
        tx.start()
        return Hardware(transmitter=tx, description=desc)
    tagger = MockTimeTagger(params, seed, realtime=bool(cfg.mock.get("realtime", False)),
                            block_s=float(cfg.mock.get("block_s", 2e-3)))
    _schedule_attack(cfg, tagger)
    slotter = StreamSlotter(params.period_ps, params.sync_every, 0.5 * params.period_ps,
                            delay_ps=params.channel_delays_ps())
    dead_time = common_dead_time(cfg, tagger, slotter)
    desc["dead_time_ps"] = dead_time.dead_time_ps
    tagger.start()
    return Hardware(tagger=tagger, slotter=slotter, dead_time=dead_time, description=desc)


def _schedule_attack(cfg: NodeConfig, tagger: Any) -> None:
    """An attack or fault the demo injects into Bob's side of the mock link from a given slot."""
    from drivers.mock.onset import from_mock_table

    try:
        schedule = from_mock_table(cfg.mock)
    except ValueError as exc:
        raise ValueError(f"config table [hardware.mock]: {exc}") from None
    if schedule is not None:
        schedule.attach(tagger)


def _open_lab(cfg: NodeConfig, alarm: Any = None) -> Hardware:
    from drivers.bringup import bring_up
    from drivers.registry import open_instruments

    instruments = open_instruments(cfg.instruments)
    hw = Hardware(instruments=instruments, description={"kind": "lab", "instruments": sorted(instruments)})
    try:
        bring_up(cfg.role, instruments, cfg.lab.get("bringup", {}), alarm)  # ordered, read back, safe on failure
        if cfg.role == "alice":
            from drivers.awg.transmitter import AWGTransmitter

            from drivers.awg.transmitter import ModulatorLevels

            awg = instruments[cfg.lab["transmitter"]]
            options = dict(cfg.lab.get("transmitter_options", {}))
            levels = options.pop("levels", None)
            if not isinstance(levels, dict) or set(levels) != {"intensity", "phase"}:
                raise ValueError("config key 'hardware.lab.transmitter_options.levels' must be a table with "
                                 "'intensity' (one AWG level per class) and 'phase' (four levels)")
            for key in ("intensities", "p_intensity"):
                if key in options:
                    options[key] = tuple(options[key])
            qrng = options.pop("qrng", None)  # fresh states from a hardware QRNG instead of the OS CSPRNG
            if qrng is not None:
                source = getattr(instruments.get(qrng), "random_bytes", None)
                if not callable(source):
                    raise ValueError(f"config key 'hardware.lab.transmitter_options.qrng' must name an instrument "
                                     f"whose driver has random_bytes(n), got {qrng!r}")
                options["random_source"] = source
            hw.transmitter = AWGTransmitter(
                awg, levels=ModulatorLevels(tuple(levels["intensity"]), tuple(levels["phase"])), **options)
            hw.transmitter.start()
        else:
            hw.tagger = instruments[cfg.lab["tagger"]]
            slot = cfg.lab.get("slotting", {})
            try:
                hw.slotter = StreamSlotter(float(slot["period_ps"]), int(slot["sync_every"]), float(slot["gate_ps"]),
                                           delay_ps={int(k): float(v) for k, v in slot.get("delays_ps", {}).items()},
                                           sync_channel=int(slot.get("sync_channel", 0)))
            except KeyError as exc:
                raise ValueError(f"config key 'hardware.lab.slotting.{exc.args[0]}' is required for Bob") from None
            hw.dead_time = common_dead_time(cfg, hw.tagger, hw.slotter)
            hw.description["dead_time_ps"] = hw.dead_time.dead_time_ps
            hw.tagger.start()
    except BaseException:
        hw.close()
        raise
    return hw

"""The node's hardware, from its configuration: the mock link, or lab instruments via drivers.registry.

Alice needs a `Transmitter`; Bob needs a `TimeTagger` and the timing to slot its tags. Both come
back with a `close()` that leaves the hardware safe (lasers and outputs off), called on shutdown
whatever happened before.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from drivers.timetagger import TimeTagger
from drivers.transmitter import Transmitter
from node.runtime.config import DEAD_TIME_FROM_INSTRUMENT, NodeConfig
from postprocessing.deadtime import CommonDeadTime, default_margin_ps, pulse_window_ps
from postprocessing.slotting import StreamSlotter

if TYPE_CHECKING:
    from drivers.mock.params import LinkParams

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
    alarm: Callable[[str, str], None] | None = None  # alarm(severity, text): hears a failed shutdown

    def close(self) -> None:
        """Stop acquisition and leave every instrument safe; never raises. A step that fails is
        logged and alarmed (critical for a light source: a laser left on must be noticed), and the
        steps after it still run."""
        if self.tagger is not None:
            self._step("tagger", "stop", self.tagger.stop)
            self._step("tagger", "close", self.tagger.close)
        if self.transmitter is not None:
            self._step("transmitter", "shutdown", self.transmitter.shutdown, light=True)
        from drivers.bringup import SHUTDOWN_ORDER, role_of

        # light sources first (laser, attenuator shutter), then modulator drive, bias, taggers
        ranked = sorted(
            self.instruments.items(),
            key=lambda kv: (
                SHUTDOWN_ORDER.index(role_of(kv[1])) if role_of(kv[1]) in SHUTDOWN_ORDER else len(SHUTDOWN_ORDER)
            ),
        )
        for name, inst in ranked:
            for method in ("shutdown", "close"):
                fn = getattr(inst, method, None)
                if fn is not None:
                    self._step(f"instrument {name}", method, fn, light=method == "shutdown")

    def _step(self, what: str, method: str, fn: Callable[[], Any], light: bool = False) -> None:
        """One shutdown step; a failure is logged and alarmed, never raised (shutdown must reach every instrument)."""
        try:
            fn()
        except Exception as exc:  # noqa: BLE001 - shutdown must reach every instrument
            text = f"{what}: {method} failed ({type(exc).__name__}: {exc}); check that its output is off"
            log.error("hardware shutdown: %s", text)
            if self.alarm is not None:
                try:
                    self.alarm("critical" if light else "major", f"shutdown: {text}")
                except Exception:  # the alarm path must not stop the shutdown either
                    log.exception("hardware shutdown: raising the alarm failed")


def mock_params(cfg: NodeConfig) -> LinkParams:
    """The mock link's `LinkParams` from [hardware.mock] (both nodes must use the same values)."""
    if cfg.mock is None:
        raise ValueError("config table [hardware.mock]: this node does not run the mock link")
    return cfg.mock.params


def common_dead_time(cfg: NodeConfig, tagger: Any, slotter: StreamSlotter) -> CommonDeadTime:
    """Bob's common dead time (DESIGN §5): the longest detector dead time from [hardware.dead_time]
    (or read from the tagger driver, where it can) plus the margin; refuses to start without one.
    Clicks of one pulse (within the gate, never reaching the next slot's gate) stay together."""
    spec = cfg.dead_time.get("detector_ps")
    if spec is None or spec == DEAD_TIME_FROM_INSTRUMENT:
        reported = getattr(tagger, "detector_dead_time_ps", None)
        if reported is None:
            raise ValueError(
                f"config key 'hardware.dead_time.detector_ps': the {type(tagger).__name__} driver cannot "
                "read the detectors' dead times; give them in ps (one per detector)"
            )
        spec = tuple(float(v) for v in reported)
    longest = max(spec)
    margin = cfg.dead_time.get("margin_ps", default_margin_ps(longest))
    window = pulse_window_ps(slotter.gate_ps, slotter.nominal_period_ps)
    dead = longest + margin
    if window >= dead:
        raise ValueError(
            f"config key 'hardware.dead_time.detector_ps': a dead time of {dead:g} ps is shorter than one "
            "slot's gate; give the detectors' real dead times"
        )
    return CommonDeadTime(dead, slotter.detector_channels, coincidence_ps=window)


def open_hardware(cfg: NodeConfig, alarm: Any = None) -> Hardware:
    """Open (and start) the hardware this node's role needs; `alarm(severity, text)` hears a failed bring-up."""
    if cfg.hardware == "replay":  # benchmarks only: the states are not fresh
        hw = _open_replay(cfg, alarm)
    else:
        hw = _open_mock(cfg) if cfg.hardware == "mock" else _open_lab(cfg, alarm)
    hw.alarm = alarm
    return hw


def _open_mock(cfg: NodeConfig) -> Hardware:
    from drivers.mock import MockTimeTagger, MockTransmitter

    params = mock_params(cfg)
    assert cfg.mock is not None
    desc = {
        "kind": "mock",
        "distance_km": params.fibre_length_km,
        "rate_hz": params.repetition_rate_hz,
        "eve_fraction": params.eve_fraction,
    }
    if cfg.role == "alice":
        tx = MockTransmitter(params, cfg.mock.seed)
        tx.start()
        return Hardware(transmitter=tx, description=desc)
    tagger = MockTimeTagger(params, cfg.mock.seed, realtime=cfg.mock.realtime, block_s=cfg.mock.block_s)
    if cfg.mock.attack is not None:  # an attack or fault the demo injects into Bob's side from a given slot
        cfg.mock.attack.attach(tagger)
    slotter = StreamSlotter(
        params.period_ps, params.sync_every, 0.5 * params.period_ps, delay_ps=params.channel_delays_ps()
    )
    dead_time = common_dead_time(cfg, tagger, slotter)
    desc["dead_time_ps"] = dead_time.dead_time_ps
    tagger.start()
    return Hardware(tagger=tagger, slotter=slotter, dead_time=dead_time, description=desc)


NOT_FOR_USE = (
    "replay source: keys distilled from a recording are not secret (the recording holds Alice's "
    "states) and are handed out again by every replay; use them to measure throughput only"
)


def _open_replay(cfg: NodeConfig, alarm: Any = None) -> Hardware:
    """Alice's `ReplayTransmitter` or Bob's `ReplayTimeTagger` with the recording's slotting and the
    common dead time, started. Benchmarks only: every start raises a major alarm, since the states
    are not fresh (whoever holds the recording knows the keys; config validation refused it without
    `benchmark_only`)."""
    from drivers.replay import ReplayTimeTagger, ReplayTransmitter, read_info

    if cfg.replay.get("benchmark_only") is not True:  # parse_node_config refuses it; a hand-made config too
        raise ValueError("replay hardware needs hardware.replay.benchmark_only = true (benchmarks and tests only)")
    info = read_info(cfg.replay["path"])
    if tuple(info.intensities) != tuple(cfg.link.intensities) or tuple(info.class_probabilities) != tuple(
        cfg.link.class_probabilities
    ):
        raise ValueError(
            f"config keys 'link.intensities' and 'link.class_probabilities' must match the recording "
            f"{info.root}: {list(info.intensities)} and {list(info.class_probabilities)}"
        )
    if alarm is not None:
        alarm("major", NOT_FOR_USE)
    desc = {"kind": "replay", "recording": str(info.root), "source": info.source, "rate_hz": info.repetition_rate_hz}
    if cfg.role == "alice":
        tx = ReplayTransmitter(info)
        tx.start()
        return Hardware(transmitter=tx, description=desc)
    s = info.slotting
    tagger = ReplayTimeTagger(info)
    slotter = StreamSlotter(
        s.period_ps,
        s.sync_every,
        s.gate_ps,
        delay_ps=dict(enumerate(s.delays_ps)),
        detector_channels=s.detector_channels,
        sync_channel=s.sync_channel,
    )
    dead_time = common_dead_time(cfg, tagger, slotter)
    desc["dead_time_ps"] = dead_time.dead_time_ps
    tagger.start()
    return Hardware(tagger=tagger, slotter=slotter, dead_time=dead_time, description=desc)


def _open_lab(cfg: NodeConfig, alarm: Any = None) -> Hardware:
    from drivers.bringup import bring_up
    from drivers.registry import open_instruments

    instruments = open_instruments(cfg.instruments)
    hw = Hardware(instruments=instruments, description={"kind": "lab", "instruments": sorted(instruments)}, alarm=alarm)
    try:
        bring_up(cfg.role, instruments, cfg.lab.get("bringup", {}), alarm)  # ordered, read back, safe on failure
        if cfg.role == "alice":
            from drivers.awg.transmitter import AWGTransmitter, ModulatorLevels

            awg = instruments[cfg.lab["transmitter"]]
            options = dict(cfg.lab.get("transmitter_options", {}))
            levels = options.pop("levels", None)
            if not isinstance(levels, dict) or set(levels) != {"intensity", "phase"}:
                raise ValueError(
                    "config key 'hardware.lab.transmitter_options.levels' must be a table with "
                    "'intensity' (one AWG level per class) and 'phase' (four levels)"
                )
            for key in ("intensities", "p_intensity"):
                if key in options:
                    options[key] = tuple(options[key])
            qrng = options.pop("qrng", None)  # fresh states from a hardware QRNG instead of the OS CSPRNG
            if qrng is not None:
                source = getattr(instruments.get(qrng), "random_bytes", None)
                if not callable(source):
                    raise ValueError(
                        f"config key 'hardware.lab.transmitter_options.qrng' must name an instrument "
                        f"whose driver has random_bytes(n), got {qrng!r}"
                    )
                options["random_source"] = source
            hw.transmitter = AWGTransmitter(
                awg, levels=ModulatorLevels(tuple(levels["intensity"]), tuple(levels["phase"])), **options
            )
            hw.transmitter.start()
        else:
            hw.tagger = instruments[cfg.lab["tagger"]]
            slot = cfg.lab.get("slotting", {})
            try:
                hw.slotter = StreamSlotter(
                    float(slot["period_ps"]),
                    int(slot["sync_every"]),
                    float(slot["gate_ps"]),
                    delay_ps={int(k): float(v) for k, v in slot.get("delays_ps", {}).items()},
                    sync_channel=int(slot.get("sync_channel", 0)),
                )
            except KeyError as exc:
                raise ValueError(f"config key 'hardware.lab.slotting.{exc.args[0]}' is required for Bob") from None
            hw.dead_time = common_dead_time(cfg, hw.tagger, hw.slotter)
            hw.description["dead_time_ps"] = hw.dead_time.dead_time_ps
            hw.tagger.start()
    except BaseException:
        hw.close()
        raise
    return hw

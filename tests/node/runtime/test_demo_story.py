"""What the demo tells its user: the physics forecast, the phase it waits in, why no key came."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from node.runtime.demo import DemoOptions, link_forecast, phase, why_no_key


def running(**counters: int) -> dict:
    return {"state": "running", "uptime_s": 10.0, "counters": counters, "delivery": {}}


def test_forecast_expects_key_at_25_km_and_none_where_dark_counts_or_eve_dominate() -> None:
    near = link_forecast(DemoOptions(distance_km=25))
    assert 0.005 < near["qber"] < 0.03 and not near["no_key_expected"]
    far = link_forecast(DemoOptions(distance_km=300))
    assert far["no_key_expected"] and "dark counts" in far["text"] and "11 %" in far["text"]
    assert link_forecast(DemoOptions(eve_fraction=1.0))["no_key_expected"]
    # farther means fewer detections: a block needs more link time
    assert link_forecast(DemoOptions(distance_km=100))["block_link_s"] > near["block_link_s"]


@pytest.mark.parametrize(
    "alice, bob, words",
    [
        ({}, {}, "still starting"),
        (running(), running(sifted_bits=1_000_000), "only 1.00 of the 4 Mbit"),
        (running(), running(sifted_bits=4_100_000), "error correction and privacy amplification"),
        (running(), running(sifted_bits=9_000_000, aborted=2), "all 2 blocks were aborted"),
        (running(), running(sifted_bits=9_000_000, blocks=2, key_bits=0), "finite-key length was 0"),
    ],
)
def test_why_no_key_names_the_stage_it_stopped_in(alice: dict, bob: dict, words: str) -> None:
    run = SimpleNamespace(options=DemoOptions(duration_s=30))
    text = why_no_key(run, alice, bob, {})  # type: ignore[arg-type]
    assert words in text and "--duration 30 s" in text


def test_why_no_key_counts_the_blocks_still_missing_rather_than_blaming_the_keys() -> None:
    # an attack demo asks for 19 blocks; the key check waits for all of them
    run = SimpleNamespace(options=DemoOptions(duration_s=30, blocks=19))
    text = why_no_key(run, running(), running(sifted_bits=40_000_000, blocks=9, key_bits=9_000_000), {})  # type: ignore[arg-type]
    assert "9 of the 19 blocks" in text and "keys differ" not in text


def test_why_no_key_at_300_km_says_no_key_is_expected() -> None:
    run = SimpleNamespace(options=DemoOptions(distance_km=300, duration_s=30))
    assert "no key is expected" in why_no_key(run, running(), running(sifted_bits=10), {})  # type: ignore[arg-type]


def test_phase_follows_the_link_from_start_up_to_the_key_check() -> None:
    run = SimpleNamespace(options=DemoOptions())
    assert "starting" in phase(run, {}, {})  # type: ignore[arg-type]
    assert "compile the numba kernels" in phase(run, running(), running(sifted_bits=10))  # type: ignore[arg-type]
    assert "error correction" in phase(run, running(), running(sifted_bits=4_000_000))  # type: ignore[arg-type]
    assert "ETSI 014" in phase(run, running(), running(blocks=1, key_bits=10))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "kwargs, option",
    [
        ({"block_bits": 10}, "--block-bits"),
        ({"distance_km": -1}, "--distance"),
        ({"eve_fraction": 2}, "--eve"),
        ({"rate_hz": 0}, "--rate"),
        ({"duration_s": 0}, "--duration"),
        ({"blocks": 0}, "--blocks"),
        ({"seed": -1}, "--seed"),
    ],
)
def test_options_are_refused_naming_the_option(kwargs: dict, option: str) -> None:
    with pytest.raises(ValueError, match=option):
        DemoOptions(**kwargs)

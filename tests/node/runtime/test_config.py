"""Node configuration: the shipped examples validate, and bad files name the key and what is allowed."""

from __future__ import annotations

import tomllib
from importlib import resources

import pytest

from node.runtime.config import parse_node_config

EXAMPLES = ["mock_alice.toml", "mock_bob.toml", "lab_alice.toml", "lab_bob.toml"]


def example(name: str) -> dict:
    return tomllib.loads(resources.files("node.runtime.examples").joinpath(name).read_text())


@pytest.mark.parametrize("name", EXAMPLES)
def test_shipped_example_configs_validate(name: str) -> None:
    cfg = parse_node_config(example(name), "/tmp")
    assert cfg.role in name and cfg.link.link_id == "L1"


def test_mock_pair_agrees_on_link_settings() -> None:
    a, b = (parse_node_config(example(f"mock_{r}.toml")) for r in ("alice", "bob"))
    assert a.link.fingerprint() == b.link.fingerprint() and a.mock == b.mock


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda d: d["node"].update(role="eve"), "node.role' must be one of alice, bob"),
        (lambda d: d["link"].update(peer="localhost:5800"), "link.peer' must be a ZeroMQ endpoint"),
        (lambda d: d["link"].update(colour="red"), "link.colour' is unknown"),
        (lambda d: d["hardware"].update(kind="fpga"), "hardware.kind' must be one of mock, lab"),
        (lambda d: d["hardware"]["mock"].update(fibre_lenght_km=3), "hardware.mock.fibre_lenght_km' is unknown"),
        (lambda d: d["link"].update(block_bits=10), "block_bits must be in"),
        (lambda d: d["link"].update(retune="always"), "retune must be one of apply, advise, off"),
        (lambda d: d["link"].update(retune_min_blocks=0), "retune_min_blocks must be an integer in"),
        (lambda d: d["link"].update(retune_max_intensity=50.0), "retune_max_intensity must be in"),
        (lambda d: d.pop("link"), "config table \\[link\\] is required"),
    ],
)
def test_bad_config_names_the_key_and_what_is_allowed(change, message: str) -> None:
    doc = example("mock_bob.toml")
    change(doc)
    with pytest.raises(ValueError, match=message):
        parse_node_config(doc)


def test_lab_bob_must_name_an_existing_tagger_instrument() -> None:
    doc = example("lab_bob.toml")
    doc["hardware"]["lab"]["tagger"] = "nope"
    with pytest.raises(ValueError, match=r"hardware.lab.tagger' names instrument 'nope'"):
        parse_node_config(doc)


@pytest.mark.parametrize("workers", [0, -2, 33, 2.5, "4", True])
def test_bad_worker_counts_name_the_key_and_the_allowed_range(workers: object) -> None:
    doc = example("mock_bob.toml")
    doc["link"]["workers"] = workers
    with pytest.raises(ValueError, match=r"link.workers' must be an integer in \[1, 32\]"):
        parse_node_config(doc)


def test_workers_are_local_and_default_to_the_core_count() -> None:
    from node.runtime.config import DEFAULT_WORKERS_MAX, default_workers, usable_cores

    a, b = example("mock_alice.toml"), example("mock_bob.toml")
    b["link"]["workers"] = 3
    alice, bob = parse_node_config(a), parse_node_config(b)
    assert bob.workers == 3 and alice.workers == default_workers() == min(usable_cores(), DEFAULT_WORKERS_MAX)
    assert alice.link.fingerprint() == bob.link.fingerprint()  # not compared at HELLO: each end chooses


@pytest.mark.parametrize("cores", [1, 2, 3, 8, 9, 64])
def test_default_workers_follow_the_cores_this_process_may_use(monkeypatch, cores: int) -> None:
    import os

    from node.runtime import config

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cores)), raising=False)
    assert config.usable_cores() == cores
    assert config.default_workers() == min(cores, config.DEFAULT_WORKERS_MAX)
    assert parse_node_config(example("mock_bob.toml")).workers == min(cores, 8)


def test_retune_is_advice_unless_the_config_says_apply() -> None:
    doc = example("mock_bob.toml")
    assert parse_node_config(doc).link.retune == "advise"
    doc["link"].update(retune="apply", retune_min_blocks=4)
    link = parse_node_config(doc).link
    assert (link.retune, link.retune_min_blocks) == ("apply", 4)

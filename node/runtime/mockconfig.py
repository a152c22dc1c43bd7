"""[hardware.mock] of a node's file (and a topology link's mock table): the mock link's physics and
how the node runs it, checked once into a typed `MockConfig`; every error names the key."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from node.configschema import ConfigError, check_keys, check_number_types, fail, key_path, require

if TYPE_CHECKING:
    from drivers.mock.onset import ScheduledCondition
    from drivers.mock.params import LinkParams

__all__ = ["ATTACK_KEYS", "RUN_KEYS", "MockConfig", "check_link_mock", "link_param_names", "parse_mock"]

RUN_KEYS = ("seed", "realtime", "block_s")  # how the node runs the mock
ATTACK_KEYS = ("attack", "attack_strength", "attack_onset_slot")  # drivers.mock.onset (qkdnode demo --attack)


@dataclass(frozen=True)
class MockConfig:
    """The mock link a node drives: its physics, the seed both nodes share, the tagger's pacing
    and an optional attack or fault switched on at a given slot."""

    params: LinkParams
    seed: int = 0
    realtime: bool = False
    block_s: float = 2e-3
    attack: ScheduledCondition | None = None


def link_param_names() -> tuple[str, ...]:
    """The physical keys: the fields of `drivers.mock.LinkParams`."""
    from drivers.mock.params import LinkParams

    return tuple(f.name for f in dataclasses.fields(LinkParams))


def parse_mock(
    table: Any, where: str, *, fixed: dict[str, Any] | None = None, exclude: Iterable[str] = ()
) -> MockConfig:
    """Check the mock table at `where` and build its `MockConfig`. `fixed` sets physical values the
    table may not give (a topology link's length), `exclude` removes keys from those allowed."""
    from drivers.mock.onset import from_mock_table
    from drivers.mock.params import LinkParams

    excluded = set(exclude) | set(fixed or ())
    allowed = [k for k in (*link_param_names(), *RUN_KEYS, *ATTACK_KEYS) if k not in excluded]
    t = check_keys(table, allowed, where)
    ints: list[str] = []
    numbers: list[str] = []
    lists: list[str] = []
    for f in dataclasses.fields(LinkParams):
        (lists if isinstance(f.default, tuple) else ints if isinstance(f.default, int) else numbers).append(f.name)
    check_number_types(t, where, (*ints, "seed"), (*numbers, "block_s"), tuple(lists))
    seed = t.get("seed", 0)
    require(0 <= seed < 2**64, key_path(where, "seed"), f"must be an integer in [0, 2^64), got {seed!r}")
    realtime = t.get("realtime", False)
    require(isinstance(realtime, bool), key_path(where, "realtime"), f"must be true or false, got {realtime!r}")
    block_s = t.get("block_s", 2e-3)
    require(0 < block_s <= 10, key_path(where, "block_s"), f"must be a number of seconds in (0, 10], got {block_s!r}")
    physical: dict[str, Any] = {
        k: tuple(v) if isinstance(v, list) else v for k, v in t.items() if k in link_param_names()
    }
    try:
        params = LinkParams(**physical, **(fixed or {}))
    except (TypeError, ValueError, OverflowError) as exc:
        raise _naming_the_key(str(exc), t, where) from None
    try:
        attack = from_mock_table(t)
    except (TypeError, ValueError) as exc:
        raise fail(key_path(where, "attack"), str(exc)) from None
    return MockConfig(params, int(seed), realtime, float(block_s), attack)


def check_link_mock(table: Any, where: str, distance_km: float) -> dict[str, Any]:
    """A topology link's mock table (`node.control.topology.MockCheck`): the mock's fields but its
    length, which is the link's `distance_km`, plus seed and realtime; returns the table."""
    parse_mock(table, where, fixed={"fibre_length_km": distance_km}, exclude=("block_s", *ATTACK_KEYS))
    return dict(table)


def _naming_the_key(text: str, t: dict[str, Any], where: str) -> ConfigError:
    """LinkParams says "misalignment must be in [0, 0.5], got 0.9": name the key as the file spells it."""
    field, _, rest = text.partition(" ")
    if field in t and rest:
        return fail(key_path(where, field), rest)
    return fail(where, text)

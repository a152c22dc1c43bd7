"""The demo JSON's authentication figures: auth bits per block, ε_auth beside ε_sec/ε_cor, net key."""

from __future__ import annotations

from node.runtime.demo import authentication_summary


def test_per_block_authentication_figures_come_from_bobs_counters() -> None:
    counters = {"blocks": 3, "auth_bits": 1024, "auth_failures": 0, "key_bits": 215_000, "finite_key_bits": 216_000}
    last = {"eps_auth": 3e-25, "eps_sec": 1e-9, "eps_cor": 1e-30}
    s = authentication_summary(counters, last)
    assert s["auth_bits_per_block"] == 1024 / 3
    assert (s["eps_auth_per_block"], s["eps_sec"], s["eps_cor"]) == (3e-25, 1e-9, 1e-30)
    assert s["net_key_bits_per_block"] == 215_000 / 3 and s["finite_key_bits_per_block"] == 72_000
    assert s["net_vs_finite_key"] == 215_000 / 216_000


def test_no_block_yet_gives_no_ratio() -> None:
    s = authentication_summary({}, {})
    assert s["auth_bits_per_block"] is None and s["net_vs_finite_key"] is None

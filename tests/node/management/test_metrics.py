"""Node metrics: the endpoint is scraped over real HTTP and carries the documented metric names."""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from node.management import (
    METRICS,
    AlarmRegistry,
    NodeMetrics,
    close_metrics,
    serve_metrics,
)
from node.management.metrics import ABORT_REASONS, BLOCK_OUTCOMES


class FakeClock:
    def __init__(self) -> None:
        self.t = 1_000_000.0

    def __call__(self) -> float:
        return self.t


def scrape(port: int) -> dict[str, list]:
    """name -> samples of each family, by a real HTTP GET."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        assert resp.status == 200
        text = resp.read().decode()
    return {f.name: f.samples for f in text_string_to_metric_families(text)}


def value(families: dict[str, list], sample_name: str, **labels: str) -> float:
    base = sample_name.removesuffix("_total")
    for s in families.get(base, []) + families.get(sample_name, []):
        if s.name == sample_name and s.labels == labels:
            return s.value
    raise KeyError(f"{sample_name} {labels}")


@pytest.fixture
def node() -> Iterator[tuple[NodeMetrics, AlarmRegistry, int, FakeClock]]:
    clock = FakeClock()
    metrics = NodeMetrics("node_A", clock=clock, rate_window_s=10)
    alarms = AlarmRegistry()
    metrics.watch_alarms(alarms)
    server, port = serve_metrics(metrics.registry, "127.0.0.1", 0)
    try:
        yield metrics, alarms, port, clock
    finally:
        close_metrics(server)


def test_endpoint_has_every_documented_metric_name(node) -> None:
    metrics, _alarms, port, _clock = node
    metrics.declare_link("L1", "node_B", "alice")
    metrics.set_link_up("L1", True)
    metrics.record_block("L1", 100_000, 30_000, 0.021, "key")
    metrics.record_block("L1", 100_000, 0, 0.13, "aborted", reason="qber")
    metrics.record_dropped("L1", 5)
    metrics.set_key_pool("node_B", 123_456)
    metrics.record_relay("forwarded", link_key_bits={"L1": 512})
    metrics.set_instrument_up("tagger", True)
    metrics.set_auth_key_available("L1", "send", 8192)
    families = scrape(port)
    for name, (kind, labels, _help) in METRICS.items():
        base = name[: -len("_total")] if kind == "counter" else name
        assert base in families, name
        samples = [s for s in families[base] if s.name == name]
        assert samples, f"{name} has no sample"
        assert all(set(s.labels) == set(labels) for s in samples), name


def test_block_figures_reach_the_endpoint(node) -> None:
    metrics, _alarms, port, clock = node
    metrics.declare_link("L1", "node_B", "bob")
    metrics.record_block("L1", 200_000, 50_000, 0.025, "key")
    clock.t += 2
    metrics.record_block("L1", 200_000, 0, None, "no_key")
    metrics.record_block("L1", 200_000, 0, 0.2, "aborted", reason="qber")
    metrics.record_block("L1", 200_000, 0, None, "aborted", reason="mac")
    f = scrape(port)
    assert value(f, "qkdnode_sifted_key_bits_total", link="L1") == 800_000
    assert value(f, "qkdnode_secret_key_bits_total", link="L1") == 50_000
    assert value(f, "qkdnode_qber", link="L1") == pytest.approx(0.2)
    assert value(f, "qkdnode_blocks_total", link="L1", outcome="key") == 1
    assert value(f, "qkdnode_blocks_total", link="L1", outcome="no_key") == 1
    assert value(f, "qkdnode_blocks_total", link="L1", outcome="aborted") == 2
    assert value(f, "qkdnode_block_aborts_total", link="L1", reason="qber") == 1
    assert value(f, "qkdnode_block_aborts_total", link="L1", reason="mac") == 1
    assert value(f, "qkdnode_link_info", link="L1", peer="node_B", role="bob") == 1
    assert value(f, "qkdnode_node_info", node="node_A") == 1
    # 800 000 sifted bits over the 2 s since the link was declared
    assert value(f, "qkdnode_sifted_key_rate_bps", link="L1") == pytest.approx(400_000)
    assert value(f, "qkdnode_secret_key_rate_bps", link="L1") == pytest.approx(25_000)


def test_rates_cover_only_the_last_window(node) -> None:
    metrics, _alarms, port, clock = node
    metrics.declare_link("L1", "node_B", "alice")
    clock.t += 5
    metrics.record_block("L1", 1000, 100, 0.01, "key")
    clock.t += 20
    metrics.record_block("L1", 3000, 300, 0.01, "key")
    f = scrape(port)
    assert value(f, "qkdnode_sifted_key_rate_bps", link="L1") == pytest.approx(300)  # 3000 bits / 10 s window
    clock.t += 11
    assert value(scrape(port), "qkdnode_secret_key_rate_bps", link="L1") == 0


def test_alarm_counts_are_read_at_scrape_time(node) -> None:
    _metrics, alarms, port, _clock = node
    alarms.raise_alarm("major", "link:L1", "block aborted")
    alarms.raise_alarm("critical", "instrument:laser", "no reply")
    f = scrape(port)
    assert value(f, "qkdnode_alarms_active", severity="major") == 1
    assert value(f, "qkdnode_alarms_active", severity="critical") == 1
    alarms.clear_source("link:L1")
    assert value(scrape(port), "qkdnode_alarms_active", severity="major") == 0


def test_two_nodes_in_one_process_have_separate_registries() -> None:
    a, b = NodeMetrics("A"), NodeMetrics("B")
    a.declare_link("L1", "B", "alice")
    b.declare_link("L1", "A", "bob")
    a.record_block("L1", 10, 1, 0.01, "key")
    sa, pa = serve_metrics(a.registry)
    sb, pb = serve_metrics(b.registry)
    try:
        assert pa != pb
        assert value(scrape(pa), "qkdnode_sifted_key_bits_total", link="L1") == 10
        assert value(scrape(pb), "qkdnode_sifted_key_bits_total", link="L1") == 0
    finally:
        close_metrics(sa)
        close_metrics(sb)


def test_redeclaring_a_link_with_another_peer_replaces_its_info() -> None:
    m = NodeMetrics("A")
    m.declare_link("L1", "B", "alice")
    m.declare_link("L1", "C", "alice")
    samples = [s for f in m.registry.collect() if f.name == "qkdnode_link_info" for s in f.samples]
    assert [s.labels["peer"] for s in samples] == ["C"]


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda m: m.record_block("L1", 10, 1, 0.01, "great"), "outcome: 'great' is not one of key, no_key, aborted"),
        (lambda m: m.record_block("L1", 10, 0, 0.01, "aborted", reason="cosmic"), "reason"),
        (lambda m: m.record_block("L1", 10, 5, 0.01, "no_key"), "secret_bits"),
        (lambda m: m.record_block("L1", -1, 0, 0.01, "no_key"), "sifted_bits"),
        (lambda m: m.record_block("L1", 10, 1, 1.5, "key"), "qber"),
        (lambda m: m.record_block("L1", 10, 1, 0.01, "key", reason="qber"), "reason"),
        (lambda m: m.record_relay("teleported"), "outcome"),
        (lambda m: m.set_auth_key_available("L1", "up", 1), "direction"),
        (lambda m: m.declare_link("L1", "B", "eve"), "role"),
        (lambda m: m.set_key_pool("", 1), "peer"),
    ],
)
def test_bad_arguments_raise_value_error_naming_them(call, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        call(NodeMetrics("A"))


def test_documented_label_values_are_the_allowed_ones() -> None:
    assert BLOCK_OUTCOMES == ("key", "no_key", "aborted")
    assert "qber" in ABORT_REASONS and "mac" in ABORT_REASONS


def test_serve_metrics_rejects_a_bad_port() -> None:
    with pytest.raises(ValueError, match="port"):
        serve_metrics(NodeMetrics("A").registry, port=70000)


def test_alarms_endpoint_serves_active_alarms_and_recent_changes() -> None:
    import json

    metrics, alarms = NodeMetrics("A"), AlarmRegistry()
    alarms.raise_alarm("major", "link:L1", "x", key="k")
    alarms.clear("link:L1", "k")
    alarms.raise_alarm("warning", "node", "y")
    server, port = serve_metrics(metrics.registry, alarms=alarms)
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/alarms", timeout=10) as resp:
            assert resp.headers["Content-Type"] == "application/json"
            doc = json.loads(resp.read())
    finally:
        close_metrics(server)
    assert [(a["severity"], a["text"]) for a in doc["active"]] == [("warning", "y")]
    assert [e["action"] for e in doc["recent"]] == ["raised", "cleared", "raised"]


def test_alarms_path_is_404_without_an_alarm_registry() -> None:
    import urllib.error

    server, port = serve_metrics(NodeMetrics("A").registry)
    try:
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/alarms", timeout=10)
        assert err.value.code == 404
    finally:
        close_metrics(server)

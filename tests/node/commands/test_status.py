"""`qkdnode status` against real metrics endpoints started in the test."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from node.cli import main
from node.commands.status import parse_urls
from node.keymanager.demo import free_port
from node.management import AlarmRegistry, NodeMetrics, close_metrics, serve_metrics
from node.management.scrape import alarms_url, parse_alarms, parse_node_status


@pytest.fixture
def line3() -> Iterator[dict[str, str]]:
    """Nodes A - B - C with links AB, BC, each serving its metrics on a free port; name -> URL."""
    nodes = {n: NodeMetrics(n) for n in "ABC"}
    alarms = AlarmRegistry()
    nodes["B"].watch_alarms(alarms)
    for link, (a, b) in {"AB": ("A", "B"), "BC": ("B", "C")}.items():
        nodes[a].declare_link(link, b, "alice")
        nodes[b].declare_link(link, a, "bob")
        for n in (a, b):
            nodes[n].set_link_up(link, link == "AB")
    for n in ("A", "B"):
        nodes[n].record_block("AB", 1_000_000, 250_000, 0.0215, "key")
        nodes[n].record_block("AB", 1_000_000, 0, 0.2, "aborted", reason="qber")
    nodes["A"].set_key_pool("B", 250_000)
    nodes["B"].record_relay("forwarded", link_key_bits={"AB": 256, "BC": 256})
    nodes["C"].set_instrument_up("tagger", False)
    alarms.raise_alarm("critical", "link:BC", "link BC down")
    servers, urls = [], {}
    try:
        for n, m in nodes.items():
            server, port = serve_metrics(m.registry)
            servers.append(server)
            urls[n] = f"http://127.0.0.1:{port}/metrics"
        yield urls
    finally:
        for server in servers:
            close_metrics(server)


def test_table_shows_every_node_and_link_with_their_figures(line3, capsys) -> None:
    assert main(["status", "--metrics", ",".join(line3.values())]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    node_rows = {ln.split()[0]: ln for ln in lines[3:6]}
    assert set(node_rows) == {"A", "B", "C"}
    assert "1 critical" in node_rows["B"] and "1 forwarded" in node_rows["B"]
    assert "B: 250.00 kbit" in node_rows["A"] and "down: tagger" in node_rows["C"]
    ab = next(ln for ln in lines if ln.startswith("AB "))
    bc = next(ln for ln in lines if ln.startswith("BC "))
    assert "A -> B" in ab and " up " in ab and "20.00 %" in ab and "1/0/1" in ab and "250.00 kbit" in ab
    assert "B -> C" in bc and "DOWN" in bc


def test_json_joins_each_link_across_its_two_ends(line3, capsys) -> None:
    assert main(["status", "--json", "--metrics", ",".join(line3.values())]) == 0
    view = json.loads(capsys.readouterr().out)
    assert [n["name"] for n in view["nodes"]] == ["A", "B", "C"] and all(n["reachable"] for n in view["nodes"])
    links = {lk["id"]: lk for lk in view["links"]}
    assert set(links) == {"AB", "BC"}
    ab = links["AB"]
    assert ab["ends"] == ["A", "B"] and sorted(ab["reported_by"]) == ["A", "B"] and ab["up"] is True
    assert ab["blocks"] == {"key": 1, "no_key": 0, "aborted": 1} and ab["qber"] == pytest.approx(0.2)
    assert ab["figures"]["A"]["aborts"] == {"qber": 1} and ab["figures"]["B"]["relay_key_bits"] == 256
    assert links["BC"]["up"] is False
    b = next(n for n in view["nodes"] if n["name"] == "B")
    assert b["alarms_active"]["critical"] == 1 and b["relays"]["forwarded"] == 1


def test_an_unreachable_node_is_reported_and_the_exit_code_is_1(line3, capsys) -> None:
    dead = f"http://127.0.0.1:{free_port()}/metrics"
    assert main(["status", "--json", "--timeout", "2", "--metrics", f"{line3['A']},{dead}"]) == 1
    view = json.loads(capsys.readouterr().out)
    assert [n["reachable"] for n in view["nodes"]] == [True, False]
    assert view["nodes"][1]["error"].startswith("unreachable")


def test_topology_file_gives_the_urls_and_names_unreported_links(line3, tmp_path: Path, capsys) -> None:
    topo = tmp_path / "net.toml"
    topo.write_text(
        'name = "t"\n'
        + "".join(f'[[nodes]]\nname = "{n}"\nmetrics_url = "{u}"\n' for n, u in line3.items())
        + '[[nodes]]\nname = "D"\n'
        + '[[links]]\nid = "AB"\na = "A"\nb = "B"\ndistance_km = 10\n'
        + '[[links]]\nid = "BC"\na = "B"\nb = "C"\ndistance_km = 20\n'
        + '[[links]]\nid = "CD"\na = "C"\nb = "D"\ndistance_km = 30\n',
        encoding="utf-8",
    )
    assert main(["status", "--json", "--topology", str(topo)]) == 1  # D has no metrics URL
    view = json.loads(capsys.readouterr().out)
    links = {lk["id"]: lk for lk in view["links"]}
    assert links["CD"]["reported_by"] == [] and links["CD"]["ends"] == ["C", "D"]
    assert links["AB"]["distance_km"] == 10
    d = next(n for n in view["nodes"] if n["name"] == "D")
    assert not d["reachable"] and "no metrics URL" in d["error"]
    assert main(["status", "--topology", str(topo)]) == 1
    assert "unreported" in capsys.readouterr().out


def test_an_endpoint_that_is_not_a_qkdnode_is_reported(capsys) -> None:
    from prometheus_client import CollectorRegistry, Gauge

    reg = CollectorRegistry()
    Gauge("something_else", "x", registry=reg).set(1)
    server, port = serve_metrics(reg)
    try:
        assert main(["status", "--json", "--metrics", f"127.0.0.1:{port}"]) == 1
    finally:
        close_metrics(server)
    assert "qkdnode_node_info" in json.loads(capsys.readouterr().out)["nodes"][0]["error"]


@pytest.mark.parametrize("text", ["", ",http://x/metrics", "ftp://x/metrics"])
def test_bad_url_lists_raise_value_error(text: str) -> None:
    with pytest.raises(ValueError, match="--metrics"):
        parse_urls(text)


def test_bad_arguments_exit_with_2(capsys) -> None:
    assert main(["status", "--metrics", "ftp://x"]) == 2
    assert "--metrics" in capsys.readouterr().err


@given(st.text(max_size=400))
def test_malformed_metrics_pages_raise_only_value_error(text: str) -> None:
    try:
        parse_node_status("http://x/metrics", text)
    except ValueError:
        pass


@given(
    st.lists(
        st.sampled_from(
            [
                "# TYPE qkdnode_qber gauge",
                'qkdnode_qber{link="L"} NaN',
                'qkdnode_qber{link="L"} 0.1',
                'qkdnode_node_info{node="A"} 1',
                'qkdnode_link_info{link="L"} 1',
                'qkdnode_blocks_total{link="L"} 3',
                'qkdnode_blocks_total{outcome="key"} 1',
                "qkdnode_alarms_active 2",
                "# TYPE qkdnode_blocks counter",
                'qkdnode_key_pool_bits{peer="B"} -1',
                'qkdnode_relays_total{outcome="x"} +Inf',
                "# EOF",
                "garbage{",
            ]
        ),
        max_size=12,
    )
)
def test_metrics_pages_with_missing_labels_parse_or_raise_value_error(lines: list[str]) -> None:
    try:
        parse_node_status("http://x/metrics", "\n".join(lines) + "\n")
    except ValueError:
        pass


def test_alarms_option_lists_active_alarm_texts_from_the_alarms_endpoint(capsys) -> None:
    metrics, alarms = NodeMetrics("X"), AlarmRegistry()
    metrics.watch_alarms(alarms)
    alarms.raise_alarm("major", "link:L1", "block 9 aborted: QBER 0.1312 > 0.1100")
    alarms.raise_alarm("critical", "instrument:laser", "no reply\x1b[2J")
    server, port = serve_metrics(metrics.registry, alarms=alarms)
    bare, bare_port = serve_metrics(NodeMetrics("Y").registry)
    try:
        assert main(["status", "--alarms", "--metrics", f"127.0.0.1:{port},127.0.0.1:{bare_port}"]) == 0
        out = capsys.readouterr().out
        assert main(["status", "--alarms", "--json", "--metrics", f"127.0.0.1:{port}"]) == 0
        view = json.loads(capsys.readouterr().out)
    finally:
        close_metrics(server)
        close_metrics(bare)
    section = out[out.index("active alarms") :]
    assert "block 9 aborted: QBER 0.1312 > 0.1100" in section and "instrument:laser" in section
    assert "\x1b" not in out and "(no /alarms on this endpoint)" in section
    assert [a["severity"] for a in view["nodes"][0]["active_alarms"]] == ["critical", "major"]


@given(st.text(max_size=300))
def test_malformed_alarm_documents_raise_only_value_error(text: str) -> None:
    try:
        parse_alarms(text)
    except ValueError:
        pass


@given(
    st.recursive(
        st.none() | st.integers() | st.text(max_size=5),
        lambda inner: (
            st.lists(inner, max_size=3)
            | st.dictionaries(st.sampled_from(["active", "severity", "text", "count", "source"]), inner, max_size=4)
        ),
        max_leaves=10,
    )
)
def test_alarm_documents_of_any_shape_parse_or_raise_value_error(doc) -> None:
    try:
        parse_alarms(json.dumps(doc))
    except ValueError:
        pass


def test_alarms_url_sits_next_to_the_metrics_url() -> None:
    assert alarms_url("http://h:9100/metrics") == "http://h:9100/alarms"
    assert alarms_url("http://h:9100/") == "http://h:9100/alarms"
    assert alarms_url("https://h/qkd/metrics?x=1") == "https://h/qkd/alarms"

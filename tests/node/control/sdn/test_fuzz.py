"""The agent's decoders of controller input, fuzzed: any JSON body either works or is refused with an
RFC 8040 error (SdnError); nothing else escapes, and the node keeps serving."""

from __future__ import annotations

import json
import uuid

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from node.control.sdn.agent import SdnError
from node.control.sdn.restconf import _segments

MODULE = "etsi-qkd-sdn-node"
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**40), 2**40),
    st.floats(allow_nan=False),
    st.text(max_size=12),
    st.uuids().map(str),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=10), inner, max_size=4)),
    max_leaves=12,
)
link_keys = st.sampled_from(
    [
        "qkdl_id",
        "qkdl_type",
        "qkdl_local",
        "qkdl_remote",
        "virt_next_hop",
        "virt_bandwidth",
        "qkdl_enable",
        "virt_prev_hop",
    ]
)
app_keys = st.sampled_from(
    [
        "app_id",
        "server_app_id",
        "client_app_id",
        "app_qos",
        "app_priority",
        "app_type",
        "backing_qkdl_id",
        "remote_qkdn_id",
        "expiration_time",
    ]
)


def _call(ring, node, fn, *args):
    agent = ring.sdn.servers[node].agent

    def run():
        try:
            return "ok", getattr(agent, fn)(*args)
        except SdnError as exc:
            return "refused", exc.tag

    return ring.km(node).run(run)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.dictionaries(link_keys, values, max_size=8))
def test_any_qkd_link_body_is_created_or_refused_cleanly(ring, body):
    outcome, got = _call(ring, "D", "create_link", body)
    if outcome == "ok":
        _call(ring, "D", "delete_link", got)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.dictionaries(app_keys, values, max_size=9))
def test_any_qkd_app_body_is_registered_or_refused_cleanly(ring, body):
    outcome, got = _call(ring, "D", "register_app", body)
    if outcome == "ok":
        _call(ring, "D", "delete_app", got)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.dictionaries(st.sampled_from(["qkdl_id", "qkdl_enable", "x"]), values, max_size=3))
def test_any_link_patch_is_applied_or_refused_cleanly(ring, body):
    qid = str(uuid.uuid4())
    assert _call(ring, "D", "patch_link", qid, body)[0] == "refused"  # unknown link or bad body: refused


@given(st.text(max_size=60))
def test_any_data_path_parses_or_is_refused(path):
    try:
        _segments(path)
    except SdnError:
        pass


def test_malformed_bodies_over_http_get_restconf_errors(ring):
    c = ring.controller("D")
    target = c.data_path([("qkd_node", None), ("qkd_applications", None)])
    for raw in (b"{", b"[]", b'{"a": 1, "b": 2}', b"\xff\xfe", json.dumps({f"{MODULE}:qkd_app": "x"}).encode()):
        c.conn = None
        status, _, _body = c.request("POST", target, None, {"Content-Type": "application/yang-data+json"})
        import http.client

        conn = http.client.HTTPSConnection(c.host, c.port, context=c.ctx, timeout=10)
        conn.request("POST", target, raw, {"Content-Type": "application/yang-data+json"})
        resp = conn.getresponse()
        doc = json.loads(resp.read())
        assert resp.status == 400 and doc["ietf-restconf:errors"]["error"][0]["error-tag"] == "malformed-message"
        conn.close()
    status, _ = c.json("GET", c.data_path([("qkd_node", None)]))
    assert status == 200  # still serving
    c.close()

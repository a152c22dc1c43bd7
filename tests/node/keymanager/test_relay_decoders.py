"""RELAY_FORWARD and LINK_STATE decoders fuzzed with malformed input: ValueError, never a crash or a key."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from types import SimpleNamespace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from node.classical import Message
from node.control.plane import ControlPlane
from node.keymanager.relay import RelayService
from node.keymanager.store import KeyStore

JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.text(max_size=12),
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids, max_size=4),
    max_leaves=12,
)


def service() -> RelayService:
    control = ControlPlane("KME_B", {"KME_A": "AB", "KME_C": "BC"}, ["SAE_B"])
    host = SimpleNamespace(kme_id="KME_B", clients={}, is_local_sae=lambda s: s == "SAE_B")
    svc = RelayService(host, KeyStore(":memory:", "KME_B"), control)
    control.lsdb.entries = {
        "KME_A": {"seq": 1, "saes": ["SAE_A"], "links": [], "at": time.monotonic()},
        "KME_D": {"seq": 1, "saes": ["SAE_D"], "links": [], "at": time.monotonic()},
    }
    return svc


SVC = service()


def good() -> dict:
    return {
        "keys": [str(uuid.uuid4())],
        "master": "SAE_A",
        "slaves": ["SAE_D"],
        "size": 32,
        "ttl_ms": 1000,
        "trail": ["KME_A"],
        "route": ["KME_B", "KME_C", "KME_D"],
        "pad": [["AB", 0, 1, 0, 32]],
    }


def test_a_well_formed_forward_passes_the_checks():
    fwd = SVC._check_forward("KME_A", str(uuid.uuid4()), good(), bytes(32))
    assert fwd.dest == "KME_D" and fwd.trail == ["KME_A"] and len(fwd.key_ids) == 1 and fwd.slices[0].nbytes == 32


@pytest.mark.parametrize(
    "change",
    [
        {"route": ["KME_C", "KME_D"]},  # this KM is not next
        {"trail": ["KME_C"]},  # the sender is not the last hop of the trail
        {"route": ["KME_B", "KME_Z"]},  # unknown destination
        {"route": ["KME_B", "KME_E", "KME_D"]},  # next hop not a neighbour
        {"route": ["KME_B"] * 12},  # too many hops
    ],
)
def test_unknown_routes_are_refused(change):
    with pytest.raises(ValueError, match="unknown route"):
        SVC._check_forward("KME_A", str(uuid.uuid4()), {**good(), **change}, bytes(32))


def test_a_forward_ending_here_for_a_foreign_slave_or_master_is_refused():
    doc = {**good(), "route": ["KME_B"], "slaves": ["SAE_X"]}
    with pytest.raises(ValueError, match="slave"):
        SVC._check_forward("KME_A", str(uuid.uuid4()), doc, bytes(32))
    doc = {**good(), "route": ["KME_B"], "slaves": ["SAE_B"], "master": "SAE_D"}
    with pytest.raises(ValueError, match="master"):
        SVC._check_forward("KME_A", str(uuid.uuid4()), doc, bytes(32))


@given(
    st.dictionaries(st.sampled_from(sorted(good()) + ["x"]), JSON, max_size=9),
    st.binary(max_size=64),
    st.one_of(st.none(), st.text(max_size=40), st.just(str(uuid.uuid4()))),
)
def test_malformed_forwards_raise_value_error_only(overrides, ct, relay_id):
    doc = {**good(), **overrides}
    try:
        fwd = SVC._check_forward("KME_A", relay_id, doc, ct)
    except ValueError:
        return
    assert sum(s.nbytes for s in fwd.slices) == len(ct) == len(fwd.key_ids) * doc["size"]


@given(JSON)
def test_malformed_link_state_raises_value_error_only(doc):
    svc = service()
    msg = Message("LINK_STATE", {"req": "x"}, [json.dumps({"lsdb": doc}).encode()])
    try:
        asyncio.run(svc.on_link_state("KME_A", msg))
    except ValueError:
        return
    svc.control.snapshot()  # whatever was merged is usable


def test_link_state_about_one_link_from_both_ends_makes_it_usable_and_lies_are_ignored():
    svc = service()
    entry = {"seq": 5, "saes": ["SAE_C"], "links": [{"peer": "KME_B", "link": "BC", "up": True, "bits": 4096}]}
    asyncio.run(
        svc.on_link_state("KME_C", Message("LINK_STATE", {}, [json.dumps({"lsdb": {"KME_C": entry}}).encode()]))
    )
    svc.control.lsdb.originate({"KME_A": 0, "KME_C": 8192})
    (bc,) = [lk for lk in svc.control.snapshot() if lk.link_id == "BC"]
    assert bc.up and bc.key_bits == 4096 and svc.control.kme_of_sae("SAE_C") == "KME_C"
    older = {**entry, "seq": 4, "links": []}
    asyncio.run(
        svc.on_link_state("KME_A", Message("LINK_STATE", {}, [json.dumps({"lsdb": {"KME_C": older}}).encode()]))
    )
    assert svc.control.lsdb.entries["KME_C"]["seq"] == 5  # an older entry never replaces a newer one
    liar = {"seq": 9, "saes": [], "links": [{"peer": "KME_A", "link": "BC", "up": True, "bits": 1}]}
    asyncio.run(svc.on_link_state("KME_D", Message("LINK_STATE", {}, [json.dumps({"lsdb": {"KME_D": liar}}).encode()])))
    assert not [lk for lk in svc.control.snapshot() if lk.link_id == "BC"]


@given(st.binary(max_size=200))
def test_link_state_payload_bytes_raise_value_error_only(raw):
    msg = Message("LINK_STATE", {"req": "x"}, [raw])
    try:
        asyncio.run(SVC.on_link_state("KME_A", msg))
    except ValueError:
        pass

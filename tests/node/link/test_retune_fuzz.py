"""Fuzzing of the RETUNE step's inputs: whatever RETUNE Bob's side sends (any header, authenticated
or not), Alice answers with a RETUNE_ACK or an abort and switches only on a valid proposal she acked;
whatever re-tune a HELLO_ACK carries, Bob adopts it only when it is later than his and explains
Alice's fingerprint, and otherwise refuses it without another exception."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from drivers.mock import mock_link_pair
from node.classical import Message
from node.classical.messages import RetuneAck, RetuneProposal, RetuneSettings
from node.link import AliceLink, BobLink
from node.link import protocol as P
from node.link.outbox import Outbox
from node.link.retune import RetuneInForce, settings_in_force
from tests.node.link.harness import settings_for
from tests.node.link.test_link_physics import BASE
from tests.node.link.test_protocol_fuzz import json_value

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SETTINGS = settings_for(BASE, retune="apply", retune_min_blocks=1)
VALID = RetuneProposal("L-test", "ab" * 16, RetuneSettings(1, (0.4, 0.18, 0.0), (0.62, 0.26, 0.12)), 16.0)
FIELDS = sorted(RetuneProposal.FIELDS | {"from_slot", "settings", "ok"})


@pytest.fixture(scope="module")
def alice(tmp_path_factory) -> AliceLink:
    tx, _tagger = mock_link_pair(BASE, 3)
    return AliceLink(SETTINGS, tx, Outbox(tmp_path_factory.mktemp("alice") / "a.db"))


@pytest.fixture(scope="module")
def bob(tmp_path_factory) -> BobLink:
    return BobLink(SETTINGS, object(), Outbox(tmp_path_factory.mktemp("bob") / "b.db"))


@st.composite
def proposals(draw) -> Message:
    """A RETUNE: the valid one with some fields replaced or dropped, or a header of anything."""
    header = VALID.message().header
    for name in draw(st.lists(st.sampled_from(FIELDS), max_size=3)):
        if draw(st.booleans()):
            header[name] = draw(json_value)
        else:
            header.pop(name, None)
    if draw(st.integers(0, 3)) == 0:
        header = draw(st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=6), json_value, max_size=6))
    msg = Message(P.RETUNE, header)
    msg.verified = draw(st.sampled_from([True, True, True, False]))  # mostly as the link hands it over
    msg.transcript = draw(st.sampled_from([None, None, None, 2]))
    return msg


@FUZZ
@given(proposals())
def test_alice_answers_any_retune_with_an_ack_or_an_abort_and_switches_only_when_she_says_so(alice, msg) -> None:
    before = alice.retune.in_force
    if msg.header.get("retune") == 1:  # the number that follows the re-tune in force, so valid ones pass
        msg.header["retune"] = before.settings.retune + 1
    replies = alice.handle(msg)
    assert len(replies) == 1 and replies[0].type in (P.RETUNE_ACK, P.BLOCK_ABORT)
    ok = replies[0].type == P.RETUNE_ACK and RetuneAck.decode(replies[0]).ok
    if ok:
        assert alice.retune.in_force.settings.retune == before.settings.retune + 1
        assert alice.settings == settings_in_force(SETTINGS, alice.retune.in_force)
    else:
        assert alice.retune.in_force == before


@FUZZ
@given(st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=6), json_value, max_size=6), json_value)
def test_bob_adopts_a_hello_ack_retune_only_when_it_explains_alices_settings(bob, retune, fingerprint) -> None:
    before = bob.retune.in_force
    reply = Message(P.HELLO_ACK, {"ok": False, "retune": retune, "settings": fingerprint})
    assert bob.retune.adopt_from_hello(reply) is False  # a random fingerprint never matches
    assert bob.retune.in_force == before


def test_bob_adopts_alices_later_retune_from_her_hello_ack(bob) -> None:
    later = RetuneInForce(RetuneSettings(bob.retune.in_force.settings.retune + 1, (0.4, 0.18, 0.0), (0.6, 0.3, 0.1)), 7)
    reply = Message(
        P.HELLO_ACK,
        {"ok": False, "retune": later.header(), "settings": settings_in_force(SETTINGS, later).fingerprint()},
    )
    assert bob.retune.adopt_from_hello(reply) is True
    assert bob.retune.in_force == later and bob.slot_hwm == 6
    assert bob.retune.adopt_from_hello(reply) is False  # not later than the one in force any more

"""Alice's serve loop and bundles: the replies to the messages of one received bundle leave as one
bundle, over a real authenticated ZeroMQ channel; single messages still get single replies."""

from __future__ import annotations

from typing import Any, cast

from node.classical import Message
from node.classical.bundle import decode_bundle, encode_bundle, is_bundle
from node.link import protocol as P
from tests.node.link.harness import Pair, link_pair, settings_for
from tests.node.link.test_link import PARAMS, SEED

TIMEOUT = 60.0  # a reply on a loaded machine; no test asserts on time


def _unhandled(n: int) -> Message:
    """A message Alice has no handler for: she answers it with ERROR (and an alarm)."""
    return Message(P.HELLO_ACK, {"n": n})


def _replies(pair: Pair) -> tuple[bool, list[Message]]:
    """The next ZeroMQ message Alice sent: whether it was a bundle, and its messages opened."""
    raw = cast(Any, pair.bob.channel).channel.recv(TIMEOUT)
    messages = decode_bundle(raw) if is_bundle(raw) else [raw]
    return is_bundle(raw), [pair.bob_link.open(m) for m in messages]


def _errors_answer(replies: list[Message], seqs: list[int]) -> bool:
    return [r.type for r in replies] == [P.ERROR] * len(seqs) and [r.re for r in replies] == seqs


def test_a_bundle_of_requests_is_answered_with_one_bundle_and_a_single_one_with_a_single_reply(tmp_path) -> None:
    with link_pair(tmp_path, PARAMS, SEED, settings_for(PARAMS)) as pair:
        bob: Any = pair.bob.channel
        bob.send_many([_unhandled(i) for i in range(3)])
        bundled, replies = _replies(pair)
        assert bundled and _errors_answer(replies, [0, 1, 2])
        bob.send(_unhandled(3))
        bundled, replies = _replies(pair)
        assert not bundled and _errors_answer(replies, [3])


def test_when_the_last_message_of_a_bundle_is_refused_the_others_are_still_answered(tmp_path) -> None:
    with link_pair(tmp_path, PARAMS, SEED, settings_for(PARAMS)) as pair:
        link = pair.bob_link
        sealed: list[Any] = [link.seal(_unhandled(i)) for i in range(3)]
        mac = bytearray(sealed[2][-1])
        mac[-1] ^= 1  # the last message's tag no longer verifies
        sealed[2][-1] = bytes(mac)
        cast(Any, pair.bob.channel).channel.send(encode_bundle(sealed))
        bundled, replies = _replies(pair)
        assert bundled and _errors_answer(replies, [0, 1])
        assert any("rejected classical message" in text for _, text in pair.alarms)


def test_replies_before_a_hello_in_a_bundle_leave_before_it_clears_the_transcripts(tmp_path) -> None:
    with link_pair(tmp_path, PARAMS, SEED, settings_for(PARAMS)) as pair:
        settings = pair.bob.settings
        hello = Message(
            P.HELLO, {"settings": settings.fingerprint(), "unconfirmed": [], "next_block": 0, "nonce": "ab" * 16}
        )
        cast(Any, pair.bob.channel).send_many([_unhandled(0), _unhandled(1), hello])
        first, second = _replies(pair), _replies(pair)
        assert first[0] and _errors_answer(first[1], [0, 1])  # sealed and sent before the HELLO was handled
        assert not second[0] and [m.type for m in second[1]] == [P.HELLO_ACK] and second[1][0].header["ok"]

"""KM flow counters survive restarts through the link's one reservation scheme: a crash never makes a
sender reuse a seq (so never a mask), and a receive counter persisted at close refuses old replays."""

from __future__ import annotations

import json
import os
import stat

import pytest

from node.classical import Message, ReplayError
from node.classical.messages import MessageType
from node.keymanager.wire import MARK_STEP, LinkState, PersistentLink

SECRET = os.urandom(64 * 64)


def flows(tmp_path, name: str = "flow") -> tuple[PersistentLink, PersistentLink]:
    out = PersistentLink(SECRET, True, LinkState(str(tmp_path / "out.json")), name)
    inn = PersistentLink(SECRET, False, LinkState(str(tmp_path / "in.json")), name)
    return out, inn


def ping() -> Message:
    return Message(MessageType.KEY_QUERY, {"n": 1})


@pytest.mark.parametrize("sent", [0, 1, MARK_STEP - 1, MARK_STEP, 3 * MARK_STEP + 5])
def test_a_sender_that_crashes_resumes_beyond_every_seq_it_used(tmp_path, sent) -> None:
    out, _ = flows(tmp_path)
    used: list[int] = []
    for _ in range(sent):
        out.link.seal(ping())
        used.append(out.link.send_seq - 1)  # the seq this message took
    # crash: no close(); a new process reads the file
    again, _ = flows(tmp_path)
    assert again.link.send_seq > max(used, default=-1)
    assert again.link.send_seq - (max(used, default=-1) + 1) <= MARK_STEP  # at most one reservation skipped


def test_a_receiver_closed_cleanly_refuses_a_replay_after_restart(tmp_path) -> None:
    out, inn = flows(tmp_path)
    frames = out.seal(ping())
    assert inn.open(frames).type == MessageType.KEY_QUERY
    inn.close()
    _, restarted = flows(tmp_path)
    with pytest.raises(ReplayError):
        restarted.open(frames)


def test_the_counter_file_is_owner_only_and_holds_counters_only(tmp_path) -> None:
    out, _ = flows(tmp_path)
    out.seal(ping())
    out.close()
    path = tmp_path / "out.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert json.loads(path.read_text()) == {"flow": {"send_mark": 1 + MARK_STEP, "recv_last": -1}}

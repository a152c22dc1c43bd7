"""Link-state files are overwritten when replaced; the bootstrap secret is single-use."""

from __future__ import annotations

import os

import pytest

from node.classical.linkstate import (
    USED_MARKER,
    BootstrapUsed,
    load_link_state,
    mark_bootstrap_used,
    overwrite_replace,
    read_bootstrap,
    save_link_state,
)


def test_replacing_a_state_file_zeroes_the_old_bytes_on_disk(tmp_path) -> None:
    path = tmp_path / "link_state.json"
    overwrite_replace(path, b"A" * 4096)
    witness = tmp_path / "old-inode"
    os.link(path, witness)  # a second name for the old inode: what a disk reader would still find
    overwrite_replace(path, b"B" * 100)
    assert path.read_bytes() == b"B" * 100
    assert witness.read_bytes() == bytes(4096), "the consumed material is still on disk"
    assert (path.stat().st_mode & 0o777) == 0o600


def test_state_round_trips_with_bytes(tmp_path) -> None:
    state = {"send_hash_key": os.urandom(16), "pool": {"material": os.urandom(64), "position_bits": 128}}
    save_link_state(tmp_path / "s.json", state)
    assert load_link_state(tmp_path / "s.json") == state
    (tmp_path / "s.json").write_text("{broken")
    with pytest.raises(ValueError, match="cannot be read"):
        load_link_state(tmp_path / "s.json")


def test_a_bootstrap_secret_is_read_once_then_refused(tmp_path) -> None:
    secret = tmp_path / "link.key"
    secret.write_bytes(os.urandom(4096))
    witness = tmp_path / "same-inode"
    os.link(secret, witness)
    assert len(read_bootstrap(secret, tmp_path / "link_state.json", "link.bootstrap_secret")) == 4096
    mark_bootstrap_used(secret)
    assert secret.read_bytes() == USED_MARKER and witness.read_bytes() == USED_MARKER  # overwritten in place
    with pytest.raises(BootstrapUsed, match=r"already used once.*Provision a new pre-shared secret"):
        read_bootstrap(secret, tmp_path / "link_state.json", "link.bootstrap_secret")

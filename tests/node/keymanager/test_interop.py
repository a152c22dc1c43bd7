"""Interoperability with the PyPI ETSI GS QKD 014 client (etsi-qkd-014-client) over mutual TLS."""

from __future__ import annotations

import base64

from etsi_qkd_014_client import QKD014Client

from tests.node.keymanager.conftest import same_secret


def client(pair, kme: str, sae: str) -> QKD014Client:
    return QKD014Client(
        pair.url(kme), str(pair.pki / f"{sae}.pem"), str(pair.pki / f"{sae}.key"), str(pair.pki / "ca.pem")
    )


def test_status_reports_the_pair_and_limits(pair):
    code, status = client(pair, "a", "SAE_A").get_status("SAE_B")
    assert code == 200
    assert (status.source_kme_id, status.target_kme_id) == ("KME_A", "KME_B")
    assert (status.master_sae_id, status.slave_sae_id) == ("SAE_A", "SAE_B")
    assert status.key_size == 256 and status.max_key_per_request == 16 and status.max_sae_id_count == 2
    assert status.stored_key_count > 0


def test_master_and_slave_get_identical_keys_with_default_get(pair):
    code, container = client(pair, "a", "SAE_A").get_key("SAE_B")
    assert code == 200 and len(container.keys) == 1
    key = container.keys[0]
    assert len(base64.b64decode(key.key)) == 32
    code, got = client(pair, "b", "SAE_B").get_key_with_key_IDs("SAE_A", [key.key_id])
    assert code == 200
    assert [k.key_id for k in got.keys] == [key.key_id]
    same_secret(got.keys[0].key, key.key, "slave key differs from master key")


def test_master_and_slave_get_identical_keys_with_post(pair):
    code, container = client(pair, "b", "SAE_B").get_key("SAE_A", number=5, size=512)
    assert code == 200 and len(container.keys) == 5
    assert all(len(base64.b64decode(k.key)) == 64 for k in container.keys)
    ids = [k.key_id for k in container.keys]
    assert len(set(ids)) == 5
    code, got = client(pair, "a", "SAE_A").get_key_with_key_IDs("SAE_B", ids)
    assert code == 200
    assert [k.key_id for k in got.keys] == ids
    same_secret([k.key for k in got.keys], [k.key for k in container.keys], "slave keys differ from master keys")


def test_second_dec_keys_for_the_same_id_is_not_found(pair):
    _, container = client(pair, "a", "SAE_A").get_key("SAE_B")
    ids = [container.keys[0].key_id]
    assert client(pair, "b", "SAE_B").get_key_with_key_IDs("SAE_A", ids)[0] == 200
    code, err = client(pair, "b", "SAE_B").get_key_with_key_IDs("SAE_A", ids)
    assert code == 400
    assert err.message == "one or more keys specified are not found on KME"

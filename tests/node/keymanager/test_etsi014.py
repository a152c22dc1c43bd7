"""ETSI GS QKD 014 V1.1.1 behaviours of the key manager's HTTPS server, each checked on the wire."""

from __future__ import annotations

import base64
import json

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.node.keymanager.conftest import Pair, same_secret


class Sae:
    """A minimal ETSI 014 caller over requests, holding its certificate (raw responses for the tests)."""

    def __init__(self, pair, kme: str, name: str, pki=None) -> None:
        pki = pki or pair.pki
        self.base = f"https://{pair.url(kme)}/api/v1/keys/"
        self.session = requests.Session()
        self.session.cert = (str(pki / f"{name}.pem"), str(pki / f"{name}.key"))
        self.ca = str(pair.pki / "ca.pem")  # per request: REQUESTS_CA_BUNDLE would override session.verify

    def get(self, path: str, **kw) -> requests.Response:
        return self.session.get(self.base + path, timeout=10, verify=self.ca, **kw)

    def post(self, path: str, **kw) -> requests.Response:
        return self.session.post(self.base + path, timeout=10, verify=self.ca, **kw)


def message(resp: requests.Response) -> str:
    assert resp.headers["Content-Type"].startswith("application/json")
    return resp.json()["message"]


def stored(pair, who="a", master="SAE_A", slave="SAE_B") -> int:
    return Sae(pair, who, master).get(f"{slave}/status").json()["stored_key_count"]


def test_get_key_with_key_id_by_get_query(pair):
    keys = Sae(pair, "a", "SAE_A").get("SAE_B/enc_keys?number=2&size=128").json()["keys"]
    assert len(keys) == 2 and all(len(base64.b64decode(k["key"])) == 16 for k in keys)
    got = Sae(pair, "b", "SAE_B").get(f"SAE_A/dec_keys?key_ID={keys[0]['key_ID']}")
    assert got.status_code == 200
    same_secret(got.json()["keys"], [keys[0]], "slave key differs from master key")


def test_post_with_empty_body_uses_defaults(pair):
    resp = Sae(pair, "a", "SAE_A").post("SAE_B/enc_keys", data=b"")
    assert resp.status_code == 200
    keys = resp.json()["keys"]
    assert len(keys) == 1 and len(base64.b64decode(keys[0]["key"])) == 32


def test_third_sae_asking_for_another_pairs_key_is_unauthorized_with_json_body(pair):
    keys = Sae(pair, "a", "SAE_A").get("SAE_B/enc_keys").json()["keys"]
    resp = Sae(pair, "b", "SAE_D").post("SAE_A/dec_keys", json={"key_IDs": [{"key_ID": keys[0]["key_ID"]}]})
    assert resp.status_code == 401
    assert message(resp) == "Unauthorized"
    assert (
        Sae(pair, "b", "SAE_B").post("SAE_A/dec_keys", json={"key_IDs": [{"key_ID": keys[0]["key_ID"]}]}).status_code
        == 200
    )


def test_sae_unknown_to_the_kme_is_unauthorized(pair):
    for path in ("SAE_B/status", "SAE_B/enc_keys"):
        resp = Sae(pair, "a", "SAE_X").get(path)
        assert resp.status_code == 401 and message(resp) == "Unauthorized"
    resp = Sae(pair, "a", "SAE_B").get("SAE_A/status")  # SAE_B is served by KME_B, not KME_A
    assert resp.status_code == 401


@pytest.mark.parametrize("path", ["/status", "/enc_keys", "%20/enc_keys", "/dec_keys?key_ID=x"])
def test_blank_sae_id_in_the_path_is_a_bad_request(pair, path):
    resp = Sae(pair, "a", "SAE_A").get(path)
    assert resp.status_code == 400 and "blank" in message(resp)


@pytest.mark.parametrize("path", ["SAE_A/status", "SAE_A/enc_keys", "SAE_A/dec_keys?key_ID=x"])
def test_master_equal_to_slave_is_a_bad_request(pair, path):
    resp = Sae(pair, "a", "SAE_A").get(path)
    assert resp.status_code == 400 and message(resp) == "master_SAE_ID and slave_SAE_ID shall differ"


@pytest.mark.parametrize(
    "key_id", ["not-a-uuid", "550e8400e29b41d4a716446655440000", "", "550e8400-e29b-41d4-a716-44665544000g"]
)
def test_key_id_that_is_not_a_uuid_is_a_bad_request(pair, key_id):
    sae = Sae(pair, "b", "SAE_B")
    resp = sae.post("SAE_A/dec_keys", json={"key_IDs": [{"key_ID": key_id}]})
    assert resp.status_code == 400 and "UUID" in message(resp)
    resp = sae.get("SAE_A/dec_keys", params={"key_ID": key_id})
    assert resp.status_code == 400 and "UUID" in message(resp)


def test_unknown_key_id_is_not_found(pair):
    resp = Sae(pair, "b", "SAE_B").get("SAE_A/dec_keys?key_ID=550e8400-e29b-41d4-a716-446655440000")
    assert resp.status_code == 400 and message(resp) == "one or more keys specified are not found on KME"


def test_key_asked_under_the_wrong_master_is_not_found(pair):
    keys = Sae(pair, "a", "SAE_A").get("SAE_B/enc_keys").json()["keys"]
    resp = Sae(pair, "b", "SAE_B").get(f"SAE_C/dec_keys?key_ID={keys[0]['key_ID']}")
    assert resp.status_code == 400 and message(resp) == "one or more keys specified are not found on KME"


def test_size_not_a_multiple_of_8_is_refused_with_the_spec_message(pair):
    sae = Sae(pair, "a", "SAE_A")
    for resp in (sae.get("SAE_B/enc_keys?size=100"), sae.post("SAE_B/enc_keys", json={"size": 100})):
        assert resp.status_code == 400 and message(resp) == "size shall be a multiple of 8"


def test_number_above_max_key_per_request_is_refused_and_consumes_nothing(pair):
    before = stored(pair)
    sae = Sae(pair, "a", "SAE_A")
    for resp in (sae.get("SAE_B/enc_keys?number=17"), sae.post("SAE_B/enc_keys", json={"number": 17})):
        assert resp.status_code == 400 and "max_key_per_request" in message(resp)
    assert stored(pair) == before


def test_unsupported_extension_mandatory_is_refused_with_the_spec_message(pair):
    before = stored(pair)
    resp = Sae(pair, "a", "SAE_A").post(
        "SAE_B/enc_keys", json={"number": 1, "extension_mandatory": [{"abc_route_type": "direct"}]}
    )
    assert resp.status_code == 400
    assert message(resp) == "not all extension_mandatory parameters are supported"
    assert resp.json()["details"] == [{"extension_mandatory_unsupported": "abc_route_type is not supported"}]
    assert stored(pair) == before


def test_extension_optional_is_accepted(pair):
    resp = Sae(pair, "a", "SAE_A").post(
        "SAE_B/enc_keys", json={"number": 2, "size": 256, "extension_optional": [{"abc_max_age": 30000}]}
    )
    assert resp.status_code == 200 and len(resp.json()["keys"]) == 2


def test_multicast_delivers_identical_keys_to_every_named_slave_once(pair):
    keys = (
        Sae(pair, "a", "SAE_A")
        .post("SAE_B/enc_keys", json={"number": 2, "additional_slave_SAE_IDs": ["SAE_D"]})
        .json()["keys"]
    )
    body = {"key_IDs": [{"key_ID": k["key_ID"]} for k in keys]}
    for slave in ("SAE_B", "SAE_D"):
        resp = Sae(pair, "b", slave).post("SAE_A/dec_keys", json=body)
        assert resp.status_code == 200
        same_secret(resp.json()["keys"], keys, "slave keys differ from master keys")
        again = Sae(pair, "b", slave).post("SAE_A/dec_keys", json=body)
        assert again.status_code == 400


def test_multicast_beyond_max_sae_id_count_or_to_another_kme_is_refused(pair):
    sae = Sae(pair, "a", "SAE_A")
    resp = sae.post("SAE_B/enc_keys", json={"additional_slave_SAE_IDs": ["SAE_D", "SAE_X", "SAE_Y"]})
    assert resp.status_code == 400 and "max_SAE_ID_count" in message(resp)
    resp = sae.post("SAE_B/enc_keys", json={"additional_slave_SAE_IDs": ["SAE_C"]})
    assert resp.status_code == 400


@pytest.mark.parametrize(
    "body",
    [
        b"{",
        b"[1, 2]",
        b"\xff\xfe",
        b'{"number": "3"}',
        b'{"number": 2.0}',
        b'{"number": true}',
        b'{"size": null}',
        b'{"colour": "blue"}',
        b'{"additional_slave_SAE_IDs": "SAE_D"}',
        b'{"extension_mandatory": {"a": 1}}',
        b'{"extension_optional": [1]}',
        b'{"number": 0}',
        b'{"number": -1}',
        b'{"size": 16}',
        b'{"size": 1048576}',
    ],
)
def test_malformed_or_mistyped_key_request_is_a_bad_request_and_consumes_nothing(pair, body):
    before = stored(pair)
    resp = Sae(pair, "a", "SAE_A").post("SAE_B/enc_keys", data=body, headers={"Content-Type": "application/json"})
    assert resp.status_code == 400, resp.text
    assert message(resp)
    assert stored(pair) == before


@pytest.mark.parametrize(
    "body",
    [
        b"{",
        b"{}",
        b'{"key_IDs": []}',
        b'{"key_IDs": "x"}',
        b'{"key_IDs": [{"key_id": "x"}]}',
        b'{"key_IDs": [{"key_ID": 5}]}',
        b'{"key_IDs": [{"key_ID": "550e8400-e29b-41d4-a716-446655440000"}], "x": 1}',
    ],
)
def test_malformed_key_ids_request_is_a_bad_request(pair, body):
    resp = Sae(pair, "b", "SAE_B").post("SAE_A/dec_keys", data=body)
    assert resp.status_code == 400 and message(resp)


def test_oversized_body_is_refused_and_the_server_keeps_serving(pair):
    sae = Sae(pair, "a", "SAE_A")
    resp = sae.post("SAE_B/enc_keys", data=b'{"number": 1, "extension_optional": [{"pad": "' + b"x" * 200_000 + b'"}]}')
    assert resp.status_code == 413 and "too large" in message(resp)
    assert sae.get("SAE_B/status").status_code == 200


def test_unknown_method_or_path_gets_a_json_error(pair):
    sae = Sae(pair, "a", "SAE_A")
    assert sae.post("SAE_B/status").status_code == 405
    resp = sae.get("SAE_B/keys")
    assert resp.status_code == 404 and message(resp)
    assert sae.get("SAE_B/enc_keys?count=3").status_code == 400


def test_no_client_certificate_fails_the_tls_handshake(pair):
    with pytest.raises((requests.exceptions.SSLError, requests.exceptions.ConnectionError)):
        requests.get(f"https://{pair.url('a')}/api/v1/keys/SAE_B/status", verify=str(pair.pki / "ca.pem"), timeout=10)


def test_certificate_from_another_ca_fails_the_tls_handshake(pair):
    foreign = pair.pki.parent / "pki_other0"
    if not foreign.exists():  # the fixture's second PKI lives next to the first
        foreign = next(p for p in pair.pki.parent.iterdir() if p.name.startswith("pki_other"))
    with pytest.raises((requests.exceptions.SSLError, requests.exceptions.ConnectionError)):
        Sae(pair, "a", "SAE_A", pki=foreign).get("SAE_B/status")


def test_pool_that_cannot_serve_answers_503(pki, tmp_path):
    empty = Pair(tmp_path, pki)
    try:
        resp = Sae(empty, "a", "SAE_A").get("SAE_B/enc_keys")
        assert resp.status_code == 503 and message(resp)
        assert Sae(empty, "a", "SAE_A").get("SAE_B/status").json()["stored_key_count"] == 0
    finally:
        empty.close()


@settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(
    st.one_of(
        st.binary(max_size=300),
        st.recursive(
            st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.floats(allow_nan=False) | st.text(max_size=8),
            lambda c: (
                st.lists(c, max_size=4)
                | st.dictionaries(
                    st.sampled_from(
                        [
                            "number",
                            "size",
                            "additional_slave_SAE_IDs",
                            "extension_mandatory",
                            "extension_optional",
                            "key_IDs",
                            "x",
                        ]
                    ),
                    c,
                    max_size=4,
                )
            ),
            max_leaves=10,
        ).map(lambda v: json.dumps(v).encode()),
    )
)
def test_fuzzed_request_bodies_get_a_json_answer_and_never_crash(pair, body):
    for path, who, sae in (("SAE_B/enc_keys", "a", "SAE_A"), ("SAE_A/dec_keys", "b", "SAE_B")):
        resp = Sae(pair, who, sae).post(path, data=body)
        assert resp.status_code in (200, 400, 413, 503)
        if resp.status_code != 200:
            assert isinstance(message(resp), str)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_tls_below_1_2_fails_the_handshake(pair):
    import socket
    import ssl

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(str(pair.pki / "ca.pem"))
    ctx.load_cert_chain(str(pair.pki / "SAE_A.pem"), str(pair.pki / "SAE_A.key"))
    try:
        ctx.minimum_version = ssl.TLSVersion.TLSv1
        ctx.maximum_version = ssl.TLSVersion.TLSv1_1
    except (ValueError, ssl.SSLError):
        pytest.skip("this OpenSSL cannot even offer TLS 1.1")
    host, port = pair.url("a").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as raw:
        with pytest.raises((ssl.SSLError, ConnectionError)):
            with ctx.wrap_socket(raw, server_hostname="localhost") as tls:
                tls.sendall(b"GET /api/v1/keys/SAE_B/status HTTP/1.1\r\nHost: x\r\n\r\n")
                assert not tls.recv(100)

"""Issue 17: the key manager under an adversarial SAE and a local attacker, one test per finding.

1 deep JSON, 2 audit trail, 3 slow bodies and disconnects, 4 served keys left in the WAL, 5 file
modes under umask 000 and the CA key, 6 UUID with a trailing newline, 7 parser refusals in JSON,
8 answers a slave KM lost in a crash (finding 9, the node's back-off, is in tests/node/runtime).
"""

from __future__ import annotations

import base64
import json
import logging
import os
import socket
import ssl
import stat
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node.keymanager.errors import KeysNotFound
from node.keymanager.etsi014 import MAX_JSON_DEPTH, UUID_RE, json_depth_exceeds
from node.keymanager.store import KeyBlock, KeyStore
from tests.node.keymanager.conftest import KmThread, Pair
from tests.node.keymanager.test_etsi014 import Sae, message

AUDIT = "qkdnode.audit"
WAIT_S = 20.0  # generous: the server's own timeouts below are 2 s


@pytest.fixture(scope="module")
def hpair(pki, tmp_path_factory):
    p = Pair(
        tmp_path_factory.mktemp("kms_hard"),
        pki,
        api={"header_timeout_s": 2.0, "body_timeout_s": 2.0},
        max_key_per_request=16,
    )
    p.feed(1 << 16, 2)
    yield p
    p.close()


def audit_events(caplog, event: str) -> list[dict]:
    out = []
    for r in caplog.records:
        if r.name == AUDIT:
            doc = json.loads(r.getMessage())
            if doc["event"] == event:
                out.append({**doc, "_level": r.levelno})
    return out


def wait_for(cond, timeout: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)


def tls_socket(pair, who: str = "a", sae: str = "SAE_A") -> ssl.SSLSocket:
    ctx = ssl.create_default_context(cafile=str(pair.pki / "ca.pem"))
    ctx.load_cert_chain(str(pair.pki / f"{sae}.pem"), str(pair.pki / f"{sae}.key"))
    host, port = pair.url(who).split(":")
    raw = socket.create_connection((host, int(port)), timeout=WAIT_S)
    return ctx.wrap_socket(raw, server_hostname="localhost")


def read_all(sock: ssl.SSLSocket) -> bytes:
    """Everything the server sends until it closes (a socket timeout fails the test)."""
    out = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, ssl.SSLEOFError):
            return out
        if not chunk:
            return out
        out += chunk


def parse_response(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, v in (ln.split(":", 1) for ln in lines[1:] if ":" in ln)}
    return int(lines[0].split()[1]), headers, body


def no_tracebacks(caplog) -> None:
    bad = [r for r in caplog.records if r.levelno >= logging.ERROR and (r.exc_info or "Traceback" in r.getMessage())]
    assert not bad, [f"{r.name}: {r.getMessage()[:200]}" for r in bad]


# -- 1: deeply nested JSON ----------------------------------------------------------------------


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 1000, 30000])
def test_deeply_nested_json_is_a_json_400_without_traceback(hpair, caplog, depth):
    caplog.set_level(logging.INFO)
    nest = "[" * depth + "]" * depth
    enc = Sae(hpair, "a", "SAE_A").post("SAE_B/enc_keys", data='{"extension_optional": [' + nest + "]}")
    body = '{"key_IDs": [{"key_ID": "' + str(uuid.uuid4()) + '", "key_ID_extension": ' + nest + "}]}"
    dec = Sae(hpair, "b", "SAE_B").post("SAE_A/dec_keys", data=body)
    for resp in (enc, dec):
        assert resp.status_code == 400
        assert "deeper" in message(resp)
    no_tracebacks(caplog)


def reference_depth(value: object) -> int:
    if isinstance(value, list):
        return 1 + max((reference_depth(v) for v in value), default=0)
    if isinstance(value, dict):
        return 1 + max((reference_depth(v) for v in value.values()), default=0)
    return 0


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(alphabet='[]{}"\\ab,:', max_size=6),
    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(alphabet='[]{}"\\k', max_size=4), c, max_size=3),
    max_leaves=40,
)


@settings(max_examples=300, deadline=None)
@given(json_values, st.integers(0, 12))
def test_json_depth_scan_agrees_with_the_parsed_depth(value, limit):
    text = json.dumps(value, ensure_ascii=False)
    assert json_depth_exceeds(text, limit) == (reference_depth(value) > limit)


# -- 2: audit trail -----------------------------------------------------------------------------


def test_failed_tls_handshakes_are_audited_with_peer_address(hpair, caplog):
    caplog.set_level(logging.INFO, logger=AUDIT)
    import requests

    with pytest.raises((requests.exceptions.SSLError, requests.exceptions.ConnectionError)):
        requests.get(f"https://{hpair.url('a')}/api/v1/keys/SAE_B/status", verify=str(hpair.pki / "ca.pem"), timeout=10)
    foreign = next(p for p in hpair.pki.parent.iterdir() if p.name.startswith("pki_other"))
    with pytest.raises((requests.exceptions.SSLError, requests.exceptions.ConnectionError)):
        Sae(hpair, "a", "SAE_A", pki=foreign).get("SAE_B/status")
    wait_for(lambda: len(audit_events(caplog, "tls_handshake_failed")) >= 2)
    events = audit_events(caplog, "tls_handshake_failed")
    assert all(e["peer"].startswith("127.0.0.1:") and e["kme"] == "KME_A" and e["reason"] for e in events)
    assert any("CERTIFICATE" in e["reason"].upper() for e in events)


def test_unauthorized_and_bad_requests_are_audited_with_sae_and_path(hpair, caplog):
    caplog.set_level(logging.INFO, logger=AUDIT)
    assert Sae(hpair, "a", "SAE_X").get("SAE_B/status").status_code == 401
    assert Sae(hpair, "a", "SAE_A").get("SAE_B/enc_keys?size=7").status_code == 400
    refused = audit_events(caplog, "request_refused")
    unauth = [e for e in refused if e["status"] == 401]
    assert unauth and unauth[0]["sae"] == "SAE_X" and unauth[0]["path"] == "/api/v1/keys/SAE_B/status"
    assert unauth[0]["_level"] == logging.WARNING
    bad = [e for e in refused if e["status"] == 400]
    assert bad and bad[0]["sae"] == "SAE_A" and bad[0]["path"].endswith("/enc_keys")


def test_deliveries_are_audited_by_key_id_and_size_never_material(hpair, caplog):
    caplog.set_level(logging.DEBUG)
    keys = Sae(hpair, "a", "SAE_A").get("SAE_B/enc_keys?number=2&size=256").json()["keys"]
    got = Sae(hpair, "b", "SAE_B").post("SAE_A/dec_keys", json={"key_IDs": [{"key_ID": k["key_ID"]} for k in keys]})
    assert got.status_code == 200
    events = audit_events(caplog, "keys_delivered")
    master = [e for e in events if e["role"] == "master" and e["key_IDs"] == [k["key_ID"] for k in keys]]
    slave = [e for e in events if e["role"] == "slave" and e["key_IDs"] == [k["key_ID"] for k in keys]]
    assert len(master) == 1 and master[0]["sae"] == "SAE_A" and master[0]["size_bits"] == 256
    assert len(slave) == 1 and slave[0]["sae"] == "SAE_B" and slave[0]["master_SAE_ID"] == "SAE_A"
    text = "\n".join(r.getMessage() for r in caplog.records)
    for k in keys:
        raw = base64.b64decode(k["key"])
        assert k["key"] not in text and raw.hex() not in text


def test_demo_pair_keeps_km_logs_and_audit_trail_in_its_work_directory(tmp_path):
    from node.keymanager.demo import write_demo_pair

    for attempt in range(3):  # free_port() races with other processes binding ports meanwhile
        pair = write_demo_pair(tmp_path / "demo")
        try:
            pair.start()
            break
        except RuntimeError:
            pair.stop()
            if attempt == 2:
                raise
    try:
        sae = requests_session(pair, "SAE_A")
        assert (
            sae.get(
                f"https://127.0.0.1:{pair.ports['a_api']}/api/v1/keys/SAE_X/status", timeout=10, verify=pair.ca
            ).status_code
            == 400
        )
    finally:
        pair.stop()
    audit_file = tmp_path / "demo" / "km_a.audit.log"
    lines = [json.loads(ln.split(" ", 2)[2]) for ln in audit_file.read_text().splitlines()]
    events = [d["event"] for d in lines]
    assert events[0] == "km_started" and "request_refused" in events and events[-1] == "km_stopped"
    assert pair.log("a").exists()  # the KM's stderr (warnings, errors) is kept beside it
    assert stat.S_IMODE(audit_file.stat().st_mode) == 0o600


def requests_session(pair, sae: str):
    import requests

    s = requests.Session()
    s.cert = pair.pem(sae)
    return s


# -- 3: bodies and headers that never arrive, client disconnects --------------------------------


def test_a_body_that_never_arrives_is_cut_with_a_json_408(hpair, caplog):
    caplog.set_level(logging.INFO, logger=AUDIT)
    with tls_socket(hpair) as s:
        s.sendall(
            b"POST /api/v1/keys/SAE_B/enc_keys HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 60000\r\n\r\n{"
        )
        status, headers, body = parse_response(read_all(s))  # the server closes: read_all returns
    assert status == 408 and headers["content-type"].startswith("application/json")
    assert "body" in json.loads(body)["message"]


def test_headers_that_never_end_are_cut(hpair, caplog):
    caplog.set_level(logging.INFO, logger=AUDIT)
    with tls_socket(hpair) as s:
        s.sendall(b"GET /api/v1/keys/SAE_B/status HTTP/1.1\r\nHost: x\r\nX-Slow: 1\r\n")
        status, _headers, body = parse_response(read_all(s))
    assert status == 408 and json.loads(body)["message"]
    wait_for(
        lambda: any(e["status"] == 408 and "headers" in e["reason"] for e in audit_events(caplog, "request_refused"))
    )


def test_a_connection_that_never_sends_a_request_is_cut(hpair):
    with tls_socket(hpair) as s:
        s.do_handshake()
        status, _, body = parse_response(read_all(s))
    assert status == 408 and json.loads(body)["message"]


def test_a_client_that_disconnects_mid_body_is_logged_once_at_info_without_traceback(hpair, caplog):
    caplog.set_level(logging.INFO)
    s = tls_socket(hpair)
    port = s.getsockname()[1]
    s.sendall(b"POST /api/v1/keys/SAE_B/enc_keys HTTP/1.1\r\nHost: x\r\nContent-Length: 60000\r\n\r\n{")
    time.sleep(0.2)
    s.close()

    def mine() -> list[dict]:
        return [e for e in audit_events(caplog, "client_disconnected") if e["peer"].endswith(f":{port}")]

    wait_for(lambda: len(mine()) >= 1)
    time.sleep(0.5)
    assert len(mine()) == 1 and mine()[0]["_level"] == logging.INFO
    no_tracebacks(caplog)


# -- 4: no served or voided key on disk, WAL included -------------------------------------------


def _disk_bytes(db: Path) -> bytes:
    return b"".join(Path(str(db) + sfx).read_bytes() for sfx in ("", "-wal", "-shm") if Path(str(db) + sfx).exists())


def test_served_and_voided_keys_are_in_neither_database_nor_wal_nor_shm(tmp_path):
    key = os.urandom(1 << 14)
    a = KeyStore(str(tmp_path / "a.db"), "KME_A", chunk_bytes=4096)
    b = KeyStore(str(tmp_path / "b.db"), "KME_B", chunk_bytes=4096)
    try:
        for s in (a, b):
            s.add_blocks([KeyBlock("L1", 0, "KME_B" if s is a else "KME_A", 8 * len(key), key)])
            s.confirm_blocks("KME_B" if s is a else "KME_A", [("L1", 0)])
        served = a.reserve("KME_B", "SAE_A", ["SAE_B"], 4, 64)
        b.accept_allocations("KME_A", served.allocations, served.retired)
        voided = a.reserve("KME_B", "SAE_A", ["SAE_B"], 2, 64)
        b.accept_allocations("KME_A", voided.allocations, voided.retired)
        a.reserve_many(
            "KME_B", [], deliver=[x.key_id for x in served.allocations], void=[x.key_id for x in voided.allocations]
        )
        got = b.fetch("SAE_B", "SAE_A", [x.key_id for x in served.allocations])
        assert got == served.material
        b.void_peer_keys([x.key_id for x in voided.allocations])
        for _store, name in ((a, "a.db"), (b, "b.db")):
            disk = _disk_bytes(tmp_path / name)
            # unserved key is still there (the search does find key bytes that were not served)
            assert any(key[i : i + 32] in disk for i in range(len(key) - 4096, len(key) - 32, 256))
            for k in served.material + voided.material:
                assert k not in disk, f"a served or voided key is still on disk in {name}"
    finally:
        a.close()
        b.close()


def test_a_reader_blocking_the_checkpoint_delays_the_scrub_but_fails_nothing(tmp_path, caplog):
    import sqlite3

    key = os.urandom(8192)
    a = KeyStore(str(tmp_path / "a.db"), "KME_A")
    a.add_blocks([KeyBlock("L1", 0, "KME_B", 8 * len(key), key)])
    a.confirm_blocks("KME_B", [("L1", 0)])
    reader = sqlite3.connect(str(tmp_path / "a.db"), timeout=0.1)
    reader.execute("BEGIN")
    reader.execute("SELECT COUNT(*) FROM chunks").fetchone()  # an open read transaction (an operator's shell)
    a.db.execute("PRAGMA busy_timeout=50")
    r = a.reserve("KME_B", "SAE_A", ["SAE_B"], 2, 32)
    a.set_state([x.key_id for x in r.allocations], "delivered")  # commits; the scrub is blocked
    assert a.key_record(r.allocations[0].key_id)["state"] == "delivered"
    assert any("blocked the WAL checkpoint" in rec.getMessage() for rec in caplog.records)
    reader.rollback()
    reader.close()
    a.reserve("KME_B", "SAE_A", ["SAE_B"], 1, 32)  # the next commit retries the scrub
    disk = _disk_bytes(tmp_path / "a.db")
    assert all(k not in disk for k in r.material)
    a.close()


def test_keys_served_over_the_api_leave_no_trace_in_the_kms_files(hpair):
    keys = Sae(hpair, "a", "SAE_A").get("SAE_B/enc_keys?number=4&size=512").json()["keys"]
    got = Sae(hpair, "b", "SAE_B").post("SAE_A/dec_keys", json={"key_IDs": [{"key_ID": k["key_ID"]} for k in keys]})
    assert got.status_code == 200
    raw = [base64.b64decode(k["key"]) for k in keys]
    for who in ("a", "b"):
        db = Path(getattr(hpair, who).config.database)
        # the KMs scrub within scrub_delay_s (0.5 s by default) of serving: wait for it, generously
        wait_for(lambda db=db: not any(k in _disk_bytes(db) for k in raw))


def test_a_deferred_scrub_removes_served_keys_when_it_runs(tmp_path):
    key = os.urandom(1 << 13)
    a = KeyStore(str(tmp_path / "a.db"), "KME_A", scrub_deferred=True)
    a.add_blocks([KeyBlock("L1", 0, "KME_B", 8 * len(key), key)])
    a.confirm_blocks("KME_B", [("L1", 0)])
    r = a.reserve("KME_B", "SAE_A", ["SAE_B"], 2, 32)
    a.set_state([x.key_id for x in r.allocations], "delivered")
    assert a.scrub_due
    assert a.scrub_if_due() and not a.scrub_due
    disk = _disk_bytes(tmp_path / "a.db")
    assert all(k not in disk for k in r.material)
    a.close()


# -- 5: owner-only files whatever the umask, the CA key apart -----------------------------------


def _loose(root: Path) -> list[str]:
    out = []
    for p in [root, *root.rglob("*")]:
        mode = stat.S_IMODE(p.lstat().st_mode)
        if mode & 0o077:
            out.append(f"{p.relative_to(root)}: {oct(mode)}")
    return out


def test_files_and_directories_are_owner_only_under_umask_000(tmp_path):
    script = f"""
import os, sys
os.umask(0)
from node.cli import main
assert main(["km", "--write-demo", {str(tmp_path / "demo")!r}]) == 0
assert main(["certs", {str(tmp_path / "certs")!r}, "--kme", "KME_A", "--sae", "SAE_A"]) == 0
from node.keymanager.store import KeyBlock, KeyStore
os.mkdir({str(tmp_path / "store")!r}, 0o700)
s = KeyStore({str(tmp_path / "store" / "km.db")!r}, "KME_A")
s.add_blocks([KeyBlock("L1", 0, "KME_B", 8 * 4096, os.urandom(4096))])
print(sorted(os.listdir({str(tmp_path / "store")!r})))
"""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "km.db-wal" in out.stdout  # the WAL existed while the store was open
    for d in ("demo", "certs", "store"):
        assert _loose(tmp_path / d) == [], d
    # the CA's key is not among the files a KM or SAE reads at run time
    assert not (tmp_path / "demo" / "pki" / "ca.key").exists() and (tmp_path / "demo" / "ca" / "ca.key").exists()
    assert not (tmp_path / "certs" / "ca.key").exists()
    assert list((tmp_path / "certs").rglob("ca.key"))


def test_private_helpers_create_owner_only_and_leave_existing_directories_alone(tmp_path):
    from node.private_files import create_private_file, private_dir, write_private_file

    os.chmod(tmp_path, 0o755)  # noqa: S103 - a too-open directory is the case tested
    private_dir(tmp_path / "x" / "y")
    assert stat.S_IMODE(tmp_path.stat().st_mode) == 0o755  # an existing directory keeps its mode
    assert stat.S_IMODE((tmp_path / "x").stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "x" / "y").stat().st_mode) == 0o700
    f = tmp_path / "x" / "f"
    f.write_text("keep")
    os.chmod(f, 0o666)  # noqa: S103 - a too-open file is the case tested
    create_private_file(f)
    assert f.read_text() == "keep" and stat.S_IMODE(f.stat().st_mode) == 0o600
    write_private_file(f, "new")
    assert f.read_text() == "new" and stat.S_IMODE(f.stat().st_mode) == 0o600
    with pytest.raises(ValueError, match="not a directory"):
        private_dir(f)


# -- 6: UUID check ------------------------------------------------------------------------------


def test_a_key_id_with_a_trailing_newline_is_refused_as_malformed(hpair):
    keys = Sae(hpair, "a", "SAE_A").get("SAE_B/enc_keys").json()["keys"]
    kid = keys[0]["key_ID"]
    assert UUID_RE.match(kid) and not UUID_RE.match(kid + "\n")
    resp = Sae(hpair, "b", "SAE_B").post("SAE_A/dec_keys", json={"key_IDs": [{"key_ID": kid + "\n"}]})
    assert resp.status_code == 400 and "UUID" in message(resp)
    resp = Sae(hpair, "b", "SAE_B").get(f"SAE_A/dec_keys?key_ID={kid}%0A")
    assert resp.status_code == 400 and "UUID" in message(resp)
    assert Sae(hpair, "b", "SAE_B").get(f"SAE_A/dec_keys?key_ID={kid}").status_code == 200


# -- 7: the HTTP parser's refusals in the spec's JSON error shape -------------------------------


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"FOO /api/v1/keys/SAE_B/status HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /api/v1/keys/SAE_B/status?" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /api/v1/keys/SAE_B/status HTTP/1.1\r\nHost: x\r\n"
        + b"".join(b"X-H%d: v\r\n" % i for i in range(500))
        + b"\r\n",
        b"GET /api/v1/keys/SAE_B/status HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n",
    ],
    ids=["unknown-method", "long-request-line", "500-headers", "malformed-header"],
)
def test_parser_refusals_are_json_errors(hpair, caplog, request_bytes):
    caplog.set_level(logging.INFO, logger=AUDIT)
    with tls_socket(hpair) as s:
        s.sendall(request_bytes)
        status, headers, body = parse_response(read_all(s))
    assert 400 <= status < 500
    assert headers["content-type"].startswith("application/json")
    assert isinstance(json.loads(body)["message"], str)
    no_tracebacks(caplog)


# -- 8: a slave KM that crashes between its commit and its answer --------------------------------


def test_unanswered_deliveries_are_recorded_at_restart_and_voided_at_the_master(tmp_path):
    key = os.urandom(1 << 13)
    a = KeyStore(str(tmp_path / "a.db"), "KME_A")
    b = KeyStore(str(tmp_path / "b.db"), "KME_B")
    for s, pool in ((a, "KME_B"), (b, "KME_A")):
        s.add_blocks([KeyBlock("L1", 0, pool, 8 * len(key), key)])
        s.confirm_blocks(pool, [("L1", 0)])
    r = a.reserve("KME_B", "SAE_A", ["SAE_B"], 3, 32)
    b.accept_allocations("KME_A", r.allocations, r.retired)
    a.set_state([x.key_id for x in r.allocations], "delivered")
    ids = [x.key_id for x in r.allocations]
    b.fetch("SAE_B", "SAE_A", ids[:1])
    b.confirm_answered("SAE_B", ids[:1])  # this answer left
    b.fetch("SAE_B", "SAE_A", ids[1:2])  # committed, then the process died before answering
    b.close()
    b = KeyStore(str(tmp_path / "b.db"), "KME_B")
    assert b.recover_unanswered() == 1 and b.unanswered_count() == 1
    assert b.unreported_unanswered("KME_A") == [ids[1]]
    with pytest.raises(KeysNotFound):
        b.fetch("SAE_B", "SAE_A", ids[1:2])  # never served twice
    assert a.void_lost_at_peer("KME_B", [ids[1]]) == [ids[1]]
    assert a.void_lost_at_peer("KME_B", [ids[1]]) == []  # idempotent
    assert a.key_record(ids[1])["state"] == "void" and a.key_record(ids[0])["state"] == "delivered"
    assert a.lost_at_peer("KME_B", "SAE_A") == (1, [ids[1]])
    b.mark_unanswered_reported([ids[1]])
    assert b.unreported_unanswered("KME_A") == [] and b.unanswered_count() == 1
    a.close()
    b.close()


def test_the_master_kme_voids_and_reports_keys_whose_answer_the_slave_kme_lost(pki, tmp_path):
    p = Pair(tmp_path, pki, max_key_per_request=16)
    try:
        p.feed(1 << 13, 1)
        keys = Sae(p, "a", "SAE_A").get("SAE_B/enc_keys?number=2").json()["keys"]
        ids = [k["key_ID"] for k in keys]
        # KME_B commits the delivery of ids[0] to SAE_B, then dies before its answer leaves
        p.b.call(p.b.km.get_keys_with_ids("SAE_B", "SAE_A", ids[:1]))
        p.b.stop()
        p.b = KmThread(p.paths["b"])
        assert p.b.km.counters["keys_unanswered"] == 1

        def status() -> dict:
            return Sae(p, "a", "SAE_A").get("SAE_B/status").json()

        wait_for(lambda: "status_extension" in status())
        lost = status()["status_extension"]["keys_lost_at_slave_KME"]
        assert lost == {"count": 1, "recent_key_IDs": ids[:1]}
        assert p.a.km.counters["keys_lost_at_peer"] == 1
        assert p.a.call(p.a.km.db(p.a.km.store.key_record, ids[0]))["state"] == "void"
        # the other key is untouched and still served once
        assert Sae(p, "b", "SAE_B").get(f"SAE_A/dec_keys?key_ID={ids[1]}").status_code == 200
        assert Sae(p, "b", "SAE_B").get(f"SAE_A/dec_keys?key_ID={ids[0]}").status_code == 400
    finally:
        p.close()

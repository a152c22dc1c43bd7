"""Application QoS bookkeeping against slow, obvious references: the token bucket, admission control,
priorities when the pool runs low, statistics periods, the link rate meter and ttl voiding in the store."""

from __future__ import annotations

import json
import os
import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node.keymanager.qos import (
    Application,
    AppQos,
    QosRefused,
    QosRegistry,
    RateMeter,
    TokenBucket,
    void_expired,
)
from node.keymanager.relaystore import RelayStore
from node.keymanager.store import KeyStore


class Clock:
    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def _app(server="SAE_A", clients=("SAE_B",), priority=0, links=("AB",), remote="KME_B", **qos) -> Application:
    return Application(str(uuid.uuid4()), server, tuple(clients), AppQos(**qos), priority, "CLIENT", remote, links)


@settings(max_examples=100, deadline=None)
@given(rate=st.integers(1, 10_000), steps=st.lists(st.tuples(st.floats(0, 3), st.integers(1, 12_000)), max_size=30))
def test_token_bucket_matches_a_step_by_step_reference(rate, steps):
    clock = Clock()
    bucket = TokenBucket(rate, clock)
    level = float(rate)  # reference: starts full, refills linearly, never above one second
    for dt, n in steps:
        clock.t += dt
        level = min(float(rate), level + dt * rate)
        ok = n <= level
        if ok:
            level -= n
        assert bucket.try_take(n) is ok


def test_max_bandwidth_refuses_with_the_reason_and_gives_back_failed_requests():
    clock = Clock()
    reg = QosRegistry("KME_A", clock=clock)
    app = _app(max_bandwidth=1000)
    reg.register(app, lambda link: 1e6)
    assert reg.admit_request("SAE_A", ["SAE_B"], 600, None) is app
    with pytest.raises(QosRefused) as exc:
        reg.admit_request("SAE_A", ["SAE_B"], 600, None)
    assert exc.value.code == "max_bandwidth" and "max_bandwidth 1000 bit/s" in exc.value.reason
    reg.request_failed(app, 600)  # the first request then failed: its budget comes back
    assert reg.admit_request("SAE_A", ["SAE_B"], 600, None) is app
    assert app.stats.refusals == {"max_bandwidth": 1}
    assert reg.admit_request("SAE_C", ["SAE_B"], 10**9, None) is None  # an unregistered pair: no QoS


def test_admission_control_counts_what_other_applications_reserved_on_each_link():
    reg = QosRegistry("KME_A")
    skr = {"AB": 10_000.0, "AE": 3_000.0}
    first = _app(min_bandwidth=6_000, links=("AB",))
    reg.register(first, skr.__getitem__)
    with pytest.raises(
        QosRefused, match="exceeds what link AB can supply: secret key rate 10000 bit/s, 6000 bit/s reserved"
    ):
        reg.register(_app(min_bandwidth=5_000, links=("AB",)), skr.__getitem__)
    with pytest.raises(QosRefused, match="link AE"):
        reg.register(_app(min_bandwidth=4_000, links=("AB", "AE")), skr.__getitem__)
    reg.register(_app(min_bandwidth=4_000, links=("AB",)), skr.__getitem__)
    assert reg.reserved("AB") == 10_000
    with pytest.raises(QosRefused, match="no key association link"):
        reg.register(_app(min_bandwidth=1, links=()), skr.__getitem__)
    # re-registering the same application does not count its own old reservation
    reg.register(
        Application(first.app_id, "SAE_A", ("SAE_B",), AppQos(min_bandwidth=6_000), 0, "CLIENT", "KME_B", ("AB",)),
        skr.__getitem__,
    )


def test_a_low_pool_serves_higher_priorities_first():
    reg = QosRegistry("KME_A")
    gold = _app(server="SAE_A", clients=("SAE_B",), priority=5, min_bandwidth=4_000)
    bronze = _app(server="SAE_X", clients=("SAE_B",), priority=1)
    reg.register(gold, lambda link: 1e6)
    reg.register(bronze, lambda link: 1e6)
    assert reg.admit_request("SAE_X", ["SAE_B"], 1_000, 10_000, "KME_B") is bronze  # plenty left
    with pytest.raises(QosRefused, match="4000 bits kept for higher-priority applications") as exc:
        reg.admit_request("SAE_X", ["SAE_B"], 1_000, 4_500, "KME_B")
    assert exc.value.code == "priority"
    assert reg.admit_request("SAE_A", ["SAE_B"], 1_000, 4_500, "KME_B") is gold  # the high priority still served


def test_expired_application_is_refused():
    wall = Clock(5_000.0)
    reg = QosRegistry("KME_A", wall=wall)
    app = _app()
    app.expiration = 5_010.0
    reg.register(app, lambda link: 0.0)
    assert reg.admit_request("SAE_A", ["SAE_B"], 8, None) is app
    wall.t = 5_010.0
    with pytest.raises(QosRefused, match="expired"):
        reg.admit_request("SAE_A", ["SAE_B"], 8, None)


def test_statistics_periods_sum_to_what_was_delivered():
    wall = Clock(0.0)
    reg = QosRegistry("KME_A", wall=wall)
    app = _app()
    reg.register(app, lambda link: 0.0)
    total = 0
    for i in range(40):
        wall.t += 2.5
        reg.delivered(app, 1, 256 * (i % 3))
        total += 256 * (i % 3)
    periods = reg.statistics(app, current=True)
    assert all(e > s for s, e, _ in periods)
    assert sum(b for *_, b in periods) <= total and periods[-1][1] == wall.t


@pytest.mark.parametrize(
    "qos", [{"max_bandwidth": -1}, {"ttl": 2**32}, {"jitter": True}, {"min_bandwidth": 10, "max_bandwidth": 5}]
)
def test_bad_qos_values_name_the_field(qos):
    with pytest.raises(ValueError, match="app_qos/"):
        AppQos(**qos)


def test_rate_meter_is_bits_over_the_window():
    clock = Clock(0.0)
    m = RateMeter(window_s=10.0, clock=clock)
    assert m.rate("AB") == 0.0
    m.add("AB", 5_000)
    clock.t = 5.0
    m.add("AB", 5_000)
    assert m.rate("AB") == pytest.approx(10_000 / 5.0)
    clock.t = 12.0
    assert m.rate("AB") == pytest.approx(5_000 / 10.0)


def test_void_expired_voids_only_old_waiting_keys_of_the_application(tmp_path):
    store = KeyStore(str(tmp_path / "km.db"), "KME_B")
    RelayStore(store)  # the relayed keys' tables, as the key manager has them
    rows = [
        ("old", "SAE_A", ["SAE_B"], 100.0, "reserved"),
        ("new", "SAE_A", ["SAE_B"], 200.0, "reserved"),
        ("other", "SAE_Z", ["SAE_B"], 100.0, "reserved"),
        ("done", "SAE_A", ["SAE_B"], 100.0, "delivered"),
        ("wider", "SAE_A", ["SAE_B", "SAE_Q"], 100.0, "reserved"),
    ]
    for i, (k, master, slaves, created, state) in enumerate(rows):
        store.db.execute(
            "INSERT INTO keys(key_id, pool, origin, master_sae, slaves, link_id, block_id, idx, offset, "
            "nbytes, state, material, created) VALUES(?,?,0,?,?,?,?,?,?,?,?,?,?)",
            (
                k,
                "KME_A",
                master,
                json.dumps(slaves),
                "AB",
                0,
                0,
                32 * i,
                32,
                state,
                os.urandom(32) if state == "reserved" else None,
                created,
            ),
        )
    store.db.commit()
    assert void_expired(store, "SAE_A", ["SAE_B"], 150.0) == 1
    states = dict(store.db.execute("SELECT key_id, state FROM keys"))
    assert states == {"old": "void", "new": "reserved", "other": "reserved", "done": "delivered", "wider": "reserved"}
    assert store.db.execute("SELECT material FROM keys WHERE key_id='old'").fetchone()[0] is None
    store.close()


def test_the_slaves_key_manager_neither_admits_nor_reserves_priority_for_an_application():
    reg = QosRegistry("KME_B")
    slave_side = Application(
        str(uuid.uuid4()),
        "SAE_A",
        ("SAE_B",),
        AppQos(min_bandwidth=10**6),
        9,
        "CLIENT",
        "KME_A",
        ("AB",),
        local_master=False,
    )
    reg.register(slave_side, lambda link: 10.0, admit=False)  # the master's KM checks the supply
    local = _app(server="SAE_B", clients=("SAE_A",), priority=0, remote="KME_A")
    reg.register(local, lambda link: 10.0)
    assert reg.admit_request("SAE_B", ["SAE_A"], 100, 200, "KME_A") is local  # nothing kept for the slave side


def test_unregistered_requests_rank_below_every_application_when_the_pool_runs_low():
    reg = QosRegistry("KME_A")
    reg.register(_app(priority=0, min_bandwidth=2_000), lambda link: 1e6)
    assert reg.admit_request("SAE_Z", ["SAE_B"], 1_000, 10_000, "KME_B") is None  # served, no QoS
    with pytest.raises(QosRefused, match="2000 bits kept for registered applications"):
        reg.admit_request("SAE_Z", ["SAE_B"], 1_000, 2_500, "KME_B")
    assert reg.reserves("KME_B") and not reg.reserves("KME_E")

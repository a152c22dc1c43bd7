"""Fixtures: a demo PKI and a pair of key managers (KME_A, KME_B) on loopback, fed with shared blocks."""

from __future__ import annotations

import os
import sqlite3
import threading
from pathlib import Path
from typing import TypedDict

import pytest

from node.classical.messages import KeyBlockAck
from node.keymanager.certs import make_pki
from node.keymanager.demo import free_port, km_toml_head
from node.keymanager.ingest import KeyBlockSender
from node.network.loopback import KmThread

KMES = ["KME_A", "KME_B"]
SAES = ["SAE_A", "SAE_B", "SAE_C", "SAE_D", "SAE_X"]  # SAE_X: known to no KM


def same_secret(a: object, b: object, what: str) -> None:
    """Fail with `what` unless a == b, never showing the values (they are key material)."""
    if a != b:
        raise AssertionError(what)


class PairFiles(TypedDict):
    """The pair's config files (KME_A's, KME_B's) and the loopback ports they use (a_api, b_link, ...)."""

    a: Path
    b: Path
    ports: dict[str, int]


def write_pair_configs(
    root: Path, pki_dir: Path, ports: dict[str, int] | None = None, api: dict | None = None, **keys: int
) -> PairFiles:
    """Config files of KME_A (serving SAE_A, SAE_C) and KME_B (serving SAE_B, SAE_D), and shared secrets."""
    ports = ports or {n: free_port() for n in ("a_api", "b_api", "a_link", "b_link", "a_in", "b_in")}
    for name, size in (("link", 1 << 20), ("ingest_a", 1 << 20), ("ingest_b", 1 << 20), ("fuzz_a", 64), ("fuzz_b", 64)):
        if not (root / f"{name}.key").exists():  # a test may have put a smaller secret there
            (root / f"{name}.key").write_bytes(os.urandom(size))
    api_extra = "\n".join(f"{k} = {v}" for k, v in (api or {}).items())
    out: dict[str, Path] = {}
    for me, other, local, remote in (
        ("a", "b", ["SAE_A", "SAE_C"], ["SAE_B", "SAE_D"]),
        ("b", "a", ["SAE_B", "SAE_D"], ["SAE_A", "SAE_C"]),
    ):
        me_id, other_id = f"KME_{me.upper()}", f"KME_{other.upper()}"
        text = (
            km_toml_head(me_id, f"km_{me}.db", local, ports[me + "_api"], pki_dir, keys, ports[me + "_in"], api_extra)
            + f"""[[ingest.sources]]
id = "node_{me}"
auth_key = "ingest_{me}.key"
[[ingest.sources]]
id = "fuzz_{me}"
auth_key = "fuzz_{me}.key"
[link]
bind = "tcp://127.0.0.1:{ports[me + "_link"]}"
auth_key = "link.key"
peer_timeout_s = 2.0
reconcile_interval_s = 0.5
[[peers]]
kme_id = "{other_id}"
connect = "tcp://127.0.0.1:{ports[other + "_link"]}"
links = ["L1"]
saes = {remote!r}
"""
        )
        path = root / f"km_{me}.toml"
        path.write_text(text)
        out[me] = path
    return PairFiles(a=out["a"], b=out["b"], ports=ports)


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("pki")
    make_pki(d, KMES, SAES)
    other = tmp_path_factory.mktemp("pki_other")
    make_pki(other, ["KME_Z"], ["SAE_A"], ca_name="another CA")  # same SAE name, foreign CA
    return d


class Pair:
    """Two running KMs and the QKD-module side of ingest for each."""

    def __init__(self, root: Path, pki_dir: Path, api: dict | None = None, **keys: int) -> None:
        self.root, self.pki = root, pki_dir
        # ports=None given by name: the key limits in **keys cannot land on it
        self.paths = write_pair_configs(root, pki_dir, ports=None, api=api, **keys)
        self.a = KmThread(self.paths["a"])
        self.b = KmThread(self.paths["b"])
        ports = self.paths["ports"]
        self.senders = {
            "a": KeyBlockSender(
                f"tcp://127.0.0.1:{ports['a_in']}",
                "node_a",
                (root / "ingest_a.key").read_bytes(),
                root / "sender_a.json",
            ),
            "b": KeyBlockSender(
                f"tcp://127.0.0.1:{ports['b_in']}",
                "node_b",
                (root / "ingest_b.key").read_bytes(),
                root / "sender_b.json",
            ),
        }
        self.next_block = 0

    def url(self, who: str) -> str:
        return f"127.0.0.1:{self.paths['ports'][who + '_api']}"

    def feed(self, nbytes: int = 1 << 16, blocks: int = 1) -> None:
        """Send identical fresh blocks to both KMs and wait until both have confirmed them."""
        for _ in range(blocks):
            key = os.urandom(nbytes)
            for s in self.senders.values():
                reply = s.send_block("L1", self.next_block, key, qber=0.02)
                assert isinstance(reply, KeyBlockAck)
            self.next_block += 1
        want = {("L1", i) for i in range(self.next_block)}
        for km in (self.a, self.b):
            for _ in range(200):
                with sqlite3.connect(km.config.database) as db:
                    rows = db.execute("SELECT link_id, block_id FROM blocks WHERE confirmed=1").fetchall()
                if want <= {tuple(r) for r in rows}:
                    break
                threading.Event().wait(0.02)
            else:
                raise AssertionError("blocks were not confirmed by both KMs")

    def close(self) -> None:
        for s in self.senders.values():
            s.close()
        self.a.stop()
        self.b.stop()


@pytest.fixture(scope="module")
def pair(pki, tmp_path_factory):
    p = Pair(tmp_path_factory.mktemp("kms"), pki, max_key_per_request=16, max_SAE_ID_count=2)
    p.feed(1 << 16, 2)
    yield p
    p.close()

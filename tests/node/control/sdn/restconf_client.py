"""A RESTCONF client written from RFC 8040 and the YANG module, not from our server: it finds the
API root through `/.well-known/host-meta`, walks the `etsi-qkd-sdn-node` tree resource by resource
as the module's schema lists it, and validates every answer against the module (yangson)."""

from __future__ import annotations

import http.client
import json
import re
import ssl
from pathlib import Path
from typing import Any
from urllib.parse import quote

from yangson import DataModel
from yangson.enumerations import ContentType
from yangson.schemanode import ContainerNode, LeafListNode, LeafNode, ListNode

import node.control.sdn

YANG_DIR = Path(node.control.sdn.__file__).with_name("yang")
MODULE = "etsi-qkd-sdn-node"
MEDIA = "application/yang-data+json"


def data_model() -> DataModel:
    """The module as shipped in the repository."""
    return DataModel.from_file(str(YANG_DIR / "yang-library.json"), [str(YANG_DIR)])


class RestconfClient:
    """One controller session to one node (mutual TLS, keep-alive)."""

    def __init__(self, host: str, port: int, cert: str, key: str, ca: str, timeout_s: float = 15.0) -> None:
        self.ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca)
        self.ctx.load_cert_chain(cert, key)
        self.host, self.port, self.timeout_s = host, port, timeout_s
        self.conn: http.client.HTTPSConnection | None = None
        self.root = "/restconf"

    @classmethod
    def from_url(cls, url: str, cert: str, key: str, ca: str) -> RestconfClient:
        m = re.fullmatch(r"https://([^:/]+):(\d+)(/.*)?", url)
        assert m, url
        return cls(m.group(1), int(m.group(2)), cert, key, ca)

    def request(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        for attempt in range(2):
            if self.conn is None:
                self.conn = http.client.HTTPSConnection(self.host, self.port, context=self.ctx, timeout=self.timeout_s)
            h = {"Accept": MEDIA, **(headers or {})}
            data = None
            if body is not None:
                data = json.dumps(body).encode()
                h.setdefault("Content-Type", MEDIA)
            try:
                self.conn.request(method, path, data, h)
                resp = self.conn.getresponse()
                return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                self.conn.close()
                self.conn = None
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def json(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        status, _, raw = self.request(method, path, body)
        return status, (json.loads(raw) if raw else None)

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()

    # -- RFC 8040 §3.1: root discovery -----------------------------------------------------------------
    def discover(self) -> str:
        status, _headers, raw = self.request("GET", "/.well-known/host-meta", headers={"Accept": "application/xrd+xml"})
        assert status == 200, status
        m = re.search(r"<Link\s+rel=['\"]restconf['\"]\s+href=['\"]([^'\"]+)['\"]", raw.decode())
        assert m, raw
        self.root = m.group(1).rstrip("/")
        return self.root

    def data_path(self, segs: list[tuple[str, Any]]) -> str:
        """RFC 8040 §3.5.3 data resource identifier: module-qualified top node, keys percent-encoded."""
        parts = []
        for i, (name, key) in enumerate(segs):
            seg = f"{MODULE}:{name}" if i == 0 else name
            if key is not None:
                seg += "=" + quote(str(key), safe="")
            parts.append(seg)
        return f"{self.root}/data/" + "/".join(parts)


def wrap(segs: list[tuple[str, Any]], value: Any, keys: list[dict[str, Any]], qkdn_id: str) -> dict[str, Any]:
    """The answer at `segs` placed back into a whole `qkd_node` document (with the list keys along
    the way and the mandatory qkdn_id), so the module can validate it."""
    node = value
    for i in range(len(segs) - 1, 0, -1):
        name = segs[i][0]
        parent: dict[str, Any] = {name: node}
        if segs[i - 1][1] is not None:  # the parent is a list entry: it needs its key leaf
            parent.update(keys[i - 1])
            node = [parent]
        else:
            node = parent
    assert isinstance(node, dict)
    return {f"{MODULE}:qkd_node": {"qkdn_id": qkdn_id, **node}}


class TreeWalker:
    """Walks every container, list, list entry and leaf resource below `qkd_node`; validates each."""

    def __init__(self, client: RestconfClient, dm: DataModel) -> None:
        self.client, self.dm = client, dm
        self.visited: list[str] = []

    def validate(self, doc: dict[str, Any]) -> None:
        self.dm.from_raw(doc).validate(ctype=ContentType.all)

    def get(self, segs: list[tuple[str, Any]]) -> Any:
        path = self.client.data_path(segs)
        status, headers, raw = self.client.request("GET", path)
        assert status == 200, (path, status, raw[:300])
        assert headers["content-type"].startswith(MEDIA), headers
        doc = json.loads(raw)
        ((name, value),) = doc.items()
        assert name == f"{MODULE}:{segs[-1][0]}", (path, name)
        self.visited.append(path)
        return value

    def walk(self) -> dict[str, Any]:
        top = self.dm.get_data_node(f"/{MODULE}:qkd_node")
        value = self.get([("qkd_node", None)])
        self.validate({f"{MODULE}:qkd_node": value})
        self.qkdn_id = value["qkdn_id"]
        self._children(top, [("qkd_node", None)], value, [{}])
        return value

    def _children(self, snode: Any, segs: list[tuple[str, Any]], value: dict[str, Any], keys: list[dict]) -> None:
        for child in snode.data_children():
            name = child.name
            if name not in value:
                continue
            if isinstance(child, ListNode):
                here = segs + [(name, None)]
                got = self.get(here)
                self.validate(wrap(here, got, keys + [{}], self.qkdn_id))
                keynames = [k[0] for k in child.keys]
                for entry in got:
                    kv = {k: entry[k] for k in keynames}
                    esegs = segs + [(name, entry[keynames[0]])]
                    one = self.get(esegs)
                    assert isinstance(one, list) and len(one) == 1
                    self.validate(wrap(esegs, one, keys + [kv], self.qkdn_id))
                    self._children(child, esegs, one[0], keys + [kv])
            elif isinstance(child, ContainerNode):
                here = segs + [(name, None)]
                got = self.get(here)
                self.validate(wrap(here, got, keys + [{}], self.qkdn_id))
                self._children(child, here, got, keys + [{}])
            elif isinstance(child, LeafNode):
                here = segs + [(name, None)]
                got = self.get(here)
                self.validate(wrap(here, got, keys + [{}], self.qkdn_id))
            elif isinstance(child, LeafListNode):
                continue  # leaf-list entries are resources by value; they were validated with their parent


def validate_notification(dm: DataModel, event: dict[str, Any]) -> str:
    """Check an RFC 8040 §6.4 JSON notification: an eventTime and one notification of the module whose
    content validates against its schema. Returns the notification's name."""
    from yangson.instance import RootNode

    body = event["ietf-restconf:notification"]
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})", body["eventTime"])
    ((name, content),) = [(k, v) for k, v in body.items() if k != "eventTime"]
    assert name.startswith(f"{MODULE}:"), name
    snode = dm.get_schema_node("/" + name)
    assert snode is not None, name
    value = snode.from_raw(content)
    RootNode(value, snode, dm.schema_data, value.timestamp).validate(ctype=ContentType.all)
    return name.partition(":")[2]

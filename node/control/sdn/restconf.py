"""RESTCONF (RFC 8040) over mutual TLS serving one node's `etsi-qkd-sdn-node` tree (aiohttp).

Resources: `/.well-known/host-meta` (the RESTCONF root), `/restconf` (the API resource),
`/restconf/yang-library-version`, `/restconf/data/ietf-yang-library:modules-state` (modules, with
links to their text under `/restconf/yang/`), `/restconf/data/etsi-qkd-sdn-node:qkd_node[/...]`
(GET; POST, PATCH and DELETE on `qkd_links` and `qkd_applications`), and the event stream
`qkd-events` (`/restconf/data/ietf-restconf-monitoring:restconf-state/streams` names its location,
a `text/event-stream` of RFC 8040 §6.4 JSON notifications). Media type `application/yang-data+json`
(`application/json` accepted from clients); errors in the `ietf-restconf:errors` shape.

Who may call: a client certificate signed by the node's CA (checked by TLS) whose common name is one
of `controllers`. What a controller learns: the topology, rates and QoS; never key material.
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from aiohttp import web

from node.control.sdn.agent import MODULE, SdnAgent, SdnError
from node.keymanager.certs import common_name_of

log = logging.getLogger(__name__)

YANG_DIR = Path(__file__).with_name("yang")
MEDIA = "application/yang-data+json"
STREAM = "qkd-events"
DATA = f"/restconf/data/{MODULE}:qkd_node"
STATUS_OF_TAG = {
    "invalid-value": 400,
    "malformed-message": 400,
    "operation-not-supported": 405,
    "access-denied": 403,
    "data-exists": 409,
    "data-missing": 409,
    "resource-denied": 409,
    "operation-failed": 500,
    "unknown-element": 400,
}
KEYS = {
    "qkd_link": "qkdl_id",
    "qkd_app": "app_id",
    "qkd_interface": "qkdi_id",
    "statistics": "end_time",
    "phys_perf": "perf_type",
}
MAX_BODY = 65536


def errors_body(tag: str, message: str, path: str | None = None, etype: str = "application") -> dict[str, Any]:
    """RFC 8040 §7.1 errors document."""
    err: dict[str, Any] = {"error-type": etype, "error-tag": tag, "error-message": message}
    if path:
        err["error-path"] = path
    return {"ietf-restconf:errors": {"error": [err]}}


def error_response(
    tag: str, message: str, path: str | None = None, status: int | None = None, etype: str = "application"
) -> web.Response:
    return _json(errors_body(tag, message, path, etype), status or STATUS_OF_TAG.get(tag, 400))


def _json(doc: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, body=json.dumps(doc, indent=1).encode(), content_type=MEDIA)


def _segments(raw: str) -> list[tuple[str, str | None]]:
    """'qkd_links/qkd_link=abc' -> [('qkd_links', None), ('qkd_link', 'abc')] (module prefixes dropped)."""
    out = []
    for seg in [s for s in raw.split("/") if s]:
        name, eq, key = seg.partition("=")
        name = unquote(name)
        if ":" in name:
            mod, _, name = name.partition(":")
            if mod != MODULE:
                raise SdnError("unknown-element", f"unknown module {mod!r} in the path", status_hint=404)
        out.append((name, unquote(key) if eq else None))
    return out


class RestconfServer:
    """The aiohttp application of one node's SDN agent."""

    def __init__(self, agent: SdnAgent, controllers: set[str]) -> None:
        self.agent = agent
        self.controllers = set(controllers)
        self.app = web.Application(client_max_size=MAX_BODY, middlewares=[self._guard])
        r = self.app.router
        r.add_get("/.well-known/host-meta", self._host_meta)
        r.add_get("/restconf", self._root)
        r.add_get("/restconf/yang-library-version", self._library_version)
        r.add_get("/restconf/data/ietf-yang-library:modules-state", self._modules)
        r.add_get("/restconf/data/ietf-restconf-monitoring:restconf-state/streams", self._streams)
        r.add_get("/restconf/yang/{name}", self._module_text)
        r.add_get(f"/restconf/streams/{STREAM}/json", self._stream)
        r.add_route("*", DATA + "{tail:.*}", self._data)
        self.runner: web.AppRunner | None = None
        self.port = 0
        self.host = "127.0.0.1"

    # -- middleware: who calls, error shape -------------------------------------------------------------
    @web.middleware
    async def _guard(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        transport = request.transport
        cn = common_name_of(transport.get_extra_info("peercert") if transport is not None else None)
        if cn is None or cn not in self.controllers:
            return error_response(
                "access-denied", "client certificate is not one of this node's SDN controllers", etype="protocol"
            )
        accept = request.headers.get("Accept", "")
        if accept and not any(
            m.split(";")[0].strip()
            in (
                MEDIA,
                "application/json",
                "*/*",
                "application/*",
                "text/event-stream",
                "application/xrd+xml",
                "application/yang",
            )
            for m in accept.split(",")
        ):
            return error_response("invalid-value", f"Accept: this server sends {MEDIA}", status=406, etype="protocol")
        try:
            return await handler(request)
        except SdnError as exc:
            status = getattr(exc, "status_hint", None) or (
                404 if exc.path == "missing" else STATUS_OF_TAG.get(exc.tag, 400)
            )
            return error_response(exc.tag, exc.message, None if exc.path == "missing" else exc.path, status)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            tag = (
                "access-denied"
                if exc.status in (401, 403)
                else "invalid-value"
                if exc.status < 500
                else "operation-failed"
            )
            return error_response(tag, exc.reason, status=exc.status, etype="protocol")
        except Exception:
            log.exception("RESTCONF %s %s failed", request.method, request.rel_url.raw_path)
            return error_response("operation-failed", "internal error", status=500)

    # -- discovery --------------------------------------------------------------------------------------
    async def _host_meta(self, request: web.Request) -> web.Response:
        text = (
            "<XRD xmlns='http://docs.oasis-open.org/ns/xri/xrd-1.0'>\n"
            "  <Link rel='restconf' href='/restconf'/>\n</XRD>\n"
        )
        return web.Response(text=text, content_type="application/xrd+xml")

    async def _root(self, request: web.Request) -> web.Response:
        return _json({"ietf-restconf:restconf": {"data": {}, "operations": {}, "yang-library-version": "2016-06-21"}})

    async def _library_version(self, request: web.Request) -> web.Response:
        return _json({"ietf-restconf:yang-library-version": "2016-06-21"})

    async def _modules(self, request: web.Request) -> web.Response:
        doc = json.loads((YANG_DIR / "yang-library.json").read_text())
        for m in doc["ietf-yang-library:modules-state"]["module"]:
            m["schema"] = f"{self._base(request)}/restconf/yang/{m['name']}@{m['revision']}"
        return _json(doc)

    async def _module_text(self, request: web.Request) -> web.Response:
        name = request.match_info["name"].partition("@")[0]
        path = YANG_DIR / f"{name}.yang"
        if name not in (MODULE, "etsi-qkd-node-types") or not path.exists():
            raise SdnError("invalid-value", f"no module {name!r} here", "missing")
        return web.Response(text=path.read_text(), content_type="application/yang")

    async def _streams(self, request: web.Request) -> web.Response:
        return _json(
            {
                "ietf-restconf-monitoring:streams": {
                    "stream": [
                        {
                            "name": STREAM,
                            "description": "link status changes, application registrations and alarms",
                            "replay-support": False,
                            "access": [
                                {
                                    "encoding": "json",
                                    "location": f"{self._base(request)}/restconf/streams/{STREAM}/json",
                                }
                            ],
                        }
                    ]
                }
            }
        )

    def _base(self, request: web.Request) -> str:
        return f"https://{request.host}"

    async def _stream(self, request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        q = self.agent.subscribe()
        try:
            await resp.prepare(request)
            await resp.write(b": qkd-events\n\n")
            while True:
                event = await q.get()
                await resp.write(b"data: " + json.dumps(event).encode() + b"\n\n")
        except (ConnectionResetError, asyncio.CancelledError):
            raise
        finally:
            self.agent.unsubscribe(q)
        return resp

    # -- the datastore ------------------------------------------------------------------------------------
    async def _data(self, request: web.Request) -> web.Response:
        tail = request.match_info["tail"]
        if tail and not tail.startswith("/"):
            raise SdnError("invalid-value", "unknown resource", "missing")
        if request.query:
            raise SdnError("invalid-value", f"query parameter {next(iter(request.query))!r} is not supported here")
        segs = _segments(tail)
        m = request.method
        if m in ("GET", "HEAD"):
            return self._get(segs)
        if m in ("POST", "PATCH", "PUT"):
            body = await self._body(request)
        if m == "POST":
            return await self._post(segs, body, request)
        if m == "PATCH":
            return self._patch(segs, body)
        if m == "DELETE":
            return self._delete(segs)
        raise SdnError("operation-not-supported", f"{m} is not supported on this resource")

    async def _body(self, request: web.Request) -> Any:
        ctype = request.content_type
        if ctype not in (MEDIA, "application/json"):
            return_status = 415
            raise SdnError("invalid-value", f"Content-Type must be {MEDIA}", status_hint=return_status)
        try:
            doc = json.loads(await request.read())
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise SdnError("malformed-message", "request body is not valid JSON") from None
        if not isinstance(doc, dict) or len(doc) != 1:
            raise SdnError("malformed-message", "request body must be a JSON object with one member")
        return doc

    def _get(self, segs: list[tuple[str, str | None]]) -> web.Response:
        node: Any = self.agent.tree()
        name = "qkd_node"
        for seg, key in segs:
            if not isinstance(node, dict) or seg not in node:
                raise SdnError("invalid-value", f"no data at {seg}", "missing")
            node, name = node[seg], seg
            if key is not None:
                if not isinstance(node, list) or seg not in KEYS:
                    raise SdnError("invalid-value", f"{seg} is not a list", "missing")
                hit = [e for e in node if str(e.get(KEYS[seg])).lower() == key.lower()]
                if not hit:
                    raise SdnError("invalid-value", f"no {seg} entry {key}", "missing")
                node = hit[0]
        if segs and segs[-1][1] is not None:
            node = [node]  # RFC 8040 §3.5.3: a list entry comes back as a one-entry array
        return _json({f"{MODULE}:{name}": node})

    @staticmethod
    def _entries(body: dict[str, Any], list_name: str, container: str) -> list[dict[str, Any]]:
        """The list entries in a POST body: `{"<mod>:qkd_link": [..]}` (RFC 8040) or the wrapped form
        `{"qkd_links": {"qkd_link": [..]}}` some controllers send."""
        ((name, value),) = body.items()
        name = name.partition(":")[2] or name
        if name == container and isinstance(value, dict):
            name, value = list_name, value.get(list_name)
        if name != list_name:
            raise SdnError("malformed-message", f"body must hold {MODULE}:{list_name}")
        if isinstance(value, dict):
            value = [value]
        if not isinstance(value, list) or not value or not all(isinstance(e, dict) for e in value):
            raise SdnError("malformed-message", f"{list_name} must be a non-empty list of objects")
        return value

    async def _post(
        self, segs: list[tuple[str, str | None]], body: dict[str, Any], request: web.Request
    ) -> web.Response:
        where = [s for s, _ in segs]
        if where == ["qkd_links"]:
            created = [self.agent.create_link(e) for e in self._entries(body, "qkd_link", "qkd_links")]
            kind = "qkd_links/qkd_link"
        elif where == ["qkd_applications"]:
            created = [self.agent.register_app(e) for e in self._entries(body, "qkd_app", "qkd_applications")]
            kind = "qkd_applications/qkd_app"
        else:
            raise SdnError(
                "operation-not-supported", "POST creates qkd_links/qkd_link or qkd_applications/qkd_app entries only"
            )
        resp = web.Response(status=201)
        resp.headers["Location"] = f"{self._base(request)}{DATA}/{kind}={created[-1]}"
        return resp

    def _patch(self, segs: list[tuple[str, str | None]], body: dict[str, Any]) -> web.Response:
        where = [s for s, _ in segs]
        key = segs[-1][1] if segs else None
        ((name, value),) = body.items()
        name = name.partition(":")[2] or name
        if where == ["qkd_links", "qkd_link"] and key:
            entry = self._one(name, value, "qkd_link")
            self.agent.patch_link(key.lower(), entry)
        elif where == ["qkd_links", "qkd_link", "qkdl_enable"] and segs[1][1]:
            if name != "qkdl_enable":
                raise SdnError("malformed-message", f"body must hold {MODULE}:qkdl_enable")
            self.agent.patch_link(segs[1][1].lower(), {"qkdl_enable": value})
        elif where == ["qkd_applications", "qkd_app"] and key:
            entry = self._one(name, value, "qkd_app")
            entry.setdefault("app_id", key)
            self.agent.register_app(entry, replace_id=key.lower())
        else:
            raise SdnError("operation-not-supported", "PATCH changes a qkd_link (qkdl_enable) or a qkd_app")
        return web.Response(status=204)

    @staticmethod
    def _one(name: str, value: Any, list_name: str) -> dict[str, Any]:
        if name != list_name:
            raise SdnError("malformed-message", f"body must hold {MODULE}:{list_name}")
        if isinstance(value, list) and len(value) == 1:
            value = value[0]
        if not isinstance(value, dict):
            raise SdnError("malformed-message", f"{list_name} must be one entry")
        return value

    def _delete(self, segs: list[tuple[str, str | None]]) -> web.Response:
        where = [s for s, _ in segs]
        key = segs[-1][1] if segs else None
        if where == ["qkd_links", "qkd_link"] and key:
            self.agent.delete_link(key.lower())
        elif where == ["qkd_applications", "qkd_app"] and key:
            self.agent.delete_app(key.lower())
        else:
            raise SdnError("operation-not-supported", "DELETE removes a qkd_link or a qkd_app entry")
        return web.Response(status=204)

    # -- lifecycle ------------------------------------------------------------------------------------------
    async def start(self, host: str, port: int, ssl_context: ssl.SSLContext) -> int:
        """Serve on host:port (0: a free port); returns the bound port."""
        self.runner = web.AppRunner(self.app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
        await self.runner.setup()
        site = web.TCPSite(self.runner, host, port, ssl_context=ssl_context)
        await site.start()
        self.host = host
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.agent.qos.start()
        self.agent._loop = asyncio.get_running_loop()
        return self.port

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None

    @property
    def url(self) -> str:
        """The RESTCONF root."""
        return f"https://{self.host}:{self.port}/restconf"

"""The HTTPS server under the ETSI 014 API: TLS handshakes audited, header timeout, JSON parser errors.

aiohttp alone answers its parser's refusals (a bad method, a request line over 8,190 bytes, too many
headers) in text/plain, has no timeout on a request whose headers trickle in, and the TLS handshake
failures of `loop.create_server(ssl=...)` never reach the application. Here the listening socket is
plain TCP; each connection does its TLS handshake through `loop.start_tls` (so a failure is audited
with the peer's address and OpenSSL's reason) and is then handed to aiohttp's protocol, subclassed
to bound the time headers may take and to word every refusal in the ETSI 014 Error format.
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_server import Server

from node.keymanager.audit import audit

log = logging.getLogger(__name__)

MSG_SERVER = "Error on server side."
PEER_KEY = web.RequestKey("peer", str)  # "address:port" of the client, taken when the request starts
DISCONNECT_AUDITED = web.RequestKey("disconnect_audited", bool)


def json_error(status: int, message: str) -> web.Response:
    """An ETSI 014 Error body (§6.5) that also closes the connection."""
    resp = web.json_response({"message": message}, status=status)
    resp.force_close()
    return resp


def peer_address(transport: asyncio.BaseTransport | None) -> str | None:
    """ "address:port" of a connection's client (None once the connection is gone)."""
    return _peer(transport)


def _peer(transport: asyncio.BaseTransport | None) -> str | None:
    addr = transport.get_extra_info("peername") if transport is not None else None
    return f"{addr[0]}:{addr[1]}" if isinstance(addr, tuple) and len(addr) >= 2 else None


class Etsi014Protocol(RequestHandler):
    """aiohttp's HTTP/1.1 protocol with a header timeout and JSON errors for parser refusals."""

    header_timeout_s = 10.0
    kme = ""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        # a connection that never sends a request (after its TLS handshake) holds a slot like a slow one
        self._header_timer = self._loop.call_later(self.header_timeout_s, self._header_timeout)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._messages or self._current_request is not None:
            self._cancel_header_timer()
        elif data and self._header_timer is None and self.transport is not None:
            # the first bytes of a request whose headers are not complete yet: start the clock
            self._header_timer = self._loop.call_later(self.header_timeout_s, self._header_timeout)

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _header_timeout(self) -> None:
        self._header_timer = None
        transport = self.transport
        if self._messages or self._current_request is not None or transport is None or transport.is_closing():
            return
        audit(
            "request_refused",
            logging.WARNING,
            kme=self.kme,
            peer=_peer(transport),
            status=408,
            reason=f"request line and headers not received within {self.header_timeout_s:g} s",
        )
        body = json.dumps({"message": f"request headers not received within {self.header_timeout_s:g} s"}).encode()
        transport.write(
            b"HTTP/1.1 408 Request Timeout\r\nContent-Type: application/json; charset=utf-8\r\n"
            b"Connection: close\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
        )
        self.force_close()
        transport.close()

    def connection_lost(self, exc: BaseException | None) -> None:
        self._cancel_header_timer()
        super().connection_lost(exc)

    def handle_error(
        self, request: Any, status: int = 500, exc: BaseException | None = None, message: str | None = None
    ) -> web.StreamResponse:
        """Parser refusals and failures outside the API's middleware, as JSON (never text/plain)."""
        peer = _peer(self.transport)
        if isinstance(exc, ConnectionError):
            if not request.get(DISCONNECT_AUDITED):
                audit("client_disconnected", kme=self.kme, peer=peer)
        elif status < 500:
            reason = getattr(exc, "message", None) or message or str(exc or "")
            audit(
                "request_refused",
                logging.WARNING,
                kme=self.kme,
                peer=peer,
                status=status,
                reason=f"HTTP parser: {reason}",
            )
        else:
            log.error("ETSI 014 request from %s failed: %s: %s", peer, type(exc).__name__, exc)
        if request.writer.output_size > 0:
            raise ConnectionError("response already started; cannot send an error response")
        if status < 500:
            text = "malformed HTTP request" if status == 400 else (message or "request refused")
            return json_error(status, text)
        return json_error(503, MSG_SERVER)


class _Etsi014Server(Server):
    """aiohttp's connection factory, making `Etsi014Protocol`s."""

    header_timeout_s = 10.0
    kme = ""

    def __call__(self) -> RequestHandler:
        handler = Etsi014Protocol(self, loop=self._loop, **self._kwargs)
        handler.header_timeout_s = self.header_timeout_s
        handler.kme = self.kme
        return handler


class _TlsGate(asyncio.Protocol):
    """One accepted TCP connection until its TLS handshake is done; then aiohttp's protocol takes over."""

    def __init__(self, site: TlsSite) -> None:
        self.site = site

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        transport.pause_reading()  # start_tls takes the ClientHello
        task = asyncio.get_running_loop().create_task(self.site.upgrade(transport))
        self.site.handshakes.add(task)
        task.add_done_callback(self.site.handshakes.discard)

    def data_received(self, data: bytes) -> None:  # reading is paused until start_tls takes over
        pass


class TlsSite:
    """A listening socket serving an aiohttp application over TLS with audited handshakes."""

    def __init__(self, runner: web.AppRunner, ssl_context: ssl.SSLContext, kme: str, header_timeout_s: float) -> None:
        self.runner = runner
        self.ssl_context = ssl_context
        self.kme = kme
        self.handshake_timeout_s = header_timeout_s
        server = runner.server
        assert server is not None
        server.__class__ = _Etsi014Server  # same state, our protocol factory
        server.header_timeout_s = header_timeout_s  # type: ignore[attr-defined]
        server.kme = kme  # type: ignore[attr-defined]
        self.server = server
        self.handshakes: set[asyncio.Task[None]] = set()
        self._listener: asyncio.base_events.Server | None = None
        self.handshake_failures = 0

    async def start(self, host: str, port: int, backlog: int = 256) -> int:
        """Listen; returns the bound port."""
        self._listener = await asyncio.get_running_loop().create_server(
            lambda: _TlsGate(self), host, port, backlog=backlog
        )
        return self._listener.sockets[0].getsockname()[1]

    async def upgrade(self, transport: asyncio.Transport) -> None:
        """TLS handshake on `transport`, audited if it fails; on success aiohttp serves the connection."""
        peer = _peer(transport)
        handler = self.server()
        try:
            tls = await asyncio.get_running_loop().start_tls(
                transport, handler, self.ssl_context, server_side=True, ssl_handshake_timeout=self.handshake_timeout_s
            )
        except asyncio.CancelledError:
            transport.abort()
            raise
        except (OSError, TimeoutError, ConnectionError, EOFError) as exc:
            self.handshake_failures += 1
            audit("tls_handshake_failed", logging.WARNING, kme=self.kme, peer=peer, reason=_tls_reason(exc))
            transport.abort()
            return
        if tls is None or tls.is_closing():
            return
        handler.connection_made(tls)

    async def cleanup(self) -> None:
        """Stop listening, abort handshakes in progress, close connections, clean up the application."""
        if self._listener is not None:
            self._listener.close()
        for task in list(self.handshakes):
            task.cancel()
        await asyncio.gather(*self.handshakes, return_exceptions=True)
        await self.runner.cleanup()
        if self._listener is not None:
            await self._listener.wait_closed()


def _tls_reason(exc: BaseException) -> str:
    """OpenSSL's reason for a failed handshake (e.g. TLSV1_ALERT_UNKNOWN_CA, certificate verify failed:
    self-signed certificate), or the error's type for a dropped or timed-out connection."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"certificate verify failed: {exc.verify_message}"
    if isinstance(exc, ssl.SSLError) and exc.reason:
        return str(exc.reason)
    if isinstance(exc, TimeoutError):
        return "handshake timed out"
    return type(exc).__name__

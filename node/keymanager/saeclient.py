"""A minimal ETSI GS QKD 014 client (mutual TLS, standard library only): the SAE side of the key
manager's API, for the demos, the relay bench and tests."""

from __future__ import annotations

import http.client
import json
import ssl
from typing import Any


class SaeClient:
    """One SAE talking to its KME: `enc_keys` as master, `dec_keys` as slave."""

    def __init__(self, host_port: str, cert: str, key: str, ca: str, timeout_s: float = 15.0) -> None:
        self.host, _, port = host_port.rpartition(":")
        self.port = int(port)
        self.ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca)
        self.ctx.load_cert_chain(cert, key)
        self.timeout_s = timeout_s

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, dict[str, Any]]:
        conn = http.client.HTTPSConnection(self.host, self.port, context=self.ctx, timeout=self.timeout_s)
        try:
            data = None if body is None else json.dumps(body).encode()
            conn.request(method, path, data, {"Content-Type": "application/json"} if data else {})
            resp = conn.getresponse()
            return resp.status, json.loads(resp.read() or b"{}")
        finally:
            conn.close()

    def enc_keys(self, slave: str, number: int = 1, size: int = 256) -> tuple[int, dict[str, Any]]:
        """Get key (master side): HTTP status and the Key container (or Error)."""
        return self._call("POST", f"/api/v1/keys/{slave}/enc_keys", {"number": number, "size": size})

    def dec_keys(self, master: str, key_ids: list[str]) -> tuple[int, dict[str, Any]]:
        """Get key with key IDs (slave side): HTTP status and the Key container (or Error)."""
        return self._call("POST", f"/api/v1/keys/{master}/dec_keys", {"key_IDs": [{"key_ID": k} for k in key_ids]})

"""The CLI's HTTP client: the standard library's http.client behind the little the tenant
commands use (a JSON request, a status, a body).

Every `hostplane tenant` command pays its imports before it sends anything, and scripts
and `update --wait` users run it often: httpx costs ≈ 50 ms of that start, http.client ≈ 5.
The services, tests and the demo keep httpx. One connection per request: on loopback a
connect is ≈ 0.1 ms, and nothing is ever sent twice on a connection the server closed.
"""

from __future__ import annotations

import http.client
import json as jsonlib
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

HttpError = (OSError, http.client.HTTPException)  # unreachable, refused, reset, timed out, garbled


@dataclass(frozen=True)
class Response:
    status_code: int
    reason_phrase: str
    content: bytes
    headers: dict[str, str] = field(default_factory=dict)  # names in lower case

    def json(self) -> Any:
        return jsonlib.loads(self.content)

    @property
    def text(self) -> str:
        return self.content.decode(errors="replace")


class Http:
    def __init__(self, base_url: str, *, timeout: float, headers: dict[str, str]) -> None:
        url = urlsplit(base_url)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError(f"not an http(s) URL: {base_url!r}")
        self.https, self.host, self.port = url.scheme == "https", url.hostname, url.port
        self.prefix = url.path.rstrip("/")
        self.timeout, self.headers = timeout, headers

    def request(self, method: str, path: str, json: Any = None) -> Response:
        body = None if json is None else jsonlib.dumps(json).encode()
        headers = self.headers | ({"Content-Type": "application/json"} if body is not None else {})
        conn_class = http.client.HTTPSConnection if self.https else http.client.HTTPConnection
        conn = conn_class(self.host, self.port, timeout=self.timeout)
        try:
            conn.request(method, self.prefix + path, body=body, headers=headers)
            resp = conn.getresponse()
            return Response(resp.status, resp.reason, resp.read(), {k.lower(): v for k, v in resp.getheaders()})
        finally:
            conn.close()

    def get(self, path: str) -> Response:
        return self.request("GET", path)

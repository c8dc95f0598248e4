"""What every `/v1/` request passes before any route sees it (pure ASGI, outermost).

1. Bearer token, compared in constant time. A missing or wrong token is 401 before the
   body is read, so nothing an unauthenticated caller sends is parsed or written.
2. Body size: a declared Content-Length over the limit is 413 at once; a streamed body
   is read up to the limit and refused (413) as soon as it passes it. The (small) body
   is then handed to the app from memory.
3. Content type: a body must be JSON (415 otherwise).
Every request is logged once (method, path, status, duration; never headers or bodies).
"""

from __future__ import annotations

import hmac
import json
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import structlog

log = structlog.get_logger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

PROTECTED_PREFIX = "/v1/"
DRAIN_LIMIT_BYTES = 16 * 1024 * 1024


class Guard:
    def __init__(self, app: ASGIApp, token: str, max_body_bytes: int) -> None:
        if len(token) < 16:
            raise ValueError("the API token is missing or too short")
        self.app = app
        self._token = token.encode()
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status: dict[str, int] = {}

        async def tracking_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self._guarded(scope, receive, tracking_send)
        finally:
            log.info("http.request", method=scope["method"], path=scope["path"], status=status.get("code"),
                     ms=round((time.perf_counter() - started) * 1000, 1))

    async def _guarded(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not (scope["path"] + "/").startswith(PROTECTED_PREFIX):
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v for k, v in scope["headers"]}
        if not self._authorized(headers.get("authorization", b"")):
            await _reply(send, 401, "missing or wrong bearer token: send 'Authorization: Bearer <api_token>' "
                                    "(the token is in the platform's credentials.json)",
                         [(b"www-authenticate", b'Bearer realm="hostplane"')])
            return
        declared = headers.get("content-length", b"").decode("latin-1")
        if declared.isdigit() and int(declared) > self.max_body_bytes:
            await _reply(send, 413, _too_large(int(declared), self.max_body_bytes))
            await _drain(receive)
            return
        body = b""
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > self.max_body_bytes:
                await _reply(send, 413, _too_large(len(body), self.max_body_bytes, at_least=more))
                if more:
                    await _drain(receive)
                return
        ctype = headers.get("content-type", b"").decode("latin-1").split(";")[0].strip().lower()
        if body and ctype not in ("application/json", ""):
            await _reply(send, 415, f"send the body as JSON (Content-Type: application/json), not {ctype!r}")
            return
        await self.app(scope, _replay(body, receive), send)

    def _authorized(self, header: bytes) -> bool:
        scheme, _, token = header.partition(b" ")
        # compare_digest on every path: the time taken does not reveal how much matched
        ok = hmac.compare_digest(token.strip(), self._token)
        return ok and scheme.lower() == b"bearer"


def _too_large(size: int, limit: int, at_least: bool = False) -> str:
    more = "more than " if at_least else ""
    return f"the request body is {more}{size} bytes; the limit is {limit} bytes (app specs: 256 KB)"


async def _drain(receive: Receive) -> None:
    """Read (and drop) the rest of a refused body, so the client finishes sending and
    reads the 413 instead of a reset connection. Bounded: past it the server closes."""
    seen = 0
    while seen < DRAIN_LIMIT_BYTES:
        message = await receive()
        if message["type"] != "http.request":
            return
        seen += len(message.get("body", b""))
        if not message.get("more_body", False):
            return


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()  # then wait for the disconnect, as a server would

    return replayed


async def _reply(send: Send, status: int, detail: str, headers: list[tuple[bytes, bytes]] = ()) -> None:
    payload = json.dumps({"detail": detail, "errors": []}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(payload)).encode()), *headers]})
    await send({"type": "http.response.body", "body": payload})

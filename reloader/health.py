"""`/runtime/healthz`: the runtime's own health, on a port of its own.

Answers 200 while the reloader works (it polls, it can start apps) even when the app
is broken, and 503 when the reloader itself is stuck; the body reports the app's state
as well. So "runtime healthy, app unhealthy" reads as a misconfigured app, and only a
sick runtime gets its container replaced (on AWS the container health check probes
this, never the app: one bad artifact must not cost the good version).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from typing import Any

PATH = "/runtime/healthz"
METRICS_PATH = "/metrics"


async def serve_health(host: str, port: int, snapshot: Callable[[], dict[str, Any]],
                       metrics: Callable[[], tuple[bytes, str]] | None = None) -> asyncio.base_events.Server:
    """`metrics`: the /metrics text and content type (reloader.metrics.RuntimeMetrics.exposition)."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            target = request.split(b" ", 2)[1].decode(errors="replace") if request.count(b" ") >= 2 else ""
            ctype = "application/json"
            if target.split("?")[0] == PATH:
                body = snapshot()
                status = "200 OK" if body.get("status") == "ok" else "503 Service Unavailable"
            elif target.split("?")[0] == METRICS_PATH and metrics is not None:  # swaps, swap time, failures, restarts
                body, status = None, "200 OK"
            else:
                body, status = {"error": f"not found; try {PATH} or {METRICS_PATH}"}, "404 Not Found"
            if body is None:
                payload, ctype = metrics()
            else:
                payload = json.dumps(body).encode()
            writer.write(f"HTTP/1.1 {status}\r\ncontent-type: {ctype}\r\ncontent-length: {len(payload)}\r\n"
                         "connection: close\r\n\r\n".encode() + payload)
            await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, asyncio.TimeoutError, ConnectionError):
            pass
        finally:
            with contextlib.suppress(Exception):
                writer.close()

    return await asyncio.start_server(handle, host, port)

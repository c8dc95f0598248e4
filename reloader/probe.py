"""Small GET requests on a local socket: the reloader's health and smoke checks of its app
worker (a private Unix socket) and the runtime agent's probe of each reloader's
/runtime/healthz (a loopback port).

One request per connection (`connection: close`), its answer parsed by h11, the HTTP/1.1
state machine uvicorn serves the app with. httpx did this before; in an idle runtime its
imports alone held 4.5 MB of the tenant's memory (bench/runtime_memory.py), for a GET
on a local socket; and an agent probing 100 reloaders a second spent ≈ 1.5 CPU-ms on each
probe through httpx against ≈ 0.3 here (client and server, measured in one process).
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

import h11

MAX_BODY = 1 << 20  # a health or smoke answer is small; a larger one is not read to its end
READ = 1 << 16


class ProbeError(Exception):
    """No complete answer: refused, reset, malformed or too large."""


class ProbeTimeout(ProbeError):
    """No complete answer in time."""


@dataclass(frozen=True)
class Answer:
    status_code: int
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


Address = str | tuple[str, int]  # a Unix socket's path, or (host, port)


async def get(address: Address, target: str, timeout: float) -> Answer:
    """The answer to `GET target`, within `timeout` seconds for the whole exchange."""
    try:
        return await asyncio.wait_for(_exchange(address, target), timeout)
    except asyncio.TimeoutError:
        raise ProbeTimeout(f"no answer within {timeout:g}s") from None
    except (OSError, h11.ProtocolError) as exc:
        raise ProbeError(f"{type(exc).__name__}: {exc}") from exc


async def _exchange(address: Address, target: str) -> Answer:
    if isinstance(address, str):
        reader, writer = await asyncio.open_unix_connection(address)
    else:
        reader, writer = await asyncio.open_connection(*address)
    try:
        conn = h11.Connection(h11.CLIENT)
        writer.write(conn.send(h11.Request(method="GET", target=target,
                                           headers=[("host", "app"), ("connection", "close")])))
        writer.write(conn.send(h11.EndOfMessage()))
        await writer.drain()
        status, body = 0, bytearray()
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(await reader.read(READ))  # b"" at EOF: h11 then reports the close
            elif isinstance(event, h11.Response):
                status = event.status_code
            elif isinstance(event, h11.Data):
                body += event.data
                if len(body) > MAX_BODY:
                    raise ProbeError(f"answer larger than {MAX_BODY} bytes")
            elif isinstance(event, h11.EndOfMessage):
                return Answer(status, bytes(body))
            elif isinstance(event, h11.ConnectionClosed):
                raise ProbeError("connection closed before an answer")
    finally:
        writer.close()

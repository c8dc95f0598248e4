"""A quick 503 while a runtime has nothing to serve.

When a tenant's release is refused at start and no earlier one serves (a first release
that fails, or a wake whose release fails and has no good one to fall back to), nothing
accepts on the tenant's socket: connections would wait in its backlog until the client
gives up (the edge sets no response timeout), and a woken sleeper's visitors would hang
for its whole idle period. Instead the reloader accepts them itself and answers 503 with
`Retry-After`, until a generation is about to accept (`stop` comes before its accept), so
the two never take turns on one socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket

import structlog

log = structlog.get_logger(__name__)

RETRY_AFTER_S = 5
READ_HEAD_S = 2.0  # a client that sends nothing is answered anyway, then closed
MAX_HEAD = 16 * 1024


def answer(reason: str) -> bytes:
    body = (f"This app is unavailable: {reason}. Its owner sees why in `hostplane tenant show`.\n").encode()
    return (b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain; charset=utf-8\r\n"
            b"retry-after: " + str(RETRY_AFTER_S).encode() + b"\r\ncache-control: no-store\r\n"
            b"content-length: " + str(len(body)).encode() + b"\r\nconnection: close\r\n\r\n" + body)


class Unavailable:
    def __init__(self, listener: socket.socket) -> None:
        self.listener = listener
        self.task: asyncio.Task[None] | None = None
        self.answered = 0

    @property
    def serving(self) -> bool:
        return self.task is not None

    def start(self, reason: str) -> None:
        if self.task is None:
            log.warning("runtime.answering_unavailable", reason=reason)
            self.task = asyncio.create_task(self._accept(answer(reason)))

    async def stop(self) -> None:
        task, self.task = self.task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _accept(self, response: bytes) -> None:
        loop = asyncio.get_running_loop()
        self.listener.setblocking(False)  # workers' copies are non-blocking anyway (asyncio)
        pending: set[asyncio.Task[None]] = set()
        try:
            while True:
                try:
                    conn, _ = await loop.sock_accept(self.listener)
                except OSError as exc:  # e.g. EMFILE: do not spin
                    log.warning("runtime.unavailable_accept_failed", error=type(exc).__name__)
                    await asyncio.sleep(0.5)
                    continue
                task = asyncio.create_task(self._answer(conn, response))
                pending.add(task)
                task.add_done_callback(pending.discard)
        finally:
            for task in pending:
                task.cancel()

    async def _answer(self, conn: socket.socket, response: bytes) -> None:
        loop = asyncio.get_running_loop()
        conn.setblocking(False)
        try:
            with contextlib.suppress(asyncio.TimeoutError, OSError):
                head = b""
                async with asyncio.timeout(READ_HEAD_S):
                    while b"\r\n\r\n" not in head and len(head) < MAX_HEAD:
                        chunk = await loop.sock_recv(conn, 4096)
                        if not chunk:
                            break
                        head += chunk
            with contextlib.suppress(OSError):
                await loop.sock_sendall(conn, response)
                self.answered += 1
        finally:
            conn.close()

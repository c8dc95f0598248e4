"""A client watching one tenant at its edge URL while a fault test breaks things.

In the background, round after round, it asks the tenant's host the same few paths
through Caddy and keeps every answer: the status, the body, `X-Cache`, or the transport
error when no HTTP response came at all. Each round first notes whether PostgreSQL
accepts a connection, so the answers can be read against the outage. `more` names the
paths to ask next from the answers so far (e.g. a v2-only path once /healthz says 2).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import httpx


@dataclass(frozen=True)
class Answer:
    status: int | None  # None: no HTTP response (refused, reset, timed out)
    body: Any = None  # the JSON, or the start of the text
    cache: str | None = None
    error: str | None = None


@dataclass
class Round:
    at: float  # time.monotonic() when the round began
    database_up: bool
    answers: dict[str, Answer] = field(default_factory=dict)


class EdgeWatch:
    def __init__(self, edge_url: str, host: str, dsn: str, paths: list[str],
                 more: Callable[[dict[str, Answer]], list[str]] = lambda _: [], *, every: float = 0.25,
                 timeout: float = 5.0) -> None:
        self.edge_url, self.host, self.dsn, self.paths, self.more = edge_url, host, dsn, paths, more
        self.every, self.timeout = every, timeout
        self.rounds: list[Round] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), name="edge-watch", daemon=True)

    def __enter__(self) -> EdgeWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=3 * self.timeout)

    async def _run(self) -> None:
        async with httpx.AsyncClient(base_url=self.edge_url, headers={"Host": self.host},
                                     timeout=self.timeout) as http:
            while not self._stop.is_set():
                started = time.monotonic()
                now = Round(started, await self._database_up())
                for path in self.paths:
                    now.answers[path] = await self._ask(http, path)
                for path in self.more(now.answers):
                    now.answers[path] = await self._ask(http, path)
                self.rounds.append(now)
                await asyncio.sleep(max(0.0, self.every - (time.monotonic() - started)))

    async def _database_up(self) -> bool:
        try:
            conn = await asyncpg.connect(self.dsn, timeout=2)
        except Exception:  # noqa: BLE001 (refused, starting up, shutting down: all mean "not up")
            return False
        with contextlib.suppress(Exception):
            await conn.close()
        return True

    async def _ask(self, http: httpx.AsyncClient, path: str) -> Answer:
        try:
            resp = await http.get(path)
        except httpx.HTTPError as exc:
            return Answer(None, error=f"{type(exc).__name__}: {exc}"[:200])
        try:
            body = resp.json()
        except ValueError:
            body = resp.text[:200]
        return Answer(resp.status_code, body, resp.headers.get("x-cache"))

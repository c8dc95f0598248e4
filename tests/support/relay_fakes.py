"""The bus side of the outbox relay, faked so a test chooses its failures: `RelayPing` is a
test-only event (not registered: the catalog stays untouched), `RecordingPublisher`
records what it published and fails the event ids it is told to (the relay and replay
rationing tests, against real PostgreSQL)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import ClassVar

from contracts.envelope import Event
from events.publisher import FailedEntry, PublishEntry, PublishError


class RelayPing(Event):
    event_type: ClassVar[str] = "RelayPing"
    schema_version: ClassVar[str] = "1.0"
    pad: str = ""


class RecordingPublisher:
    def __init__(self, failing: Iterable[str] = frozenset(), delay: float = 0.0) -> None:
        self.failing = set(failing)
        self.delay = delay
        self.published: list[str] = []

    async def publish(self, entries: list[PublishEntry]) -> None:
        await asyncio.sleep(self.delay)
        bad = [FailedEntry(e, "InternalFailure: try later") for e in entries if e.event_id in self.failing]
        self.published += [e.event_id for e in entries if e.event_id not in self.failing]
        if bad:
            raise PublishError(bad, 3)

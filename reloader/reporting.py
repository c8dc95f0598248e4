"""Where the reloader reports ReleaseActivated / ReleaseFailed.

On AWS the runtime publishes straight to the bus under its task role, whose PutEvents is
conditioned on its own source `hostplane.runtime.<tenant>` (`BusReporter`, through
events.publisher). Locally it has no credentials at all: it appends its envelopes to a
file in its runtime folder (`FileReporter`, one envelope per line, rotated past
ROTATE_AT) and the runtime agent publishes them (hostplane.local.agent.reports). Tests use
`FileReporter` or `MemoryReporter`. Reporting never blocks or breaks a swap:
a publish failure is logged and the runtime carries on.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import uuid
from pathlib import Path
from typing import Any, Protocol

import structlog

from contracts.envelope import Envelope, Event

log = structlog.get_logger(__name__)
PRODUCER = "reloader"
ROTATE_AT = 1 << 20  # bytes of reports before the file is rotated


class Reporter(Protocol):
    async def report(self, event: Event, *, correlation_id: str | None = None) -> None: ...

    async def close(self) -> None: ...


def envelope(tenant_id: str, event: Event, correlation_id: str | None) -> Envelope[Any]:
    corr = None
    with contextlib.suppress(ValueError, TypeError):
        corr = uuid.UUID(correlation_id) if correlation_id else None
    return Envelope.new(event, tenant_id=tenant_id, producer=PRODUCER, correlation_id=corr)


class MemoryReporter:
    def __init__(self, tenant_id: str) -> None:
        self.tenant_id = tenant_id
        self.envelopes: list[Envelope[Any]] = []

    async def report(self, event: Event, *, correlation_id: str | None = None) -> None:
        self.envelopes.append(envelope(self.tenant_id, event, correlation_id))

    async def close(self) -> None:
        pass


class FileReporter:
    """Appends each envelope as one JSON line (the EventBridge `detail`). Past ROTATE_AT
    the file moves to `<name>.1` (replacing the previous one) and a new one starts: the
    agent reading it finishes the old file first (hostplane.local.agent.reports)."""

    def __init__(self, tenant_id: str, path: Path) -> None:
        self.tenant_id = tenant_id
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)

    async def report(self, event: Event, *, correlation_id: str | None = None) -> None:
        line = envelope(self.tenant_id, event, correlation_id).to_detail() + "\n"
        with contextlib.suppress(FileNotFoundError):
            if self.path.stat().st_size >= ROTATE_AT:
                os.replace(self.path, self.path.with_name(self.path.name + ".1"))
        with open(self.path, "a") as fh:
            fh.write(line)

    async def close(self) -> None:
        pass


class BusReporter:
    """Publishes in the background so a slow or unreachable bus never delays a swap."""

    def __init__(self, tenant_id: str, settings: Any, bus_name: str) -> None:
        from events.publisher import Publisher  # aiobotocore is heavy: only when used

        self.tenant_id = tenant_id
        self.publisher = Publisher(settings, bus_name)
        self.tasks: set[asyncio.Task[None]] = set()

    async def report(self, event: Event, *, correlation_id: str | None = None) -> None:
        task = asyncio.create_task(self._publish(envelope(self.tenant_id, event, correlation_id)))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _publish(self, env: Envelope[Any]) -> None:
        try:
            await self.publisher.publish([env])
            log.info("event.published", event_type=env.event_type, event_id=str(env.event_id))
        except Exception as exc:  # the swap already happened; losing the report must not undo it
            log.error("event.publish_failed", event_type=env.event_type, error=str(exc)[:300])

    async def close(self) -> None:
        if self.tasks:
            await asyncio.wait(self.tasks, timeout=5)


def reporter_from(spec: str, tenant_id: str) -> Reporter:
    """`bus` (the platform's event bus), `file:PATH`, or `none` (log only)."""
    if spec == "bus":
        from events.topology import topology
        from core.settings import Settings

        settings = Settings()
        return BusReporter(tenant_id, settings, topology(settings.name_prefix).bus_name)
    if spec.startswith("file:"):
        return FileReporter(tenant_id, Path(spec[5:]))
    if spec == "none":
        return MemoryReporter(tenant_id)
    raise ValueError(f"unknown event reporter {spec!r}: use bus, file:PATH or none")


def read_events(path: Path) -> list[dict[str, Any]]:
    """The envelopes a FileReporter wrote (for tests and the benchmark)."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

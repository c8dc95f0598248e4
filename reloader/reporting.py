"""Where the reloader reports ReleaseActivated / ReleaseFailed / AppCrashed.

On AWS the runtime publishes straight to the bus under its task role, whose PutEvents is
conditioned on its own source `hostplane.runtime.<tenant>` (`BusReporter`, through
events.publisher). Locally it has no credentials at all: it appends its envelopes to a
file in its runtime folder (`FileReporter`, one envelope per line, rotated past
ROTATE_AT) and the runtime agent publishes them (hostplane.local.agent.reports). Tests use
`FileReporter` or `MemoryReporter`. Reporting never blocks or breaks a swap:
a publish failure is logged and the runtime carries on.

A report is plain data (`Report`), and `detail` writes it as JSON in exactly the shape of
contracts.envelope.Envelope: the file path never loads pydantic, which would be most of
an idle runtime's memory, and the agent parses and validates every line anyway (the file
is the tenant's, so untrusted). The bus and memory reporters read that same line back
with parse_envelope, so every path goes through the one envelope;
tests/unit/test_reloader_reports.py holds `detail` equal to Envelope.new for each type.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import structlog

if TYPE_CHECKING:
    from contracts.envelope import Envelope, Event

log = structlog.get_logger(__name__)
PRODUCER = "reloader"
ROTATE_AT = 1 << 20  # bytes of reports before the file is rotated
# The contracts' declared versions of what the reloader reports, and their limits
# (contracts.fields), held equal to the models by tests/unit/test_reloader_reports.py.
SCHEMA_VERSIONS = {"ReleaseActivated": "1.0", "ReleaseFailed": "1.0", "AppCrashed": "1.0"}
MAX_ERROR_CHARS, MAX_LOG_LINES, MAX_LOG_LINE_CHARS = 2000, 50, 500


class Report:
    """One event the reloader reports: its type and its payload's fields, as the contract
    names them (`Report("ReleaseActivated", version=2, ...)`)."""

    def __init__(self, event_type: str, **data: Any) -> None:
        if event_type not in SCHEMA_VERSIONS:
            raise ValueError(f"the reloader does not report {event_type}")
        self.event_type, self.data = event_type, data

    def __repr__(self) -> str:
        return f"Report({self.event_type!r}, {self.data!r})"


def _clip(text: str, limit: int) -> str:
    """contracts.fields' clipping: the line stays far below the agent's MAX_LINE."""
    return text[: limit - 1] + "…" if len(text) > limit else text


def detail(tenant_id: str, report: Report, correlation_id: str | None) -> str:
    """The envelope of `report` as one JSON line's text (the EventBridge `detail`)."""
    corr = None
    with contextlib.suppress(ValueError, TypeError):
        corr = str(uuid.UUID(correlation_id)) if correlation_id else None
    data = dict(report.data)
    if isinstance(data.get("error"), str):
        data["error"] = _clip(data["error"], MAX_ERROR_CHARS)
    if isinstance(lines := data.get("last_log_lines"), (list, tuple)):
        data["last_log_lines"] = [_clip(str(line), MAX_LOG_LINE_CHARS) for line in lines[-MAX_LOG_LINES:]]
    return json.dumps({
        "event_id": str(uuid.uuid4()), "event_type": report.event_type,
        "schema_version": SCHEMA_VERSIONS[report.event_type],
        "occurred_at": datetime.now(UTC).isoformat().replace("+00:00", "Z"), "tenant_id": tenant_id,
        "correlation_id": corr or str(uuid.uuid4()), "causation_id": None, "producer": PRODUCER,
        "replay_id": None, "incarnation": None, "data": data,
    }, ensure_ascii=False, separators=(",", ":"))


def envelope(tenant_id: str, event: Event, correlation_id: str | None) -> Envelope[Any]:
    """A pydantic event in the reloader's envelope (the agent states sleep and wake this way)."""
    from contracts.envelope import Envelope

    corr = None
    with contextlib.suppress(ValueError, TypeError):
        corr = uuid.UUID(correlation_id) if correlation_id else None
    return Envelope.new(event, tenant_id=tenant_id, producer=PRODUCER, correlation_id=corr)


def parsed(tenant_id: str, report: Report, correlation_id: str | None) -> Envelope[Any]:
    """The envelope as the agent reads it (pydantic: for the bus and for tests)."""
    from contracts.registry import parse_envelope

    return parse_envelope(detail(tenant_id, report, correlation_id))


class Reporter(Protocol):
    async def report(self, report: Report, *, correlation_id: str | None = None) -> None: ...

    async def close(self) -> None: ...


class MemoryReporter:
    def __init__(self, tenant_id: str) -> None:
        self.tenant_id = tenant_id
        self.envelopes: list[Envelope[Any]] = []

    async def report(self, report: Report, *, correlation_id: str | None = None) -> None:
        self.envelopes.append(parsed(self.tenant_id, report, correlation_id))  # raises on a malformed report

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

    async def report(self, report: Report, *, correlation_id: str | None = None) -> None:
        line = detail(self.tenant_id, report, correlation_id) + "\n"
        with contextlib.suppress(FileNotFoundError):
            if self.path.stat().st_size >= ROTATE_AT:
                os.replace(self.path, self.path.with_name(self.path.name + ".1"))
        with open(self.path, "a", encoding="utf-8") as fh:
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

    async def report(self, report: Report, *, correlation_id: str | None = None) -> None:
        task = asyncio.create_task(self._publish(report, correlation_id))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _publish(self, report: Report, correlation_id: str | None) -> None:
        try:
            env = parsed(self.tenant_id, report, correlation_id)
            await self.publisher.publish([env])
            log.info("event.published", event_type=env.event_type, event_id=str(env.event_id))
        except Exception as exc:  # the swap already happened; losing the report must not undo it
            log.error("event.publish_failed", event_type=report.event_type, error=str(exc)[:300])

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
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]

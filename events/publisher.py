"""Publish envelopes to the EventBridge bus, never dropping one silently.

PutEvents accepts at most 10 entries and 256 KB per call, and can reject part of a batch
while the call itself succeeds (`FailedEntryCount`, an `ErrorCode` per entry). So entries
are packed greedily within both limits, every entry's result is checked, only the
rejected ones are retried with exponential backoff, and what still fails after the last
attempt is raised as `PublishError` naming each event. The other batches are still sent,
so the caller (the outbox relay) knows exactly which events went out.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import structlog
from tenacity import AsyncRetrying, RetryError, retry_if_exception_type, stop_after_attempt
from tenacity.wait import wait_base, wait_exponential_jitter

from contracts.envelope import Envelope
from core.aws import aws_client
from core.settings import Settings

log = structlog.get_logger(__name__)

MAX_ENTRIES_PER_CALL = 10
MAX_BYTES_PER_CALL = 256 * 1024


@dataclass(frozen=True)
class PublishEntry:
    """One PutEvents entry, plus the envelope identity used to report failures."""

    event_id: str
    replay_id: str | None
    source: str
    detail_type: str
    detail: str

    @classmethod
    def from_envelope(cls, envelope: Envelope[Any]) -> PublishEntry:
        return cls(
            event_id=str(envelope.event_id),
            replay_id=str(envelope.replay_id) if envelope.replay_id else None,
            source=envelope.source,
            detail_type=envelope.event_type,
            detail=envelope.to_detail(),
        )

    @property
    def label(self) -> str:
        replay = f" (replay {self.replay_id})" if self.replay_id else ""
        return f"{self.detail_type} {self.event_id}{replay}"

    def size(self) -> int:
        """Entry size as EventBridge computes it: UTF-8 bytes of Source, DetailType and
        Detail (no Time, Resources or TraceHeader set here)."""
        return sum(len(s.encode()) for s in (self.source, self.detail_type, self.detail))

    def to_aws(self, bus_name: str) -> dict[str, str]:
        return {
            "Source": self.source,
            "DetailType": self.detail_type,
            "Detail": self.detail,
            "EventBusName": bus_name,
        }


@dataclass(frozen=True)
class FailedEntry:
    entry: PublishEntry
    error: str


class PublishError(RuntimeError):
    """Some events were not published after every retry. `failed` names them."""

    def __init__(self, failed: Sequence[FailedEntry], attempts: int | None = None) -> None:
        self.failed = list(failed)
        tries = f" after {attempts} attempts" if attempts else ""
        shown = "; ".join(f"{f.entry.label}: {f.error}" for f in self.failed[:10])
        more = f"; and {len(self.failed) - 10} more" if len(self.failed) > 10 else ""
        super().__init__(f"{len(self.failed)} event(s) not published{tries}: {shown}{more}")


class EventTooLarge(PublishError):
    """An entry over EventBridge's 256 KB limit: it can never be published as is."""

    def __init__(self, failed: Sequence[FailedEntry]) -> None:
        super().__init__(failed)


def oversized(entries: Sequence[PublishEntry]) -> list[FailedEntry]:
    return [
        FailedEntry(e, f"entry is {e.size()} bytes, EventBridge accepts at most {MAX_BYTES_PER_CALL}")
        for e in entries
        if e.size() > MAX_BYTES_PER_CALL
    ]


def batches(entries: Sequence[PublishEntry]) -> list[list[PublishEntry]]:
    """Pack entries in order into calls of ≤10 entries and ≤256 KB."""
    out: list[list[PublishEntry]] = []
    current: list[PublishEntry] = []
    size = 0
    for entry in entries:
        n = entry.size()
        if current and (len(current) == MAX_ENTRIES_PER_CALL or size + n > MAX_BYTES_PER_CALL):
            out.append(current)
            current, size = [], 0
        current.append(entry)
        size += n
    if current:
        out.append(current)
    return out


class _Rejected(Exception):
    """Internal: some entries of a call failed; tenacity retries just these."""

    def __init__(self, failed: list[FailedEntry]) -> None:
        super().__init__(f"{len(failed)} entries rejected")
        self.failed = failed


class Publisher:
    """Async PutEvents publisher for one bus. Use as `async with Publisher(...) as pub`
    to keep one client open, or call `publish` directly (a client per call)."""

    def __init__(
        self,
        settings: Settings,
        bus_name: str,
        *,
        max_attempts: int = 5,
        wait: wait_base | None = None,
        client: Any = None,
    ) -> None:
        self.settings = settings
        self.bus_name = bus_name
        self.max_attempts = max_attempts
        self.wait = wait or wait_exponential_jitter(multiplier=0.2, max=5.0, jitter=0.2)
        self._client = client
        self._stack: contextlib.AsyncExitStack | None = None

    async def __aenter__(self) -> Publisher:
        if self._client is None:
            self._stack = contextlib.AsyncExitStack()
            self._client = await self._stack.enter_async_context(aws_client("events", self.settings))
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._stack is not None:
            await self._stack.aclose()
            self._stack, self._client = None, None

    async def publish(self, items: Sequence[Envelope[Any] | PublishEntry]) -> None:
        """Publish every item or raise: `EventTooLarge` before any call, else `PublishError`
        listing the events still rejected after `max_attempts` (the rest were published)."""
        entries = [i if isinstance(i, PublishEntry) else PublishEntry.from_envelope(i) for i in items]
        if too_big := oversized(entries):
            raise EventTooLarge(too_big)
        if not entries:
            return
        if self._client is None:  # not entered: a client for this call alone. Entering `self` here
            # let two concurrent calls share one half-made client, and the first to finish closed
            # the other's mid-call (a runtime agent's round waited on it forever).
            async with aws_client("events", self.settings) as client:
                return await self._publish(entries, client)
        await self._publish(entries, self._client)

    async def _publish(self, entries: list[PublishEntry], client: Any) -> None:
        failed: list[FailedEntry] = []
        for batch in batches(entries):
            failed += await self._send(batch, client)
        if failed:
            raise PublishError(failed, self.max_attempts)
        log.debug("events.published", count=len(entries), bus=self.bus_name)

    async def _send(self, batch: list[PublishEntry], client: Any) -> list[FailedEntry]:
        """Send one batch, retrying rejected entries; return those that never got through."""
        pending = batch
        last: list[FailedEntry] = []
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.max_attempts),
            wait=self.wait,
            retry=retry_if_exception_type(_Rejected),
        )
        try:
            async for attempt in retrying:
                with attempt:
                    pending, last = await self._put(pending, client)
                    if last:
                        log.warning(
                            "events.publish_rejected",
                            attempt=attempt.retry_state.attempt_number,
                            failed=[f"{f.entry.label}: {f.error}" for f in last],
                        )
                        raise _Rejected(last)
        except RetryError:
            return last
        return []

    async def _put(self, entries: list[PublishEntry], client: Any) -> tuple[list[PublishEntry], list[FailedEntry]]:
        try:
            result = await client.put_events(Entries=[e.to_aws(self.bus_name) for e in entries])
        except Exception as exc:  # the whole call failed (network, throttling past botocore's retries)
            error = f"{type(exc).__name__}: {exc}"
            return entries, [FailedEntry(e, error) for e in entries]
        results = result.get("Entries", [])
        if len(results) != len(entries):
            error = f"PutEvents answered {len(results)} results for {len(entries)} entries"
            return entries, [FailedEntry(e, error) for e in entries]
        failed = [
            FailedEntry(e, f"{r['ErrorCode']}: {r.get('ErrorMessage', '')}".rstrip(": "))
            for e, r in zip(entries, results, strict=True)
            if r.get("ErrorCode") or not r.get("EventId")
        ]
        return [f.entry for f in failed], failed

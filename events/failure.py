"""A stage's permanent failure: work that redelivering the event cannot fix (a spec the
builder cannot compile, a migration the plan refuses, a host another tenant routes).

A handler raises `PermanentFailure(step, error, **details)`; the consumer commits the
service's declared *Failed event for it (contracts.failures_v1.SERVICE_FAILURES, with
`retryable=False`) in the same inbox transaction, so every service reports a failure the
same way and none writes its own. Anything else a handler raises is transient: the message
is retried, then dead-lettered (MessageDeadLettered).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import structlog

from contracts.envelope import Envelope, Event
from contracts.failures_v1 import SERVICE_FAILURES, Failure

log = structlog.get_logger(__name__)

# A service's handler: the event and the service's deps in, the events it emits out.
Handler = Callable[[Envelope[Any], Any], Awaitable[Sequence[Event | Envelope[Any]] | None]]


class PermanentFailure(Exception):
    """`step`: which part of the stage failed; `error`: what a person reads (no secrets);
    `details`: the service's failure event's own fields (a version, a spec digest)."""

    def __init__(self, step: str, error: str, **details: Any) -> None:
        super().__init__(f"{step}: {error}")
        self.step, self.error, self.details = step, error, details

    def event(self, service: str) -> Failure:
        """The failure event `service` declares, for this failure."""
        return SERVICE_FAILURES[service](stage=self.step, error=self.error, retryable=False, **self.details)


async def handled(service: str, handler: Handler, envelope: Envelope[Any], deps: Any) -> list[Event | Envelope[Any]]:
    """What `handler` emits for `envelope`, as `service`'s consumer runs it: a
    PermanentFailure becomes the service's declared failure event; anything else it
    raises propagates (a retry)."""
    try:
        return list(await handler(envelope, deps) or ())
    except PermanentFailure as failed:
        log.warning("stage.failed", step=failed.step, error=failed.error)
        return [failed.event(service)]

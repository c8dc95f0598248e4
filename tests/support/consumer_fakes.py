"""A fake SQS queue and a fake inbox for the event consumer (no servers), with a test-only
`Ping` event and the helpers to run a consumer over them until a condition holds. Shared by
the consumer's own tests, the replay-semantics tests and the producer-check tests."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, ClassVar

from contracts.envelope import Envelope, Event
from core.settings import Settings
from events.consumer import Consumer, ConsumerOptions
from events.inbox import TenantLocks
from events.topology import QueueSpec, Topology

SERVICE = "builder"
TOPOLOGY = Topology(bus_name="b", archive_name="a", queues=(QueueSpec(SERVICE, "q", "q-dlq"),), rules=())


class Ping(Event):  # a test-only payload, not registered: the catalog stays untouched
    event_type: ClassVar[str] = "UnitPing"
    schema_version: ClassVar[str] = "1.0"
    producers: ClassVar[tuple[str, ...]] = ("api",)
    n: int = 0


class FakeSQS:
    """Just enough SQS: visibility, receive counts, receipt handles, a short long-poll."""

    def __init__(self) -> None:
        self.messages: dict[str, dict[str, Any]] = {}
        self.deleted: list[str] = []
        self.visibility_calls: list[tuple[str, int]] = []
        self._ids = itertools.count(1)

    def send(self, envelope: Envelope[Any] | None = None, body: str | None = None) -> str:
        mid = f"m{next(self._ids)}"
        if body is None:
            body = json.dumps({"id": f"eb-{mid}", "detail-type": envelope.event_type,
                               "source": envelope.source, "detail": json.loads(envelope.to_detail())})
        self.messages[mid] = {"body": body, "visible_at": 0.0, "receives": 0, "receipt": None}
        return mid

    async def get_queue_url(self, QueueName: str) -> dict[str, str]:  # noqa: N803
        return {"QueueUrl": f"fake://{QueueName}"}

    async def receive_message(self, **kw: Any) -> dict[str, Any]:
        out = []
        now = time.monotonic()
        for mid, m in self.messages.items():
            if len(out) < kw["MaxNumberOfMessages"] and m["visible_at"] <= now:
                m["receives"] += 1
                m["receipt"] = f"{mid}#{m['receives']}"
                m["visible_at"] = now + kw["VisibilityTimeout"]
                out.append({"MessageId": mid, "ReceiptHandle": m["receipt"], "Body": m["body"],
                            "Attributes": {"ApproximateReceiveCount": str(m["receives"])}})
        if not out:
            await asyncio.sleep(0.01)
        return {"Messages": out} if out else {}

    def _by_receipt(self, receipt: str) -> tuple[str, dict[str, Any]]:
        mid = receipt.split("#")[0]
        m = self.messages[mid]
        assert m["receipt"] == receipt, "stale receipt handle"
        return mid, m

    async def delete_message(self, QueueUrl: str, ReceiptHandle: str) -> None:  # noqa: N803
        mid, _ = self._by_receipt(ReceiptHandle)
        del self.messages[mid]
        self.deleted.append(mid)

    async def change_message_visibility(  # noqa: N803
        self, QueueUrl: str, ReceiptHandle: str, VisibilityTimeout: int
    ) -> None:
        mid, m = self._by_receipt(ReceiptHandle)
        m["visible_at"] = time.monotonic() + VisibilityTimeout
        self.visibility_calls.append((mid, VisibilityTimeout))


class FakeTx:
    def __init__(self, inbox: FakeInbox) -> None:
        self.inbox = inbox
        self.pending: tuple[str, list[Envelope[Any]]] | None = None

    async def seen(self, envelope: Envelope[Any]) -> bool:
        return envelope.dedup_key in self.inbox.keys

    async def complete(self, envelope: Envelope[Any], emitted: list[Envelope[Any]]) -> None:
        self.pending = (envelope.dedup_key, list(emitted))


class FakeInbox:
    """Commits only when the block exits cleanly, like the real transaction."""

    def __init__(self) -> None:
        self.keys: set[str] = set()
        self.outbox: list[Envelope[Any]] = []
        self.locks = TenantLocks()

    @contextlib.asynccontextmanager
    async def exclusive(self, tenant_id: str) -> AsyncIterator[FakeTx]:
        async with self.locks.hold(tenant_id):
            tx = FakeTx(self)
            yield tx
            if tx.pending:
                self.keys.add(tx.pending[0])
                self.outbox += tx.pending[1]


def ping(tenant: str = "acme", n: int = 0) -> Envelope[Any]:
    return Envelope.new(Ping(n=n), tenant_id=tenant, producer="api")


def make(handler: Callable[..., Any] | None, sqs: FakeSQS, inbox: FakeInbox, **options: Any) -> Consumer:
    opts = ConsumerOptions(**({"wait_time_s": 0, "visibility_timeout_s": 30, "grace_period_s": 2} | options))
    return Consumer(SERVICE, {Ping: handler}, {"dep": 1}, None, Settings(), TOPOLOGY, concurrency=4,
                    options=opts, sqs=sqs, inbox=inbox)


async def until(cond: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


@contextlib.asynccontextmanager
async def running(consumer: Consumer) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(consumer.run())
    try:
        yield task
    finally:
        consumer.stop()
        await asyncio.wait_for(task, 10)

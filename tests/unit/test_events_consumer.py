"""Consumer logic against a fake SQS queue and a fake inbox (no servers)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any, ClassVar

import structlog

from contracts.envelope import Envelope, Event
from contracts.failures_v1 import BuildFailed
from events.consumer import Consumer, ConsumerOptions
from events.failure import PermanentFailure
from events.topology import QueueSpec, Topology
from core.settings import Settings
from tests.support.consumer_fakes import SERVICE, FakeInbox, FakeSQS, Ping, make, ping, running, until


class Pong(Event):  # a test-only payload, not registered: the catalog stays untouched
    event_type: ClassVar[str] = "UnitPong"
    schema_version: ClassVar[str] = "1.0"
    producers: ClassVar[tuple[str, ...]] = ("api",)
    n: int = 0


async def test_success_runs_handler_then_deletes_and_emits_wrapped_events():
    sqs, inbox, seen = FakeSQS(), FakeInbox(), []

    async def handler(env, deps):
        assert sqs.deleted == [], "deleted before the handler finished"
        seen.append((env, deps, structlog.contextvars.get_contextvars()))
        return [Pong(n=env.data.n + 1)]

    cause = ping(n=41)
    mid = sqs.send(cause)
    async with running(make(handler, sqs, inbox)):
        await until(lambda: sqs.deleted == [mid])
    env, deps, ctx = seen[0]
    assert isinstance(env.data, Ping) and env.data.n == 41 and deps == {"dep": 1}
    assert ctx["tenant_id"] == "acme" and ctx["correlation_id"] == str(cause.correlation_id)
    assert ctx["event_type"] == "UnitPing" and ctx["event_id"] == str(cause.event_id)
    [out] = inbox.outbox
    assert out.data == Pong(n=42) and out.tenant_id == "acme" and out.producer == SERVICE
    assert out.correlation_id == cause.correlation_id and out.causation_id == cause.event_id


async def test_failure_keeps_the_message_with_a_short_backoff():
    sqs, inbox = FakeSQS(), FakeInbox()
    calls = []

    async def handler(env, deps):
        calls.append(1)
        raise RuntimeError("boom")

    mid = sqs.send(ping())
    async with running(make(handler, sqs, inbox, retry_delay_s=0.5)):
        await until(lambda: len(calls) >= 3)
    assert sqs.deleted == [] and mid in sqs.messages
    assert inbox.keys == set() and inbox.outbox == []
    # backoff doubles per receive: 0.5 → int 0, 1, 2
    assert [v for m, v in sqs.visibility_calls if m == mid][:3] == [0, 1, 2]


async def test_a_permanent_failure_is_handled_once_as_the_services_failure_event():
    sqs, inbox, calls = FakeSQS(), FakeInbox(), []

    async def handler(env, deps):
        calls.append(env)
        raise PermanentFailure("generate", "entity 'Order' has no fields", spec_sha256="ab" * 32)

    cause = ping()
    mid = sqs.send(cause)
    async with running(make(handler, sqs, inbox)):
        await until(lambda: sqs.deleted == [mid])
    assert len(calls) == 1, "not retried"
    [out] = inbox.outbox  # committed with the inbox mark, as the builder's declared failure
    assert out.data == BuildFailed(stage="generate", error="entity 'Order' has no fields", retryable=False,
                                   spec_sha256="ab" * 32)
    assert out.producer == SERVICE and out.causation_id == cause.event_id


async def test_unknown_type_is_deleted_without_a_handler():
    sqs, inbox, calls = FakeSQS(), FakeInbox(), []

    async def handler(env, deps):
        calls.append(env)

    mid = sqs.send(Envelope.new(Pong(n=1), tenant_id="acme", producer="api"))
    async with running(make(handler, sqs, inbox)):
        await until(lambda: sqs.deleted == [mid])
    assert calls == []


async def test_other_major_version_is_not_given_to_the_v1_handler():
    sqs, inbox, calls = FakeSQS(), FakeInbox(), []

    async def handler(env, deps):
        calls.append(env)

    detail = json.loads(ping().to_detail()) | {"schema_version": "2.0"}
    mid = sqs.send(body=json.dumps({"detail": detail}))
    async with running(make(handler, sqs, inbox)):
        await until(lambda: sqs.deleted == [mid])
    assert calls == []


async def test_duplicate_delivery_runs_the_handler_once_and_a_replay_again():
    sqs, inbox, calls = FakeSQS(), FakeInbox(), []

    async def handler(env, deps):
        calls.append(env.replay_id)
        return []

    env = ping()
    first, dup = sqs.send(env), sqs.send(env)
    async with running(make(handler, sqs, inbox)) as _:
        await until(lambda: set(sqs.deleted) == {first, dup})
        replayed = sqs.send(env.as_replay())
        await until(lambda: replayed in sqs.deleted)
    assert calls[0] is None and len(calls) == 2 and calls[1] is not None


async def test_malformed_message_is_kept_for_the_dlq():
    sqs, inbox = FakeSQS(), FakeInbox()
    mid = sqs.send(body="not json")
    async with running(make(lambda e, d: None, sqs, inbox, retry_delay_s=5)):
        await until(lambda: sqs.visibility_calls)
    assert mid in sqs.messages and sqs.visibility_calls[0] == (mid, 5)


async def test_heartbeat_extends_visibility_while_the_handler_runs():
    sqs, inbox = FakeSQS(), FakeInbox()

    async def handler(env, deps):
        await asyncio.sleep(0.5)
        return []

    mid = sqs.send(ping())
    async with running(make(handler, sqs, inbox, heartbeat_s=0.1)):
        await until(lambda: sqs.deleted == [mid])
    extensions = [v for m, v in sqs.visibility_calls if m == mid]
    assert len(extensions) >= 3 and set(extensions) == {30}


async def test_one_tenant_at_a_time_other_tenants_in_parallel():
    sqs, inbox = FakeSQS(), FakeInbox()
    active: dict[str, int] = {}
    peak: dict[str, int] = {}
    together = []

    async def handler(env, deps):
        t = env.tenant_id
        active[t] = active.get(t, 0) + 1
        peak[t] = max(peak.get(t, 0), active[t])
        together.append(sum(1 for v in active.values() if v))
        await asyncio.sleep(0.1)
        active[t] -= 1
        return []

    for i in range(3):
        sqs.send(ping("acme", i))
        sqs.send(ping("globex", i))
    async with running(make(handler, sqs, inbox)):
        await until(lambda: len(sqs.deleted) == 6)
    assert peak == {"acme": 1, "globex": 1}
    assert max(together) == 2
    assert len(inbox.locks) == 0  # per-tenant locks are dropped once unused


async def test_shutdown_finishes_short_handlers_and_releases_long_ones():
    sqs, inbox = FakeSQS(), FakeInbox()
    started = []

    async def handler(env, deps):
        started.append(env.data.n)
        await asyncio.sleep(0.2 if env.data.n == 1 else 30)
        return []

    quick, slow = sqs.send(ping("acme", 1)), sqs.send(ping("globex", 2))
    consumer = make(handler, sqs, inbox, grace_period_s=1)
    task = asyncio.create_task(consumer.run())
    await until(lambda: len(started) == 2)
    consumer.stop()
    await asyncio.wait_for(task, 5)
    assert sqs.deleted == [quick]
    assert (slow, 0) in sqs.visibility_calls and slow in sqs.messages


async def test_wrap_keeps_tenant_and_correlation_and_sets_causation():
    consumer = make(None, FakeSQS(), FakeInbox())
    cause = ping("acme")
    out = consumer.wrap(Pong(n=1), cause)
    assert (out.tenant_id, out.correlation_id, out.causation_id) == ("acme", cause.correlation_id, cause.event_id)
    assert out.event_id != cause.event_id and out.source == f"hostplane.{SERVICE}" and out.replay_id is None


async def test_sigterm_stops_receiving_and_lets_the_handler_finish():
    import os
    import signal

    sqs, inbox, done = FakeSQS(), FakeInbox(), []

    async def handler(env, deps):
        await asyncio.sleep(0.3)
        done.append(env.event_id)
        return []

    consumer = make(handler, sqs, inbox)
    task = asyncio.create_task(consumer.run(handle_signals=True))
    mid = sqs.send(ping())
    await until(lambda: any(m["receives"] for m in sqs.messages.values()))  # signal handler is in place
    os.kill(os.getpid(), signal.SIGTERM)
    await asyncio.wait_for(task, 5)
    assert consumer.stopping and sqs.deleted == [mid] and len(done) == 1
    late = sqs.send(ping())
    await asyncio.sleep(0.1)
    assert sqs.messages[late]["receives"] == 0  # nothing is received after the stop


class FakePool:
    """Captures what the consumer writes to the outbox outside the inbox transaction."""

    def __init__(self) -> None:
        self.rows: list[tuple[Any, ...]] = []

    @contextlib.asynccontextmanager
    async def acquire(self) -> AsyncIterator[FakePool]:
        yield self

    def transaction(self) -> contextlib.AbstractAsyncContextManager[None]:
        return contextlib.nullcontext()  # type: ignore[return-value]

    async def executemany(self, _sql: str, rows: list[tuple[Any, ...]]) -> None:
        self.rows += rows


async def test_last_receive_failure_announces_the_dead_letter_without_marking_the_inbox():
    sqs, inbox, pool, calls = FakeSQS(), FakeInbox(), FakePool(), []

    async def handler(env, deps):
        calls.append(1)
        raise RuntimeError("cannot reach postgresql://t_acme:hunter2-secret@127.0.0.1/t_acme")

    opts = ConsumerOptions(wait_time_s=0, visibility_timeout_s=30, grace_period_s=2, retry_delay_s=0)
    topo = Topology(bus_name="b", archive_name="a", queues=(QueueSpec(SERVICE, "q", "q-dlq", max_receives=3),),
                    rules=())
    consumer = Consumer(SERVICE, {Ping: handler}, None, pool, Settings(), topo, options=opts, sqs=sqs, inbox=inbox)
    cause = ping()
    sqs.send(cause)
    async with running(consumer):
        await until(lambda: len(calls) >= 4 and pool.rows)
    assert inbox.keys == set(), "a redrive must still run the handler"
    details = [json.loads(next(v for v in row if isinstance(v, str) and v.startswith("{"))) for row in pool.rows]
    notices = [d for d in details if d["event_type"] == "MessageDeadLettered"]
    assert 1 <= len(notices) <= len(calls) - 2, "notices only for receives at or beyond the last"
    assert all(n["data"]["receives"] >= 3 for n in notices)
    data = notices[0]["data"]
    assert data["service"] == SERVICE and data["stage"] == "building" and data["receives"] == 3
    assert data["failed_event_type"] == "UnitPing" and data["failed_event_id"] == str(cause.event_id)
    assert "hunter2-secret" not in json.dumps(notices) and "RuntimeError" in data["error"]
    assert notices[0]["correlation_id"] == str(cause.correlation_id)

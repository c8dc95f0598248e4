"""Publisher: PutEvents batching within EventBridge's limits, per-entry results, retries."""

from __future__ import annotations

from typing import Any, ClassVar

import pytest
from tenacity import wait_none

from contracts.envelope import Envelope, Event
from events.publisher import (
    MAX_BYTES_PER_CALL,
    EventTooLarge,
    PublishEntry,
    Publisher,
    PublishError,
    batches,
)
from core.settings import Settings


class Ping(Event):  # test-only payload; not registered, so the catalog stays untouched
    event_type: ClassVar[str] = "UnitPing"
    schema_version: ClassVar[str] = "1.0"
    n: int = 0
    pad: str = ""


def envelope(n: int = 0, pad: int = 0) -> Envelope[Any]:
    return Envelope.new(Ping(n=n, pad="x" * pad), tenant_id="acme", producer="api")


class FakeEvents:
    """PutEvents that records calls and rejects entries as `reject(entry, call_no)` says."""

    def __init__(self, reject=lambda detail, call: None, raise_on: set[int] = frozenset()) -> None:
        self.calls: list[list[dict[str, str]]] = []
        self.reject = reject
        self.raise_on = raise_on

    async def put_events(self, Entries: list[dict[str, str]]) -> dict[str, Any]:  # noqa: N803
        self.calls.append(Entries)
        call = len(self.calls)
        if call in self.raise_on:
            raise ConnectionError("connection reset")
        results = []
        for e in Entries:
            code = self.reject(e["Detail"], call)
            results.append({"ErrorCode": code, "ErrorMessage": "try later"} if code else {"EventId": f"eb-{call}"})
        return {"FailedEntryCount": sum(1 for r in results if "ErrorCode" in r), "Entries": results}


def publisher(fake: FakeEvents, attempts: int = 3) -> Publisher:
    return Publisher(Settings(), "bus", max_attempts=attempts, wait=wait_none(), client=fake)


def published_ids(fake: FakeEvents, call: int) -> list[str]:
    import json

    return [json.loads(e["Detail"])["event_id"] for e in fake.calls[call]]


async def test_eleven_entries_take_two_calls():
    fake = FakeEvents()
    await publisher(fake).publish([envelope(i) for i in range(11)])
    assert [len(c) for c in fake.calls] == [10, 1]
    assert all(e["EventBusName"] == "bus" and e["DetailType"] == "UnitPing" for e in fake.calls[0])
    assert fake.calls[0][0]["Source"] == "hostplane.api"


async def test_big_entries_are_split_by_bytes():
    envs = [envelope(i, pad=100_000) for i in range(5)]  # ~100 KB each: two fit in 256 KB
    fake = FakeEvents()
    await publisher(fake).publish(envs)
    assert [len(c) for c in fake.calls] == [2, 2, 1]
    for call in fake.calls:
        assert sum(len((e["Source"] + e["DetailType"] + e["Detail"]).encode()) for e in call) <= MAX_BYTES_PER_CALL


def test_entry_size_counts_utf8_bytes_of_source_type_and_detail():
    entry = PublishEntry("id", None, "hostplane.api", "UnitPing", '{"x": "é"}')
    assert entry.size() == len("hostplane.api") + len("UnitPing") + len('{"x": "é"}') + 1


def test_batches_never_exceed_limits_in_order():
    entries = [PublishEntry(str(i), None, "s", "t", "x" * (i * 6_000)) for i in range(40)]
    packed = batches(entries)
    assert [e for b in packed for e in b] == entries
    assert all(len(b) <= 10 and sum(e.size() for e in b) <= MAX_BYTES_PER_CALL for b in packed)


async def test_oversized_entry_raises_before_any_call():
    fake = FakeEvents()
    big = envelope(1, pad=MAX_BYTES_PER_CALL)
    with pytest.raises(EventTooLarge, match=str(big.event_id)):
        await publisher(fake).publish([envelope(0), big])
    assert fake.calls == []


async def test_partial_failure_retries_only_the_failed_entries():
    envs = [envelope(i) for i in range(4)]
    flaky = str(envs[2].event_id)
    fake = FakeEvents(reject=lambda detail, call: "ThrottlingException" if flaky in detail and call == 1 else None)
    await publisher(fake).publish(envs)
    assert len(fake.calls) == 2
    assert published_ids(fake, 1) == [flaky]


async def test_persistent_failure_raises_naming_the_event_after_bounded_attempts():
    envs = [envelope(i) for i in range(12)]  # two batches; one entry of the first always fails
    bad = str(envs[3].event_id)
    fake = FakeEvents(reject=lambda detail, call: "InternalFailure" if bad in detail else None)
    with pytest.raises(PublishError) as info:
        await publisher(fake, attempts=3).publish(envs)
    assert [f.entry.event_id for f in info.value.failed] == [bad]
    assert bad in str(info.value) and "InternalFailure" in str(info.value)
    # 1 call + 2 retries of the bad entry for batch one, then batch two still went out
    assert [len(c) for c in fake.calls] == [10, 1, 1, 2]


async def test_call_errors_are_retried_then_succeed():
    fake = FakeEvents(raise_on={1})
    await publisher(fake).publish([envelope(1), envelope(2)])
    assert [len(c) for c in fake.calls] == [2, 2]


async def test_call_errors_past_the_last_attempt_raise():
    fake = FakeEvents(raise_on={1, 2, 3})
    with pytest.raises(PublishError, match="ConnectionError"):
        await publisher(fake, attempts=3).publish([envelope(1)])
    assert len(fake.calls) == 3


async def test_concurrent_publishes_without_an_entered_client_each_finish_on_a_live_client(monkeypatch):
    """The runtime agent publishes its facts and relays reports at the same time through one
    Publisher it never entered. Both calls used to enter `self`: the second replaced the
    first's half-made client, and the first to finish closed the other's mid-call."""
    import asyncio
    import contextlib

    import events.publisher as module

    clients: list[FakeEvents] = []

    class ClosingEvents(FakeEvents):
        closed = False

        async def put_events(self, Entries):  # noqa: N803
            await asyncio.sleep(0.01)  # the other caller runs meanwhile
            if self.closed:
                raise RuntimeError("Session is closed")
            return await super().put_events(Entries)

    @contextlib.asynccontextmanager
    async def fake_client(service, settings):
        await asyncio.sleep(0.01)  # opening a client yields, as aiobotocore's does
        client = ClosingEvents()
        clients.append(client)
        try:
            yield client
        finally:
            client.closed = True

    monkeypatch.setattr(module, "aws_client", fake_client)
    pub = Publisher(Settings(), "bus", max_attempts=1, wait=wait_none())
    await asyncio.gather(pub.publish([envelope(1)]), pub.publish([envelope(2)]))
    assert sorted(len(c.calls) for c in clients) == [1, 1], "each call sent once, on a client still open"
    assert all(c.closed for c in clients), "no client left open"

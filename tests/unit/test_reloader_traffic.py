"""Requests served, counted by real app workers on loopback across a hot swap and an exit,
and the RequestsPerTask metric the reloader publishes from them (fake CloudWatch)."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import tempfile
import time
from datetime import UTC, datetime, timedelta
from functools import partial

import httpx
import pytest
from structlog.testing import capture_logs

from artifacts.store import ArtifactStore
from core.aws import aws_client
from reloader import traffic
from reloader.config import RuntimeConfig, Scrubber
from reloader.generation import AppProcess
from reloader.health import serve_health
from reloader.reporting import MemoryReporter
from reloader.runtime import Runtime, open_listener
from tests.support.sample_app import SampleApp
from reloader.traffic import RequestCount, RequestsPerTask, requests_metric_from

MINUTE = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


# --- counting, through real workers -----------------------------------------------------------


@pytest.fixture
def app_env(tmp_path):
    """A store with releases 1 and 2, the shared listener, and a short socket folder."""
    store = ArtifactStore(tmp_path / "artifacts")
    for version in (1, 2):
        store.publish_release("acme", version, SampleApp(version=version).zipapp())
    listener = open_listener("127.0.0.1", 0)
    sockets = tempfile.mkdtemp(prefix="hpt-")  # AF_UNIX paths are short; tmp_path may not be
    yield store, listener, sockets, tmp_path
    listener.close()
    shutil.rmtree(sockets, ignore_errors=True)


async def live_generation(app_env, version: int, count: RequestCount, **knobs) -> AppProcess:
    store, listener, sockets, tmp_path = app_env
    cfg = RuntimeConfig(tenant_id="acme", artifacts=store.root, work_dir=tmp_path / "work", grace=3, **knobs)
    manifest = store.read_manifest("acme", version)
    release = store.fetch("acme", version, manifest.sha256, cfg.cache_dir)
    proc = AppProcess(release, cfg, listener, version, Scrubber({}), sockets, count)
    await proc.spawn()
    await proc.prove()  # health and smoke on the private channel: not the tenant's traffic
    await proc.accept()
    return proc


async def until(check, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check() and time.monotonic() < deadline:
        await asyncio.sleep(0.02)


@pytest.mark.timeout(60)
async def test_both_generations_of_a_hot_swap_count_and_nothing_is_counted_twice(app_env):
    count = RequestCount()
    url = f"http://127.0.0.1:{app_env[1].getsockname()[1]}"
    versions: list[int] = []
    old = await live_generation(app_env, 1, count, count_interval=0.1)
    new = None
    try:
        async with httpx.AsyncClient(base_url=url, timeout=5) as keep_alive:
            for _ in range(5):
                versions.append((await keep_alive.get("/")).json()["version"])
            await until(lambda: count.total == 5)
            assert count.total == 5, "the live worker reports while it serves"
            new = await live_generation(app_env, 2, count, count_interval=0.1)
            await old.drain()  # as the runtime swaps: the old one answers what it accepted, then idles
            for _ in range(6):  # the kept-alive connection is closed politely and moves to the new one
                versions.append((await keep_alive.get("/")).json()["version"])
        async with httpx.AsyncClient(base_url=url, timeout=5, headers={"connection": "close"}) as fresh:
            for _ in range(4):
                versions.append((await fresh.get("/")).json()["version"])
    finally:
        await asyncio.gather(*(p.stop(3) for p in (old, new) if p is not None))
    assert versions.count(1) >= 5 and versions.count(2) >= 4
    assert (old.served, new.served) == (versions.count(1), versions.count(2))
    assert count.total == len(versions) == 15


@pytest.mark.timeout(60)
async def test_a_worker_reports_what_it_served_when_it_exits_including_requests_in_flight(app_env):
    count = RequestCount()
    url = f"http://127.0.0.1:{app_env[1].getsockname()[1]}"
    proc = await live_generation(app_env, 1, count, count_interval=3600)  # no periodic report in this test
    try:
        async with httpx.AsyncClient(base_url=url, timeout=5) as client:
            for _ in range(3):
                assert (await client.get("/")).status_code == 200
            slow = asyncio.create_task(client.get("/slow", params={"s": "0.5"}))
            await asyncio.sleep(0.2)  # accepted, not answered yet
            assert count.total == 0, "nothing reported yet: what follows comes from the exit"
            await proc.stop(3)
            assert (await slow).json()["slow"] is True
    finally:
        await proc.stop(3)
    assert count.total == proc.served == 4


async def test_runtime_health_shows_the_requests_served(tmp_path):
    cfg = RuntimeConfig(tenant_id="acme", artifacts=tmp_path / "a", work_dir=tmp_path / "w")
    runtime = Runtime(cfg, ArtifactStore(cfg.artifacts), MemoryReporter("acme"))
    runtime.requests.add(7)
    server = await serve_health("127.0.0.1", 0, runtime.snapshot)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}") as client:
            body = (await client.get("/runtime/healthz")).json()
    finally:
        server.close()
        runtime.listener.close()
        shutil.rmtree(runtime.sockets_dir, ignore_errors=True)
    assert body["runtime"]["requests_served"] == 7


# --- publishing RequestsPerTask ------------------------------------------------------------------


class FakeCloudWatch:
    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.calls: list[dict] = []

    @contextlib.asynccontextmanager
    async def client(self):
        yield self

    async def put_metric_data(self, **kwargs) -> None:
        self.calls.append(kwargs)
        if self.failures:
            self.failures -= 1
            raise ConnectionError("cloudwatch unreachable")


async def test_each_minute_sends_the_requests_of_that_minute_in_the_shape_the_policy_tracks():
    count, cloudwatch = RequestCount(), FakeCloudWatch()
    count.add(40)  # served before the publisher started: not this minute's
    metric = RequestsPerTask("acme", count, cloudwatch.client)
    count.add(130)
    metric.close_minute(MINUTE)
    assert await metric.publish() is True
    count.add(20)
    metric.close_minute(MINUTE + timedelta(minutes=1))
    assert await metric.publish() is True
    first, second = cloudwatch.calls
    assert first == {"Namespace": "hostplane/Runtime/acme", "MetricData": [{
        "MetricName": "RequestsPerTask", "Unit": "Count", "Value": 130.0, "Timestamp": MINUTE,
        "Dimensions": [{"Name": "TenantId", "Value": "acme"}]}]}
    assert [d["Value"] for d in second["MetricData"]] == [20.0]
    assert metric.pending == []


async def test_a_minute_that_failed_to_publish_goes_again_with_the_next_and_serving_is_untouched():
    count, cloudwatch = RequestCount(), FakeCloudWatch(failures=1)
    metric = RequestsPerTask("acme", count, cloudwatch.client)
    count.add(90)
    metric.close_minute(MINUTE)
    with capture_logs() as logs:
        assert await metric.publish() is False  # logged, not raised
    assert [e["event"] for e in logs] == ["requests_metric.publish_failed"]
    count.add(10)
    metric.close_minute(MINUTE + timedelta(minutes=1))
    assert await metric.publish() is True
    retried = cloudwatch.calls[-1]["MetricData"]
    # each minute keeps its own timestamp: summed into one, a blip would read as a traffic spike
    assert [(d["Timestamp"], d["Value"]) for d in retried] == [(MINUTE, 90.0), (MINUTE + timedelta(minutes=1), 10.0)]
    assert metric.pending == []


async def test_unpublished_minutes_are_bounded_and_the_oldest_go_first():
    count = RequestCount()
    metric = RequestsPerTask("acme", count, FakeCloudWatch(failures=10**6).client)
    with capture_logs() as logs:
        for minute in range(traffic.MAX_PENDING + 3):
            count.add(1)
            metric.close_minute(MINUTE + timedelta(minutes=minute))
    assert len(metric.pending) == traffic.MAX_PENDING
    assert metric.pending[0]["Timestamp"] == MINUTE + timedelta(minutes=3)
    assert sum(e.get("minutes", 0) for e in logs if e["event"] == "requests_metric.dropped") == 3


async def test_the_publisher_keeps_its_schedule_through_failures():
    count, cloudwatch = RequestCount(), FakeCloudWatch(failures=2)
    metric = RequestsPerTask("acme", count, cloudwatch.client, period=0.05)
    count.add(12)
    task = asyncio.create_task(metric.run())
    await until(lambda: len(cloudwatch.calls) >= 4)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert len(cloudwatch.calls) >= 4, "failed attempts do not stop the loop"
    values = [d["Value"] for d in cloudwatch.calls[2]["MetricData"]]  # the first success carries three minutes
    assert values == [12.0, 0.0, 0.0]


def test_requests_metric_is_published_only_in_aws_mode():
    count = RequestCount()
    assert requests_metric_from("none", "acme", count) is None
    assert requests_metric_from("file:/tmp/events.jsonl", "acme", count) is None
    metric = requests_metric_from("bus", "acme", count)
    assert isinstance(metric, RequestsPerTask) and metric.count is count
    factory = metric.cloudwatch
    assert isinstance(factory, partial) and factory.func is aws_client and factory.args[0] == "cloudwatch"

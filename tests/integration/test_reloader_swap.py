"""The reloader swaps releases under load without dropping a request, never lets a bad
release serve, and drains on SIGTERM. A real reloader process, real app workers, real
sockets, all on loopback; every wait is bounded."""

from __future__ import annotations

import asyncio
import signal
import time

import psutil
import pytest

from reloader.control import WORKER_NAME
from tests.support.runtime_harness import Load, RuntimeUnderTest, start_runtime
from tests.support.sample_app import SampleApp

pytestmark = pytest.mark.integration


def workers_of(rt: RuntimeUnderTest) -> list[psutil.Process]:
    return rt.processes(WORKER_NAME)


@pytest.fixture
def runtime(tmp_path):
    rt = start_runtime(tmp_path / "rt")
    yield rt
    rt.stop()


async def test_twenty_releases_under_load_drop_no_request(runtime):
    runtime.publish(SampleApp(version=1))
    await runtime.async_wait_for(lambda: runtime.serving_version() == 1, 15, "release 1")
    load = Load(runtime.url, clients=8).start()
    try:
        await runtime.async_wait_for(lambda: load.all_saw(1), 10, "every client on release 1")
        for version in range(2, 22):
            await asyncio.to_thread(runtime.publish, SampleApp(version=version))
            await runtime.async_wait_for(lambda v=version: load.all_saw(v), 15, f"every client on {version}")
    finally:
        await load.stop()
    assert load.failures == [], load.failures[:5]
    assert load.ok > 200
    activated = runtime.events("ReleaseActivated")
    assert [e["data"]["version"] for e in activated] == list(range(1, 22))
    assert all(e["data"]["swap_ms"] >= e["data"]["health_ms"] >= 0 for e in activated)
    assert runtime.events("ReleaseFailed") == []
    # old generations are gone after probation: the live one, at most one idle
    await runtime.async_wait_for(lambda: len(workers_of(runtime)) == 1, 10, "old generations to exit")


BAD_RELEASES = {
    "exits_at_start": (dict(exit_at_start=True), "exited_at_start"),
    "hangs_at_start": (dict(hang_at_start=True), "start_timeout"),
    "never_healthy": (dict(never_healthy=True), "health_check"),
    "health_hangs": (dict(hang_health=True), "health_check"),
    "wrong_version_in_health": ("wrong_version", "wrong_version"),
    "wrong_sha256": ("wrong_sha", "digest_mismatch"),
    "truncated_mid_write": ("truncated", "artifact_truncated"),
}


@pytest.fixture(scope="module")
def serving_v1(tmp_path_factory):
    """One runtime for every bad-release case: release 1 serves throughout."""
    rt = start_runtime(tmp_path_factory.mktemp("bad") / "rt", start_timeout=2)
    rt.publish(SampleApp(version=1))
    rt.wait_for(lambda: rt.serving_version() == 1, 15, "release 1")
    yield rt
    rt.stop()


def publish_bad(rt: RuntimeUnderTest, version: int, how) -> None:
    if isinstance(how, dict):
        rt.publish(SampleApp(version=version, **how))
        return
    if how == "wrong_version":
        rt.publish(SampleApp(version=version, health_version=version - 1))
        return
    rt.publish(SampleApp(version=version), go_live=False)
    pyz = rt.store.release_dir(rt.tenant, version) / "app.pyz"
    data = pyz.read_bytes()
    # wrong digest: same size, other bytes; truncated: a writer that died half-way
    pyz.write_bytes(data[:-1] + bytes([data[-1] ^ 1]) if how == "wrong_sha" else data[: len(data) // 2])
    rt.store.set_current(rt.tenant, version)


@pytest.mark.parametrize("case", list(BAD_RELEASES))
async def test_bad_release_never_serves_and_the_old_one_stays(serving_v1, case):
    rt = serving_v1
    how, reason = BAD_RELEASES[case]
    version = max(m.version for m in rt.store.releases(rt.tenant)) + 1
    load = Load(rt.url, clients=2).start()
    try:
        await rt.async_wait_for(lambda: load.ok > 5, 5, "load running")
        await asyncio.to_thread(publish_bad, rt, version, how)
        failed = await rt.async_wait_for(
            lambda: [e for e in rt.events("ReleaseFailed") if e["data"]["version"] == version], 15,
            f"ReleaseFailed for {case}")
        await asyncio.sleep(0.3)
    finally:
        await load.stop()
    assert failed[0]["data"]["reason"] == reason
    assert failed[0]["data"]["stage"] in ("start", "artifact")
    assert load.failures == []
    assert set().union(*load.seen.values()) == {1}, "a bad release served a request"
    assert rt.serving_version() == 1
    status, body = rt.health()
    assert status == 200 and body["app"]["live_version"] == 1 and body["app"]["last_failure"]["reason"] == reason
    if case == "exits_at_start":
        assert any("fatal: cannot start" in line for line in failed[0]["data"]["last_log_lines"])
    assert len(workers_of(rt)) == 1  # the refused worker is gone


async def test_good_release_after_bad_ones_goes_live(serving_v1):
    rt = serving_v1
    version = max(m.version for m in rt.store.releases(rt.tenant)) + 1
    rt.publish(SampleApp(version=version))
    await rt.async_wait_for(lambda: rt.serving_version() == version, 15, "the good release")


async def test_sigterm_drains_in_flight_requests_and_exits_zero(runtime):
    runtime.publish(SampleApp(version=1))
    await runtime.async_wait_for(lambda: runtime.serving_version() == 1, 15, "release 1")
    slow = Load(runtime.url, clients=4, path="/slow?s=1").start()
    await asyncio.sleep(0.5)  # four requests are in flight now
    t0 = time.monotonic()
    code = await asyncio.to_thread(runtime.stop, 15)
    took = time.monotonic() - t0
    await slow.stop()
    assert code == 0
    assert took < 5, f"grace is 5s, took {took:.1f}s"
    assert slow.ok >= 4, "requests accepted before SIGTERM were not answered"
    # after SIGTERM the listener closes: later connection attempts fail, none time out
    assert not [f for f in slow.failures if "Timeout" in f], slow.failures[:3]
    assert workers_of(runtime) == []
    assert runtime.logs("runtime.stopped")


def test_sigusr1_reads_the_pointer_at_once(tmp_path):
    """Push activation: with a 60 s poll, a pointer moved and then SIGUSR1 (what the runtime
    agent sends on the migrator's notice) goes live in well under the poll interval."""
    rt = start_runtime(tmp_path / "rt", poll_interval=60)
    try:
        rt.publish(SampleApp(version=1))
        rt.proc.send_signal(signal.SIGUSR1)
        rt.wait_for(lambda: rt.serving_version() == 1, 10, "release 1 after the poke")
        rt.publish(SampleApp(version=2))
        time.sleep(1.0)
        assert rt.serving_version() == 1  # no poke, no look before the 60 s poll
        rt.proc.send_signal(signal.SIGUSR1)
        rt.wait_for(lambda: rt.serving_version() == 2, 10, "release 2 after the poke")
        assert rt.proc.poll() is None and rt.health()[0] == 200
    finally:
        rt.stop()


async def test_nothing_to_serve_answers_503_at_once_until_a_release_goes_live(runtime):
    """A first release refused at start leaves nothing to accept: visitors get a quick 503
    with Retry-After (not a wait in the socket's backlog until they give up); the next good
    release takes the socket over."""
    import httpx

    runtime.publish(SampleApp(version=1, exit_at_start=True))
    await runtime.async_wait_for(lambda: runtime.events("ReleaseFailed"), 15, "release 1 refused")
    t0 = time.monotonic()
    resp = await asyncio.to_thread(httpx.get, runtime.url + "/healthz", timeout=5)
    assert resp.status_code == 503 and resp.headers["retry-after"] == "5"
    assert "release 1 failed to start" in resp.text
    assert time.monotonic() - t0 < 1
    runtime.publish(SampleApp(version=2))
    await runtime.async_wait_for(lambda: runtime.serving_version() == 2, 15, "release 2")
    load = Load(runtime.url, clients=2).start()
    try:
        await runtime.async_wait_for(lambda: load.ok > 20, 10, "load served")
    finally:
        await load.stop()
    assert load.failures == [] and set().union(*load.seen.values()) == {2}, "no 503 once an app serves"

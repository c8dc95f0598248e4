"""Deploys fork app workers from the runtime's warm zygote (reloader.zygote), and nothing a
cold start guaranteed is lost: no request dropped, a forked worker's crash is a crash
with its exit code and its restart, a dead zygote only makes the next start cold, and an
idle zygote retires after replacing its forked worker with a cold one. A real reloader,
real workers and a real zygote on loopback; every wait is bounded."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal

import httpx
import psutil
import pytest

from reloader.control import WORKER_NAME, ZYGOTE_NAME
from tests.support.runtime_harness import Load, RuntimeUnderTest, start_runtime
from tests.support.sample_app import SampleApp

pytestmark = pytest.mark.integration


def live(rt: RuntimeUnderTest, version: int) -> list[dict]:
    return [e for e in rt.logs("release.live") if e["version"] == version]


async def deploy(rt: RuntimeUnderTest, load: Load | None, version: int) -> dict:
    """Publish `version`, wait until it serves; its release.live record."""
    await asyncio.to_thread(rt.publish, SampleApp(version=version))
    if load is not None:
        await rt.async_wait_for(lambda: load.all_saw(version), 15, f"every client on {version}")
    await rt.async_wait_for(lambda: live(rt, version), 15, f"release {version} live")
    return live(rt, version)[-1]


async def test_deploys_fork_from_the_zygote_and_survive_its_death(tmp_path):
    rt = start_runtime(tmp_path / "rt", zygote_delay=0)
    try:
        await deploy(rt, None, 1)
        assert rt.logs("zygote.ready") == []  # a first start (a wake) starts no zygote
        load = Load(rt.url, clients=4).start()
        try:
            assert (await deploy(rt, load, 2))["forked"] is False  # the first deploy is cold...
            await rt.async_wait_for(lambda: rt.logs("zygote.ready"), 15, "the zygote")  # ...and warms one
            for version in (3, 4, 5):
                assert (await deploy(rt, load, version))["forked"] is True
        finally:
            await load.stop()
        assert load.failures == [], load.failures[:5]
        [zygote] = rt.processes(ZYGOTE_NAME)
        assert zygote.ppid() == rt.proc.pid
        await rt.async_wait_for(lambda: len(rt.processes(WORKER_NAME)) == 1, 10, "old generations to exit")
        [worker] = rt.processes(WORKER_NAME)
        assert worker.ppid() == zygote.pid and worker.uids().real == os.getuid()

        # a forked worker that dies is a crash like any other: its exit code (from the zygote), a restart
        worker.send_signal(signal.SIGKILL)
        crashed = await rt.async_wait_for(lambda: rt.events("AppCrashed"), 10, "AppCrashed")
        assert crashed[0]["data"]["exit_code"] == -signal.SIGKILL and crashed[0]["data"]["version"] == 5
        await rt.async_wait_for(lambda: rt.serving_version() == 5, 10, "release 5 restarted")

        # the zygote dies: the next deploy starts cold and goes live; a new zygote follows it
        zygote.send_signal(signal.SIGKILL)
        await asyncio.to_thread(zygote.wait, 5)
        assert (await deploy(rt, None, 6))["forked"] is False
        await rt.async_wait_for(lambda: len(rt.logs("zygote.ready")) == 2, 15, "a new zygote")
        assert (await deploy(rt, None, 7))["forked"] is True
        assert rt.events("ReleaseFailed") == []
        # the workers forked by the dead zygote were seen to exit (a pidfd, no exit code): none left over
        await rt.async_wait_for(lambda: len(rt.processes(WORKER_NAME)) == 1, 10, "old generations to exit")
    finally:
        rt.stop()
    assert rt.processes(ZYGOTE_NAME) == [] and rt.processes(WORKER_NAME) == []


async def test_an_idle_zygote_retires_after_a_cold_replacement_of_its_worker(tmp_path):
    rt = start_runtime(tmp_path / "rt", zygote_delay=0, zygote_idle=2)
    try:
        await deploy(rt, None, 1)
        await deploy(rt, None, 2)
        await rt.async_wait_for(lambda: rt.logs("zygote.ready"), 15, "the zygote")
        load = Load(rt.url, clients=4).start()
        try:
            assert (await deploy(rt, load, 3))["forked"] is True
            click_forked = httpx.get(rt.url + "/loaded?name=click", timeout=5).json()
            await rt.async_wait_for(lambda: rt.logs("zygote.retired"), 15, "the zygote's retirement")
            await rt.async_wait_for(lambda: len(rt.processes(WORKER_NAME)) == 1, 10, "the forked worker to exit")
        finally:
            await load.stop()
        assert load.failures == [], load.failures[:5]
        # the zygote imports uvicorn whole; a cold worker, having served, never ran its package init
        assert click_forked is True and httpx.get(rt.url + "/loaded?name=click", timeout=5).json() is False
        assert rt.processes(ZYGOTE_NAME) == []
        assert [e["forked"] for e in live(rt, 3)] == [True, False]  # the same release, started cold
        assert [e["data"]["version"] for e in rt.events("ReleaseActivated")] == [1, 2, 3]  # not announced again
        assert rt.serving_version() == 3
        # the next deploy is cold again, and warms a new zygote
        assert (await deploy(rt, None, 4))["forked"] is False
        await rt.async_wait_for(lambda: len(rt.logs("zygote.ready")) == 2, 15, "a new zygote")
    finally:
        rt.stop()


async def test_the_memory_limit_holds_for_forked_workers(tmp_path):
    """A forked worker's RSS counts the pages it shares with the zygote: the limit is checked
    on what it maps, as for a cold one, and both a live one and a new one past it go."""
    rt = start_runtime(tmp_path / "rt", memory_mb=150, memory_check_interval=0.1, backoff_initial=0.1, zygote_delay=0)
    try:
        await deploy(rt, None, 1)
        await deploy(rt, None, 2)
        await rt.async_wait_for(lambda: rt.logs("zygote.ready"), 15, "the zygote")
        assert (await deploy(rt, None, 3))["forked"] is True
        await rt.async_wait_for(lambda: len(rt.processes(WORKER_NAME)) == 1, 10, "probation over")  # a crash, not a revert
        with pytest.raises(httpx.HTTPError):
            httpx.get(rt.url + "/hog?mb=400", timeout=10)
        crashed = await rt.async_wait_for(lambda: rt.events("AppCrashed"), 10, "the memory kill")
        assert (crashed[0]["data"]["reason"], crashed[0]["data"]["version"]) == ("memory_limit", 3)
        await rt.async_wait_for(lambda: rt.serving_version() == 3, 10, "release 3 restarted")
        rt.publish(SampleApp(version=4, hog_mb_at_start=400))  # forked, too big from the start: never live
        failed = await rt.async_wait_for(lambda: rt.events("ReleaseFailed"), 15, "the refused hog")
        assert (failed[0]["data"]["reason"], failed[0]["data"]["version"]) == ("memory_limit", 4)
        assert rt.serving_version() == 3
        assert [e["forked"] for e in rt.logs("app.spawned") if e["version"] == 4] == [True]
    finally:
        rt.stop()


async def test_a_zygote_that_does_not_answer_costs_a_cold_start_not_the_release(tmp_path):
    rt = start_runtime(tmp_path / "rt", zygote_delay=0)
    try:
        await deploy(rt, None, 1)
        await deploy(rt, None, 2)
        await rt.async_wait_for(lambda: rt.logs("zygote.ready"), 15, "the zygote")
        [zygote] = rt.processes(ZYGOTE_NAME)
        zygote.suspend()  # it reads the fork request only once resumed, seconds too late
        try:
            assert (await deploy(rt, None, 3))["forked"] is False
        finally:
            with contextlib.suppress(psutil.NoSuchProcess):
                zygote.resume()
        # whatever it forks late gets EOF on a channel nobody uses and exits: one worker, release 3
        await rt.async_wait_for(lambda: len(rt.processes(WORKER_NAME)) == 1, 15, "one worker left")
        assert rt.serving_version() == 3 and rt.events("ReleaseFailed") == []
        await rt.async_wait_for(lambda: len(rt.logs("zygote.ready")) == 2, 15, "a new zygote")
        assert (await deploy(rt, None, 4))["forked"] is True
    finally:
        rt.stop()

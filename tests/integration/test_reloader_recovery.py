"""What the runtime does when the app misbehaves after going live: crash loops back off
and fall back to the last good release, an early death reverts to the previous
generation, the memory limit is enforced, the runtime's health stays separate from the
app's, and the app sees only its tenant's environment."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import datetime

import httpx
import psutil
import pytest

from tests.support.runtime_harness import Load, start_runtime
from tests.support.sample_app import SampleApp

pytestmark = pytest.mark.integration


async def test_crash_loop_backs_off_without_spinning(tmp_path):
    rt = start_runtime(tmp_path / "rt", backoff_initial=0.2, backoff_max=1.6, stable_after=60)
    try:
        rt.publish(SampleApp(version=1, crash_after=0.2))  # healthy, then dies; nothing to fall back to
        cpu0 = sum(psutil.Process(rt.proc.pid).cpu_times()[:2])
        t0 = time.monotonic()
        await rt.async_wait_for(lambda: len(rt.logs("app.restart_scheduled")) >= 5, 20, "five restarts")
        cpu = sum(psutil.Process(rt.proc.pid).cpu_times()[:2]) - cpu0
        elapsed = time.monotonic() - t0
        delays = [e["delay_s"] for e in rt.logs("app.restart_scheduled")][:5]
        spawned = [e["timestamp"] for e in rt.logs("app.spawned")]
        status, body = rt.health()
        crashed = [e["data"] for e in rt.events("AppCrashed")]
    finally:
        rt.stop()
    assert delays == [0.2, 0.4, 0.8, 1.6, 1.6]  # doubling, capped
    assert [c["restart_in_ms"] for c in crashed[:4]] == [200, 400, 800, 1600]  # reported, same backoff
    assert crashed[0]["reason"] == "crashed" and crashed[0]["exit_code"] == 7
    assert any("crashing on purpose" in line for line in crashed[0]["last_log_lines"])
    assert len(spawned) <= 7
    assert cpu < 0.5 * elapsed, f"reloader used {cpu:.2f}s CPU in {elapsed:.1f}s"
    assert status == 200 and body["status"] == "ok"
    assert body["app"]["last_exit"]["code"] == 7 and body["app"]["restarts"] >= 3


async def test_repeated_crashes_fall_back_to_the_last_good_release(tmp_path):
    rt = start_runtime(tmp_path / "rt", backoff_initial=0.1, crash_loop_threshold=3, probation=0.5)
    try:
        rt.publish(SampleApp(version=1))
        await rt.async_wait_for(lambda: rt.serving_version() == 1, 15, "release 1")
        rt.publish(SampleApp(version=2, crash_after=1.0))  # survives probation, then crashes each time
        await rt.async_wait_for(lambda: rt.events("ReleaseFailed"), 30, "crash loop detected")
        await rt.async_wait_for(lambda: rt.serving_version() == 1, 10, "fallback to release 1")
        failed = rt.events("ReleaseFailed")[0]["data"]
        activated = await rt.async_wait_for(
            lambda: len(a := [e["data"]["version"] for e in rt.events("ReleaseActivated")]) >= 3 and a, 5,
            "ReleaseActivated for the fallback")
        await asyncio.sleep(1.5)
        assert rt.serving_version() == 1  # and it stays there: the pointer's generation was handled
    finally:
        rt.stop()
    assert (failed["version"], failed["reason"], failed["stage"]) == (2, "crash_loop", "running")
    assert any("crashing on purpose" in line for line in failed["last_log_lines"])
    assert activated == [1, 2, 1]


async def test_a_good_release_failing_in_a_new_runtime_backs_off_then_falls_back(tmp_path):
    """As after a sleep: the next runtime of the tenant knows which releases served (good.json
    in its work dir); the live one failing to start now is a crash with backoff, not a
    refused release, and after the crash-loop threshold the last good other one serves."""
    knobs = {"backoff_initial": 0.1, "crash_loop_threshold": 3, "probation": 0.3}
    rt = start_runtime(tmp_path / "rt", **knobs)
    try:
        rt.publish(SampleApp(version=1))
        await rt.async_wait_for(lambda: rt.serving_version() == 1, 15, "release 1")
        rt.publish(SampleApp(version=2, exit_if_env="DATABASE_GONE"))
        await rt.async_wait_for(lambda: rt.serving_version() == 2, 15, "release 2")
        good = tmp_path / "rt" / "work" / "good.json"
        await rt.async_wait_for(lambda: good.exists() and len(json.loads(good.read_text())) == 2, 10,
                                "both releases kept as good")
    finally:
        assert rt.stop() == 0
    before = len(rt.events())
    env_file = tmp_path / "env.json"
    env_file.write_text(json.dumps({"DATABASE_GONE": "1"}))  # what broke while it slept
    again = start_runtime(tmp_path / "rt", env_file=env_file, **knobs)
    try:
        await again.async_wait_for(  # the report follows the swap: wait for it, not only the serving version
            lambda: again.serving_version() == 1
            and any(e["event_type"] == "ReleaseActivated" for e in again.events()[before:]), 30,
            "the fallback to release 1, reported")
        after = again.events()[before:]
    finally:
        again.stop()
    crashed = [e["data"] for e in after if e["event_type"] == "AppCrashed"]
    failed = [e["data"] for e in after if e["event_type"] == "ReleaseFailed"]
    assert [c["version"] for c in crashed] == [2, 2, 2] and [c["crashes_in_a_row"] for c in crashed] == [1, 2, 3]
    assert crashed[0]["restart_in_ms"] < crashed[1]["restart_in_ms"], "the existing backoff"
    assert [(f["version"], f["reason"], f["stage"]) for f in failed] == [(2, "crash_loop", "running")], \
        "a crash loop, never 'refused at start'"
    assert [e["data"]["version"] for e in after if e["event_type"] == "ReleaseActivated"] == [1]


async def test_new_release_dying_in_probation_is_reverted_at_once(tmp_path):
    rt = start_runtime(tmp_path / "rt", probation=5)
    try:
        rt.publish(SampleApp(version=1))
        await rt.async_wait_for(lambda: rt.serving_version() == 1, 15, "release 1")
        rt.publish(SampleApp(version=2, crash_after=0.8))
        await rt.async_wait_for(lambda: rt.serving_version() == 2, 15, "release 2")
        await rt.async_wait_for(lambda: rt.logs("release.reverted"), 5, "revert")
        died = next(e for e in rt.logs("app.died"))["timestamp"]
        back = rt.logs("release.reverted")[0]["timestamp"]
        assert rt.serving_version() == 1
        failed = rt.events("ReleaseFailed")[0]["data"]
    finally:
        rt.stop()
    assert (failed["version"], failed["reason"]) == (2, "crashed_in_probation")
    gap = datetime.fromisoformat(back) - datetime.fromisoformat(died)
    assert gap.total_seconds() < 0.5, "the idle old generation should take over without a start-up"


async def test_memory_limit_kills_reports_and_restarts(tmp_path):
    rt = start_runtime(tmp_path / "rt", memory_mb=150, memory_check_interval=0.1, backoff_initial=0.1)
    try:
        rt.publish(SampleApp(version=1))
        await rt.async_wait_for(lambda: rt.serving_version() == 1, 15, "release 1")
        first_pid = rt.health()[1]["app"]["pid"]
        with pytest.raises(httpx.HTTPError):
            httpx.get(rt.url + "/hog?mb=400", timeout=10)
        await rt.async_wait_for(lambda: rt.logs("app.memory_limit_exceeded"), 5, "memory kill")
        await rt.async_wait_for(lambda: rt.health()[1]["app"]["pid"] not in (None, first_pid)
                                and rt.serving_version() == 1, 10, "restart")
        body = rt.health()[1]
        crashed = rt.events("AppCrashed")[0]["data"]
        rt.publish(SampleApp(version=2, hog_mb_at_start=400))  # too big from the start: never live
        await rt.async_wait_for(lambda: rt.events("ReleaseFailed"), 15, "refused hog")
        failed = rt.events("ReleaseFailed")[0]["data"]
        assert rt.serving_version() == 1
    finally:
        rt.stop()
    assert body["app"]["last_exit"]["reason"] == "memory_limit"
    assert crashed["reason"] == "memory_limit" and crashed["version"] == 1
    assert rt.logs("app.memory_limit_exceeded")[0]["limit_mb"] == 150
    assert failed["reason"] == "memory_limit" and failed["version"] == 2


async def test_runtime_health_stays_ok_while_the_app_is_broken(tmp_path):
    rt = start_runtime(tmp_path / "rt")
    try:
        status, body = rt.health()
        assert status == 200 and body["app"]["state"] == "no_release" and not body["app"]["healthy"]
        rt.publish(SampleApp(version=1, never_healthy=True))  # misconfigured app: never goes live
        await rt.async_wait_for(lambda: rt.events("ReleaseFailed"), 15, "release 1 refused")
        status, body = rt.health()
        assert status == 200 and body["status"] == "ok"
        assert body["app"]["state"] == "failed" and body["app"]["live_version"] is None
        assert body["app"]["last_failure"]["reason"] == "health_check"

        rt.publish(SampleApp(version=2))
        await rt.async_wait_for(lambda: rt.serving_version() == 2, 15, "release 2")
        assert httpx.get(rt.url + "/healthz").status_code == 200
        httpx.get(rt.url + "/break")  # the app's own health now reports a break
        assert httpx.get(rt.url + "/healthz").status_code == 503
        await rt.async_wait_for(lambda: not rt.health()[1]["app"]["healthy"], 5, "app health to report it")
        status, body = rt.health()
    finally:
        rt.stop()
    assert status == 200 and body["status"] == "ok"
    assert body["app"]["live_version"] == 2 and body["app"]["health"]["detail"] == "status 503"


async def test_app_gets_only_its_tenant_environment_and_secrets_stay_out_of_logs(tmp_path, monkeypatch):
    secret = "s3cret-password-value"
    env_file = tmp_path / "tenant.env.json"
    env_file.write_text(json.dumps({"DATABASE_URL": f"postgresql://t_acme:{secret}@127.0.0.1:5432/t_acme",
                                    "API_KEY": secret + "-2", "CACHE_PREFIX": "acme:"}))
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "platform-credential")
    monkeypatch.setenv("HOSTPLANE_HOME", "/platform/home")
    rt = start_runtime(tmp_path / "rt", env_file=env_file)
    try:
        rt.publish(SampleApp(version=1, print_env="API_KEY"))
        await rt.async_wait_for(lambda: rt.serving_version() == 1, 15, "release 1")
        names = set(httpx.get(rt.url + "/env").json())
        load = Load(rt.url, clients=1).start()
        await asyncio.sleep(0.2)
        await load.stop()
    finally:
        rt.stop()
    platform = {"PATH", "LANG", "PYTHONUNBUFFERED", "PYTHONDONTWRITEBYTECODE", "PORT", "TENANT_ID", "APP_VERSION"}
    assert names - platform == {"DATABASE_URL", "API_KEY", "CACHE_PREFIX"}
    log_text = rt.log_path.read_text()
    assert secret not in log_text and "platform-credential" not in log_text
    outputs = rt.logs("app.output")
    assert {(o["tenant_id"], o["version"]) for o in outputs} == {("acme", 1)}
    assert {o["stream"] for o in outputs} == {"stdout", "stderr"}
    assert any(o["line"] == "env API_KEY = <redacted>" for o in outputs)

"""Small pieces of the reloader and the agent, without app processes."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from types import SimpleNamespace

import httpx
import pytest

from artifacts.store import ArtifactStore
from contracts import parse_envelope
from hostplane.local.agent.state import reloader_args
from reloader.config import RuntimeConfig, Scrubber, TenantEnvError, app_environment, parse_tenant_env
from reloader.health import serve_health
from reloader.reporting import FileReporter, MemoryReporter, Report, read_events
from reloader.runtime import Runtime, backoff
from reloader.worker import IdleTrackingH11, idle_to_close
from services.resources.registry import DesiredService


def test_backoff_doubles_and_is_capped():
    assert [backoff(n, 0.5, 4) for n in range(1, 7)] == [0.5, 1, 2, 4, 4, 4]


def test_tenant_env_must_be_an_object_of_variable_names_and_errors_hide_values():
    assert parse_tenant_env('{"DATABASE_URL": "x", "N": 3, "GONE": null}', "f") == {"DATABASE_URL": "x", "N": "3"}
    with pytest.raises(TenantEnvError) as err:
        parse_tenant_env('["s3cret"]', "f")
    assert "s3cret" not in str(err.value)
    with pytest.raises(TenantEnvError):
        parse_tenant_env('{"BAD-NAME": "v"}', "f")
    with pytest.raises(TenantEnvError) as err:
        parse_tenant_env("not json s3cret", "f")
    assert "s3cret" not in str(err.value)


def test_app_environment_is_the_tenants_plus_platform_variables_that_win(tmp_path):
    cfg = RuntimeConfig(tenant_id="acme", artifacts=tmp_path, work_dir=tmp_path, port=8123,
                        tenant_env={"DATABASE_URL": "postgresql://x", "PORT": "1"})
    env = app_environment(cfg, 7)
    assert env["PORT"] == "8123" and env["APP_VERSION"] == "7" and env["TENANT_ID"] == "acme"
    assert env["DATABASE_URL"] == "postgresql://x"
    assert not [k for k in env if k.startswith(("HOSTPLANE_", "AWS_"))]
    assert "s3cret" not in repr(RuntimeConfig(tenant_id="a", artifacts=tmp_path, work_dir=tmp_path,
                                              tenant_env={"K": "s3cret"}))


def test_scrubber_removes_secret_values_and_url_passwords():
    scrub = Scrubber({"API_KEY": "abcdef123456", "FLAG": "1"})
    assert scrub("key=abcdef123456 flag=1") == "key=<redacted> flag=1"
    assert scrub("redis://default:pw9@127.0.0.1:6390/0") == "redis://default:<redacted>@127.0.0.1:6390/0"


def test_agent_recognises_reloader_command_lines_only():
    cmd = ["/venv/bin/python", "-m", "reloader", "--tenant", "acme", "--port", "1", "--owner", "agent:/h"]
    assert reloader_args(cmd) == {"tenant": "acme", "port": "1", "owner": "agent:/h"}
    assert reloader_args(["python", "-I", "-m", "reloader.worker", "--app", "x"]) is None
    assert reloader_args(["python", "-m", "hostplane.local.agent", "--home", "h"]) is None
    assert reloader_args(["bash"]) is None


def test_desired_fingerprint_changes_with_what_needs_a_new_runtime():
    at = datetime(2026, 1, 1, tzinfo=UTC)
    a = DesiredService("acme", "running", "secret:x", 256, at)
    assert a.fingerprint == DesiredService("acme", "running", "secret:x", 256, at).fingerprint
    assert a.fingerprint != DesiredService("acme", "running", "secret:x", 512, at).fingerprint


async def test_reporters_write_valid_envelopes(tmp_path):
    path = tmp_path / "events.jsonl"
    rep = FileReporter("acme", path)
    corr = "4b8d9c1e-0000-4000-8000-000000000001"
    await rep.report(Report("ReleaseActivated", version=2, sha256="a" * 64, swap_ms=300, health_ms=20),
                     correlation_id=corr)
    await rep.report(Report("ReleaseFailed", version=3, stage="start", reason="health_check", error="no",
                            retryable=False, last_log_lines=[f"line {i}" for i in range(80)]))
    first, second = (parse_envelope(e) for e in read_events(path))
    assert first.producer == "reloader" and str(first.correlation_id) == corr and first.tenant_id == "acme"
    assert second.data.last_log_lines[-1] == "line 79" and len(second.data.last_log_lines) == 50
    mem = MemoryReporter("acme")
    await mem.report(Report("ReleaseActivated", version=1, sha256="b" * 64, swap_ms=1, health_ms=1),
                     correlation_id="bad")
    assert mem.envelopes[0].data.version == 1


async def test_runtime_health_endpoint_separates_runtime_from_app():
    snapshot = {"status": "ok", "app": {"healthy": False}}
    server = await serve_health("127.0.0.1", 0, lambda: snapshot)
    port = server.sockets[0].getsockname()[1]
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            ok = await client.get("/runtime/healthz")
            assert ok.status_code == 200 and ok.json()["app"]["healthy"] is False
            snapshot["status"] = "stalled"
            assert (await client.get("/runtime/healthz")).status_code == 503
            assert (await client.get("/other")).status_code == 404
    finally:
        server.close()


async def test_poller_coalesces_to_the_newest_generation_and_ignores_stale_reads(tmp_path):
    store = ArtifactStore(tmp_path / "artifacts")
    for v in range(1, 6):
        store.publish_release("acme", v, f"release {v}".encode())
    cfg = RuntimeConfig(tenant_id="acme", artifacts=store.root, work_dir=tmp_path / "work", poll_interval=0.02)
    runtime = Runtime(cfg, store, MemoryReporter("acme"))
    acted: list[int] = []

    async def slow_activate(pointer):
        acted.append(pointer.generation)
        await asyncio.sleep(0.3)  # a swap in progress while newer pointers arrive
        runtime._handled(pointer)

    runtime._activate = slow_activate
    task = asyncio.create_task(runtime.run())
    try:
        store.set_current("acme", 1)
        await asyncio.sleep(0.1)
        for v in (2, 3, 4):  # three changes during the first swap: only the newest is acted on
            store.set_current("acme", v)
        await asyncio.sleep(0.6)
        # a stale read (an older generation than handled) must not undo anything
        store.pointer_path("acme").write_text(json.dumps({"generation": 2, "version": 2, "sha256": "0" * 64}))
        await asyncio.sleep(0.2)
    finally:
        runtime.stopping.set()
        await task
        await runtime.shutdown()
    assert acted == [1, 4]
    assert runtime.handled_generation == 4


def _connection(idle_since: float, busy: bool = False) -> IdleTrackingH11:
    conn = object.__new__(IdleTrackingH11)  # only what the drain looks at: no transport needed
    conn.idle_since = idle_since
    conn.cycle = SimpleNamespace(response_complete=not busy) if busy else None
    return conn


def test_a_drain_closes_connections_idle_long_enough_but_not_right_after_a_stall():
    idle, fresh, busy = _connection(10.0), _connection(10.8), _connection(5.0, busy=True)
    # checked 0.05 s ago: only the one idle for >= 0.5 s goes
    assert idle_to_close([idle, fresh, busy], 11.0, 0.05, 0.5) == [idle]
    # the last check was 2 s ago (the machine stood still): nothing goes, every idle clock restarts...
    stale = _connection(10.0)
    assert idle_to_close([stale, busy], 12.0, 2.0, 0.5) == []
    assert stale.idle_since == 12.0 and busy.idle_since == 5.0
    # ...so a client that resumed with the server has idle_close to send its next request
    assert idle_to_close([stale], 12.4, 0.05, 0.5) == []
    assert idle_to_close([stale], 12.5, 0.05, 0.5) == [stale]
    # a connection whose request is arriving (idle_since = inf) is never idle
    assert idle_to_close([_connection(float("inf"))], 12.0, 2.0, 0.5) == []


def test_an_app_worker_loads_redis_without_the_platforms_opentelemetry():
    """Pulumi's OpenTelemetry SDK is in the environment; redis-py falls back as if it were not
    (in a child: this process's pulumi tests need it)."""
    import subprocess
    import sys

    code = ("import sys; from reloader import hide_platform_packages; hide_platform_packages(); "
            "import redis.asyncio, redis.observability.providers as p; "
            "print(p.OTEL_AVAILABLE, sorted(m for m in sys.modules if m.startswith('opentelemetry.')))")
    shown = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert shown.split() == ["False", "[]"]
    with_it = subprocess.run([sys.executable, "-c", "import redis.asyncio, sys; print('opentelemetry.sdk' in sys.modules)"],
                             capture_output=True, text=True, check=True).stdout
    assert with_it.strip() == "True", "redis-py no longer loads the SDK: hide_platform_packages can go"


def test_a_reloader_logs_without_the_platforms_greenlet():
    """structlog imports greenlet when it is installed (locally: for playwright); a reloader
    neither loads it nor needs it to log."""
    import subprocess
    import sys

    code = ("import sys; from reloader import hide_platform_packages; hide_platform_packages(); "
            "import reloader.__main__, structlog; structlog.get_logger('t').info('logged'); "
            "print('greenlet' in {m.split('.')[0] for m in sys.modules if sys.modules[m] is not None})")
    shown = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert shown.split()[-1] == "False" and "logged" in shown
    with_it = subprocess.run([sys.executable, "-c", "import structlog, sys; print('greenlet' in sys.modules)"],
                             capture_output=True, text=True, check=True).stdout
    assert with_it.strip() == "True", "structlog no longer loads greenlet: it can leave PLATFORM_ONLY"


def test_a_workers_descendants_are_found_from_the_kernels_children_lists():
    """The memory watch's family: the same pids psutil finds by scanning every process, read
    from /proc/<pid>/task/<tid>/children; their memory counts, and a process gone counts 0."""
    import subprocess
    import sys
    import time

    import psutil

    from reloader.generation import CHILDREN_LISTS, descendant_pids, resident_bytes

    code = ("import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(30)']); "
            "time.sleep(30)")
    parent = subprocess.Popen([sys.executable, "-c", code])
    try:
        proc = psutil.Process(parent.pid)
        deadline = time.monotonic() + 10
        while not proc.children(recursive=True) and time.monotonic() < deadline:
            time.sleep(0.05)
        expected = sorted(p.pid for p in proc.children(recursive=True))
        assert CHILDREN_LISTS and len(expected) == 1
        assert sorted(descendant_pids(parent.pid)) == expected
        alone = resident_bytes(parent.pid, descendants=False)
        assert abs(alone - proc.memory_info().rss) <= 64 * 1024, "what psutil reads"
        assert resident_bytes(parent.pid) > alone > 0
    finally:
        for kid in psutil.Process(parent.pid).children(recursive=True):
            kid.kill()
        parent.kill()
        parent.wait(10)
    assert descendant_pids(parent.pid) == [] and resident_bytes(parent.pid) == 0

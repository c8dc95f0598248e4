"""Hostile tenant code under the real runtime agent, sandboxed (reloader.sandbox): it runs
as its own uid, sees nothing of the platform's home nor of another tenant, its memory and
process count are capped by its cgroups, and a daemon it double-forks and setsids dies when
the tenant is deleted. The desired services are handed to the agent directly (its database
reading is tested in test_runtime_agent.py); everything else is real: bwrap, setpriv,
cgroups, the reloader and its app workers."""

from __future__ import annotations

import asyncio
import io
import json
import time
import zipfile
from datetime import UTC, datetime
from pathlib import Path

import httpx
import psutil
import pytest

from artifacts.store import ArtifactStore
from core.ports import free_port
from hostplane.local.agent.agent import Agent
from reloader import sandbox
from reloader.control import WORKER_NAME, ZYGOTE_NAME
from services.resources.registry import DesiredService
from tests.support.runtime_harness import log_records

pytestmark = pytest.mark.integration
WHY_NOT = sandbox.unavailable_reason()
if WHY_NOT:
    pytestmark = [pytestmark, pytest.mark.skip(reason=f"cannot sandbox here: {WHY_NOT}")]

ATTACKER = '''\
import os, sys, time
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route


async def healthz(request):
    return JSONResponse({"version": int(os.environ["APP_VERSION"])})


async def whoami(request):
    return JSONResponse({"uid": os.getuid(), "gid": os.getgid(), "groups": os.getgroups(), "cwd": os.getcwd()})


async def read(request):
    path = request.query_params["path"]
    try:
        with open(path, "rb") as fh:
            return JSONResponse({"read": len(fh.read())})
    except OSError as exc:
        return JSONResponse({"refused": type(exc).__name__})


def detach(then):
    """Double fork and setsid: the grandchild belongs to no one the reloader watches."""
    if os.fork():
        return
    os.setsid()
    if os.fork():
        os._exit(0)
    try:
        then()
    finally:
        os._exit(0)


async def daemon(request):
    detach(lambda: os.execv("/bin/sleep", ["sleep", request.query_params["marker"]]))
    return JSONResponse({"detached": True})


def hog(mb, progress):
    held = []
    for i in range(mb // 8):
        held.append(b"\\x01" * (8 * 1024 * 1024))  # written, so resident
        # Renamed into place: the page cache of the write is charged to the cgroup too, and a
        # kill between a truncating open and its write left an empty file (a CI run, stop 27).
        with open(progress + ".next", "w") as fh:
            fh.write(str((i + 1) * 8))
        os.replace(progress + ".next", progress)
    time.sleep(60)


async def hog_daemon(request):
    detach(lambda: hog(int(request.query_params["mb"]), request.query_params["progress"]))
    return JSONResponse({"detached": True})


async def fork_many(request):
    children = []
    try:
        for _ in range(int(request.query_params["n"])):
            pid = os.fork()
            if pid == 0:  # small: the reloader's own memory watch sums the worker's children
                os.execv("/bin/sleep", ["sleep", "30"])
            children.append(pid)
        error = None
    except OSError as exc:
        error = type(exc).__name__
    for pid in children:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
    return JSONResponse({"forked": len(children), "error": error})


app = Starlette(routes=[Route("/healthz", healthz), Route("/", whoami), Route("/read", read),
                        Route("/daemon", daemon), Route("/hog-daemon", hog_daemon), Route("/fork", fork_many)])
'''


def attacker_zipapp() -> bytes:
    buf = io.BytesIO()
    buf.write(b"#!/usr/bin/env python3\n")
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("app.py", ATTACKER)
    return buf.getvalue()


class Published:
    """Stands in for events.publisher.Publisher (the bus is tested in test_runtime_agent.py)."""

    def __init__(self) -> None:
        self.envelopes = []

    async def publish(self, envelopes) -> None:
        self.envelopes += envelopes


class FixedDesired(Agent):
    """The agent, converging to the services this test says instead of the database's."""

    wanted: list[DesiredService]

    async def read_desired(self) -> list[DesiredService]:
        return list(self.wanted)


def service(tenant: str, memory_mb: int) -> DesiredService:
    return DesiredService(tenant, "running", None, memory_mb, datetime(2026, 1, 1, tzinfo=UTC), free_port())


async def wait_for(check, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := await asyncio.to_thread(check):
            return result
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def cgroup_value(agent: Agent, tenant: str, controller: str, name: str) -> str:
    groups = sandbox.TenantCgroups(f"{sandbox.home_group(agent.home)}/{tenant}")
    return (groups.path(controller) / name).read_text()


def logged(home: Path, tenant: str, **fields) -> bool:
    """The tenant's runtime logged a record with these fields."""
    return bool(log_records(home / "logs" / f"runtime-{tenant}.log", **fields))


def oom_kills(agent: Agent, tenant: str) -> int:
    fields = dict(line.split() for line in cgroup_value(agent, tenant, "memory", "memory.oom_control").splitlines())
    return int(fields.get("oom_kill", 0))


async def test_a_hostile_tenant_stays_in_its_box_and_leaves_nothing_behind(tmp_path):
    home = tmp_path / "home"
    (home / "logs").mkdir(parents=True)
    (home / "credentials.json").write_text('{"postgres_password": "platform-secret"}')
    (home / "state.json").write_text("{}")
    store = ArtifactStore(home / "artifacts")
    for tenant in ("alpha", "beta"):
        store.publish_release(tenant, 1, attacker_zipapp())
        store.set_current(tenant, 1)
    agent = FixedDesired(home, "postgresql://unused", home / "artifacts", interval=0.3, grace=3, events="agent",
                         isolation=sandbox.Decision("required", True))
    agent.wanted = [service("alpha", 512), service("beta", 64)]
    agent.publisher = published = Published()
    running = asyncio.create_task(agent.run())
    daemon = None
    try:
        def serving() -> bool:
            recs = agent.state.tenants
            return all(t in recs and recs[t].healthy for t in ("alpha", "beta"))

        await wait_for(serving, 60, "both tenants serving, sandboxed")
        # Release 2 is a deploy (a cold start after which each runtime warms its zygote,
        # reloader.zygote); release 3 is forked from it: everything below is checked against
        # forked workers, which must be held exactly as cold ones.
        for version in (2, 3):
            if version == 3:
                await wait_for(lambda: all(logged(home, t, event="zygote.ready") for t in ("alpha", "beta")), 60,
                               "the zygotes")
            for tenant in ("alpha", "beta"):
                store.publish_release(tenant, version, attacker_zipapp())
                store.set_current(tenant, version)
            await wait_for(lambda v=version: all(logged(home, t, event="release.live", version=v)
                                                 for t in ("alpha", "beta")), 60, f"release {version} live")
        assert all(logged(home, t, event="release.live", version=3, forked=True) for t in ("alpha", "beta"))
        alpha, beta = agent.state.tenants["alpha"], agent.state.tenants["beta"]
        assert alpha.sandboxed and beta.sandboxed and alpha.uid != beta.uid
        assert agent.state.agent["sandbox"]["mode"] == "bwrap"
        # its reports reach the agent, which publishes them under its runtime source
        await wait_for(lambda: {(e.tenant_id, e.event_type) for e in published.envelopes}
                       >= {("alpha", "ReleaseActivated"), ("beta", "ReleaseActivated")}, 10, "the reports")
        assert {e.source for e in published.envelopes} == {"hostplane.runtime.alpha", "hostplane.runtime.beta"}
        async with httpx.AsyncClient(base_url=alpha.app_url, timeout=30) as client:
            who = (await client.get("/")).json()
            assert (who["uid"], who["gid"], who["groups"]) == (alpha.uid, alpha.uid, [])

            # nothing of the platform or of the other tenant is readable; its own files are
            async def read(path: Path) -> dict:
                return (await client.get("/read", params={"path": str(path)})).json()

            assert "read" in await read(home / "runtime" / "alpha" / "env.json")
            assert "read" in await read(home / "artifacts" / "alpha" / "current.json")
            for path in (home / "credentials.json", home / "state.json", home / "runtime" / "beta" / "env.json",
                         home / "artifacts" / "beta" / "current.json", home / "logs" / "runtime-alpha.log",
                         home / "runtime" / "agent.json", Path("/root/.bash_history"), Path("/etc/shadow")):
                assert "refused" in await read(path), path
            # and seen from the host, its env.json is its own uid's alone
            env_file = (home / "runtime" / "alpha" / "env.json").stat()
            assert (env_file.st_uid, env_file.st_mode & 0o777) == (alpha.uid, 0o600)

            # the forked worker and its zygote are the tenant's: its uid, its cgroups
            groups = sandbox.TenantCgroups(f"{sandbox.home_group(home)}/alpha")
            named = {p.info["name"]: p for p in psutil.process_iter(["name", "uids"])
                     if p.info["uids"] and p.info["uids"].real == alpha.uid}
            assert {WORKER_NAME, ZYGOTE_NAME} <= set(named)
            assert named[WORKER_NAME].ppid() == named[ZYGOTE_NAME].pid
            assert {named[WORKER_NAME].pid, named[ZYGOTE_NAME].pid} <= set(groups.pids())

            # pids.max holds
            forked = (await client.get("/fork", params={"n": 400})).json()
            assert 10 < forked["forked"] < sandbox.PIDS_MAX and forked["error"] == "BlockingIOError"
            assert "max " in cgroup_value(agent, "alpha", "pids", "pids.events")
            assert int(cgroup_value(agent, "alpha", "pids", "pids.events").split()[-1]) > 0

            # a double-forked, setsid'd daemon: alive, in the tenant's cgroup, as its uid
            marker = str(3000 + alpha.app_port % 1000)
            assert (await client.get("/daemon", params={"marker": marker})).status_code == 200

            def find_daemon() -> psutil.Process | None:
                for proc in psutil.process_iter(["cmdline", "uids"]):
                    if proc.info["cmdline"] == ["sleep", marker]:
                        return proc
                return None

            daemon = await wait_for(find_daemon, 10, "the daemon")
            assert daemon.uids().real == alpha.uid
            assert daemon.pid in groups.pids()

        # memory: a daemon the reloader does not watch allocates past the cgroup's limit
        limit_mb = int(cgroup_value(agent, "beta", "memory", "memory.limit_in_bytes")) // (1024 * 1024)
        assert limit_mb == 2 * 64 + sandbox.RELOADER_MB
        progress = home / "runtime" / "beta" / "work" / "hog.progress"
        async with httpx.AsyncClient(base_url=beta.app_url, timeout=30) as client:
            await client.get("/hog-daemon", params={"mb": 2 * limit_mb, "progress": str(progress)})
            await wait_for(lambda: oom_kills(agent, "beta") >= 1, 30, "the kernel to kill the hog")
            reached = int(progress.read_text())
            assert reached < 2 * limit_mb, "it got everything it asked for"
            assert int(cgroup_value(agent, "beta", "memory", "memory.max_usage_in_bytes")) <= limit_mb * 1024 * 1024
            assert (await client.get("/")).status_code == 200, "the tenant's app still serves"
        assert agent.state.tenants["beta"].healthy

        # the tenant is deleted: its daemon goes with it, and its cgroups and folder
        agent.wanted = [s for s in agent.wanted if s.tenant_id != "alpha"]
        await wait_for(lambda: "alpha" not in agent.state.tenants, 30, "alpha removed")
        await wait_for(lambda: not daemon.is_running(), 10, "the daemon to die")
        assert not groups.exists()
        assert not (home / "runtime" / "alpha").exists()
        assert "beta" in agent.state.tenants
    finally:
        agent.stop_requested.set()
        await asyncio.wait_for(running, 60)
        if daemon is not None and daemon.is_running():
            daemon.kill()
    assert agent.state.tenants == {}
    assert not sandbox.TenantCgroups(f"{sandbox.home_group(home)}/beta").exists()
    state = json.loads((home / "runtime" / "agent.json").read_text())
    assert state["agent"]["sandbox"] == {"requested": "required", "mode": "bwrap", "reason": None}

    # groups an agent killed mid-removal left behind are emptied and removed by the next one
    ghost = sandbox.TenantCgroups(f"{sandbox.home_group(home)}/ghost")
    ghost.ensure(sandbox.Limits.for_memory(64))
    FixedDesired(home, "postgresql://unused", home / "artifacts", isolation=sandbox.Decision("required", True)).adopt()
    assert not ghost.exists()

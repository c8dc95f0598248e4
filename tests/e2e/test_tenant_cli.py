"""`hostplane tenant ...` as a user runs it, against a platform started by `hostplane up`.

Stages whose services are not built yet are played by injecting their events into the
outbox (as those services will), so every outcome here is deterministic.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import asyncpg
import pytest

from contracts import BuildFailed, TenantDeprovisioned, TenantProvisioned
from contracts.envelope import Envelope, Event
from events.outbox import add_to_outbox
from hostplane.local.ephemeral import RunningPlatform, platform_settings, relaying_for, stop_components
from core.state import connection_info
from tests.support.events import sample

pytestmark = pytest.mark.e2e
EMULATOR = os.environ.get("HOSTPLANE_E2E_EMULATOR") or "moto"
SPEC = str(Path(__file__).resolve().parents[2] / "examples" / "tasks.yaml")
# These tests play the later stages by injecting their events; the real services would race them.
PLAYED_BY_TESTS = ("builder", "migrator")


def _tenant_command() -> list[str]:
    from hostplane.cli import app

    if any(g.name == "tenant" for g in app.registered_groups):
        return [sys.executable, "-m", "hostplane", "tenant"]
    # not mounted yet: the same sub-app, run directly
    return [sys.executable, "-c", "from hostplane.cli_tenant import tenant_app; tenant_app(prog_name='hostplane tenant')"]


TENANT = _tenant_command()


def hostplane(env, *args, timeout=240):
    return subprocess.run([sys.executable, "-m", "hostplane", *args], env=env, capture_output=True, text=True,
                          timeout=timeout)


def tenant(env, *args, timeout=60):
    return subprocess.run([*TENANT, *args], env=env, capture_output=True, text=True, timeout=timeout)


def start_tenant(env, *args):
    return subprocess.Popen([*TENANT, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    settings = platform_settings(tmp_path_factory.mktemp("tenant-cli") / "home", EMULATOR)
    env = RunningPlatform(settings=settings, conn=None, emulator=EMULATOR).env()  # type: ignore[arg-type]
    env["COLUMNS"] = "200"
    up = hostplane(env, "up")
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        stop_components(settings, PLAYED_BY_TESTS)
        with relaying_for(settings, PLAYED_BY_TESTS):
            yield settings, env
    finally:
        hostplane(env, "down", "--purge")


def inject(settings, name: str, kind: str, *events: Event, producer: str, wait_s: float = 20) -> None:
    """Once the tenant's `kind` request exists, commit `events` with its correlation id."""

    async def go() -> None:
        conn = await asyncpg.connect(connection_info(settings.home_dir).control_dsn)
        try:
            deadline = time.monotonic() + wait_s
            corr = None
            while corr is None and time.monotonic() < deadline:
                corr = await conn.fetchval("SELECT correlation_id FROM tenant_requests WHERE tenant_id = $1 "
                                           "AND kind = $2 ORDER BY generation DESC LIMIT 1", name, kind)
                await asyncio.sleep(0.1)
            assert corr is not None, f"no {kind} request for {name}"
            envs = [Envelope.new(e, tenant_id=name, producer=producer, correlation_id=uuid.UUID(str(corr)))
                    for e in events]
            async with conn.transaction():
                await add_to_outbox(conn, envs)
        finally:
            await conn.close()

    asyncio.run(go())


def test_create_show_list_env_delete(platform):
    settings, env = platform
    made = tenant(env, "create", "acme", "--app", SPEC, "--domain", "Shop.Example.com", "--wait",
                  "--until", "provisioning", "--json")
    assert made.returncode == 0, made.stderr
    assert json.loads(made.stdout)["state"] in ("provisioning", "building")

    shown = tenant(env, "show", "acme", "--json")
    doc = json.loads(shown.stdout)
    assert {"name", "state", "version", "url"} <= set(doc)
    assert doc["url"] == f"http://acme.localhost:{settings.edge_port}/" and doc["custom_domain"] == "shop.example.com"
    assert "acme" in tenant(env, "show", "acme").stdout
    assert [t["name"] for t in json.loads(tenant(env, "list", "--json").stdout)] == ["acme"]

    dup = tenant(env, "create", "acme", "--app", SPEC)
    assert dup.returncode == 1 and "tenant 'acme' already exists" in dup.stderr
    bad = tenant(env, "create", "Admin", "--app", SPEC)
    assert bad.returncode == 1 and "must be 2-31 characters" in bad.stderr

    inject(settings, "acme", "create", sample(TenantProvisioned), producer="provisioner")
    secrets = tenant(env, "env", "acme")
    if secrets.returncode == 0:  # the provisioner wrote the tenant's secret
        assert "DATABASE_URL=" in secrets.stdout and "REDIS_URL=" in secrets.stdout
        password = next(line.split("=", 1)[1] for line in secrets.stdout.splitlines()
                        if line.startswith("DB_PASSWORD="))
        for args in (("show", "acme", "--json"), ("list", "--json"), ("show", "acme")):
            assert password not in tenant(env, *args).stdout
    else:
        assert secrets.returncode == 1 and "no credentials yet" in secrets.stderr

    deleting = start_tenant(env, "delete", "acme", "--wait", "--timeout", "30")
    inject(settings, "acme", "delete", sample(TenantDeprovisioned), producer="deprovisioner")
    out, errs = deleting.communicate(timeout=60)
    assert deleting.returncode == 0, errs
    assert "deleted" in errs and "✓ deprovision" in errs
    assert json.loads(tenant(env, "list", "--json").stdout) == []


def test_wait_names_the_failing_stage(platform):
    settings, env = platform
    waiting = start_tenant(env, "create", "broken", "--app", SPEC, "--wait", "--timeout", "30")
    inject(settings, "broken", "create", sample(TenantProvisioned), producer="provisioner")
    inject(settings, "broken", "create",
           sample(BuildFailed).model_copy(update={"stage": "codegen", "error": "entity task: cannot generate"}),
           producer="builder")
    out, errs = waiting.communicate(timeout=60)
    assert waiting.returncode == 1, errs
    assert "failed at stage building (codegen): entity task: cannot generate" in errs
    assert "✗ build" in errs


def test_wait_times_out_naming_what_it_waits_for(platform):
    _, env = platform
    made = tenant(env, "create", "slow", "--app", SPEC, "--wait", "--timeout", "1")
    assert made.returncode == 3
    assert "timed out after 1s: tenant slow is" in made.stderr and "waiting for" in made.stderr


def test_without_a_platform_it_says_so(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOSTPLANE_")} | {"HOSTPLANE_HOME": str(tmp_path)}
    result = tenant(env, "list")
    assert result.returncode == 2 and "not running" in result.stderr

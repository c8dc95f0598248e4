"""A hostile tenant against a victim and the platform (issue 14), driven like a user would.

`mallory` deploys source that runs tests/e2e/hostile_probe.py from inside its own runtime:
files, processes, PostgreSQL as superuser, Valkey, Caddy's admin endpoint, the emulator
with and without keys (secrets, buckets, events, queues, /moto-api, CORS), the API without
its token, and a daemon that tries to outlive the tenant. Forged events of each kind are
published as a caller holding bus credentials would (the platform's own key: stronger than
anything a tenant has). A spec tries to inject code through its title.
Then `victim` still serves its own rows, its resources and audit trail are intact, and every
attempt was refused. moto only: LocalStack's community edition does not enforce IAM
(docs/security.md).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from contracts.tenant import tenant_names
from hostplane.local.ephemeral import RunningPlatform, platform_settings
from core.state import CONTROL_DATABASE, connection_info, load_state
from reloader.landlock import abi_version
from tests.support.cli import hostplane, ok

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
PROBE = Path(__file__).with_name("hostile_probe.py")
VICTIM, MALLORY, INJECT = "victim", "mallory", "inject"


@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    settings = platform_settings(tmp_path_factory.mktemp("hostile") / "home", "moto")
    env = RunningPlatform(settings=settings, conn=None, emulator="moto").env()  # type: ignore[arg-type]
    up = hostplane(env, "up")
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        yield settings, env
    finally:
        hostplane(env, "down", "--purge")


def edge(settings, name: str) -> httpx.Client:
    return httpx.Client(base_url=f"http://127.0.0.1:{settings.edge_port}", headers={"Host": f"{name}.localhost"},
                        timeout=60)


def wait_for(check, what: str, wait_s: float = 60.0):
    deadline = time.monotonic() + wait_s
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"never: {what}")
        time.sleep(0.25)


def targets(settings, env) -> str:
    home = settings.home_dir
    state = load_state(home)
    names = tenant_names(VICTIM)
    admin_socket = getattr(state, "caddy_admin_socket", None) or str(home / "run" / "caddy-admin.sock")
    values = {
        "HOME": str(home), "VICTIM": VICTIM, "ATTACKER": MALLORY, "VICTIM_DATABASE": names.database,
        "CONTROL_DATABASE": CONTROL_DATABASE, "VICTIM_SECRET": names.secret, "VICTIM_BUCKET": names.bucket,
        "POSTGRES_PORT": settings.postgres_port, "VALKEY_PORT": settings.valkey_port,
        "CADDY_ADMIN_PORT": settings.caddy_admin_port, "CADDY_ADMIN_SOCKET": admin_socket,
        "EMULATOR_URL": state.aws_endpoint, "REGION": settings.region, "BUS": settings.name_prefix,
        "DEPROVISIONER_QUEUE": f"{settings.name_prefix}-deprovisioner",
        "API_URL": f"http://127.0.0.1:{settings.api_port}",
    }
    return "".join(f"{k} = {v!r}\n" for k, v in values.items())


def audit(env, name: str) -> list[dict]:
    return json.loads(ok(hostplane(env, "audit", "--tenant", name, "--json")))


def tenant_uid_processes(uid: int) -> list[int]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if os.stat(f"/proc/{pid}").st_uid == uid:
                found.append(int(pid))
        except OSError:
            pass
    return found


def forge(settings, env, detail_type: str, producer_source: str, tenant: str, data: dict) -> None:
    """Publish as a holder of bus credentials would, with the platform's own key."""
    from core.aws import aws_client
    from core.settings import Settings

    detail = {"event_id": str(uuid.uuid4()), "event_type": detail_type, "schema_version": "1.0",
              "occurred_at": datetime.now(UTC).isoformat(), "tenant_id": tenant,
              "correlation_id": str(uuid.uuid4()), "producer": producer_source.removeprefix("hostplane.")
              .split(".")[0], "data": data}

    async def put() -> None:
        async with aws_client("events", Settings(home=settings.home, region=settings.region)) as events:
            answer = await events.put_events(Entries=[{
                "EventBusName": settings.name_prefix, "Source": producer_source, "DetailType": detail_type,
                "Detail": json.dumps(detail)}])
            assert answer["FailedEntryCount"] == 0, answer

    asyncio.run(put())


def test_a_hostile_tenant_changes_nothing_of_the_victim_or_the_platform(platform, tmp_path):
    settings, env = platform
    home = settings.home_dir
    ok(hostplane(env, "tenant", "create", VICTIM, "--app", str(EXAMPLES / "tasks.yaml"), "--wait", "--timeout", "120"))
    with edge(settings, VICTIM) as victim:
        assert victim.post("/api/task", json={"title": "keep me"}).status_code == 201
        rows_before = victim.get("/api/task").json()
    victim_show = json.loads(ok(hostplane(env, "tenant", "show", VICTIM, "--json")))
    status = json.loads(ok(hostplane(env, "status", "--json")))
    assert status["sandbox"]["mode"] == "bwrap", status["sandbox"]  # root + bwrap + cgroups here: never bare
    assert status["runtime"][VICTIM]["sandboxed"] is True
    audit_before = audit(env, VICTIM)

    # The attacker: its own tenant, then its own code.
    ok(hostplane(env, "tenant", "create", MALLORY, "--app", str(EXAMPLES / "tasks.yaml"), "--wait", "--timeout", "120"))
    src = tmp_path / "src"
    ok(hostplane(env, "app", "export", MALLORY, str(src)))
    shutil.copy(PROBE, src / "attack.py")
    (src / "targets.py").write_text(targets(settings, env))
    app_py = (src / "app.py").read_text()
    app_py = app_py.replace("from appkit import", "from starlette.routing import Route\nfrom attack import attack\n"
                            "from appkit import", 1)
    app_py = app_py.replace("build_app(TITLE, ENTITIES, PAGES", "build_app(TITLE, ENTITIES, PAGES, "
                            "extra_routes=[Route('/attack', attack)]", 1)
    assert "extra_routes" in app_py
    (src / "app.py").write_text(app_py)
    ok(hostplane(env, "app", "deploy", MALLORY, "--source", str(src), "--wait", "--timeout", "120"))

    with edge(settings, MALLORY) as mallory:
        resp = wait_for(lambda: (r := mallory.get("/attack")).status_code == 200 and r, "the attack route serves")
    verdicts = resp.json()
    breaches = {k: v for k, v in verdicts.items() if v["outcome"] != "refused"}
    if abi_version() < 4:  # a kernel without Landlock's network rules: that one boundary is absent, and said
        breaches.pop("bind a TCP port", None)
        assert any('"sandbox.tcp_bind_unrestricted"' in line for _, line in _service_logs(home))
    assert not breaches, json.dumps(breaches, indent=2)
    assert len(verdicts) >= 30, sorted(verdicts)  # every probe ran

    # Forged events with bus credentials in hand: each is refused by its consumer.
    # The attacker's own recorded deploy (its uploaded source), re-addressed to the victim.
    deploy = asyncio.run(_last_deploy(home, MALLORY))
    forge(settings, env, "TenantDeletionRequested", f"hostplane.runtime.{MALLORY}", VICTIM, {})
    forge(settings, env, "TenantDeletionRequested", "hostplane.builder", VICTIM, {})
    forge(settings, env, "ReleaseFailed", f"hostplane.runtime.{MALLORY}", VICTIM,
          {"version": victim_show["version"], "reason": "health_check"})
    forge(settings, env, "AppUpdateRequested", "hostplane.api", VICTIM,
          {**deploy, "allow_destructive": True})

    # A spec is data: a title that closes the docstring and runs code at import does neither.
    shutil.copytree(EXAMPLES / "static", tmp_path / "static")
    evil = tmp_path / "evil.yaml"
    marker = "pwned-by-title"
    evil.write_text((EXAMPLES / "tasks.yaml").read_text().replace(
        "app: Tasks", f"app: '\"\"\"; import os; os.mkdir(\"{marker}\"); \"\"\"'", 1))
    assert marker in evil.read_text()
    ok(hostplane(env, "tenant", "create", INJECT, "--app", str(evil), "--wait", "--timeout", "120"))
    with edge(settings, INJECT) as inject:
        assert inject.get("/healthz").status_code == 200
    assert not list(home.rglob(marker)), "the title ran as code"

    time.sleep(5)  # forged events had time to reach every consumer
    with edge(settings, VICTIM) as victim:
        assert victim.get("/api/task").json() == rows_before
        assert victim.get("/static/pwned.txt").status_code == 404
    shown = json.loads(ok(hostplane(env, "tenant", "show", VICTIM, "--json")))
    assert shown["state"] == "ready" and shown["version"] == victim_show["version"], shown
    orphans = json.loads(ok(hostplane(env, "doctor", "--orphans", "--json")))
    assert orphans == [], orphans
    audit_after = audit(env, VICTIM)
    assert audit_after[-len(audit_before):] == audit_before if audit_before else True  # nothing erased
    logs = _service_logs(home)
    refused = [json.loads(line) | {"log": name} for name, line in logs if '"events.refused"' in line]
    seen = {(r.get("event_type"), r.get("source")) for r in refused if r.get("tenant_id") == VICTIM}
    for forged in (("TenantDeletionRequested", f"hostplane.runtime.{MALLORY}"),
                   ("TenantDeletionRequested", "hostplane.builder"),
                   ("ReleaseFailed", f"hostplane.runtime.{MALLORY}")):
        assert forged in seen, f"{forged} left no trace: {seen}"
    # The deprovisioner, whose handler deletes everything, refused the forgery itself.
    assert any(r.get("event_type") == "TenantDeletionRequested" and r["log"].startswith("deprovisioner")
               for r in refused), refused
    assert any('"command.unrecorded"' in line for _, line in logs), "the forged command left no trace"

    # The daemon dies with its tenant.
    uid = _tenant_uid(home, MALLORY)
    assert tenant_uid_processes(uid), "the attacker's runtime runs under its own uid"
    ok(hostplane(env, "tenant", "delete", MALLORY, "--wait", "--timeout", "120"))
    wait_for(lambda: not tenant_uid_processes(uid), "every process of the deleted tenant is gone", 30)
    with edge(settings, VICTIM) as victim:
        assert victim.get("/api/task").json() == rows_before


async def _last_deploy(home: Path, tenant: str) -> dict:
    """The `data` of the tenant's last source deploy, from the event log."""
    import asyncpg

    conn = await asyncpg.connect(connection_info(home).control_dsn)
    try:
        detail = await conn.fetchval(
            "SELECT detail FROM outbox WHERE tenant_id = $1 AND event_type = 'AppUpdateRequested' "
            "AND detail->'data' ? 'source_ref' ORDER BY seq DESC LIMIT 1", tenant)
    finally:
        await conn.close()
    data = json.loads(detail)["data"]
    assert data.get("source_ref"), data
    return data


def _service_logs(home: Path) -> list[tuple[str, str]]:
    """(log file name, line) of every platform log."""
    return [(log.name, line) for log in (home / "logs").glob("*.log")
            for line in log.read_text(errors="replace").splitlines()]


def _tenant_uid(home: Path, tenant: str) -> int:
    state = json.loads((home / "runtime" / "agent.json").read_text()) if (home / "runtime" / "agent.json").exists() \
        else {}
    rec = state.get("tenants", {}).get(tenant, {})
    if rec.get("uid"):
        return int(rec["uid"])
    return int(os.environ.get("HOSTPLANE_SANDBOX_UID_BASE", "200000")) + int(rec["app_port"])

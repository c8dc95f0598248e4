"""Fault tests: a fault during or after tenant creation loses nothing and duplicates nothing.

One platform (`hostplane up`) for the whole module, with the moto emulator only: LocalStack keeps
its state in memory and loses it when restarted, so moto is the emulator whose buckets and secrets
survive the restarts these tests provoke (moto itself is never restarted here).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import asyncpg
import httpx
import psutil
import pytest

from contracts.tenant import tenant_names
from core.aws import aws_client
from hostplane.local.ephemeral import RunningPlatform, platform_settings
from core.state import connection_info, load_state
from tests.support.cli import hostplane, ok
from tests.support.edge_watch import Answer, EdgeWatch, Round

pytestmark = pytest.mark.e2e
SPEC = str(Path(__file__).resolve().parents[2] / "examples" / "tasks.yaml")
BASE = ("fa", "fb")  # created ready by the fixture


@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    settings = platform_settings(tmp_path_factory.mktemp("faults") / "home", "moto")
    env = RunningPlatform(settings=settings, conn=None, emulator="moto").env()  # type: ignore[arg-type]
    env["COLUMNS"] = "200"  # RunningPlatform.env() drops HOSTPLANE_*: router-config's periods are its defaults
    try:
        ok(hostplane(env, "up"))
        for name in BASE:
            made = json.loads(ok(hostplane(env, "tenant", "create", name, "--app", SPEC, "--wait", "--json",
                                           "--timeout", "120")))
            assert made["state"] == "ready", made
        yield settings, env
    finally:
        hostplane(env, "down", "--purge")


def edge_version(settings, tenant: str) -> int | None:
    try:
        resp = httpx.get(f"http://127.0.0.1:{settings.edge_port}/healthz",
                         headers={"Host": tenant_names(tenant).host}, timeout=3)
    except httpx.HTTPError:
        return None
    return resp.json().get("version") if resp.status_code == 200 else None


def wait_serving(settings, tenants, timeout: float) -> float:
    """Seconds until every tenant answers through the edge; fails after `timeout`."""
    start = time.monotonic()
    pending = set(tenants)
    while pending:
        pending = {t for t in pending if edge_version(settings, t) is None}
        assert time.monotonic() - start < timeout, f"not serving after {timeout}s: {sorted(pending)}"
        if pending:
            time.sleep(0.2)
    return time.monotonic() - start


def component_pid(settings, name: str) -> int:
    state = load_state(settings.home_dir)
    assert state is not None and name in state.components, name
    return state.components[name].pid


def agent_tenants(settings) -> dict:
    return json.loads((settings.home_dir / "runtime" / "agent.json").read_text()).get("tenants", {})


def inventory(settings) -> dict[str, Counter]:
    """Every per-tenant resource, counted by tenant, straight from the real backends."""
    info = connection_info(settings.home_dir)

    async def go() -> dict[str, Counter]:
        import redis.asyncio as redis

        conn = await asyncpg.connect(info.control_dsn)
        try:
            dbs = [r[0] for r in await conn.fetch("SELECT datname FROM pg_database WHERE datname LIKE 't\\_%'")]
            roles = [r[0] for r in await conn.fetch("SELECT rolname FROM pg_roles WHERE rolname LIKE 't\\_%'")]
        finally:
            await conn.close()
        cache = redis.from_url(info.valkey_url)
        try:
            users = [u.decode() if isinstance(u, bytes) else u for u in await cache.acl_users()]
        finally:
            await cache.aclose()
        async with aws_client("s3", settings) as s3:
            buckets = [b["Name"] for b in (await s3.list_buckets()).get("Buckets", [])]
        async with aws_client("secretsmanager", settings) as sm:
            secrets = [s["Name"] for s in (await sm.list_secrets(MaxResults=100)).get("SecretList", [])]
        conn = await asyncpg.connect(info.control_dsn)
        try:  # what the edge's route resolver answers from
            routes = [r[0] for r in await conn.fetch("SELECT route_id FROM routes WHERE deleted_at IS NULL")]
        finally:
            await conn.close()
        return {"database": Counter(dbs), "role": Counter(roles), "cache_user": Counter(users),
                "bucket": Counter(buckets), "secret": Counter(secrets), "route": Counter(routes)}

    return asyncio.run(go())


def assert_exactly_one_of_each(settings, tenants) -> None:
    inv = inventory(settings)
    for t in tenants:
        n = tenant_names(t, prefix=settings.name_prefix)
        for kind, key in (("database", n.database), ("role", n.db_role), ("cache_user", n.cache_user),
                          ("bucket", n.bucket), ("secret", n.secret), ("route", n.route_id)):
            assert inv[kind][key] == 1, f"{t}: {kind} {key} counted {inv[kind][key]}"


def assert_no_duplicate_runtimes(settings, tenants) -> None:
    """One live reloader per tenant, as agent.json records it, and no stray reloader for a tenant."""
    recorded = agent_tenants(settings)
    home = str(settings.home_dir)
    for t in tenants:
        rec = recorded.get(t)
        assert rec and rec.get("pid") and psutil.pid_exists(rec["pid"]), f"{t}: no live runtime ({rec})"
        runtime_dir = f"{home}/runtime/{t}"
        matching = {}
        for p in psutil.process_iter(["pid", "cmdline", "ppid"]):
            cmd = " ".join(p.info["cmdline"] or [])
            if "reloader" in cmd and runtime_dir in cmd and "hostplane.local.agent" not in cmd:
                matching[p.info["pid"]] = p.info["ppid"]
        # Count only top-level ones: not the reloader's workers, nor the sandbox's chain
        # (cgroup shell -> bwrap -> bwrap's init -> reloader) below one runtime.
        reloaders = [pid for pid, parent in matching.items() if parent not in matching]
        assert len(reloaders) <= 1, f"{t}: {len(reloaders)} reloaders: {reloaders}"


def tenant_show(env, name: str) -> dict:
    return json.loads(ok(hostplane(env, "tenant", "show", name, "--json")))


def log_tail(settings, service: str, lines: int = 30) -> str:
    """The end of a service's log, for a failure message."""
    path = settings.home_dir / "logs" / f"{service}.log"
    text = path.read_text(errors="replace") if path.exists() else ""
    return f"{service}.log tail:\n" + "\n".join(line[:300] for line in text.splitlines()[-lines:])


@pytest.mark.timeout(120)
def test_caddy_or_the_route_resolver_restarted_serves_every_tenant_at_once(platform):
    """Caddy holds no per-tenant state: killed and started again from its fixed config (no
    `--resume`, nothing saved), it serves every tenant as soon as it is up. The route
    resolver killed and started again reads the routes table and answers again."""
    settings, env = platform
    assert wait_serving(settings, BASE, 10) < 10
    for component in ("caddy", "route-resolver"):
        os.kill(component_pid(settings, component), signal.SIGKILL)
        time.sleep(0.5)
        ok(hostplane(env, "up"))
        took = wait_serving(settings, BASE, 10)
        print(f"every tenant served {took:.2f}s after `up` restarted {component}")
    assert not list(settings.home_dir.rglob("autosave.json")), "caddy saves no config of its own"
    assert_exactly_one_of_each(settings, BASE)


@pytest.mark.timeout(120)
def test_runtime_agent_killed_apps_keep_serving_no_duplicates(platform):
    """SIGKILL of the runtime agent: the tenant apps keep serving; the restarted agent adopts them."""
    settings, env = platform
    before = {t: agent_tenants(settings)[t]["pid"] for t in BASE}
    os.kill(component_pid(settings, "runtime-agent"), signal.SIGKILL)
    time.sleep(1)
    for t in BASE:  # the reloaders are not the agent: they outlive it
        assert edge_version(settings, t) == 1, t
    ok(hostplane(env, "up"))
    time.sleep(3)  # a few reconcile rounds of the new agent
    wait_serving(settings, BASE, 30)
    after = {t: agent_tenants(settings)[t]["pid"] for t in BASE}
    assert after == before, "the restarted agent replaced running apps instead of adopting them"
    assert_no_duplicate_runtimes(settings, BASE)


@pytest.mark.timeout(120)
def test_replaying_a_ready_tenant_changes_nothing(platform):
    """Every recorded event of a ready tenant published again: same version, resources, releases."""
    settings, env = platform
    before = tenant_show(env, "fa")
    releases_before = ok(hostplane(env, "tenant", "releases", "fa", "--json"))
    inv_before = inventory(settings)
    out = ok(hostplane(env, "events", "replay", "--tenant", "fa"))
    assert "queued" in out and not out.startswith("queued 0")
    time.sleep(8)  # let every service consume the replays
    after = tenant_show(env, "fa")
    assert (after["state"], after["version"]) == (before["state"], before["version"]) == ("ready", 1)
    assert ok(hostplane(env, "tenant", "releases", "fa", "--json")) == releases_before
    assert inventory(settings) == inv_before
    assert edge_version(settings, "fa") == 1
    assert_no_duplicate_runtimes(settings, BASE)


SERVERS = {"moto", "localstack", "postgres", "valkey", "caddy"}


def wait_all_ready(env, names, timeout: float) -> dict[str, dict]:
    deadline = time.monotonic() + timeout
    while True:
        listed = {t["name"]: t for t in json.loads(ok(hostplane(env, "tenant", "list", "--json")))}
        states = {n: listed.get(n, {}).get("state") for n in names}
        if all(s == "ready" for s in states.values()):
            return listed
        assert time.monotonic() < deadline, f"not all ready after {timeout}s: {states}"
        time.sleep(2)


@pytest.mark.timeout(420)
def test_sigkill_each_service_during_20_creations(platform):
    """20 creations in flight; every control-plane service (and the runtime agent) SIGKILLed once, in
    turn, 1.5 s apart, each restarted by `hostplane up`. One batch of 20 rather than 20 per service:
    6 batches of 20 would take ~10 minutes on a 2-core machine. All 20 reach ready with exactly one
    of each resource, one release (version 1) and one runtime each."""
    settings, env = platform
    names = [f"k{i:02d}" for i in range(20)]
    procs = [subprocess.Popen([sys.executable, "-m", "hostplane", "tenant", "create", n, "--app", SPEC],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for n in names]
    for n, p in zip(names, procs):
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, f"{n}: {err}"
    state = load_state(settings.home_dir)
    services = [c for c in state.components if c not in SERVERS]
    assert {"api", "provisioner", "runtime-agent"} <= set(services), services
    for service in services:
        os.kill(component_pid(settings, service), signal.SIGKILL)
        time.sleep(1.5)
        ok(hostplane(env, "up"))
    listed = wait_all_ready(env, names, 300)
    assert all(listed[n]["version"] == 1 for n in names), {n: listed[n]["version"] for n in names}
    assert_exactly_one_of_each(settings, names)
    wait_serving(settings, names, 60)
    assert_no_duplicate_runtimes(settings, names)
    for n in names[:3]:
        releases = json.loads(ok(hostplane(env, "tenant", "releases", n, "--json")))
        assert releases["live"] == 1 and [r["version"] for r in releases["releases"]] == [1], releases


@pytest.mark.timeout(240)
def test_poison_message_dead_letters_then_redrive_brings_it_ready(platform):
    """A realistic transient fault injected through data: an operator's idle session left open on
    `template1` makes every CREATE DATABASE fail ("source database template1 is being accessed by
    other users", SQLSTATE 55006: transient, so retried). After the queue's max receives (backoff
    1+3+6+12 s: the test platform's `retry_delay_s` is 1.5) the TenantRequested lands in the provisioner's DLQ and the tenant shows `failed` at
    provisioning; once the session is closed, `hostplane dlq redrive` brings the tenant to ready
    with exactly one of each resource."""
    from core.state import load_or_create_credentials

    settings, env = platform
    # template1 is closed to everyone but the superuser (the control role included): the fault injector is it
    superuser = load_or_create_credentials(settings.home_dir).postgres_password
    loop = asyncio.new_event_loop()
    blocker = loop.run_until_complete(asyncpg.connect(host=settings.host, port=settings.postgres_port,
                                                      user="postgres", password=superuser, database="template1"))
    try:
        ok(hostplane(env, "tenant", "create", "poison", "--app", SPEC))
        deadline = time.monotonic() + 120
        while (shown := tenant_show(env, "poison"))["state"] != "failed":
            assert shown["state"] != "ready", "ready despite the blocked CREATE DATABASE"
            assert time.monotonic() < deadline, f"not failed after 120 s: {shown}"
            time.sleep(2)
        assert "provision" in json.dumps(shown).lower(), shown
        assert "template1" in json.dumps(shown) or shown.get("error") or shown.get("errors"), shown
    finally:
        loop.run_until_complete(blocker.close())
        loop.close()
    # `failed` shows on the last failed receive; SQS moves the message to the DLQ on the receive
    # after that, once its visibility (the backoff) expires, so the DLQ fills a little later.
    deadline = time.monotonic() + 90
    while "poison" not in (listed := ok(hostplane(env, "dlq", "list", "--json"))):
        assert time.monotonic() < deadline, f"nothing for poison in the DLQ: {listed}"
        time.sleep(3)
    assert tenant_show(env, "poison")["state"] == "failed"
    out = ok(hostplane(env, "dlq", "redrive"))
    assert "redrove" in out and "redrove 0" not in out, out
    wait_all_ready(env, ["poison"], 90)
    assert_exactly_one_of_each(settings, ["poison"])
    wait_serving(settings, ["poison"], 30)


def release_failures(settings, tenant: str) -> list[dict]:
    """ReleaseFailed envelopes of `tenant` in the event log (the reloader's, recorded by the API)."""
    async def go() -> list[dict]:
        conn = await asyncpg.connect(connection_info(settings.home_dir).control_dsn)
        try:
            rows = await conn.fetch("SELECT detail::text FROM outbox WHERE tenant_id = $1 "
                                    "AND event_type = 'ReleaseFailed'", tenant)
        finally:
            await conn.close()
        return [json.loads(r[0]) for r in rows]

    return asyncio.run(go())


@pytest.mark.timeout(120)
def test_an_interrupted_artifact_write_is_never_run(platform):
    """A writer that died half-way: a leftover temporary release folder, and a release whose
    app.pyz stops half-way through while its manifest names the whole file's digest (what a
    torn write on a shared file system looks like), made live by moving current.json. The
    reloader refuses it (ReleaseFailed) and version 1 keeps serving through the edge."""
    from artifacts.store import ArtifactStore, store_root

    settings, env = platform
    tenant = "fb"
    assert edge_version(settings, tenant) == 1
    store = ArtifactStore(store_root(settings))
    v1_dir = store.release_dir(tenant, 1)
    whole = (v1_dir / "app.pyz").read_bytes() + b"# the rest of a bigger release\n"
    leftover = v1_dir.parent / ".tmp-2-deadbeef"
    leftover.mkdir()
    (leftover / "app.pyz").write_bytes(whole[: len(whole) // 3])  # never renamed: must stay unseen
    torn = store.release_dir(tenant, 2)
    torn.mkdir()
    (torn / "app.pyz").write_bytes(whole[: len(whole) // 2])
    manifest = json.loads((v1_dir / "manifest.json").read_text())
    manifest |= {"version": 2, "sha256": __import__("hashlib").sha256(whole).hexdigest(), "size": len(whole)}
    (torn / "manifest.json").write_text(json.dumps(manifest))
    store.set_current(tenant, 2)

    deadline = time.monotonic() + 60
    failed = []
    while not failed:
        assert time.monotonic() < deadline, "no ReleaseFailed for the torn release"
        failed = [e for e in release_failures(settings, tenant) if e["data"]["version"] == 2]
        assert edge_version(settings, tenant) == 1, "the torn release must never serve"
        time.sleep(0.5)
    assert failed[0]["data"]["reason"] in ("digest_mismatch", "artifact_truncated", "release_partial"), failed[0]
    for _ in range(10):  # and it stays that way
        assert edge_version(settings, tenant) == 1
        time.sleep(0.2)
    assert agent_tenants(settings)[tenant]["live_version"] == 1
    assert_no_duplicate_runtimes(settings, [tenant])


RECOVERY_S = 15  # PostgreSQL accepting again -> the app answering from it, without a redeploy
TITLE = "kept through the restart"
OUTAGE_S = 3  # PostgreSQL left stopped this long before `up`: a dozen rounds of the watch see it away


def assert_served_through_the_outage(rounds: list[Round], gone_at: float, task: int, person: int) -> float:
    """What "the tenant kept serving" can mean while its PostgreSQL restarts, asserted over
    every answer the watch got; returns the seconds from PostgreSQL accepting connections
    again to the app answering a database read.

    Needs no database, so never fails: the edge itself (Caddy answers every request), static
    files (Caddy reads them from the bucket), the app process (/healthz answers 503 from the
    app, never a proxy error), and the task list (a cached read, from the tenant's Valkey).
    Needs the database, so fails during the outage and comes back by itself: /healthz 200
    and a row read. Never happens: a v2 app without the v2 schema, or v1 again after v2."""
    def at(r: Round) -> float:
        return round(r.at - gone_at, 2)

    def answers(path: str) -> list[tuple[Round, Answer]]:
        return [(r, r.answers[path]) for r in rounds if path in r.answers]

    lost = [(at(r), p, a.error) for r in rounds for p, a in r.answers.items() if a.status is None]
    assert not lost, f"no HTTP answer from the edge: {lost[:5]}"
    static = [(at(r), a.status) for r, a in answers("/static/style.css") if a.status != 200]
    assert not static, f"static files stopped: {static[:5]}"
    not_app = [(at(r), a.status, a.body) for r, a in answers("/healthz")
               if a.status not in (200, 503) or not isinstance(a.body, dict) or a.body.get("version") not in (1, 2)]
    assert not not_app, f"/healthz not answered by the app itself: {not_app[:5]}"
    unlisted = [(at(r), a.status, a.body) for r, a in answers("/api/task")
                if a.status != 200 or task not in [i["id"] for i in a.body["items"]]]
    assert not unlisted, f"the task list stopped: {unlisted[:5]}"

    outage = [r for r in rounds if r.at > gone_at and not r.database_up]
    assert len(outage) >= 5, f"the watch saw PostgreSQL away in {len(outage)} rounds only"
    assert all(r.answers["/api/task"].cache == "hit" for r in outage), "the list needed the database"
    assert any(r.answers["/healthz"].status == 503 for r in outage), "the app never noticed the outage"
    back = next(r for r in rounds if r.at > gone_at and r.database_up)
    reads = [(r, r.answers["/healthz"].status == 200 and r.answers[f"/api/person/{person}"].status == 200)
             for r in rounds if r.at >= back.at]
    healed = next((i for i, (_, good) in enumerate(reads) if good), None)
    assert healed is not None, "the app never read from its database again"
    relapsed = [(at(r), r.answers["/healthz"].status, r.answers[f"/api/person/{person}"].status)
                for r, good in reads[healed:] if not good]
    assert not relapsed, f"database reads failed again after recovering: {relapsed[:5]}"

    v2 = [r for r, a in answers("/healthz") if a.body["version"] == 2]
    assert v2, "v2 never answered while watched"
    for r in v2:  # a v2 app reads its own schema: the new column and the new table
        item, projects = r.answers[f"/api/task/{task}"], r.answers["/api/project"]
        assert item.status == 200 and "notes" in item.body and item.body["title"] == TITLE, (at(r), item)
        assert projects.status == 200 and projects.body["items"] == [], (at(r), projects)
    late_v1 = [at(r) for r, a in answers("/healthz") if a.body["version"] == 1 and r.at > v2[0].at + 3]
    assert not late_v1, f"v1 answered again after v2 went live: {late_v1[:5]}"
    first = reads[healed][0]
    assert first.answers["/healthz"].body["version"] == 1, "only the new release's fresh process read again"
    seen = {p: sorted({r.answers[p].status for r in outage}) for p in outage[0].answers}
    took = first.at - back.at
    print(f"postgres away {back.at - gone_at:.1f}s ({len(outage)} of {len(rounds)} rounds, answers {seen}); "
          f"v1 read from it again {took:.2f}s after it accepted connections (0: in that same round, "
          f"rounds every ~{(rounds[-1].at - rounds[0].at) / (len(rounds) - 1):.2f}s); "
          f"v2 live {v2[0].at - back.at:.1f}s after")
    return took


@pytest.mark.timeout(240)
def test_postgresql_restarted_during_a_migration_leaves_old_or_new_never_half(platform, tmp_path):
    """The migrator's transaction is held open (a session locks the table it alters, after
    the migration already created a new table) when PostgreSQL stops immediately (SIGQUIT:
    no checkpoint, crash recovery on start). After `hostplane up` starts it again, the
    tenant's schema and ledger agree (old or new, never the new table without the new
    version), the migration is retried to the end, and the app serves the new version.
    Throughout, a client at the tenant's edge URL sees it keep serving what needs no
    database, its reads come back by themselves (same runtime, no app restart), and a v2
    app never meets a v1 schema (assert_served_through_the_outage)."""
    import yaml

    settings, env = platform
    tenant = "pgm"
    made = json.loads(ok(hostplane(env, "tenant", "create", tenant, "--app", SPEC, "--wait", "--json",
                                   "--timeout", "120")))
    assert made["state"] == "ready", made
    spec = yaml.safe_load(Path(SPEC).read_text())
    spec["entities"]["project"] = {"fields": {"name": {"type": "string", "required": True}}}  # created first
    spec["entities"]["task"]["fields"]["notes"] = {"type": "text"}  # then ALTER task: waits on the lock
    (tmp_path / "static").symlink_to(Path(SPEC).parent / "static")
    v2 = tmp_path / "tasks.yaml"
    v2.write_text(yaml.safe_dump(spec, sort_keys=False))
    info = connection_info(settings.home_dir)
    database = tenant_names(tenant).database
    host, edge = tenant_names(tenant).host, f"http://127.0.0.1:{settings.edge_port}"
    with httpx.Client(base_url=edge, headers={"Host": host}, timeout=10) as http:
        task = http.post("/api/task", json={"title": TITLE})
        person = http.post("/api/person", json={"name": "Ada"})  # `person` is not locked: a row to read
        assert (task.status_code, person.status_code) == (201, 201), (task.text, person.text)
        task_id, person_id = task.json()["id"], person.json()["id"]
        http.get("/api/task")
        assert http.get("/api/task").headers.get("x-cache") == "hit", "the task list is not cached"
    runtime = agent_tenants(settings)[tenant]

    def v2_paths(answers: dict[str, Answer]) -> list[str]:
        health = answers["/healthz"].body
        return [f"/api/task/{task_id}", "/api/project"] if isinstance(health, dict) and health.get(
            "version") == 2 else []

    async def stop_postgres_while_the_migrator_waits() -> float:
        locker = await asyncpg.connect(info.control_dsn.rsplit("/", 1)[0] + "/" + database)
        await locker.execute("BEGIN; LOCK TABLE task IN ACCESS EXCLUSIVE MODE")
        # Watched from its own connection: inside the locker's transaction pg_stat_activity
        # is a snapshot taken at its first read, so it would never see the migrator arrive.
        watcher = await asyncpg.connect(info.control_dsn)
        ok(hostplane(env, "tenant", "update", tenant, "--app", str(v2)))
        deadline = time.monotonic() + 30
        try:
            while not await watcher.fetchval(
                    "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'hostplane-migrator' "
                    "AND wait_event_type = 'Lock'"):
                assert time.monotonic() < deadline, (
                    f"the migrator never reached the locked table: {tenant_show(env, tenant)}\n"
                    + log_tail(settings, "migrator"))
                await asyncio.sleep(0.05)
        finally:
            await watcher.close()
        pid = component_pid(settings, "postgres")
        os.kill(pid, signal.SIGQUIT)  # the lock is still held: the migration is mid-transaction
        while psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
            assert time.monotonic() < deadline + 30, "postgres did not stop"
            await asyncio.sleep(0.1)
        locker.terminate()
        return time.monotonic()

    async def schema_and_ledger() -> tuple[int, bool, bool]:
        conn = await asyncpg.connect(info.control_dsn.rsplit("/", 1)[0] + "/" + database)
        try:
            async with conn.transaction(isolation="repeatable_read"):
                version = await conn.fetchval("SELECT max(version) FROM _hostplane_migrations")
                project = await conn.fetchval("SELECT to_regclass('public.project') IS NOT NULL")
                notes = await conn.fetchval("SELECT count(*) > 0 FROM information_schema.columns "
                                            "WHERE table_name = 'task' AND column_name = 'notes'")
        finally:
            await conn.close()
        return version, project, notes

    paths = ["/static/style.css", "/healthz", "/api/task", f"/api/person/{person_id}"]
    with EdgeWatch(edge, host, info.control_dsn, paths, v2_paths) as watch:
        while len(watch.rounds) < 3:  # serving before the fault, as seen by the watch
            time.sleep(0.1)
        gone_at = asyncio.run(stop_postgres_while_the_migrator_waits())
        time.sleep(OUTAGE_S)
        ok(hostplane(env, "up"))
        version, project, notes = asyncio.run(schema_and_ledger())
        assert (version, project, notes) in ((1, False, False), (2, True, True)), "half-migrated"
        deadline = time.monotonic() + 150
        while edge_version(settings, tenant) != 2:
            assert time.monotonic() < deadline, f"v2 never served: {tenant_show(env, tenant)}"
            time.sleep(0.5)
        time.sleep(4)  # rounds against v2, past the swap's drain
    assert_served_through_the_outage(watch.rounds, gone_at, task_id, person_id) < RECOVERY_S
    assert asyncio.run(schema_and_ledger()) == (2, True, True)
    shown = tenant_show(env, tenant)
    assert (shown["state"], shown["version"]) == ("ready", 2), shown
    assert_exactly_one_of_each(settings, [tenant])
    # "By itself": the same runtime throughout, and its app never crashed nor was restarted.
    assert agent_tenants(settings)[tenant]["pid"] == runtime["pid"], "the tenant's runtime was replaced"
    app = httpx.get(f"http://127.0.0.1:{runtime['health_port']}/runtime/healthz", timeout=5).json()["app"]
    assert (app["live_version"], app["restarts"], app["last_exit"]) == (2, 0, None), app

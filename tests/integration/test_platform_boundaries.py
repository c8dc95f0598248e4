"""The data stores and the edge as a tenant process would find them (an ephemeral moto
platform): the control plane's PostgreSQL role is no superuser and cannot rewrite the
audit log, no local connection is trusted, Caddy's admin API is a socket only the
platform's user opens, Valkey is bounded; and a home from before the control role is
migrated by the next `up`."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import socket
import stat
import subprocess

import asyncpg
import psutil
import pytest
import redis

from hostplane.local import platform as hp_platform
from hostplane.local.datastores import MAXMEMORY_POLICY, SUPERUSER
from hostplane.local.edge import admin_client_sync
from hostplane.local.ephemeral import start_platform, stop_components, stop_platform
from hostplane.local.services import installed_services
from core.state import (
    CONTROL_ROLE,
    CREDENTIALS_FILE,
    connection_info,
    load_or_create_credentials,
    load_state,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]
TENANT_UID = 200_001  # a uid like the sandbox gives tenant runtimes (HOSTPLANE_SANDBOX_UID_BASE + port)


@pytest.fixture(scope="module")
def running(tmp_path_factory):
    plat = start_platform(tmp_path_factory.mktemp("boundaries"), "moto")
    try:
        yield plat
    finally:
        stop_platform(plat)


def superuser_dsn(plat, database: str = "hostplane") -> str:
    creds = load_or_create_credentials(plat.settings.home_dir)
    return f"postgresql://{SUPERUSER}:{creds.postgres_password}@{plat.settings.host}:{plat.settings.postgres_port}/{database}"


def as_tenant_uid(code: str) -> str:
    """Run Python as an unprivileged uid (what a sandboxed tenant is); its stdout."""
    python = shutil.which("python3", path="/usr/bin:/bin")
    out = subprocess.run(["setpriv", f"--reuid={TENANT_UID}", f"--regid={TENANT_UID}", "--clear-groups",
                          python, "-c", code], capture_output=True, text=True, timeout=30, cwd="/")
    return out.stdout.strip() or out.stderr.strip()


needs_root = pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"),
                                reason="switching to a tenant uid needs root and setpriv")


# --- PostgreSQL ------------------------------------------------------------------------


async def test_the_control_plane_connects_as_a_role_that_is_no_superuser(running):
    dsn = running.conn.control_dsn
    assert dsn.startswith(f"postgresql://{CONTROL_ROLE}:")
    conn = await asyncpg.connect(dsn)
    try:
        role = await conn.fetchrow("SELECT current_user AS name, rolsuper, rolcreatedb, rolcreaterole, rolreplication, "
                                   "rolbypassrls FROM pg_roles WHERE rolname = current_user")
        assert dict(role) == {"name": CONTROL_ROLE, "rolsuper": False, "rolcreatedb": True, "rolcreaterole": True,
                              "rolreplication": False, "rolbypassrls": False}
        # the services (API, provisioner, ...) hold sessions as this role, none as the superuser
        users = {r["usename"] for r in await conn.fetch(
            "SELECT DISTINCT usename FROM pg_stat_activity WHERE datname = 'hostplane' AND usename IS NOT NULL")}
        assert users == {CONTROL_ROLE}, users
        for refused in ("SET session_replication_role = replica",
                        "SELECT rolpassword FROM pg_authid",
                        "CREATE ROLE t_evil LOGIN SUPERUSER",
                        "CREATE ROLE t_evil LOGIN BYPASSRLS",
                        f"ALTER ROLE {SUPERUSER} PASSWORD 'x'",
                        f"GRANT pg_read_server_files TO {CONTROL_ROLE}",
                        f"GRANT {SUPERUSER} TO {CONTROL_ROLE}",
                        "COPY (SELECT 1) TO PROGRAM 'true'",
                        "ALTER DATABASE hostplane OWNER TO hostplane_control",
                        "ALTER SYSTEM SET log_statement = 'none'"):
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.execute(refused)
    finally:
        await conn.close()


async def test_the_audit_log_is_append_only_for_the_control_role(running):
    conn = await asyncpg.connect(running.conn.control_dsn)
    try:
        await conn.execute("INSERT INTO audit_log (identity, channel, action, status, outcome) "
                           "VALUES ('test', 'cli', 'boundaries.probe', 200, 'done')")
        before = await conn.fetchval("SELECT count(*) FROM audit_log")
        assert before >= 1
        owner = await conn.fetchval("SELECT pg_get_userbyid(relowner) FROM pg_class WHERE oid = 'audit_log'::regclass")
        assert owner == SUPERUSER
        for attempt in ("DELETE FROM audit_log", "UPDATE audit_log SET actor = 'x'", "TRUNCATE audit_log",
                        "ALTER TABLE audit_log DISABLE TRIGGER ALL", "DROP TRIGGER audit_log_no_rewrite ON audit_log",
                        "DROP TABLE audit_log", "ALTER TABLE audit_log RENAME TO gone",
                        "DROP FUNCTION audit_log_append_only() CASCADE",
                        "CREATE OR REPLACE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql "
                        "AS $$ BEGIN RETURN OLD; END $$",
                        "DROP SCHEMA public CASCADE", "SET session_replication_role = replica"):
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.execute(attempt)
        assert await conn.fetchval("SELECT count(*) FROM audit_log") == before
    finally:
        await conn.close()
    # and the API still starts against it (its schema step sees the log is not its own)
    from services.api import audit

    pool = await asyncpg.create_pool(running.conn.control_dsn, min_size=1, max_size=1)
    try:
        await audit.ensure_schema(pool)
    finally:
        await pool.close()


async def test_no_connection_is_trusted_and_the_socket_folder_is_the_servers_alone(running):
    folder = running.settings.home_dir / "postgres"
    hba = (folder / "data" / "pg_hba.conf").read_text()
    methods = [line.split()[-1] for line in hba.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    assert methods and "trust" not in methods and set(methods) == {"scram-sha-256"}, methods
    sock = folder / "sock"
    assert stat.S_IMODE(sock.stat().st_mode) == 0o700
    # even the superuser's name over the unix socket needs its password
    with pytest.raises((asyncpg.InvalidPasswordError, asyncpg.InvalidAuthorizationSpecificationError,
                        asyncpg.ClientConfigurationError, asyncpg.PostgresError)):
        await asyncpg.connect(host=str(sock), port=running.settings.postgres_port, user=SUPERUSER,
                              database="postgres", password="", timeout=5)


@needs_root
def test_a_tenant_uid_cannot_open_the_postgres_socket(running):
    sock = running.settings.home_dir / "postgres" / "sock" / f".s.PGSQL.{running.settings.postgres_port}"
    assert sock.exists()
    out = as_tenant_uid(f"import socket; s = socket.socket(socket.AF_UNIX)\n"
                        f"try:\n    s.connect({str(sock)!r}); print('connected')\n"
                        f"except OSError as e: print(type(e).__name__)")
    assert out == "PermissionError", out


# --- Caddy -------------------------------------------------------------------------------


def test_caddy_admin_is_an_owner_only_socket_and_caddy_listens_on_the_edge_alone(running):
    state = load_state(running.settings.home_dir)
    sock = running.settings.home_dir / "run" / "caddy-admin.sock"
    assert state.caddy_admin_socket == str(sock) == connection_info(running.settings.home_dir).caddy_admin_url[7:]
    mode = sock.stat().st_mode
    assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o600
    assert stat.S_IMODE(sock.parent.stat().st_mode) == 0o700
    with admin_client_sync(state.caddy_admin_url) as admin:
        config = admin.get("/config/").json()
    assert config["admin"]["listen"] == f"unix/{sock}|0600"
    caddy = psutil.Process(state.components["caddy"].pid)
    tcp = {c.laddr.port for c in caddy.net_connections(kind="inet") if c.status == psutil.CONN_LISTEN}
    assert tcp == {running.settings.edge_port}, tcp


@needs_root
def test_a_tenant_uid_cannot_open_the_caddy_admin_socket(running):
    sock = running.settings.home_dir / "run" / "caddy-admin.sock"
    out = as_tenant_uid(f"import socket; s = socket.socket(socket.AF_UNIX)\n"
                        f"try:\n    s.connect({str(sock)!r}); print('connected')\n"
                        f"except OSError as e: print(type(e).__name__)")
    assert out == "PermissionError", out


# --- Valkey ------------------------------------------------------------------------------


def test_valkey_is_bounded_and_evicts_like_a_cache(running):
    creds = load_or_create_credentials(running.settings.home_dir)
    with redis.Redis(host=running.settings.host, port=running.settings.valkey_port,
                     password=creds.valkey_password, socket_timeout=5) as r:
        config = r.config_get("maxmemory*")
    assert int(config["maxmemory"]) == running.settings.valkey_maxmemory_mb * 1024 * 1024 > 0
    assert config["maxmemory-policy"] == MAXMEMORY_POLICY == "allkeys-lru"


# --- a home from before the control role ---------------------------------------------------


async def _make_it_an_older_home(plat) -> None:
    """What `up` left before this change: every control-plane object the superuser's, tenant
    roles made by the superuser, local connections trusted, no control role or password."""
    conn = await asyncpg.connect(superuser_dsn(plat))
    try:
        for (name,) in await conn.fetch("SELECT c.relname FROM pg_class c WHERE c.relnamespace = 'public'::regnamespace "
                                        "AND c.relkind = 'r'"):
            await conn.execute(f'ALTER TABLE public."{name}" OWNER TO {SUPERUSER}')
        await conn.execute(f"DROP OWNED BY {CONTROL_ROLE} CASCADE")
        await conn.execute("CREATE ROLE t_legacy LOGIN PASSWORD 'legacy-password'")
        await conn.execute("CREATE DATABASE t_legacy OWNER t_legacy")
    finally:
        await conn.close()
    postgres = await asyncpg.connect(superuser_dsn(plat, "postgres"))
    try:
        await postgres.execute(f"DROP OWNED BY {CONTROL_ROLE} CASCADE")
        await postgres.execute(f"DROP ROLE {CONTROL_ROLE}")
    finally:
        await postgres.close()
    hba = plat.settings.home_dir / "postgres" / "data" / "pg_hba.conf"
    hba.write_text(re.sub(r"(?m)^(local\s.*\s)scram-sha-256$", r"\1trust", hba.read_text()))
    assert "trust" in hba.read_text()
    path = plat.settings.home_dir / CREDENTIALS_FILE
    creds = json.loads(path.read_text())
    creds.pop("postgres_control_password")
    path.write_text(json.dumps(creds))


async def test_a_home_from_before_the_control_role_is_migrated_by_the_next_up(running):
    """Last in this module: it stops the services, rewinds the home, and runs `up` again."""
    settings = running.settings
    stop_components(settings, tuple(installed_services()) + ("runtime-agent",))
    await _make_it_an_older_home(running)
    with pytest.raises(RuntimeError, match="run `hostplane up` once"):
        connection_info(settings.home_dir)

    await asyncio.to_thread(hp_platform.up, settings, "moto")

    info = connection_info(settings.home_dir)
    conn = await asyncpg.connect(info.control_dsn)
    try:
        assert not await conn.fetchval("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
        others = await conn.fetch("SELECT relname, pg_get_userbyid(relowner) AS owner FROM pg_class "
                                  "WHERE relnamespace = 'public'::regnamespace AND relkind = 'r' "
                                  "AND relowner <> 'hostplane_control'::regrole")
        assert [(r["relname"], r["owner"]) for r in others] == [("audit_log", SUPERUSER)]
        # the legacy tenant's database and role are the control role's to remove now
        from contracts.tenant import tenant_names
        from services.resources.postgres import TenantDatabase

        names = tenant_names("legacy")
        assert (names.database, names.db_role) == ("t_legacy", "t_legacy")
        assert not await conn.fetchval("SELECT has_database_privilege('t_legacy', 'hostplane', 'CONNECT')")
        pool = await asyncpg.create_pool(info.control_dsn, min_size=1, max_size=2)
        try:
            db = TenantDatabase(pool)
            assert await db.remove_database(names) and await db.remove_role(names)
            assert await db.existing(names) == []
        finally:
            await pool.close()
    finally:
        await conn.close()
    hba = (settings.home_dir / "postgres" / "data" / "pg_hba.conf").read_text()
    assert " trust" not in hba
    status = await asyncio.to_thread(hp_platform.status, settings)
    assert all(c["healthy"] for c in status["components"].values()), status
    with socket.create_connection((settings.host, settings.api_port), timeout=5):
        pass  # the API came back as the control role

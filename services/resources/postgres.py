"""A tenant's PostgreSQL database and the LOGIN role that owns it, on the shared cluster.

Isolation: CONNECT (and TEMPORARY) is revoked from PUBLIC on the tenant database and
granted to its role only; the cluster's maintenance databases (`postgres`,
`template1`) are closed to PUBLIC too, so a tenant role can open exactly one database.
The role carries no attribute beyond LOGIN, a connection limit and a statement timeout.
Passwords are sent as SCRAM verifiers (services.resources.passwords).

The admin pool is the platform's control role (hostplane.local.datastores), not a
superuser: CREATEDB and CREATEROLE, with ADMIN, SET and INHERIT on the tenant roles it
creates. It reads a tenant role's SCRAM verifier through the one SECURITY DEFINER
function `up` installs (pg_authid is the superuser's); where that function is missing
(a server we did not bootstrap) the password is simply set again. Closing the
maintenance databases is `up`'s job; a non-superuser only checks it was done.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import asyncpg
import structlog
from pydantic import SecretStr

from contracts.tenant import TenantNames
from services.resources.base import Ensured, Outcome, PermanentError, ref
from services.resources.passwords import new_password, scram_matches, scram_verifier

log = structlog.get_logger(__name__)

TENANT_NAME_PREFIX = "t_"  # tenant_names() gives database and role this prefix
MAINTENANCE_DATABASES = ("postgres", "template1")
_IDENT = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
# SQLSTATE classes a retry cannot fix: data exception, integrity, syntax/access rule.
_PERMANENT_CLASSES = ("22", "23", "42")
_ROLE_ATTRS = ("rolsuper", "rolcreatedb", "rolcreaterole", "rolreplication", "rolbypassrls", "rolinherit")
_SUPER_ATTRS = ("rolsuper", "rolreplication", "rolbypassrls")  # only a superuser can take these away
VERIFIER_FUNCTION = "hostplane_role_verifier"  # hostplane.local.datastores installs it


@dataclass(frozen=True)
class DatabaseQuotas:
    connection_limit: int = 20
    statement_timeout: str = "30s"


def ident(name: str) -> str:
    """A quoted identifier; names come from tenant_names(), this refuses anything else."""
    if not _IDENT.fullmatch(name):
        raise PermanentError(f"{name!r} is not a tenant database identifier")
    return f'"{name}"'


def _permanent(exc: asyncpg.PostgresError, doing: str) -> Exception:
    state = getattr(exc, "sqlstate", "") or ""
    if state[:2] in _PERMANENT_CLASSES:
        # Server messages name objects, never values: passwords only ever travel as verifiers.
        return PermanentError(f"PostgreSQL refused to {doing}: {exc} ({state})")
    return exc  # connection, resources, lock, in use: transient, let the consumer retry


class TenantDatabase:
    """Ensure/remove one tenant's database + role through an admin pool (the control role)."""

    def __init__(self, pool: Any, quotas: DatabaseQuotas | None = None) -> None:
        self.pool = pool
        self.quotas = quotas or DatabaseQuotas()

    # --- ensure -------------------------------------------------------------------

    async def ensure(self, names: TenantNames, password: SecretStr | None) -> Ensured[SecretStr]:
        """Role, then database, then who may connect. `password` is the one the tenant's
        secret holds (None: none yet, so a new one is set). Returns the password in use."""
        password = password or new_password()
        async with self.pool.acquire() as conn:
            try:
                await self._close_maintenance_databases(conn)
                role_created, role_changed = await self._ensure_role(conn, names.db_role, password)
                db_created, db_changed = await self._ensure_database(conn, names.database, names.db_role)
            except asyncpg.PostgresError as exc:
                raise _permanent(exc, f"set up database {names.database}") from None
        return Ensured(Outcome.of(role_created or db_created, role_changed or db_changed), password)

    async def _ensure_role(self, conn: Any, role: str, password: SecretStr) -> tuple[bool, bool]:
        q = self.quotas
        row = await conn.fetchrow(
            f"SELECT r.rolcanlogin, r.rolconnlimit, r.rolconfig, {', '.join('r.' + x for x in _ROLE_ATTRS)} "
            "FROM pg_roles r WHERE r.rolname = $1",
            role,
        )
        attrs = f"LOGIN NOCREATEDB NOCREATEROLE NOINHERIT CONNECTION LIMIT {int(q.connection_limit)}"
        timeout = f"statement_timeout={q.statement_timeout}"
        if row is None:
            await conn.execute(f"CREATE ROLE {ident(role)} {attrs} NOSUPERUSER NOREPLICATION NOBYPASSRLS "
                               f"PASSWORD '{scram_verifier(password)}'")
            await conn.execute(f"ALTER ROLE {ident(role)} SET statement_timeout = '{q.statement_timeout}'")
            return True, False
        if any(row[a] for a in _SUPER_ATTRS):
            raise PermanentError(f"role {role} holds a superuser-only attribute; the platform will not use it")
        changed = False
        if (not row["rolcanlogin"] or row["rolconnlimit"] != q.connection_limit
                or any(row[a] for a in _ROLE_ATTRS)):
            await conn.execute(f"ALTER ROLE {ident(role)} {attrs}")
            changed = True
        if not scram_matches(await self._verifier(conn, role), password):
            await conn.execute(f"ALTER ROLE {ident(role)} PASSWORD '{scram_verifier(password)}'")
            changed = True
        if timeout not in (row["rolconfig"] or []):
            await conn.execute(f"ALTER ROLE {ident(role)} SET statement_timeout = '{q.statement_timeout}'")
            changed = True
        return False, changed

    async def _ensure_database(self, conn: Any, database: str, role: str) -> tuple[bool, bool]:
        owner = await conn.fetchval(
            "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = $1", database
        )
        created = changed = False
        if owner is None:
            await conn.execute(f"CREATE DATABASE {ident(database)} OWNER {ident(role)}")  # no transaction
            created = True
        elif owner != role:
            await conn.execute(f"ALTER DATABASE {ident(database)} OWNER TO {ident(role)}")
            changed = True
        for grantee in await self._connectors(conn, database):
            if grantee != role:  # PUBLIC ('') or another role
                who = "PUBLIC" if grantee == "" else ident(grantee)
                await conn.execute(f"REVOKE CONNECT, TEMPORARY ON DATABASE {ident(database)} FROM {who}")
                changed = True
        if role not in await self._connectors(conn, database):
            await conn.execute(f"GRANT CONNECT, TEMPORARY ON DATABASE {ident(database)} TO {ident(role)}")
            changed = True
        return created, changed

    @staticmethod
    async def _connectors(conn: Any, database: str) -> set[str]:
        """Who holds CONNECT or TEMPORARY on `database` ('' = PUBLIC), defaults included."""
        rows = await conn.fetch(
            "SELECT DISTINCT CASE WHEN a.grantee = 0 THEN '' ELSE pg_get_userbyid(a.grantee) END AS who "
            "FROM pg_database d, aclexplode(coalesce(d.datacl, acldefault('d', d.datdba))) a "
            "WHERE d.datname = $1 AND a.privilege_type IN ('CONNECT', 'TEMPORARY')",
            database,
        )
        return {r["who"] for r in rows}

    @staticmethod
    async def _verifier(conn: Any, role: str) -> str | None:
        """The role's SCRAM verifier, when the server lets us read it (None: set it again)."""
        if await conn.fetchval("SELECT rolsuper FROM pg_roles WHERE rolname = current_user"):
            return await conn.fetchval("SELECT rolpassword FROM pg_authid WHERE rolname = $1", role)
        if await conn.fetchval("SELECT to_regprocedure($1) IS NOT NULL", f"{VERIFIER_FUNCTION}(text)"):
            return await conn.fetchval(f"SELECT {VERIFIER_FUNCTION}($1)", role)
        return None

    async def _close_maintenance_databases(self, conn: Any) -> None:
        """PostgreSQL lets PUBLIC connect to `postgres` and `template1`: close them once
        (`hostplane up` does, as the superuser; the control role can only see it was done)."""
        superuser = await conn.fetchval("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
        for database in MAINTENANCE_DATABASES:
            if "" in await self._connectors(conn, database):
                if not superuser:
                    log.warning("postgres.maintenance_database_open", database=database)
                    continue
                await conn.execute(f"REVOKE CONNECT, TEMPORARY ON DATABASE {database} FROM PUBLIC")
                log.info("postgres.maintenance_database_closed", database=database)

    # --- remove -------------------------------------------------------------------

    async def remove_database(self, names: TenantNames) -> list[str]:
        """Stop new sessions, terminate the open ones, drop the database."""
        async with self.pool.acquire() as conn:
            try:
                if await self._role_exists(conn, names.db_role):
                    await conn.execute(f"ALTER ROLE {ident(names.db_role)} NOLOGIN")
                await conn.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE (datname = $1 OR usename = $2) AND pid <> pg_backend_pid()",
                    names.database, names.db_role,
                )
                if not await self._database_exists(conn, names.database):
                    return []
                await conn.execute(f"DROP DATABASE IF EXISTS {ident(names.database)} WITH (FORCE)")
            except asyncpg.PostgresError as exc:
                raise _permanent(exc, f"drop database {names.database}") from None
        return [ref("database", names.database)]

    async def remove_role(self, names: TenantNames) -> list[str]:
        async with self.pool.acquire() as conn:
            if not await self._role_exists(conn, names.db_role):
                return []
            try:
                try:
                    await conn.execute(f"DROP ROLE {ident(names.db_role)}")
                except asyncpg.DependentObjectsStillInUseError:
                    # Grants it received elsewhere (shared objects): drop them, then the role.
                    await conn.execute(f"DROP OWNED BY {ident(names.db_role)}")
                    await conn.execute(f"DROP ROLE {ident(names.db_role)}")
            except asyncpg.PostgresError as exc:
                raise _permanent(exc, f"drop role {names.db_role}") from None
        return [ref("role", names.db_role)]

    # --- look -------------------------------------------------------------------

    async def existing(self, names: TenantNames) -> list[str]:
        async with self.pool.acquire() as conn:
            found = []
            if await self._database_exists(conn, names.database):
                found.append(ref("database", names.database))
            if await self._role_exists(conn, names.db_role):
                found.append(ref("role", names.db_role))
            return found

    async def tenant_like_databases(self) -> list[str]:
        rows = await self.pool.fetch(
            "SELECT datname FROM pg_database WHERE starts_with(datname, $1) ORDER BY 1", TENANT_NAME_PREFIX
        )
        return [r["datname"] for r in rows]

    async def tenant_like_roles(self) -> list[str]:
        rows = await self.pool.fetch(
            "SELECT rolname FROM pg_roles WHERE starts_with(rolname, $1) ORDER BY 1", TENANT_NAME_PREFIX
        )
        return [r["rolname"] for r in rows]

    @staticmethod
    async def _database_exists(conn: Any, database: str) -> bool:
        return bool(await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", database))

    @staticmethod
    async def _role_exists(conn: Any, role: str) -> bool:
        return bool(await conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", role))

"""The migrator's I/O: the tenant's own database session (TenantSchemas → SchemaSession →
one Migration transaction: lock, lock timeout, ledger, the plan's statements), the
credentials, the store (the release's spec is artifacts.releases.release_spec).

The migrator never touches a tenant schema with the admin DSN: it reads the tenant's
credentials from its secret (services.resources.secret) and connects as the tenant's
role, so every table it creates is owned by that role, exactly like the app's own.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import structlog

from artifacts.store import ArtifactStore, store_root
from contracts.tenant import TenantNames, tenant_names
from events.failure import PermanentFailure
from events.recorded import RecordedRequests
from core.aws import aws_client
from core.settings import Settings
from services.resources import registry
from services.resources.base import scrub
from services.resources.secret import TenantCredentials, TenantSecrets
from spec.plan import Step

log = structlog.get_logger(__name__)

LEDGER = "_hostplane_migrations"
LOCK_KEY = 0x68706D6967726174  # one advisory lock per tenant database: migrations never overlap
LOCK_TIMEOUT = "5s"
# SQLSTATE a retry cannot fix: data exception, integrity, feature, dependency, syntax/access,
# program limit; plus a statement cancelled by the role's statement_timeout.
_PERMANENT_CLASSES = ("0A", "22", "23", "2B", "42", "54")
_PERMANENT_STATES = ("57014",)
LEDGER_DDL = f"""
CREATE TABLE IF NOT EXISTS {LEDGER} (
    version int PRIMARY KEY,
    spec_sha256 text NOT NULL,
    model jsonb NOT NULL,
    plan jsonb NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now(),
    released_at timestamptz
)"""


@dataclass(frozen=True)
class LedgerRow:
    version: int
    spec_sha256: str
    model: str
    released: bool


async def connect_as_tenant(creds: TenantCredentials) -> asyncpg.Connection:
    return await asyncpg.connect(host=creds.DB_HOST, port=int(creds.DB_PORT), user=creds.DB_USER,
                                 password=creds.DB_PASSWORD.get_secret_value(), database=creds.DB_NAME,
                                 timeout=10, server_settings={"application_name": "hostplane-migrator"})


def _permanent(exc: asyncpg.PostgresError) -> bool:
    state = getattr(exc, "sqlstate", "") or ""
    return state[:2] in _PERMANENT_CLASSES or state in _PERMANENT_STATES


class Migration:
    """One migration transaction as the tenant's role, under the tenant database's advisory
    lock, with the ledger in place. `step` names what runs now, for the failure message."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn, self.step = conn, "ledger"

    async def ledger(self, version: int) -> tuple[LedgerRow | None, LedgerRow | None]:
        """(the row of `version`, the latest row): the database's own record of its schema."""
        self.step = "ledger"
        rows = await self.conn.fetch(
            f"SELECT version, spec_sha256, model::text AS model, released_at IS NOT NULL AS released "
            f"FROM {LEDGER} WHERE version = $1 OR version = (SELECT max(version) FROM {LEDGER})", version)
        found = [LedgerRow(**dict(r)) for r in rows]
        this = next((r for r in found if r.version == version), None)
        return this, max(found, key=lambda r: r.version, default=None)

    async def apply(self, steps: Sequence[Step]) -> None:
        for step in steps:
            self.step = step.description
            for statement in step.sql:
                await self.conn.execute(statement)

    async def record(self, version: int, spec_sha256: str, model: dict, plan: list) -> None:
        self.step = "ledger"
        await self.conn.execute(
            f"INSERT INTO {LEDGER} (version, spec_sha256, model, plan) VALUES ($1, $2, $3::jsonb, $4::jsonb)",
            version, spec_sha256, json.dumps(model), json.dumps(plan))


class SchemaSession:
    """The tenant's database, connected as its own role (so what the migrator creates is owned
    by the role the app uses); `secrets` are scrubbed from any error it reports."""

    def __init__(self, conn: asyncpg.Connection, secrets: Sequence[Any]) -> None:
        self.conn, self.secrets = conn, secrets

    @contextlib.asynccontextmanager
    async def migration(self) -> AsyncIterator[Migration]:
        """One transaction. An SQL error a retry cannot fix (SQLSTATE classes above) is a
        PermanentFailure('apply', "<step>: <server message>"); anything else is raised for
        a retry (a lock timeout, a lost connection)."""
        migration = Migration(self.conn)
        try:
            async with self.conn.transaction():
                await self.conn.execute("SELECT pg_advisory_xact_lock($1)", LOCK_KEY)
                # A live app's long transaction blocks ALTER TABLE: give up soon (55P03, retried)
                # instead of queueing every app query behind the migration's lock request.
                await self.conn.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
                await self.conn.execute(LEDGER_DDL)
                yield migration
        except asyncpg.PostgresError as exc:
            if not _permanent(exc):
                raise
            error = scrub(f"{migration.step}: {exc} (SQLSTATE {exc.sqlstate})", self.secrets)
            raise PermanentFailure("apply", error) from None

    async def mark_released(self, version: int) -> None:
        await self.conn.execute(f"UPDATE {LEDGER} SET released_at = now() WHERE version = $1 AND released_at IS NULL",
                                version)


class TenantSchemas:
    """Opens a tenant's SchemaSession (the real one; unit tests use an in-memory fake)."""

    @contextlib.asynccontextmanager
    async def session(self, creds: TenantCredentials) -> AsyncIterator[SchemaSession]:
        conn = await connect_as_tenant(creds)
        try:
            yield SchemaSession(conn, [creds.DB_PASSWORD, creds.DATABASE_URL])
        finally:
            await conn.close()


@dataclass
class MigratorDeps:
    prefix: str
    secrets: TenantSecrets
    store: ArtifactStore
    _stack: contextlib.AsyncExitStack | None = None
    # The requests the API recorded (events.recorded); None: not wired (no control database)
    requests: RecordedRequests | None = None
    schemas: TenantSchemas = field(default_factory=TenantSchemas)
    pool: Any = None  # the control database, for the pointer notice; None: no notice

    def names(self, tenant_id: str) -> TenantNames:
        return tenant_names(tenant_id, prefix=self.prefix)

    async def pointer_moved(self, tenant_id: str) -> None:
        """Tell the tenant's runtime its pointer moved (registry.POINTER_CHANNEL). Best effort:
        a lost notice costs one poll interval, never the release."""
        if self.pool is None:
            return
        try:  # a connection of its own (the handler holds one): never wait long for it
            async with self.pool.acquire(timeout=2) as conn:
                await registry.pointer_moved(conn, tenant_id)
        except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
            log.warning("pointer.notice_failed", error=type(exc).__name__)

    async def aclose(self) -> None:
        if self._stack is not None:
            await self._stack.aclose()


async def bootstrap(settings: Settings, pool: Any = None) -> MigratorDeps:
    """The migrator's deps (STYLE.md: bootstrap); `pool`: checks commands against the API's
    records (None: no check, for tests and benchmarks that play the migrator alone)."""
    stack = contextlib.AsyncExitStack()
    sm = await stack.enter_async_context(aws_client("secretsmanager", settings))
    return MigratorDeps(settings.name_prefix, TenantSecrets(sm), ArtifactStore(store_root(settings)), stack,
                        requests=RecordedRequests(pool) if pool is not None else None, pool=pool)


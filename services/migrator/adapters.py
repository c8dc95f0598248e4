"""The migrator's I/O: the tenant's own database session, the ledger (the release's spec is
artifacts.releases.release_spec).

The migrator never touches a tenant schema with the admin DSN: it reads the tenant's
credentials from its secret (services.resources.secret) and connects as the tenant's
role, so every table it creates is owned by that role, exactly like the app's own.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from typing import Any

import asyncpg

from artifacts.store import ArtifactStore, store_root
from contracts.tenant import TenantNames, tenant_names
from events.recorded import RecordedRequests
from core.aws import aws_client
from core.settings import Settings
from services.resources.secret import TenantCredentials, TenantSecrets

LEDGER = "_hostplane_migrations"
LOCK_KEY = 0x68706D6967726174  # one advisory lock per tenant database: migrations never overlap
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


async def ledger_rows(conn: Any, version: int) -> tuple[LedgerRow | None, LedgerRow | None]:
    """(the row of `version`, the latest row): the database's own record of its schema."""
    rows = await conn.fetch(
        f"SELECT version, spec_sha256, model::text AS model, released_at IS NOT NULL AS released FROM {LEDGER} "
        f"WHERE version = $1 OR version = (SELECT max(version) FROM {LEDGER})", version)
    found = [LedgerRow(**dict(r)) for r in rows]
    this = next((r for r in found if r.version == version), None)
    latest = max(found, key=lambda r: r.version, default=None)
    return this, latest


async def record(conn: Any, version: int, spec_sha256: str, model: dict, plan: list) -> None:
    await conn.execute(f"INSERT INTO {LEDGER} (version, spec_sha256, model, plan) VALUES ($1, $2, $3::jsonb, $4::jsonb)",
                       version, spec_sha256, json.dumps(model), json.dumps(plan))


async def mark_released(conn: Any, version: int) -> None:
    await conn.execute(f"UPDATE {LEDGER} SET released_at = now() WHERE version = $1 AND released_at IS NULL",
                       version)


async def connect_as_tenant(creds: TenantCredentials) -> asyncpg.Connection:
    return await asyncpg.connect(host=creds.DB_HOST, port=int(creds.DB_PORT), user=creds.DB_USER,
                                 password=creds.DB_PASSWORD.get_secret_value(), database=creds.DB_NAME,
                                 timeout=10, server_settings={"application_name": "hostplane-migrator"})


@dataclass
class MigratorDeps:
    prefix: str
    secrets: TenantSecrets
    store: ArtifactStore
    _stack: contextlib.AsyncExitStack | None = None
    # The requests the API recorded (events.recorded); None: not wired (no control database)
    requests: RecordedRequests | None = None

    def names(self, tenant_id: str) -> TenantNames:
        return tenant_names(tenant_id, prefix=self.prefix)

    async def aclose(self) -> None:
        if self._stack is not None:
            await self._stack.aclose()


async def bootstrap(settings: Settings, pool: Any = None) -> MigratorDeps:
    """The migrator's deps (STYLE.md: bootstrap); `pool`: checks commands against the API's
    records (None: no check, for tests and benchmarks that play the migrator alone)."""
    stack = contextlib.AsyncExitStack()
    sm = await stack.enter_async_context(aws_client("secretsmanager", settings))
    return MigratorDeps(settings.name_prefix, TenantSecrets(sm), ArtifactStore(store_root(settings)), stack,
                        requests=RecordedRequests(pool) if pool is not None else None)


"""Integration fixtures built on the session's shared platforms (`running_platform`, in
tests/conftest.py): tenant resources with throwaway tenants (`res`, `tenant`,
`other`), the builder's adapters (`builder_deps`), and pools on a fresh schema of their own
(`event_store_pool`, `api_store_pool`). Shared helpers are in tests/support."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from events.store import ensure_schema as ensure_event_schema
from services.api.store import ensure_schema as ensure_api_schema
from services.builder.adapters import BuilderDeps, bootstrap as open_builder_deps
from services.resources.wiring import TenantResources, open_resources
from tests.support.tenant_resources import new_tenant, remove_all

@pytest.fixture
async def res(running_platform) -> AsyncIterator[TenantResources]:
    resources = await open_resources(running_platform.settings)
    try:
        yield resources
    finally:
        await resources.aclose()


@contextlib.asynccontextmanager
async def _fresh_tenant(res: TenantResources) -> AsyncIterator[str]:
    """A new tenant name; everything of it is removed after the test."""
    name = new_tenant()
    try:
        yield name
    finally:
        await remove_all(res, name)


@pytest.fixture
async def tenant(res) -> AsyncIterator[str]:
    async with _fresh_tenant(res) as name:
        yield name


@pytest.fixture
async def other(res) -> AsyncIterator[str]:
    async with _fresh_tenant(res) as name:
        yield name


@pytest.fixture
async def builder_deps(running_platform) -> AsyncIterator[BuilderDeps]:
    """The builder's adapters on the control database (with the API's tables, where specs are stored)."""
    pool = await asyncpg.create_pool(running_platform.conn.control_dsn, min_size=1, max_size=3)
    await ensure_api_schema(pool)
    d = await open_builder_deps(running_platform.settings, pool)
    try:
        yield d
    finally:
        await d.aclose()
        await pool.close()


@pytest.fixture
async def event_store_pool(running_platform) -> AsyncIterator[asyncpg.Pool]:
    """A pool whose search_path is a fresh schema holding the event tables (outbox, inbox) only."""
    schema = f"rt{uuid.uuid4().hex[:10]}"
    dsn = running_platform.conn.control_dsn
    admin = await asyncpg.connect(dsn)
    await admin.execute(f"CREATE SCHEMA {schema}")
    p = await asyncpg.create_pool(dsn, min_size=1, max_size=6, server_settings={"search_path": schema})
    try:
        await ensure_event_schema(p)
        await ensure_event_schema(p)  # idempotent
        yield p
    finally:
        await p.close()
        await admin.execute(f"DROP SCHEMA {schema} CASCADE")
        await admin.close()


@pytest.fixture
async def api_store_pool(running_platform) -> AsyncIterator[asyncpg.Pool]:
    """A pool whose search_path is a fresh schema holding the event tables and the API's."""
    prefix = f"rc{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(running_platform.conn.control_dsn)
    await admin.execute(f"CREATE SCHEMA {prefix}")
    p = await asyncpg.create_pool(running_platform.conn.control_dsn, min_size=1, max_size=3,
                                  server_settings={"search_path": prefix})
    try:
        await ensure_event_schema(p)
        await ensure_api_schema(p)
        yield p
    finally:
        await p.close()
        await admin.execute(f"DROP SCHEMA {prefix} CASCADE")
        await admin.close()

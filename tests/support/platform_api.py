"""Waiting on a running platform's API, for the integration tests that drive a tenant
through every stage service (rollback, incarnations): `settled` polls the tenant until the
pipeline is done with it; `runtime_becomes` until its runtime says so (scale to zero)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx


async def settled(http: httpx.AsyncClient, name: str, version: int | None = None) -> dict[str, Any]:
    """The tenant once it is failed, or ready (at `version` if given); AssertionError after 600 polls
    0.1 s apart."""
    for _ in range(600):
        tenant = (await http.get(f"/v1/tenants/{name}")).json()
        if tenant["state"] == "failed":
            return tenant
        if tenant["state"] == "ready" and (version is None or tenant["version"] == version):
            return tenant
        await asyncio.sleep(0.1)
    raise AssertionError(f"{name} did not settle: {tenant}")


async def runtime_becomes(api: httpx.AsyncClient, name: str, runtime: str, timeout: float = 60) -> dict[str, Any]:
    """The tenant once its `runtime` is `runtime` (running, asleep, ...); AssertionError after `timeout` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        tenant = (await api.get(f"/v1/tenants/{name}")).json()
        if tenant["runtime"] == runtime:
            return tenant
        await asyncio.sleep(0.2)
    raise AssertionError(f"{name}'s runtime never became {runtime}: {tenant}")

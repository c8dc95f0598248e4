"""Waiting on a running platform's API, for the integration tests that drive a tenant
through every stage service (rollback, incarnations): `settled` polls the tenant until the
pipeline is done with it; `runtime_becomes` until its runtime says so (scale to zero);
`body` reads a JSON answer or fails naming what came instead."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx


def body(response: httpx.Response) -> Any:
    """The response's JSON; an AssertionError naming the status, server and body when it is not
    JSON (a 502 from the edge or a 503 from a runtime with nothing to serve, not a decode error)."""
    try:
        return response.json()
    except ValueError:
        raise AssertionError(f"{response.request.method} {response.request.url.path} answered "
                             f"{response.status_code} ({response.headers.get('server', 'no server header')}) "
                             f"with no JSON: {response.text[:200]!r}") from None


async def settled(http: httpx.AsyncClient, name: str, version: int | None = None) -> dict[str, Any]:
    """The tenant once it is failed, or ready (at `version` if given); AssertionError after 600 polls
    0.1 s apart."""
    for _ in range(600):
        tenant = body(await http.get(f"/v1/tenants/{name}"))
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
        tenant = body(await api.get(f"/v1/tenants/{name}"))
        if tenant["runtime"] == runtime:
            return tenant
        await asyncio.sleep(0.2)
    raise AssertionError(f"{name}'s runtime never became {runtime}: {tenant}")

"""What the dashboard shows about a tenant beyond the API's read models: its resource names,
its runtime as the agent records it (and live probes), the releases the artifact store
still holds."""

from __future__ import annotations

import json
from typing import Any

import httpx

from contracts.tenant import tenant_names


async def resources(ctx: Any, name: str, tenant: dict[str, Any]) -> dict[str, Any]:
    """What the tenant is made of (its names) and how its runtime does (agent.json, probes)."""
    names = tenant_names(name, prefix=ctx.name_prefix)
    progress = tenant["progress"]
    runtime = _runtime(ctx, name)
    return {"database": names.database, "db_role": names.db_role, "cache_user": names.cache_user,
            "cache_prefix": names.cache_prefix, "bucket": names.bucket, "secret": names.secret,
            "route": names.route_id, "host": names.host, "provisioned": progress["provisioned"],
            "routed": progress["routed"], "runtime": runtime,
            "runtime_health": await _probe(runtime.get("health_url")) if runtime else None,
            "app_health": await _probe(runtime.get("app_url", "").rstrip("/") + "/healthz")
            if runtime.get("app_url") and runtime.get("app_state") != "no_release" else None}


def _runtime(ctx: Any, name: str) -> dict[str, Any]:
    settings = getattr(ctx, "settings", None)
    if settings is None:
        return {}
    try:
        agent = json.loads((settings.home_dir / "runtime" / "agent.json").read_text())
    except (OSError, ValueError):
        return {}
    return agent.get("tenants", {}).get(name) or {}


async def _probe(url: str | None) -> str | None:
    if not url:
        return None
    try:
        async with httpx.AsyncClient(timeout=0.7) as client:
            resp = await client.get(url)
        return "healthy" if resp.status_code < 400 else f"unhealthy (HTTP {resp.status_code})"
    except httpx.HTTPError as exc:
        return f"unreachable ({type(exc).__name__})"


def retained_releases(ctx: Any, name: str) -> list[dict[str, Any]]:
    """The releases the artifact store still holds, newest first (which one is live)."""
    settings = getattr(ctx, "settings", None)
    if settings is None:
        return []
    from artifacts.errors import ArtifactError
    from artifacts.store import ArtifactStore, store_root

    store_ = ArtifactStore(store_root(settings))
    try:
        current = store_.read_current(name)
        manifests = store_.releases(name)
    except (ArtifactError, OSError, ValueError):
        return []
    live = current.version if current else None
    return [{"version": m.version, "sha256": m.sha256, "size": m.size, "built_at": m.built_at,
             "live": m.version == live} for m in reversed(manifests)]

"""Caddy's admin API as the edge adapter: the one writer of tenant routes.

Every change is a full internal reload in Caddy, so writes are serialised here (one lock
per process; router-config is the only writer) and skipped when the live route already
equals the desired one. Per-tenant changes go by `@id`: PATCH /id/<id> replaces an
existing route, a new one is inserted just before the catch-all with
PUT .../routes/<index>, DELETE /id/<id> removes. When the edge server or its catch-all is
missing (Caddy restarted without its saved config, or fell back to another one) a
per-route write raises `EdgeDrifted` and the caller reloads every route from desired
state (`load`).
"""

from __future__ import annotations

import asyncio
import copy
from typing import Any


from hostplane.local.edge import CATCH_ALL_ID, EDGE_SERVER, admin_client


class EdgeDrifted(RuntimeError):
    """Caddy does not hold the edge server we write into; a full re-sync is needed."""


class CaddyEdge:
    def __init__(self, admin_url: str, base_config: dict[str, Any], *, server: str = EDGE_SERVER,
                 timeout: float = 10.0) -> None:
        self.admin_url = admin_url.rstrip("/")  # unix:///<socket> locally (hostplane.local.edge)
        self.base_config = base_config  # a whole config to load when Caddy holds none of ours
        self.server = server
        self.lock = asyncio.Lock()
        self.client = admin_client(self.admin_url, timeout=timeout, headers={"Content-Type": "application/json"})
        self.writes = 0  # admin API writes made (tests and the bench read it)

    @property
    def _routes_path(self) -> str:
        return f"/config/apps/http/servers/{self.server}/routes"

    async def aclose(self) -> None:
        await self.client.aclose()

    # --- reads -------------------------------------------------------------------------------

    async def route(self, route_id: str) -> dict[str, Any] | None:
        resp = await self.client.get(f"/id/{route_id}")
        if resp.status_code in (400, 404) and "unknown object ID" in resp.text:
            return None
        resp.raise_for_status()
        return resp.json()

    async def routes(self) -> list[dict[str, Any]] | None:
        """The edge server's routes; None when Caddy has no such server."""
        resp = await self.client.get(f"/config/apps/http/servers/{self.server}")
        if resp.status_code in (400, 404):
            return None
        resp.raise_for_status()
        server = resp.json()
        return None if server is None else list(server.get("routes") or [])

    # --- writes (under the lock) -------------------------------------------------------------

    async def put(self, desired: dict[str, Any]) -> bool:
        """Make the route with desired['@id'] equal `desired`; False when it already was."""
        async with self.lock:
            route_id = desired["@id"]
            live = await self.route(route_id)
            if live == desired:
                return False
            if live is not None:
                await self._write("PATCH", f"/id/{route_id}", desired)
                return True
            routes = await self.routes()
            ids = [r.get("@id") for r in routes or []]
            if routes is None or CATCH_ALL_ID not in ids:
                raise EdgeDrifted(f"Caddy holds no '{self.server}' server with a catch-all route")
            await self._write("PUT", f"{self._routes_path}/{ids.index(CATCH_ALL_ID)}", desired)
            return True

    async def delete(self, route_id: str) -> bool:
        """Remove the route; False when Caddy had none by that id."""
        async with self.lock:
            if await self.route(route_id) is None:
                return False
            resp = await self.client.delete(f"/id/{route_id}")
            self.writes += 1
            if resp.status_code in (400, 404) and "unknown object ID" in resp.text:
                return False
            resp.raise_for_status()
            return True

    async def load(self, routes: list[dict[str, Any]]) -> None:
        """Replace every route of the edge server (creating the server if Caddy has none)."""
        async with self.lock:
            if await self.routes() is not None:
                await self._write("PATCH", self._routes_path, routes)
                return
            config = copy.deepcopy(self.base_config)
            config["apps"]["http"]["servers"][self.server]["routes"] = routes
            await self._write("POST", "/load", config)

    async def _write(self, method: str, path: str, body: Any) -> None:
        self.writes += 1
        resp = await self.client.request(method, path, json=body)
        if resp.status_code >= 400:
            raise EdgeDrifted(f"Caddy refused {method} {path}: {resp.status_code} {resp.text[:300]}")

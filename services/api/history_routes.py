"""What happened, read back: a tenant's recorded events (and their replay through the bus)
and the audit trail of who asked for what."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import Body, FastAPI, Query
from fastapi.responses import JSONResponse

from events.replay import list_events, replay
from services.api import audit
from services.api.commands import RequestRefused
from services.api.http import BEARER, BODY, PRINTABLE_PATTERN, Api, TenantName, doc
from services.api.requests import EVENT_TYPE_PATTERN, ReplayRequest
from services.api.views import AuditDoc, EventsDoc, Queued


def add_event_routes(app: FastAPI, api: Api) -> None:
    ctx = api.ctx

    @app.get("/v1/tenants/{name}/events", tags=["events"], dependencies=BEARER,
             responses=doc(404, 422, ok=EventsDoc))
    async def tenant_events(name: TenantName,
                            type: str | None = Query(None, pattern=EVENT_TYPE_PATTERN, description="Only this type"),
                            since: datetime | None = None,
                            limit: int = Query(200, ge=1, le=1000)) -> JSONResponse:
        await api.view(name)
        if since is not None and since.tzinfo is None:
            raise RequestRefused(422, "since: give a time zone, e.g. 2026-05-01T12:00:00Z")
        records = await list_events(ctx.pool, name, type, since, limit)
        return JSONResponse({"name": name, "events": [r.to_json() for r in records]})

    @app.post("/v1/tenants/{name}/replay", status_code=202, tags=["events"], dependencies=BEARER,
              responses=doc(*BODY, 404, 500) | {202: {"model": Queued, "description": "Queued for re-publication"}})
    async def replay_events(name: TenantName, req: Annotated[ReplayRequest | None, Body()] = None) -> JSONResponse:
        """Re-publish the tenant's recorded events through the bus, marked as replays."""
        await api.view(name)
        req = req or ReplayRequest()
        count = await replay(ctx.pool, name, req.type, req.since)
        return JSONResponse({"name": name, "queued": count}, status_code=202)


def add_audit_routes(app: FastAPI, api: Api) -> None:
    @app.get("/v1/audit", tags=["ops"], dependencies=BEARER, responses=doc(422, ok=AuditDoc))
    async def audit_log(tenant: str | None = Query(None, max_length=200, pattern=PRINTABLE_PATTERN,
                                                   description="Only this tenant's records"),
                        limit: int = Query(200, ge=1, le=audit.MAX_LIMIT)) -> JSONResponse:
        """The audit trail, newest first: who asked what, when, from where, and the outcome (read-only)."""
        return JSONResponse({"records": await audit.read(api.ctx.pool, tenant, limit)})

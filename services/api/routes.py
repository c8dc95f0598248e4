"""The tenant routes under /v1/tenants: create, list, show, change the app, the domain or the
idle period, delete, and a tenant's releases and rollback. Each change is validated completely, then
goes out as one command event through the outbox (services.api.commands)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Body, FastAPI, Query
from fastapi.responses import JSONResponse

from services.api import releases, store
from services.api.http import BEARER, BODY, Actor, Api, TenantName, app_spec, doc, static_zip
from services.api.requests import ChangeDomain, ChangeIdleAfter, CreateTenant, Rollback, UpdateApp
from services.api.views import ReleasesDoc, TenantDoc, TenantListDoc, tenant_view


def add_tenant_routes(app: FastAPI, api: Api) -> None:
    ctx, commands = api.ctx, api.commands

    @app.post("/v1/tenants", status_code=202, tags=["tenants"], dependencies=BEARER,
              responses=doc(*BODY, 409, changes=True))
    async def create_tenant(req: CreateTenant, actor: Actor) -> JSONResponse:
        """Create a tenant: validated completely, then TenantRequested goes out through the outbox."""
        return await api.accepted(await commands.create(req.name, app_spec(req.app), ctx.claimable(req.domain), actor,
                                                        static=static_zip(req.static_zip), edge=req.edge,
                                                        idle_after_s=req.idle_after_s))

    @app.get("/v1/tenants", tags=["tenants"], dependencies=BEARER, responses=doc(422, ok=TenantListDoc))
    async def list_tenants(all: bool = Query(False, description="include deleted tenants")) -> JSONResponse:
        rows = await store.read_tenants(ctx.pool, include_deleted=all)
        return JSONResponse({"tenants": [tenant_view(r, ctx.edge_port, ctx.public_domain) for r in rows]})

    @app.get("/v1/tenants/{name}", tags=["tenants"], dependencies=BEARER, responses=doc(404, ok=TenantDoc))
    async def show_tenant(
        name: TenantName,
        after: str | None = Query(None, max_length=64, description=(
            "Long-poll: the `updated_at` of the document you have; the answer comes once the status moves past it")),
        wait: float = Query(0, ge=0, le=30, description="Long-poll: seconds to wait for that change at most"),
    ) -> JSONResponse:
        """The tenant's status; with `after` and `wait`, as soon as it changes (for `--wait`)."""
        if after is not None and wait > 0 and ctx.watch is not None:
            return JSONResponse(await ctx.watch.changed(name, after, wait, lambda: api.view(name)))
        return JSONResponse(await api.view(name))

    @app.put("/v1/tenants/{name}/app", status_code=202, tags=["tenants"], dependencies=BEARER,
             responses=doc(*BODY, 404, 409, changes=True))
    @app.post("/v1/tenants/{name}/app", status_code=202, tags=["tenants"], dependencies=BEARER,
              include_in_schema=False)
    async def update_app(name: TenantName, req: UpdateApp, actor: Actor) -> JSONResponse:
        """Publish a new app spec: AppUpdateRequested (200 and no event when it is unchanged)."""
        return await api.accepted(await commands.update(name, app_spec(req.app), req.allow_destructive, actor,
                                                        static=static_zip(req.static_zip)))

    @app.put("/v1/tenants/{name}/domain", status_code=202, tags=["tenants"], dependencies=BEARER,
             responses=doc(*BODY, 404, 409, changes=True))
    async def change_domain(name: TenantName, req: ChangeDomain, actor: Actor) -> JSONResponse:
        """Set or remove the custom domain: DomainChangeRequested (200 and no event when unchanged)."""
        return await api.accepted(await commands.change_domain(name, ctx.claimable(req.domain), actor))

    @app.put("/v1/tenants/{name}/idle-after", status_code=202, tags=["tenants"], dependencies=BEARER,
             responses=doc(*BODY, 404, 409, changes=True))
    async def change_idle_after(name: TenantName, req: ChangeIdleAfter, actor: Actor) -> JSONResponse:
        """Change the scale-to-zero idle period (0: always on; null: the platform's default):
        IdleAfterChangeRequested (200 and no event when unchanged)."""
        return await api.accepted(await commands.change_idle_after(name, req.idle_after_s, actor))

    @app.delete("/v1/tenants/{name}", status_code=202, tags=["tenants"], dependencies=BEARER,
                responses=doc(404, 409, 422, changes=True))
    async def delete_tenant(name: TenantName, actor: Actor) -> JSONResponse:
        """Delete a tenant and everything it owns: TenantDeletionRequested."""
        return await api.accepted(await commands.delete(name, actor))

    @app.get("/v1/tenants/{name}/releases", tags=["tenants"], dependencies=BEARER,
             responses=doc(404, ok=ReleasesDoc))
    async def tenant_releases(name: TenantName) -> JSONResponse:
        """Every release, newest first: digests, when built/migrated/activated, who asked, retained, live."""
        tenant = await api.view(name)
        rows = await releases.read(ctx.pool, name)
        kept = await api.retained(name)
        return JSONResponse({"name": name, "live": tenant["version"], "releases": [
            releases.view(r, live=tenant["version"], retained=kept) for r in rows]})

    @app.post("/v1/tenants/{name}/rollback", status_code=202, tags=["tenants"], dependencies=BEARER,
              responses=doc(*BODY, 404, 409, changes=True))
    async def rollback(name: TenantName, actor: Actor,
                       req: Annotated[Rollback | None, Body()] = None) -> JSONResponse:
        """Serve a retained release again, as a new version copying its artifact (RollbackRequested)."""
        req = req or Rollback()
        return await api.accepted(await commands.rollback(name, req.to, actor, await api.retained(name)))

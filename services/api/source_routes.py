"""What a tenant's developer takes out of the platform or brings back: the live release's
source tree (export, then deploy an edited one) and the tenant's own credentials."""

from __future__ import annotations

import asyncio

from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response

from artifacts.releases import NoLiveRelease, export_live_source
from artifacts.store import store_root
from contracts.tenant import tenant_names
from services.api.commands import RequestRefused
from services.api.http import BEARER, BODY, Actor, Api, TenantName, doc
from services.api.requests import DeploySource
from services.api.views import EnvDoc
from spec import source
from spec.problems import InvalidAppSpec

_ZIP = {200: {"description": "The live release's source tree",
              "content": {"application/zip": {"schema": {"type": "string", "format": "binary"}}}}}


def add_source_routes(app: FastAPI, api: Api) -> None:
    ctx = api.ctx

    @app.get("/v1/tenants/{name}/source", tags=["tenants"], dependencies=BEARER, response_class=Response,
             responses=doc(404) | _ZIP)
    async def export_source(name: TenantName) -> Response:
        """The live release's source tree as a zip: edit it, then POST it back."""
        await api.view(name)
        try:
            version, body = await asyncio.to_thread(export_live_source, store_root(ctx.settings), name)
        except NoLiveRelease as exc:
            raise RequestRefused(404, str(exc)) from None
        return Response(body, media_type="application/zip",
                        headers={"X-Hostplane-Version": str(version),
                                 "Content-Disposition": f'attachment; filename="{name}-v{version}.zip"'})

    @app.post("/v1/tenants/{name}/source", status_code=202, tags=["tenants"], dependencies=BEARER,
              responses=doc(*BODY, 404, 409, changes=True))
    async def deploy_source(name: TenantName, req: DeploySource, actor: Actor) -> JSONResponse:
        """Build and release an edited source tree through the builder (AppUpdateRequested)."""
        try:
            upload = source.accept_upload(req.source_zip)
        except source.SourceError as exc:
            raise RequestRefused(422, f"the source cannot be built: {exc}",
                          [{"path": exc.where or "source_zip", "message": str(exc)}]) from None
        except InvalidAppSpec as exc:
            raise RequestRefused(422, f"spec.json: {exc}", [{"path": f"spec.json:{p.path}", "message": p.message}
                                                     for p in exc.problems]) from None
        return await api.accepted(await api.commands.update(name, upload.spec, req.allow_destructive, actor,
                                                            source=(upload.digest, upload.body)))

    @app.get("/v1/tenants/{name}/env", tags=["tenants"], dependencies=BEARER, responses=doc(404, 500, ok=EnvDoc))
    async def tenant_env(name: TenantName) -> JSONResponse:
        """The tenant's own connection settings (DATABASE_URL, REDIS_URL, ...). Reveals secrets."""
        tenant = await api.view(name)
        if tenant["state"] == "deleted":
            raise RequestRefused(404, f"tenant {name!r} was deleted")
        values = await ctx.secrets(tenant_names(name, prefix=ctx.name_prefix).secret)
        if values is None:
            raise RequestRefused(404, f"tenant {name!r} has no credentials yet: it is not provisioned "
                               f"(state {tenant['state']}, stage {tenant['stage']})")
        return JSONResponse({"name": name, "env": values}, headers={"Cache-Control": "no-store"})

"""The HTTP API under /v1/ (FastAPI: the OpenAPI document is at /openapi.json).

    POST   /v1/tenants                  create (name, app spec, optional custom domain and edge) → 202
    GET    /v1/tenants                  list (?all=true includes deleted tenants)
    GET    /v1/tenants/{name}           status: state, stage, version, url, error, timestamps
    PUT    /v1/tenants/{name}/app       new app spec → 202 (200 when the spec is unchanged)
    PUT    /v1/tenants/{name}/domain    {"domain": host | null} → 202 (200 when unchanged)
    DELETE /v1/tenants/{name}           delete → 202
    GET    /v1/tenants/{name}/releases  releases: version, digests, times, who, retained, live
    POST   /v1/tenants/{name}/rollback  {"to": version | null} → 202: a retained release serves again
    GET    /v1/tenants/{name}/events    the tenant's event history
    POST   /v1/tenants/{name}/replay    re-publish the tenant's recorded events → 202
    GET    /v1/tenants/{name}/env       the tenant's own credentials (the only secret-bearing answer)
    GET    /v1/tenants/{name}/source    zip of the live release's source (hostplane app export)
    POST   /v1/tenants/{name}/source    deploy an edited source tree (base64 zip) → 202 (hostplane app deploy)
    GET    /v1/audit                    the audit trail (?tenant=), newest first; append-only
    GET    /healthz                     unauthenticated health (+ database: 503 without it)
    GET    /livez                       unauthenticated liveness only (load balancers)
    /ui/                                 the web dashboard (cookie session; services.api.dashboard)

Authentication and body limits are enforced before routing (services.api.guard).
Every error answer, the guard's too, is one shape: {"detail": str, "errors": [{"path", "message"}]}
(`Error` in the OpenAPI document, which lists each route's status codes; the fuzzer in
tests/integration/test_api_fuzz.py holds the server to it). A path name that cannot be a
tenant id is 404 before any SQL sees it.
"""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

import structlog
from fastapi import Body, Depends, FastAPI, Header, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from fastapi.security import HTTPBearer
from starlette.exceptions import HTTPException as StarletteHTTPException
from pydantic import BaseModel

from spec.load import MAX_SPEC_BYTES, load_app_spec, whole_number
from spec.problems import InvalidAppSpec, SpecTooLarge
from contracts.tenant import InvalidTenantId, TenantId, tenant_names, validate_tenant_id
from events.replay import list_events, replay
from reloader.artifacts import ArtifactStore, store_root
from services.api import audit, releases, store
from services.api.commands import Accepted, Refused, TenantCommands
from services.api.dashboard.routes import mount_dashboard
from services.api.guard import Guard
from services.api.requests import (EVENT_TYPE_PATTERN, ChangeDomain, CreateTenant, DeploySource, ReplayRequest,
                                   Rollback, UpdateApp)
from services.api.views import (AcceptedBody, AuditDoc, EnvDoc, Error, EventsDoc, Queued, ReleasesDoc, TenantDoc,
                                TenantListDoc, error_body, tenant_view, validation_errors)
from services.builder.source import NoLiveRelease, export_live_source
from spec import source

log = structlog.get_logger(__name__)

MAX_BODY_BYTES = 2 * MAX_SPEC_BYTES  # a spec sent as a JSON string grows with its escapes
_ACTOR = re.compile(r"^[\x21-\x7e][\x20-\x7e]{0,127}$")
PRINTABLE_PATTERN = r"^[^\x00-\x1f\x7f]*$"


_WHY = {400: "The body is not valid JSON", 401: "Missing or wrong bearer token",
        404: "No such tenant (also: a name that is not a valid tenant id)", 409: "Conflicts with the tenant's state",
        413: "The body is too large", 415: "The body is not application/json",
        422: "Invalid input: `errors` names each field at fault",
        500: "The change could not be audited, so it is answered as failed (it may have been made)"}
_BODY = (400, 413, 415, 422)
_UNHEALTHY: dict[int | str, dict[str, Any]] = {503: {"description": "The database does not answer", "content": {
    "application/json": {"schema": {"type": "object", "properties": {"status": {"type": "string"},
                                                                      "database": {"type": "boolean"}}}}}}}


def _doc(*codes: int, changes: bool = False, ok: type[BaseModel] | None = None) -> dict[int | str, dict[str, Any]]:
    """OpenAPI responses: the error codes a route answers (one schema for all), and for a
    change its 202 and 200 (accepted / unchanged) bodies."""
    # 422 always: FastAPI would otherwise advertise its own HTTPValidationError, a body it never sends here
    # 413 and 415 always: the guard checks any /v1/ request's body, a GET's too (services.api.guard)
    # 500 on changes: AuditedApi fails a change it cannot audit
    always = {401, 413, 415, 422} | ({500} if changes else set())
    out: dict[int | str, dict[str, Any]] = {c: {"model": Error, "description": _WHY[c]}
                                            for c in sorted(always | set(codes))}
    if ok is not None:
        out[200] = {"model": ok, "description": "OK"}
    if changes:
        out[202] = {"model": AcceptedBody, "description": "Accepted: the change is under way"}
        out[200] = {"model": AcceptedBody, "description": "Unchanged: nothing to do, no event"}
    return out


def _tenant_name(name: Annotated[str, Path(description="The tenant's id")]) -> str:
    """A path name that cannot be a tenant id names no tenant: 404 before any SQL sees it."""
    try:
        return validate_tenant_id(name)
    except InvalidTenantId:
        raise Refused(404, f"no tenant named {name!r} (not a valid tenant id)") from None


TenantName = Annotated[str, Depends(_tenant_name)]


class _BodyRequest(Request):
    """Reads a JSON body the way specs are read: a whole number too long to convert becomes
    a marker that validation reports at its path (422), not a ValueError (FastAPI's 400)."""

    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = json.loads(await self.body(), parse_int=whole_number)
        return self._json


class _Route(APIRoute):
    def get_route_handler(self) -> Any:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            return await handler(_BodyRequest(request.scope, request.receive))

        return route


class _WholeSegments:
    """A tenant name holds no '/': a path whose segment is an encoded slash (a%2Fapp) would be
    routed, decoded, as another route's path (405, or another operation on tenant 'a'). It is
    answered here, as the document says for any name that is not a tenant id: 404."""

    def __init__(self, app: Any) -> None:
        self.app = app

    def __getattr__(self, name: str) -> Any:  # the FastAPI app's attributes (openapi, routes)
        return getattr(self.app, name)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        raw = scope.get("raw_path") or b""
        if scope["type"] == "http" and raw.startswith(b"/v1/") and b"%2f" in raw.lower():
            payload = json.dumps(error_body("no tenant named that: a tenant name cannot hold '/' (%2F)")).encode()
            await send({"type": "http.response.start", "status": 404,
                        "headers": [(b"content-type", b"application/json"),
                                    (b"content-length", str(len(payload)).encode())]})
            await send({"type": "http.response.body", "body": payload})
            return
        await self.app(scope, receive, send)


@dataclass
class ApiContext:
    """What the routes need; built once by services.api.main."""

    pool: Any
    edge_port: int
    name_prefix: str
    secrets: Any  # async (secret name) -> dict | None; reads the secret store
    settings: Any = None  # the dashboard reads DLQs, releases and runtime health with it
    public_domain: str | None = None  # Settings.public_domain: tenant URLs, and no custom domain under it

    def claimable(self, domain: str | None) -> str | None:
        """A custom domain must not be the platform's own names (api., edge., other tenants)."""
        zone = self.public_domain
        if domain and zone and (domain == zone or domain.endswith("." + zone)):
            raise Refused(422, f"domain: {domain!r} is under the platform's domain {zone}; use a domain you own",
                          [{"path": "domain", "message": f"under the platform's domain {zone}"}])
        return domain


def _static(encoded: str | None) -> tuple[str, bytes] | None:
    if encoded is None:
        return None
    try:
        return source.accept_static(encoded)
    except source.SourceError as exc:
        raise Refused(422, f"the static files cannot be used: {exc}",
                      [{"path": exc.where or "static_zip", "message": str(exc)}]) from None


def _spec(source: Any) -> Any:
    if not isinstance(source, (str, dict)):
        raise Refused(422, "app: send the spec as YAML or JSON text, or as a JSON object",
                      [{"path": "app", "message": "must be text or an object"}])
    if isinstance(source, dict) and len(json.dumps(source)) > MAX_SPEC_BYTES:
        raise Refused(413, f"app: the spec is larger than {MAX_SPEC_BYTES} bytes")
    try:
        return load_app_spec(source)
    except InvalidAppSpec as exc:
        status = 413 if isinstance(exc, SpecTooLarge) else 422
        errors = [{"path": f"app.{p.path}" if p.path != "spec" else "app", "message": p.message}
                  for p in exc.problems]
        raise Refused(status, "the app spec is invalid: " + "; ".join(map(str, exc.problems)), errors) from None


def _actor(x_hostplane_actor: Annotated[str | None, Header(description="Who asks (audit)")] = None) -> str:
    if x_hostplane_actor is None:
        return "api"
    if not _ACTOR.fullmatch(x_hostplane_actor):
        raise Refused(422, "X-Hostplane-Actor must be 1-128 printable ASCII characters")
    return x_hostplane_actor


def create_app(ctx: ApiContext, token: str) -> Guard:
    app = FastAPI(title="hostplane API", version="1.0.0",
                  description="Tenants of the hostplane platform: create, update, delete, status, events.")
    app.router.route_class = _Route
    commands = TenantCommands(ctx.pool)
    bearer = [Depends(HTTPBearer(auto_error=False))]  # documents the scheme; the Guard enforces it

    @app.exception_handler(Refused)
    async def refused(_: Request, exc: Refused) -> JSONResponse:
        return JSONResponse(error_body(exc.message, exc.errors), status_code=exc.status)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        # The type and where it was raised, never the message: it may quote values (secrets).
        tb = exc.__traceback__
        while tb is not None and tb.tb_next is not None:
            tb = tb.tb_next
        where = f"{tb.tb_frame.f_code.co_filename}:{tb.tb_lineno}" if tb is not None else "?"
        log.error("api.unhandled", method=request.method, path=request.url.path, error=type(exc).__name__,
                  where=where)
        return JSONResponse(error_body(f"internal error ({type(exc).__name__}); the API log has where"),
                            status_code=500)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        # FastAPI's own 400 (a body it cannot read), unknown paths, wrong methods: the one error shape
        detail = exc.detail if isinstance(exc.detail, str) else "the request cannot be handled"
        if exc.status_code == 400:
            detail = f"the body is not valid JSON ({detail})"
        return JSONResponse(error_body(detail), status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        status, body = validation_errors(list(exc.errors()))
        return JSONResponse(body, status_code=status)

    async def view(name: str) -> dict[str, Any]:
        row = await store.read_tenant(ctx.pool, name)
        if row is None:
            raise Refused(404, f"no tenant named {name!r}")
        return tenant_view(row, ctx.edge_port, ctx.public_domain)

    async def accepted(result: Accepted) -> JSONResponse:
        body = {"name": result.tenant_id, "changed": result.changed,
                "request": {"kind": result.kind, "generation": result.generation,
                            "correlation_id": str(result.correlation_id)},
                "status_url": f"/v1/tenants/{result.tenant_id}", "tenant": await view(result.tenant_id)}
        return JSONResponse(body, status_code=202 if result.changed else 200,
                            headers={"Location": body["status_url"]})

    @app.get("/livez", tags=["ops"])
    async def livez() -> JSONResponse:
        """The process answers HTTP. What a load balancer checks: a database outage must not
        make it replace every API task (each would come back to the same outage)."""
        return JSONResponse({"status": "ok"})

    @app.get("/healthz", tags=["ops"], responses=_UNHEALTHY)
    async def healthz() -> JSONResponse:
        try:
            await asyncio.wait_for(ctx.pool.fetchval("SELECT 1"), 2)
        except Exception:
            return JSONResponse({"status": "unhealthy", "database": False}, status_code=503)
        return JSONResponse({"status": "ok", "database": True})

    @app.post("/v1/tenants", status_code=202, tags=["tenants"], dependencies=bearer,
               responses=_doc(*_BODY, 409, changes=True))
    async def create_tenant(req: CreateTenant, actor: Annotated[str, Depends(_actor)]) -> JSONResponse:
        """Create a tenant: validated completely, then TenantRequested goes out through the outbox."""
        return await accepted(await commands.create(req.name, _spec(req.app), ctx.claimable(req.domain), actor,
                                                    static=_static(req.static_zip), edge=req.edge))

    @app.get("/v1/tenants", tags=["tenants"], dependencies=bearer, responses=_doc(422, ok=TenantListDoc))
    async def list_tenants(all: bool = Query(False, description="include deleted tenants")) -> JSONResponse:
        rows = await store.read_tenants(ctx.pool, include_deleted=all)
        return JSONResponse({"tenants": [tenant_view(r, ctx.edge_port, ctx.public_domain) for r in rows]})

    @app.get("/v1/tenants/{name}", tags=["tenants"], dependencies=bearer, responses=_doc(404, ok=TenantDoc))
    async def show_tenant(name: TenantName) -> JSONResponse:
        return JSONResponse(await view(name))

    @app.put("/v1/tenants/{name}/app", status_code=202, tags=["tenants"], dependencies=bearer,
             responses=_doc(*_BODY, 404, 409, changes=True))
    @app.post("/v1/tenants/{name}/app", status_code=202, tags=["tenants"], dependencies=bearer,
              include_in_schema=False)
    async def update_app(name: TenantName, req: UpdateApp, actor: Annotated[str, Depends(_actor)]) -> JSONResponse:
        """Publish a new app spec: AppUpdateRequested (200 and no event when it is unchanged)."""
        return await accepted(await commands.update(name, _spec(req.app), req.allow_destructive, actor,
                                                    static=_static(req.static_zip)))

    @app.put("/v1/tenants/{name}/domain", status_code=202, tags=["tenants"], dependencies=bearer,
             responses=_doc(*_BODY, 404, 409, changes=True))
    async def change_domain(name: TenantName, req: ChangeDomain,
                            actor: Annotated[str, Depends(_actor)]) -> JSONResponse:
        """Set or remove the custom domain: DomainChangeRequested (200 and no event when unchanged)."""
        return await accepted(await commands.change_domain(name, ctx.claimable(req.domain), actor))

    @app.delete("/v1/tenants/{name}", status_code=202, tags=["tenants"], dependencies=bearer,
                responses=_doc(404, 409, 422, changes=True))
    async def delete_tenant(name: TenantName, actor: Annotated[str, Depends(_actor)]) -> JSONResponse:
        """Delete a tenant and everything it owns: TenantDeletionRequested."""
        return await accepted(await commands.delete(name, actor))

    async def retained(name: str) -> set[int] | None:
        """Versions the artifact store still holds (None when this API cannot see the store)."""
        if ctx.settings is None:
            return None
        found = await asyncio.to_thread(ArtifactStore(store_root(ctx.settings)).releases, name)
        return {m.version for m in found}

    @app.get("/v1/tenants/{name}/releases", tags=["tenants"], dependencies=bearer, responses=_doc(404, ok=ReleasesDoc))
    async def tenant_releases(name: TenantName) -> JSONResponse:
        """Every release, newest first: digests, when built/migrated/activated, who asked, retained, live."""
        tenant = await view(name)
        rows = await releases.read(ctx.pool, name)
        kept = await retained(name)
        return JSONResponse({"name": name, "live": tenant["version"], "releases": [
            releases.view(r, live=tenant["version"], retained=kept) for r in rows]})

    @app.post("/v1/tenants/{name}/rollback", status_code=202, tags=["tenants"], dependencies=bearer,
              responses=_doc(*_BODY, 404, 409, changes=True))
    async def rollback(name: TenantName, actor: Annotated[str, Depends(_actor)],
                       req: Annotated[Rollback | None, Body()] = None) -> JSONResponse:
        """Serve a retained release again, as a new version copying its artifact (RollbackRequested)."""
        req = req or Rollback()
        return await accepted(await commands.rollback(name, req.to, actor, await retained(name)))

    @app.get("/v1/tenants/{name}/events", tags=["events"], dependencies=bearer, responses=_doc(404, 422, ok=EventsDoc))
    async def tenant_events(name: TenantName,
                            type: str | None = Query(None, pattern=EVENT_TYPE_PATTERN, description="Only this type"),
                            since: datetime | None = None,
                            limit: int = Query(200, ge=1, le=1000)) -> JSONResponse:
        await view(name)
        if since is not None and since.tzinfo is None:
            raise Refused(422, "since: give a time zone, e.g. 2026-05-01T12:00:00Z")
        records = await list_events(ctx.pool, name, type, since, limit)
        return JSONResponse({"name": name, "events": [r.to_json() for r in records]})

    @app.post("/v1/tenants/{name}/replay", status_code=202, tags=["events"], dependencies=bearer,
              responses=_doc(*_BODY, 404, 500) | {202: {"model": Queued, "description": "Queued for re-publication"}})
    async def replay_events(name: TenantName, req: Annotated[ReplayRequest | None, Body()] = None) -> JSONResponse:
        """Re-publish the tenant's recorded events through the bus, marked as replays."""
        await view(name)
        req = req or ReplayRequest()
        count = await replay(ctx.pool, name, req.type, req.since)
        return JSONResponse({"name": name, "queued": count}, status_code=202)

    @app.get("/v1/tenants/{name}/source", tags=["tenants"], dependencies=bearer, response_class=Response,
             responses=_doc(404) | {200: {"description": "The live release's source tree",
                                          "content": {"application/zip": {"schema": {"type": "string",
                                                                                     "format": "binary"}}}}})
    async def export_source(name: TenantName) -> Response:
        """The live release's source tree as a zip: edit it, then POST it back."""
        await view(name)
        try:
            version, body = await asyncio.to_thread(export_live_source, store_root(ctx.settings), name)
        except NoLiveRelease as exc:
            raise Refused(404, str(exc)) from None
        return Response(body, media_type="application/zip",
                        headers={"X-Hostplane-Version": str(version),
                                 "Content-Disposition": f'attachment; filename="{name}-v{version}.zip"'})

    @app.post("/v1/tenants/{name}/source", status_code=202, tags=["tenants"], dependencies=bearer,
              responses=_doc(*_BODY, 404, 409, changes=True))
    async def deploy_source(name: TenantName, req: DeploySource,
                            actor: Annotated[str, Depends(_actor)]) -> JSONResponse:
        """Build and release an edited source tree through the builder (AppUpdateRequested)."""
        try:
            upload = source.accept_upload(req.source_zip)
        except source.SourceError as exc:
            raise Refused(422, f"the source cannot be built: {exc}",
                          [{"path": exc.where or "source_zip", "message": str(exc)}]) from None
        except InvalidAppSpec as exc:
            raise Refused(422, f"spec.json: {exc}", [{"path": f"spec.json:{p.path}", "message": p.message}
                                                     for p in exc.problems]) from None
        return await accepted(await commands.update(name, upload.spec, req.allow_destructive, actor,
                                                    source=(upload.digest, upload.body)))

    @app.get("/v1/tenants/{name}/env", tags=["tenants"], dependencies=bearer, responses=_doc(404, 500, ok=EnvDoc))
    async def tenant_env(name: TenantName) -> JSONResponse:
        """The tenant's own connection settings (DATABASE_URL, REDIS_URL, ...). Reveals secrets."""
        tenant = await view(name)
        if tenant["state"] == "deleted":
            raise Refused(404, f"tenant {name!r} was deleted")
        values = await ctx.secrets(tenant_names(name, prefix=ctx.name_prefix).secret)
        if values is None:
            raise Refused(404, f"tenant {name!r} has no credentials yet: it is not provisioned "
                               f"(state {tenant['state']}, stage {tenant['stage']})")
        return JSONResponse({"name": name, "env": values}, headers={"Cache-Control": "no-store"})

    @app.get("/v1/audit", tags=["ops"], dependencies=bearer, responses=_doc(422, ok=AuditDoc))
    async def audit_log(tenant: str | None = Query(None, max_length=200, pattern=PRINTABLE_PATTERN,
                                                   description="Only this tenant's records"),
                        limit: int = Query(200, ge=1, le=audit.MAX_LIMIT)) -> JSONResponse:
        """The audit trail, newest first: who asked what, when, from where, and the outcome (read-only)."""
        return JSONResponse({"records": await audit.read(ctx.pool, tenant, limit)})

    mount_dashboard(app, ctx, token, commands, _spec)
    return Guard(audit.AuditedApi(_WholeSegments(app), ctx.pool, audit.token_identity(token)), token, MAX_BODY_BYTES)

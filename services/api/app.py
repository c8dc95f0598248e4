"""The HTTP API under /v1/ (FastAPI: the OpenAPI document is at /openapi.json).

    POST   /v1/tenants                  create (name, app spec, optional custom domain and edge) → 202
    GET    /v1/tenants                  list (?all=true includes deleted tenants)
    GET    /v1/tenants/{name}           status: state, stage, version, url, error, timestamps
    PUT    /v1/tenants/{name}/app       new app spec → 202 (200 when the spec is unchanged)
    PUT    /v1/tenants/{name}/domain    {"domain": host | null} → 202 (200 when unchanged)
    PUT    /v1/tenants/{name}/idle-after {"idle_after_s": seconds | null} → 202 (200 when unchanged)
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
tests/integration/shared/test_api_fuzz.py holds the server to it). A path name that cannot be a
tenant id is 404 before any SQL sees it.

The routes live by subject (routes.py: tenants; source_routes.py: source and credentials;
history_routes.py: events and audit; dashboard/); what they share is http.py.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from services.api import audit
from services.api.commands import RequestRefused, TenantCommands
from services.api.dashboard.routes import mount_dashboard
from services.api.guard import Guard
from services.api.history_routes import add_audit_routes, add_event_routes
from services.api.http import Api, ApiContext, BodyRoute, app_spec
from services.api.routes import add_tenant_routes
from services.api.source_routes import add_source_routes
from services.api.views import error_body, validation_errors
from spec.load import MAX_SPEC_BYTES

log = structlog.get_logger(__name__)

MAX_BODY_BYTES = 2 * MAX_SPEC_BYTES  # a spec sent as a JSON string grows with its escapes
_UNHEALTHY: dict[int | str, dict[str, Any]] = {503: {"description": "The database does not answer", "content": {
    "application/json": {"schema": {"type": "object", "properties": {"status": {"type": "string"},
                                                                      "database": {"type": "boolean"}}}}}}}


def create_app(ctx: ApiContext, token: str) -> Guard:
    app = FastAPI(title="hostplane API", version="1.0.0",
                  description="Tenants of the hostplane platform: create, update, delete, status, events.")
    app.router.route_class = BodyRoute
    _answer_errors_in_one_shape(app)
    api = Api(ctx, TenantCommands(ctx.pool))
    _add_health_routes(app, ctx)  # the order here is the OpenAPI document's order
    add_tenant_routes(app, api)
    add_event_routes(app, api)
    add_source_routes(app, api)
    add_audit_routes(app, api)
    mount_dashboard(app, ctx, token, api.commands, app_spec)
    return Guard(audit.AuditedApi(_WholeSegments(app), ctx.pool, audit.token_identity(token)), token, MAX_BODY_BYTES)


def _add_health_routes(app: FastAPI, ctx: ApiContext) -> None:
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


def _answer_errors_in_one_shape(app: FastAPI) -> None:
    @app.exception_handler(RequestRefused)
    async def refused(_: Request, exc: RequestRefused) -> JSONResponse:
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

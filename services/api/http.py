"""What the API's route modules share: the context they run in (`ApiContext`), the route
class that reads JSON bodies like specs (`BodyRoute`), the documented answers of a route
(`doc`), the bearer scheme (`BEARER`), the tenant name in a path (`TenantName`), the
`X-Hostplane-Actor` header (`Actor`), and `Api`: reading a tenant's view, answering an
accepted change, reading an app spec or a static-files zip from a request body."""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Header, Path, Request
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from fastapi.security import HTTPBearer
from pydantic import BaseModel

from artifacts.store import ArtifactStore, store_root
from contracts.tenant import InvalidTenantId, validate_tenant_id
from services.api import store
from services.api.commands import Accepted, RequestRefused, TenantCommands
from services.api.views import AcceptedBody, Error, tenant_view
from spec import source
from spec.load import MAX_SPEC_BYTES, load_app_spec, whole_number
from spec.problems import InvalidAppSpec, SpecTooLarge

_ACTOR = re.compile(r"^[\x21-\x7e][\x20-\x7e]{0,127}$")
PRINTABLE_PATTERN = r"^[^\x00-\x1f\x7f]*$"

_WHY = {400: "The body is not valid JSON", 401: "Missing or wrong bearer token",
        404: "No such tenant (also: a name that is not a valid tenant id)", 409: "Conflicts with the tenant's state",
        413: "The body is too large", 415: "The body is not application/json",
        422: "Invalid input: `errors` names each field at fault",
        500: "The change could not be audited, so it is answered as failed (it may have been made)"}
BODY = (400, 413, 415, 422)
BEARER = [Depends(HTTPBearer(auto_error=False))]  # documents the scheme; the Guard enforces it


class _BodyRequest(Request):
    """Reads a JSON body the way specs are read: a whole number too long to convert becomes
    a marker that validation reports at its path (422), not a ValueError (FastAPI's 400)."""

    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = json.loads(await self.body(), parse_int=whole_number)
        return self._json


class BodyRoute(APIRoute):
    def get_route_handler(self) -> Any:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            return await handler(_BodyRequest(request.scope, request.receive))

        return route


def doc(*codes: int, changes: bool = False, ok: type[BaseModel] | None = None) -> dict[int | str, dict[str, Any]]:
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
        raise RequestRefused(404, f"no tenant named {name!r} (not a valid tenant id)") from None


TenantName = Annotated[str, Depends(_tenant_name)]


def actor(x_hostplane_actor: Annotated[str | None, Header(description="Who asks (audit)")] = None) -> str:
    if x_hostplane_actor is None:
        return "api"
    if not _ACTOR.fullmatch(x_hostplane_actor):
        raise RequestRefused(422, "X-Hostplane-Actor must be 1-128 printable ASCII characters")
    return x_hostplane_actor


Actor = Annotated[str, Depends(actor)]


@dataclass
class ApiContext:
    """What the routes need; built once by services.api.server."""

    pool: Any
    edge_port: int
    name_prefix: str
    secrets: Any  # async (secret name) -> dict | None; reads the secret store
    settings: Any = None  # the dashboard reads DLQs, releases and runtime health with it
    public_domain: str | None = None  # Settings.public_domain: tenant URLs, and no custom domain under it
    watch: Any = None  # services.api.watch.StatusWatch: long-polls of a tenant's status

    def claimable(self, domain: str | None) -> str | None:
        """A custom domain must not be the platform's own names (api., edge., other tenants)."""
        zone = self.public_domain
        if domain and zone and (domain == zone or domain.endswith("." + zone)):
            raise RequestRefused(422, f"domain: {domain!r} is under the platform's domain {zone}; use a domain you own",
                          [{"path": "domain", "message": f"under the platform's domain {zone}"}])
        return domain


@dataclass
class Api:
    """The context and the commands, with what several routes do the same way."""

    ctx: ApiContext
    commands: TenantCommands

    async def view(self, name: str) -> dict[str, Any]:
        row = await store.read_tenant(self.ctx.pool, name)
        if row is None:
            raise RequestRefused(404, f"no tenant named {name!r}")
        return tenant_view(row, self.ctx.edge_port, self.ctx.public_domain)

    async def accepted(self, result: Accepted) -> JSONResponse:
        body = {"name": result.tenant_id, "changed": result.changed,
                "request": {"kind": result.kind, "generation": result.generation,
                            "correlation_id": str(result.correlation_id)},
                "status_url": f"/v1/tenants/{result.tenant_id}", "tenant": await self.view(result.tenant_id)}
        return JSONResponse(body, status_code=202 if result.changed else 200,
                            headers={"Location": body["status_url"]})

    async def retained(self, name: str) -> set[int] | None:
        """Versions the artifact store still holds (None when this API cannot see the store)."""
        if self.ctx.settings is None:
            return None
        found = await asyncio.to_thread(ArtifactStore(store_root(self.ctx.settings)).releases, name)
        return {m.version for m in found}


def static_zip(encoded: str | None) -> tuple[str, bytes] | None:
    """(sha256, zip) of a request's `static_zip`, or None when it has none; 422 when unusable."""
    if encoded is None:
        return None
    try:
        return source.accept_static(encoded)
    except source.SourceError as exc:
        raise RequestRefused(422, f"the static files cannot be used: {exc}",
                      [{"path": exc.where or "static_zip", "message": str(exc)}]) from None


def app_spec(text_or_object: Any) -> Any:
    """The AppSpec in a request's `app` (text or an object); 422 (413 when too large) with
    every problem at its path under `app.`."""
    if not isinstance(text_or_object, (str, dict)):
        raise RequestRefused(422, "app: send the spec as YAML or JSON text, or as a JSON object",
                      [{"path": "app", "message": "must be text or an object"}])
    if isinstance(text_or_object, dict) and len(json.dumps(text_or_object)) > MAX_SPEC_BYTES:
        raise RequestRefused(413, f"app: the spec is larger than {MAX_SPEC_BYTES} bytes")
    try:
        return load_app_spec(text_or_object)
    except InvalidAppSpec as exc:
        status = 413 if isinstance(exc, SpecTooLarge) else 422
        errors = [{"path": f"app.{p.path}" if p.path != "spec" else "app", "message": p.message}
                  for p in exc.problems]
        raise RequestRefused(status, "the app spec is invalid: " + "; ".join(map(str, exc.problems)), errors) from None

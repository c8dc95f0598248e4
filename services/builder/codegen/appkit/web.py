"""The ASGI app: CRUD JSON API per entity, server-rendered pages, /healthz, and the app's
own OpenAPI 3.1 document (/openapi.json) with a docs page rendered from it (/docs, no
script, no external resource; a spec page at /docs keeps that path).

Credentials come only from the environment the runtime gives the app: DATABASE_URL,
REDIS_URL, CACHE_PREFIX; APP_VERSION is the release number /healthz reports (never
baked into the code, so the same spec builds the same bytes)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from typing import Any

import asyncpg
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from .cache import ListCache
from .db import Conflict, Table
from .openapi import DOCS_CSP, document, document_bytes, render_docs
from .pages import render_page
from .schema import Entity, Page
from .validation import Invalid, check_body, parse_query, to_json

HEALTH_TIMEOUT = 2.0


def _invalid(exc: Invalid) -> JSONResponse:
    # a body key may hold an unpaired surrogate ("\ud800" in JSON), which UTF-8 cannot carry
    fields = {k.encode("utf-8", "backslashreplace").decode("utf-8"): v for k, v in exc.fields.items()}
    return JSONResponse({"error": "invalid input", "fields": fields}, status_code=422)


def _not_found(entity: str, row_id: Any) -> JSONResponse:
    return JSONResponse({"error": f"{entity} {row_id} not found"}, status_code=404)


def _row_id(request: Request) -> int | None:
    raw = request.path_params["row_id"]
    # isascii: str.isdigit() also takes digits int() refuses ("²")
    return int(raw) if raw.isascii() and raw.isdigit() and 0 < int(raw) < 2**63 else None


async def _body(request: Request) -> Any:
    try:
        return json.loads(await request.body())
    except (ValueError, RecursionError):  # RecursionError: nested too deeply
        raise Invalid({"body": "is not valid JSON"}) from None


def entity_routes(entity: Entity, state: dict[str, Any]) -> list[Route]:
    table = Table(entity)
    name = entity.name

    async def collection(request: Request) -> Response:
        pool, cache = state["pool"], state["cache"]
        try:
            if request.method == "POST":
                values = check_body(entity, await _body(request), partial=False)
                row = await table.insert(pool, values)
                await cache.invalidate(name)
                return JSONResponse(to_json(row), status_code=201)
            limit, offset, filters = parse_query(entity, list(request.query_params.multi_items()))
        except Invalid as exc:
            return _invalid(exc)

        async def load() -> list[dict[str, Any]]:
            return [to_json(r) for r in await table.list(pool, limit, offset, filters)]

        items, hit = await cache.read(name, [limit, offset, sorted(filters.items())], load)
        return JSONResponse({"items": items, "limit": limit, "offset": offset},
                            headers={"X-Cache": "hit" if hit else "miss"})

    async def item(request: Request) -> Response:
        pool, cache = state["pool"], state["cache"]
        row_id = _row_id(request)
        if row_id is None:
            return _not_found(name, request.path_params["row_id"])
        try:
            if request.method == "GET":
                row = await table.get(pool, row_id)
            elif request.method == "DELETE":
                if not await table.delete(pool, row_id):
                    return _not_found(name, row_id)
                await cache.invalidate(name)
                return Response(status_code=204)
            else:
                row = await table.update(pool, row_id, check_body(entity, await _body(request), partial=True))
                if row is not None:
                    await cache.invalidate(name)
        except Invalid as exc:
            return _invalid(exc)
        except Conflict as exc:
            return JSONResponse({"error": str(exc)}, status_code=409)
        return _not_found(name, row_id) if row is None else JSONResponse(to_json(row))

    return [Route(f"/api/{name}", collection, methods=["GET", "POST"]),
            Route(f"/api/{name}/{{row_id}}", item, methods=["GET", "PATCH", "DELETE"])]


def page_route(title: str, page: Page, entity: Entity, pages: list[Page], state: dict[str, Any],
               stylesheets: tuple[str, ...] = ()) -> Route:
    table = Table(entity)

    async def show(request: Request) -> Response:
        rows = [to_json(r) for r in await table.list(state["pool"], 100, 0, {})]
        return HTMLResponse(render_page(title, page, entity, rows, pages, stylesheets))

    return Route(page.path, show, methods=["GET"])


async def healthz(request: Request) -> Response:
    """200 {"version": N, "database": "ok"} while the database answers, else 503."""
    version = int(os.environ.get("APP_VERSION", "0"))
    try:
        async with asyncio.timeout(HEALTH_TIMEOUT):
            await request.app.state.pool.fetchval("SELECT 1")
    except Exception as exc:  # noqa: BLE001 (any failure means: not healthy)
        return JSONResponse({"version": version, "database": type(exc).__name__}, status_code=503)
    return JSONResponse({"version": version, "database": "ok"})


def build_app(title: str, entities: list[Entity], pages: list[Page], extra_routes: list[Route] = (),
              stylesheets: tuple[str, ...] = ()) -> Starlette:
    """`stylesheets`: hrefs the pages link (e.g. /static/style.css from the spec's static folder)."""
    state: dict[str, Any] = {}

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):
        # min_size=0: the app starts even while the database is away; /healthz tells.
        state["pool"] = await asyncpg.create_pool(os.environ["DATABASE_URL"], min_size=0, max_size=5,
                                                  command_timeout=10)
        client = None
        if os.environ.get("REDIS_URL"):
            from redis.asyncio.client import Redis  # the one client, not the package's cluster and sentinel ones

            client = Redis.from_url(os.environ["REDIS_URL"], socket_timeout=1.0, socket_connect_timeout=1.0)
        state["cache"] = ListCache(client, os.environ.get("CACHE_PREFIX", ""))
        app.state.pool = state["pool"]
        try:
            yield
        finally:
            if client is not None:
                await client.aclose()
            await state["pool"].close()

    by_name = {e.name: e for e in entities}
    docs_page = all(p.path != "/docs" for p in pages)
    built: dict[str, bytes] = {}

    def described() -> tuple[bytes, bytes]:
        """The document and its page, built on first request and kept (start-up stays as fast)."""
        if not built:
            doc = document(title, list(entities), list(pages), version=os.environ.get("APP_VERSION", "0"),
                           docs_page=docs_page)
            built["json"], built["html"] = document_bytes(doc), render_docs(doc).encode("utf-8")
        return built["json"], built["html"]

    async def openapi_json(request: Request) -> Response:
        return Response(described()[0], media_type="application/json")

    async def docs(request: Request) -> Response:
        return Response(described()[1], media_type="text/html",
                        headers={"Content-Security-Policy": DOCS_CSP})

    routes = [Route("/healthz", healthz, methods=["GET"]), Route("/openapi.json", openapi_json, methods=["GET"]),
              *([Route("/docs", docs, methods=["GET"])] if docs_page else []), *extra_routes]
    for entity in entities:
        routes += entity_routes(entity, state)
    routes += [page_route(title, p, by_name[p.shows], pages, state, tuple(stylesheets)) for p in pages]
    return Starlette(routes=routes, lifespan=lifespan)

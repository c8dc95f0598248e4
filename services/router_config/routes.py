"""Edge routes as data: what Caddy must hold for each tenant (pure functions).

One route per tenant, addressed by `@id` = `tenant_names(t).route_id`, matching the
tenant's host names. It first replaces any client-supplied `X-Tenant-Id` with the
tenant's own, then:

- `GET|HEAD /static/<key>` → the tenant's bucket on the AWS emulator, S3 path style
  (`/<bucket>/<key>`, query string dropped so nobody lists the bucket or reads its ACL
  through the edge, upstream Host = the emulator's, any client Authorization replaced); a path with `..` is refused (400)
  so no request climbs into another bucket; a "directory" (`/static/`, any path ending in `/` or a `.` segment)
  is a 404 that never reaches the bucket store (which would answer with the bucket's listing); other methods on
  `/static/` get 405;
- everything else → the tenant's runtime upstream (`127.0.0.1:<app_port>` locally).

Every tenant route sits before the catch-all (`@id catch-all`, 404), so a host that
names no tenant never reaches a tenant's app.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from hostplane.local.edge import CATCH_ALL_ID, base_config

TENANT_HEADER = "X-Tenant-Id"
# The emulator enforces IAM and refuses unsigned requests: Caddy presents this marker, which
# our moto launcher (hostplane.local.emulator.EDGE_AUTH) re-signs as its read-only edge user
# for a GET/HEAD of an object in a `*-static` bucket only (what the edge serves anyway), the
# local stand-in for CloudFront's origin access control (on AWS CloudFront serves /static/
# and this route has no origin). LocalStack's community edition checks no signature at all.
EMULATOR_AUTH = ("AWS4-HMAC-SHA256 Credential=test/20000101/us-east-1/s3/aws4_request, "
                 "SignedHeaders=host, Signature=unsigned")
ROUTE_ID_PREFIX = "tenant-"
# A /static/ path naming no object: the bucket itself, a "folder", or a `.` segment (the
# store would list the bucket or normalise the dot away); never forwarded.
STATIC_DIRECTORY = r"(^/static/$|/$|/\.(/|$)|/{2,})"


@dataclass(frozen=True)
class Route:
    """A tenant's desired edge route (a row of the `routes` table)."""

    tenant_id: str
    route_id: str
    hosts: tuple[str, ...]
    upstream: str
    bucket: str


def static_origin(endpoint: str | None) -> str | None:
    """`host:port` of the S3 endpoint serving buckets path-style (the emulator), if any."""
    if not endpoint:
        return None
    parts = urlsplit(endpoint)
    return parts.netloc or None


def catch_all() -> dict[str, Any]:
    """The edge's last route (hostplane.local.edge defines it once)."""
    routes = base_config("http://127.0.0.1:1", "127.0.0.1", 1)["apps"]["http"]["servers"]["edge"]["routes"]
    return next(r for r in routes if r.get("@id") == CATCH_ALL_ID)


def caddy_route(route: Route, origin: str | None) -> dict[str, Any]:
    """The Caddy JSON of one tenant route."""
    app = {"handle": [{"handler": "reverse_proxy", "upstreams": [{"dial": route.upstream}]}]}
    inner: list[dict[str, Any]] = []
    if origin:
        inner += [
            {"match": [{"path": ["/static/*"], "path_regexp": {"pattern": r"\.\."}}],
             "handle": [_status(400, "bad static path\n")], "terminal": True},
            {"match": [{"path": ["/static/*"], "path_regexp": {"pattern": STATIC_DIRECTORY}}],
             "handle": [_status(404, "not found\n")], "terminal": True},
            {"match": [{"path": ["/static/*"], "method": ["GET", "HEAD"]}],
             "handle": [
                 {"handler": "rewrite", "uri": "?",
                  "path_regexp": [{"find": "^/static/", "replace": f"/{route.bucket}/"}]},
                 {"handler": "reverse_proxy", "upstreams": [{"dial": origin}],
                  "headers": {"request": {"set": {"Host": [origin], "Authorization": [EMULATOR_AUTH]}}}},
             ], "terminal": True},
            {"match": [{"path": ["/static/*"]}], "handle": [_status(405, "static assets are read-only\n")],
             "terminal": True},
        ]
    inner.append(app)
    return {
        "@id": route.route_id,
        "match": [{"host": list(route.hosts)}],
        "handle": [
            # `set` replaces every value a client sent under that name
            {"handler": "headers", "request": {"set": {TENANT_HEADER: [route.tenant_id]}}},
            {"handler": "subroute", "routes": inner},
        ],
        "terminal": True,
    }


def _status(code: int, body: str) -> dict[str, Any]:
    return {"handler": "static_response", "status_code": code, "body": body,
            "headers": {"Content-Type": ["text/plain"]}}


def is_tenant_route(route: dict[str, Any]) -> bool:
    return str(route.get("@id", "")).startswith(ROUTE_ID_PREFIX)


def desired_routes(routes: list[Route], origin: str | None,
                   live: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """The edge server's whole route list: every tenant route (by id), then the catch-all.
    Nothing else: a route Caddy holds that is not desired (with or without an `@id`, at any
    index) goes. `live` is not used (kept for callers that pass what Caddy held)."""
    return [caddy_route(r, origin) for r in sorted(routes, key=lambda r: r.route_id)] + [catch_all()]


def drifted(live: list[dict[str, Any]] | None, tenant_routes: list[dict[str, Any]]) -> bool:
    """True unless Caddy's route list is exactly the desired one: the desired tenant routes,
    each as generated, then the catch-all as generated, and nothing else. Order among tenant
    routes does not matter (their hosts never overlap, and a per-route write inserts just
    before the catch-all); any route before, between or after them that is not desired,
    a changed catch-all, or a missing one is drift."""
    live = list(live or [])
    if not live or live[-1] != catch_all():
        return True
    return sorted(map(_canonical, live[:-1])) != sorted(map(_canonical, tenant_routes))


def _canonical(route: Any) -> str:
    return json.dumps(route, sort_keys=True, default=str)

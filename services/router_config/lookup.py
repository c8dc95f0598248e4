"""The local edge's routing by lookup (pure): Caddy's fixed configuration, which asks the
route resolver (resolver.py) the names of contracts.edge at request time.

Caddy holds no route per tenant. For every request it looks up an SRV record named after
the request's host in a zone only the resolver answers (`ZONE`):

- `<host>.host.<zone>` → the tenant's runtime port, target `<tenant>.runtime.<zone>`
  (its A record: the runtime host). `X-Tenant-Id` is set from that target, replacing
  anything the client sent; the app sees the request's own Host.
- `<tenant>.<base>` + `/static/<key>` (GET/HEAD) → `<host>.static.<zone>` (the emulator),
  path `/<tenant's bucket>/<key>`, the query dropped; the bucket is named from the host's
  tenant label by the one naming function (contracts.tenant.bucket_name).
- a custom domain + `/static/…` → `<domain>.hop.<zone>`: back to the edge itself as the
  tenant's own host (`<tenant>.edge.<zone>` → Host `<tenant>.<base>`), so static files
  have one path.

A name the resolver does not answer (unknown host, deleted route) leaves the proxy with no
upstream (Caddy's 503), which the edge answers with the same 404 as before. A failed
*dial* (the tenant's app is down) stays a 502. Caddy caches an answer for `REFRESH_S`; an
unanswered name is asked again on every request. So a new route is served at once, and a
removed one at most `REFRESH_S` after the resolver drops it.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from contracts.edge import REFRESH_S, app_name, edge_target, hop_name, runtime_target, static_name
from contracts.tenant import bucket_name

TENANT_HEADER = "X-Tenant-Id"
# The emulator enforces IAM and refuses unsigned requests: Caddy presents this marker, which
# our moto launcher (hostplane.local.emulator.EDGE_AUTH) re-signs as its read-only edge user
# for a GET/HEAD of an object in a `*-static` bucket only (what the edge serves anyway), the
# local stand-in for CloudFront's origin access control. LocalStack's community edition
# checks no signature at all.
EMULATOR_AUTH = ("AWS4-HMAC-SHA256 Credential=test/20000101/us-east-1/s3/aws4_request, "
                 "SignedHeaders=host, Signature=unsigned")
# A /static/ path naming no object: the bucket itself, a "folder", or a `.` segment (the
# store would list the bucket or normalise the dot away); never forwarded.
STATIC_DIRECTORY = r"(^/static/$|/$|/\.(/|$)|/{2,})"
NOT_FOUND_BODY = "hostplane: no tenant serves this host\n"


def static_origin(endpoint: str | None) -> str | None:
    """`host:port` of the S3 endpoint serving buckets path-style (the emulator), if any."""
    return (urlsplit(endpoint).netloc or None) if endpoint else None



def _escaped(name: str) -> str:
    return name.replace(".", r"\.")


def _status(code: int | str, body: str) -> dict[str, Any]:
    return {"handler": "static_response", "status_code": code, "body": body,
            "headers": {"Content-Type": ["text/plain"]}}


def _lookup(name: str, resolver: dict[str, Any]) -> dict[str, Any]:
    return {"source": "srv", "name": name, "refresh": f"{REFRESH_S:g}s", "resolver": resolver,
            "dial_timeout": "3s"}


def _proxy(name: str, resolver: dict[str, Any], headers: dict[str, Any]) -> dict[str, Any]:
    return {"handler": "reverse_proxy", "dynamic_upstreams": _lookup(name, resolver),
            "transport": {"protocol": "http", "resolver": resolver},
            "headers": {"request": headers}}


def _app(resolver: dict[str, Any]) -> dict[str, Any]:
    """Everything but /static/: the tenant's runtime; its id from the answer's target."""
    suffix = _escaped(runtime_target("")) + r"\.?$"
    return _proxy(app_name("{http.request.host}"), resolver, {
        "set": {TENANT_HEADER: ["{http.reverse_proxy.upstream.host}"]},
        "replace": {TENANT_HEADER: [{"search_regexp": suffix, "replace": ""}]},
    })


def _static_guards() -> list[dict[str, Any]]:
    return [
        {"match": [{"path": ["/static/*"], "path_regexp": {"pattern": r"\.\."}}],
         "handle": [_status(400, "bad static path\n")], "terminal": True},
        {"match": [{"path": ["/static/*"], "path_regexp": {"pattern": STATIC_DIRECTORY}}],
         "handle": [_status(404, "not found\n")], "terminal": True},
    ]


def _own_host_routes(base_domain: str, prefix: str, origin: str | None,
                     resolver: dict[str, Any]) -> list[dict[str, Any]]:
    """`<tenant>.<base>`: static files from the tenant's bucket, the rest to its app."""
    inner: list[dict[str, Any]] = []
    if origin:
        label = "{http.request.host.labels.%d}" % len(base_domain.split("."))
        inner += _static_guards() + [
            {"match": [{"path": ["/static/*"], "method": ["GET", "HEAD"]}],
             "handle": [
                 {"handler": "rewrite", "strip_path_prefix": "/static"},
                 {"handler": "rewrite", "uri": f"/{bucket_name(prefix, label)}{{http.request.uri.path}}?"},
                 _proxy(static_name("{http.request.host}"), resolver,
                        {"set": {"Host": [origin], "Authorization": [EMULATOR_AUTH]},
                         "delete": [TENANT_HEADER]}),
             ], "terminal": True},
            {"match": [{"path": ["/static/*"]}], "handle": [_status(405, "static assets are read-only\n")],
             "terminal": True},
        ]
    inner.append({"handle": [_app(resolver)]})
    # `*.<base>` matches exactly one label before the base domain.
    return [{"match": [{"host": [f"*.{base_domain}"]}], "handle": [{"handler": "subroute", "routes": inner}],
             "terminal": True}]


def _custom_domain_routes(base_domain: str, origin: str | None, resolver: dict[str, Any]) -> list[dict[str, Any]]:
    """Any other host (a custom domain): the app directly, /static/ through the tenant's host."""
    inner: list[dict[str, Any]] = []
    if origin:
        own_host = _escaped(edge_target("")) + r"\.?$"
        inner.append({"match": [{"path": ["/static/*"]}], "handle": [
            _proxy(hop_name("{http.request.host}"), resolver, {
                "set": {"Host": ["{http.reverse_proxy.upstream.host}"]},
                "replace": {"Host": [{"search_regexp": own_host, "replace": f".{base_domain}"}]},
            })], "terminal": True})
    inner.append({"handle": [_app(resolver)]})
    return [{"handle": [{"handler": "subroute", "routes": inner}], "terminal": True}]


def edge_server(listen: str, resolver_address: str, *, base_domain: str = "localhost",
                prefix: str = "hostplane", origin: str | None = None) -> dict[str, Any]:
    """The edge's one Caddy HTTP server, fixed for the platform's lifetime.
    `resolver_address`: host:port of the route resolver (TCP: a tenant cannot squat a TCP
    port, see docs/security.md); `origin`: host:port of the emulator serving buckets
    path-style (None: no /static/)."""
    resolver = {"addresses": [f"tcp/{resolver_address}"]}
    return {
        "listen": [listen],
        "automatic_https": {"disable": True},
        "routes": _own_host_routes(base_domain, prefix, origin, resolver)
                  + _custom_domain_routes(base_domain, origin, resolver),
        "errors": {"routes": [
            # No upstream: the resolver does not know the host (or is away). Any other error
            # (a dial to a stopped app: 502) keeps its status.
            {"match": [{"expression": "{http.error.status_code} == 503"}],
             "handle": [_status(404, NOT_FOUND_BODY)]},
            {"handle": [_status("{http.error.status_code}", "hostplane: {http.error.status_text}\n")]},
        ]},
    }

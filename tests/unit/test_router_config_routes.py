"""Route building and drift comparison (pure)."""

from __future__ import annotations

import copy
import re

from hostplane.local.edge import CATCH_ALL_ID
from services.router_config.routes import Route, caddy_route, catch_all, desired_routes, drifted, static_origin

A = Route("acme", "tenant-acme", ("acme.localhost", "shop.example.com"), "127.0.0.1:10001", "hostplane-acme-static")
B = Route("beta", "tenant-beta", ("beta.localhost",), "127.0.0.1:10002", "hostplane-beta-static")
ORIGIN = "127.0.0.1:4580"


def _subroutes(route: dict) -> list[dict]:
    return next(h for h in route["handle"] if h["handler"] == "subroute")["routes"]


def test_route_matches_the_hosts_and_sets_the_tenant_header_first():
    r = caddy_route(A, ORIGIN)
    assert r["@id"] == "tenant-acme" and r["terminal"] is True
    assert r["match"] == [{"host": ["acme.localhost", "shop.example.com"]}]
    assert r["handle"][0] == {"handler": "headers", "request": {"set": {"X-Tenant-Id": ["acme"]}}}


def test_static_goes_to_the_tenants_bucket_read_only_and_the_rest_to_the_runtime():
    inner = _subroutes(caddy_route(A, ORIGIN))
    guard, directory, static, read_only, app = inner
    assert guard["handle"][0]["status_code"] == 400
    assert directory["handle"][0]["status_code"] == 404 and directory["terminal"]
    pattern = re.compile(directory["match"][0]["path_regexp"]["pattern"])
    for listing in ("/static/", "/static/css/", "/static/.", "/static/./", "/static/css/.", "/static//x",
                    "/static/a//"):
        assert pattern.search(listing), listing  # never reaches the bucket store (it would list the bucket)
    for key in ("/static/site.css", "/static/css/site.css", "/static/.well-known/x", "/static/a.b/c"):
        assert not pattern.search(key), key
    assert static["match"] == [{"path": ["/static/*"], "method": ["GET", "HEAD"]}]
    rewrite, proxy = static["handle"]
    assert rewrite["uri"] == "?"  # no listing or ACL reads through the edge
    assert rewrite["path_regexp"] == [{"find": "^/static/", "replace": "/hostplane-acme-static/"}]
    assert proxy["upstreams"] == [{"dial": ORIGIN}]
    assert proxy["headers"]["request"]["set"]["Host"] == [ORIGIN]
    assert read_only["handle"][0]["status_code"] == 405
    assert app == {"handle": [{"handler": "reverse_proxy", "upstreams": [{"dial": "127.0.0.1:10001"}]}]}


def test_without_a_static_origin_everything_goes_to_the_runtime():
    assert len(_subroutes(caddy_route(A, None))) == 1


def test_static_origin_is_the_endpoints_host_and_port():
    assert static_origin("http://127.0.0.1:4580") == "127.0.0.1:4580"
    assert static_origin(None) is None


def test_desired_routes_are_the_tenants_then_the_catch_all_and_nothing_else():
    other = {"@id": "ops-health", "handle": []}
    anonymous = {"match": [{"host": ["acme.localhost"]}], "handle": [{"handler": "reverse_proxy"}]}
    live = [anonymous, catch_all(), other]
    routes = desired_routes([B, A], ORIGIN, live)
    assert [r.get("@id") for r in routes] == ["tenant-acme", "tenant-beta", CATCH_ALL_ID]
    assert routes[-1] == catch_all()


def test_no_drift_when_caddy_holds_exactly_the_desired_routes_in_any_tenant_order():
    wanted = [caddy_route(A, ORIGIN), caddy_route(B, ORIGIN)]
    live = list(reversed(wanted)) + [catch_all()]
    assert drifted(live, wanted) is False


def test_drift_detected():
    wanted = [caddy_route(A, ORIGIN), caddy_route(B, ORIGIN)]
    assert drifted(None, wanted)  # no edge server
    assert drifted([], wanted)
    assert drifted([catch_all()], wanted)  # restarted empty
    assert drifted(wanted, wanted)  # catch-all missing
    assert drifted([catch_all()] + wanted, wanted)  # tenants after the catch-all
    assert drifted(wanted + [catch_all(), catch_all()], wanted)
    changed = copy.deepcopy(wanted[0])
    changed["match"][0]["host"].append("evil.example.com")
    assert drifted([changed, wanted[1], catch_all()], wanted)
    dead = caddy_route(Route("gone", "tenant-gone", ("gone.localhost",), "127.0.0.1:1", "b"), ORIGIN)
    assert drifted(wanted + [dead, catch_all()], wanted)  # a route of a tenant no longer wanted
    # anything Caddy holds that is not desired, whatever its id or place, is drift
    assert drifted(wanted + [{"@id": "ops-health"}, catch_all()], wanted)
    hijack = {"match": [{"host": ["acme.localhost"]}], "handle": [{"handler": "reverse_proxy",
                                                                   "upstreams": [{"dial": "127.0.0.1:6666"}]}]}
    assert drifted([hijack] + wanted + [catch_all()], wanted)  # no @id, at index 0
    assert drifted([wanted[0], hijack, wanted[1], catch_all()], wanted)  # between tenant routes
    assert drifted([wanted[0], wanted[0], wanted[1], catch_all()], wanted)  # a duplicate
    evil_catch_all = copy.deepcopy(catch_all())
    evil_catch_all["handle"] = hijack["handle"]
    assert drifted(wanted + [evil_catch_all], wanted)  # the catch-all itself rewritten

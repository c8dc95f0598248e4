"""The CloudFront Functions in infra/functions run under node against recorded viewer events
(the event shape of the CloudFront Functions event structure, version 1.0), the pooled one
against a KeyValueStore stand-in: a known host, an upper-case host, a miss, no Host header,
and a viewer trying to choose its tenant (issue 15). Skipped, with the reason, without node."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from infra.platform.caddy import TENANT_HEADER

FUNCTIONS = Path(__file__).resolve().parents[2] / "infra" / "functions"
HARNESS = Path(__file__).resolve().parent / "cloudfront_functions_harness.mjs"
NODE = shutil.which("node")
pytestmark = [pytest.mark.timeout(60),
              pytest.mark.skipif(NODE is None, reason="node is not installed: the CloudFront functions need it to run")]
HEADER = TENANT_HEADER.lower()  # CloudFront hands functions lower-case header names
KVS = {"acme.apps.example.com": "acme", "shop.example.com": "acme", "beta.apps.example.com": "beta"}


def viewer_request(host: str | None, **headers: str) -> dict:
    """A viewer-request event as CloudFront records it (Functions event structure, version 1.0)."""
    hdrs = {k.lower(): {"value": v} for k, v in headers.items()}
    if host is not None:
        hdrs["host"] = {"value": host}
    return {"version": "1.0",
            "context": {"distributionDomainName": "d111111abcdef8.cloudfront.net", "endpoint": "d111111abcdef8",
                        "distributionId": "EDFDVBD6EXAMPLE", "eventType": "viewer-request",
                        "requestId": "4TyzHTaYWb1GX1qTfsHhEqV6HUDd_BzoBZnwfnvQc_1oF26ClkoUSEQ=="},
            "viewer": {"ip": "198.51.100.11"},
            "request": {"method": "GET", "uri": "/orders", "querystring": {"page": {"value": "2"}},
                        "headers": hdrs, "cookies": {"session": {"value": "s1"}}}}


def viewer_response(**headers: str) -> dict:
    event = viewer_request("acme.apps.example.com")
    event["context"]["eventType"] = "viewer-response"
    event["response"] = {"statusCode": 200, "statusDescription": "OK", "cookies": {},
                         "headers": {k.lower(): {"value": v} for k, v in headers.items()}}
    return event


def run(code: str, event: dict, kvs: dict | None = None) -> dict:
    proc = subprocess.run([NODE, str(HARNESS)], input=json.dumps({"code": code, "event": event, "kvs": kvs or {}}),
                          capture_output=True, text=True, timeout=30, check=True)
    out = json.loads(proc.stdout)
    assert "error" not in out, out["error"]
    return out["result"]


def source(name: str) -> str:
    return (FUNCTIONS / name).read_text()


def test_the_pooled_function_sets_the_tenant_the_keyvaluestore_names_for_the_host():
    result = run(source("pooled_viewer_request.js"), viewer_request("acme.apps.example.com"), KVS)
    assert result["headers"][HEADER] == {"value": "acme"}
    assert result["uri"] == "/orders" and result["headers"]["host"] == {"value": "acme.apps.example.com"}
    assert run(source("pooled_viewer_request.js"), viewer_request("shop.example.com"), KVS)["headers"][HEADER] == {
        "value": "acme"}  # a custom domain


def test_the_pooled_function_reads_host_names_case_blind():
    result = run(source("pooled_viewer_request.js"), viewer_request("ACME.Apps.Example.com"), KVS)
    assert result["headers"][HEADER] == {"value": "acme"}


@pytest.mark.parametrize("host", ["unknown.apps.example.com", "", None])
def test_a_keyvaluestore_miss_is_a_404_before_any_origin(host):
    result = run(source("pooled_viewer_request.js"), viewer_request(host), KVS)
    assert result == {"statusCode": 404, "statusDescription": "Not Found"}


def test_a_viewer_cannot_choose_its_tenant_on_either_edge():
    forged = {TENANT_HEADER: "beta"}
    pooled = run(source("pooled_viewer_request.js"), viewer_request("acme.apps.example.com", **forged), KVS)
    assert pooled["headers"][HEADER] == {"value": "acme"}
    missed = run(source("pooled_viewer_request.js"), viewer_request("nope.example.com", **forged), KVS)
    assert missed["statusCode"] == 404
    dedicated = source("dedicated_viewer_request.js").replace("__TENANT_ID__", "acme")  # infra/tenant/edge.py
    result = run(dedicated, viewer_request("acme.apps.example.com", **forged))
    assert result["headers"][HEADER] == {"value": "acme"}


def test_the_response_function_adds_the_security_headers_and_keeps_the_apps():
    result = run(source("viewer_response.js"), viewer_response(**{"Content-Type": "text/html", "ETag": "x1"}))
    h = result["headers"]
    assert h["content-type"] == {"value": "text/html"} and h["etag"] == {"value": "x1"}
    assert h["strict-transport-security"]["value"].startswith("max-age=")
    assert h["x-content-type-options"] == {"value": "nosniff"} and h["x-frame-options"] == {"value": "DENY"}
    assert result["statusCode"] == 200


@pytest.mark.parametrize("name", sorted(p.name for p in FUNCTIONS.glob("*.js")))
def test_each_function_keeps_to_cloudfront_js_2_0(name):
    """The runtime's limits that show in the source: 10 KB of code, a `handler`, no module but
    `cloudfront` (and only with the KeyValueStore association the pooled one has), no network."""
    code = source(name)
    assert len(code.encode()) <= 10 * 1024
    assert re.search(r"^(async )?function handler\(event\)", code, re.M)
    assert set(re.findall(r"from\s+['\"]([^'\"]+)['\"]", code)) <= {"cloudfront"}
    assert not re.search(r"\b(require|fetch|XMLHttpRequest|setTimeout|process)\b", code)
    if "cf.kvs(" in code:
        assert name == "pooled_viewer_request.js"  # the only function with a KVS association (platform edge.py)


def test_the_harness_reports_a_broken_function():
    proc = subprocess.run([NODE, str(HARNESS)], capture_output=True, text=True, timeout=30, check=True,
                          input=json.dumps({"code": "function handler(event) { return event.nope.x; }",
                                            "event": viewer_request("a"), "kvs": {}}))
    assert "error" in json.loads(proc.stdout)

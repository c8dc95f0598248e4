"""The Caddy configuration of the shared edge on AWS.

The ALB forwards everything to Caddy; Caddy turns the `X-Tenant-Id` header (set by the
CloudFront function, never by the viewer: the ALB admits only CloudFront, with the
origin-verify header) into a DNS SRV lookup of the tenant's Cloud Map service. Adding
a tenant therefore changes no ALB listener rule and no Caddy config: registering the
tenant's service in Cloud Map is enough.
"""

from __future__ import annotations

import json
from typing import Any

from contracts.tenant import TENANT_ID_SCHEMA_PATTERN

TENANT_HEADER = "X-Tenant-Id"
HEALTH_PATH = "/healthz"
SRV_REFRESH = "5s"


def srv_name(prefix: str, namespace: str) -> str:
    """The SRV name Caddy resolves; `{prefix}-<tenant>` is tenant_names().runtime_service."""
    return f"{prefix}-{{http.request.header.{TENANT_HEADER}}}.{namespace}"


def caddy_config(*, prefix: str, namespace: str, listen_port: int = 80) -> dict[str, Any]:
    tenant_route = {
        # Only a well-formed tenant id ever reaches a DNS name (no injection into the lookup).
        "match": [{"header_regexp": {TENANT_HEADER: {"pattern": TENANT_ID_SCHEMA_PATTERN}}}],
        "handle": [{
            "handler": "reverse_proxy",
            "dynamic_upstreams": {"source": "srv", "name": srv_name(prefix, namespace), "refresh": SRV_REFRESH},
            "headers": {"request": {"set": {TENANT_HEADER: [f"{{http.request.header.{TENANT_HEADER}}}"]}}},
            "load_balancing": {"retries": 2, "try_duration": "3s"},
        }],
    }
    return {
        "admin": {"disabled": True},
        "apps": {"http": {"servers": {"edge": {
            "listen": [f":{listen_port}"],
            "automatic_https": {"disable": True},  # TLS ends at CloudFront and the ALB
            "trusted_proxies": {"source": "static", "ranges": ["10.0.0.0/8"]},
            "routes": [
                {"match": [{"path": [HEALTH_PATH]}],
                 "handle": [{"handler": "static_response", "status_code": 200, "body": "ok"}]},
                tenant_route,
                {"handle": [{"handler": "static_response", "status_code": 404, "body": "unknown tenant"}]},
            ],
        }}}},
    }


def caddy_config_json(**kw: Any) -> str:
    return json.dumps(caddy_config(**kw), sort_keys=True)

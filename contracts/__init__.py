"""Event contracts: the models, the envelope and the registry of event types.

The models are the source of truth; `python -m contracts.generate` writes the
JSON Schemas and the AsyncAPI document from them, `python -m contracts.compat`
checks that minor versions only add optional fields.

The names below load on first use (PEP 562), so `contracts.naming` can be imported
without pydantic (a tenant's runtime does); contracts.registry imports every event model
for the lookups that must see them all (parse_envelope, registered_events).
"""

from __future__ import annotations

import importlib
from typing import Any

_HOME = {
    **dict.fromkeys(("Envelope", "Event", "UnknownEvent"), "contracts.envelope"),
    **dict.fromkeys(("parse_envelope", "registered_events"), "contracts.registry"),
    **dict.fromkeys(("AppUpdateRequested", "MigrationsApplied", "ReleaseActivated", "RouteConfigured", "RouteRemoved",
                     "TenantChanged", "TenantDeletionRequested", "TenantDeprovisioned", "TenantProvisioned",
                     "TenantRequested"), "contracts.events_v1"),
    **dict.fromkeys(("BuildFailed", "DeprovisioningFailed", "Failure", "MigrationFailed", "ProvisioningFailed",
                     "ReleaseFailed"), "contracts.failures_v1"),
    "TenantId": "contracts.tenant",
    **dict.fromkeys(("InvalidTenantId", "TenantNames", "tenant_names"), "contracts.naming"),
}


def __getattr__(name: str) -> Any:
    if (module := _HOME.get(name)) is None:
        raise AttributeError(f"module 'contracts' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


__all__ = [
    "AppUpdateRequested",
    "BuildFailed",
    "DeprovisioningFailed",
    "Envelope",
    "Event",
    "Failure",
    "InvalidTenantId",
    "MigrationFailed",
    "MigrationsApplied",
    "ProvisioningFailed",
    "ReleaseActivated",
    "ReleaseFailed",
    "RouteConfigured",
    "RouteRemoved",
    "TenantChanged",
    "TenantDeletionRequested",
    "TenantDeprovisioned",
    "TenantId",
    "TenantNames",
    "TenantProvisioned",
    "TenantRequested",
    "UnknownEvent",
    "parse_envelope",
    "registered_events",
    "tenant_names",
]

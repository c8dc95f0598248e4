"""Event contracts: importing this package registers every event model.

The models are the source of truth; `python -m contracts.generate` writes the
JSON Schemas and the AsyncAPI document from them, `python -m contracts.compat`
checks that minor versions only add optional fields.
"""

from contracts.envelope import Envelope, Event, UnknownEvent, parse_envelope, registered_events
from contracts.events_v1 import (
    AppUpdateRequested,
    MigrationsApplied,
    ReleaseActivated,
    RouteConfigured,
    RouteRemoved,
    TenantChanged,
    TenantDeletionRequested,
    TenantDeprovisioned,
    TenantProvisioned,
    TenantRequested,
)
from contracts.failures_v1 import (
    BuildFailed,
    DeprovisioningFailed,
    Failure,
    MigrationFailed,
    ProvisioningFailed,
    ReleaseFailed,
)
from contracts.tenant import InvalidTenantId, TenantId, TenantNames, tenant_names

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

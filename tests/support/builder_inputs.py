"""The builder's inputs as the other services leave them, for the builder's integration
tests: `stored` puts a spec in the control database like the API does, `provisioned` and
`update` are the events that ask for a build. The `builder_deps` fixture is in
tests/integration/shared/conftest.py."""

from __future__ import annotations

import hashlib
from typing import Any

from contracts.app_spec import spec_ref
from contracts.envelope import Envelope
from contracts.events_v1 import AppUpdateRequested, TenantProvisioned
from artifacts.inputs import store_spec
from services.builder.adapters import BuilderDeps
from spec.load import load_app_spec


async def stored(deps: BuilderDeps, text: str, *, validate: bool = True) -> tuple[str, str]:
    """Store a spec like the API does; returns (spec_ref, sha256)."""
    body = load_app_spec(text).canonical_json() if validate else text
    digest = hashlib.sha256(body.encode()).hexdigest()
    async with deps.inputs.pool.acquire() as conn:
        await store_spec(conn, digest, body)
    return spec_ref(digest), digest


def provisioned(tenant: str, ref: str, digest: str) -> Envelope:
    names = f"hp-{tenant}"[:40]
    return Envelope.new(TenantProvisioned(
        database=names.replace("-", "_"), db_role=names.replace("-", "_"), cache_user=names, cache_prefix=f"{tenant}:",
        bucket=f"{names}-static", secret_name=f"hostplane/{tenant}", runtime_service=names, spec_ref=ref,
        spec_sha256=digest), tenant_id=tenant, producer="provisioner")


def update(tenant: str, ref: str, digest: str, **extra: Any) -> Envelope:
    return Envelope.new(AppUpdateRequested(spec_ref=ref, spec_sha256=digest, **extra), tenant_id=tenant,
                        producer="api")

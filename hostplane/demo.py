"""`hostplane demo`: after `up`, create the example tenant through the API and follow it.

The request goes the way every request goes: the API validates the spec and commits the
tenant with its TenantRequested through the outbox; EventBridge routes it to the
provisioner, which converges the tenant's database, role, cache user, secret, bucket and
runtime registration and emits TenantProvisioned. The demo shows the tenant and its
event history. Stages whose services are not part of this build (routing, build,
migration, release) show as what the tenant waits for; nothing is faked.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import asyncpg
from rich.console import Console
from rich.table import Table

from events.replay import list_events
from hostplane.cli_tenant import Api, api_client, details_table
from hostplane.local.state import connection_info
from hostplane.settings import Settings

EXAMPLE_TENANT = "demo"
EXAMPLE_SPEC = Path(__file__).resolve().parents[1] / "examples" / "tasks.yaml"
SETTLED = {"TenantProvisioned", "ProvisioningFailed"}
WAIT_S = 120.0


async def _history(settings: Settings) -> list:
    conn = await asyncpg.connect(connection_info(settings.home_dir).control_dsn, timeout=10)
    try:
        return await list_events(conn, tenant=EXAMPLE_TENANT)
    finally:
        await conn.close()


def _ensure_tenant(api: Api) -> None:
    names = {t["name"] for t in api.call("GET", "/v1/tenants")["tenants"]}
    if EXAMPLE_TENANT not in names:
        api.call("POST", "/v1/tenants", {"name": EXAMPLE_TENANT, "app": EXAMPLE_SPEC.read_text()})


def run_demo(settings: Settings, console: Console) -> None:
    api = api_client()
    _ensure_tenant(api)
    deadline = time.monotonic() + WAIT_S
    with console.status(f"provisioning tenant {EXAMPLE_TENANT!r}..."):
        while True:
            records = asyncio.run(_history(settings))
            if SETTLED & {r.event_type for r in records} or time.monotonic() > deadline:
                break
            time.sleep(0.5)
    table = Table(title=f"event log of tenant {EXAMPLE_TENANT!r}")
    for col in ("seq", "type", "producer", "correlation", "published"):
        table.add_column(col)
    for r in records:
        table.add_row(str(r.seq), r.event_type, r.producer, str(r.correlation_id)[:8],
                      r.published_at.isoformat(timespec="seconds"))
    console.print(table)
    console.print(details_table(api.call("GET", f"/v1/tenants/{EXAMPLE_TENANT}")))
    if not SETTLED & {r.event_type for r in records}:
        raise RuntimeError(f"tenant {EXAMPLE_TENANT!r} was not provisioned within {WAIT_S:.0f}s; "
                           "see `hostplane status` and .hostplane/logs/provisioner.log")
    console.print(
        f"`hostplane tenant show {EXAMPLE_TENANT}` shows its state, `hostplane events list --tenant "
        f"{EXAMPLE_TENANT}` its history; `hostplane down` stops everything."
    )

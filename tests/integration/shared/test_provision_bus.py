"""End to end through the bus: the provisioner and deprovisioner that `hostplane up`
started consume what an API would publish (through the outbox), their events land in
the event log, the tenant works in between and leaves nothing behind (both emulators)."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import asyncpg
import pytest

from events.replay import list_events
from core.aws import aws_client
from hostplane.doctor import find_orphans
from core.state import load_state
from tests.support.bus_harness import publish, wait_for_event
from tests.support.events import deletion, requested

pytestmark = [pytest.mark.integration, pytest.mark.timeout(150)]


async def test_request_to_provisioned_to_deleted_through_the_running_services(res, tenant, running_platform):
    home = running_platform.settings.home_dir
    assert (home / "run" / "provisioner.ready").exists() and (home / "run" / "deprovisioner.ready").exists()
    pool = res.records.pool
    request = requested(tenant)
    await publish(pool, request)
    provisioned = await wait_for_event(pool, tenant, "TenantProvisioned")
    assert provisioned.causation_id == request.event_id and provisioned.producer == "provisioner"
    assert provisioned.correlation_id == request.correlation_id

    env = (await res.secrets.read(res.names(tenant))).env()
    conn = await asyncpg.connect(env["DATABASE_URL"], timeout=5)
    await conn.close()

    await publish(pool, deletion(tenant))
    deprovisioned = await wait_for_event(pool, tenant, "TenantDeprovisioned")
    assert deprovisioned.producer == "deprovisioner"
    assert [o for o in await find_orphans(res) if o.tenant == tenant] == []
    # (the builder, also running, may fail this request's made-up spec: not this test's business)
    assert not [e for e in await list_events(pool, tenant=tenant)
                if e.event_type in ("ProvisioningFailed", "DeprovisioningFailed")]

    service_logs = "".join((home / "logs" / f"{s}.log").read_text(errors="replace")
                           for s in ("provisioner", "deprovisioner"))
    assert tenant in service_logs, "the services logged their work"
    for key in ("DB_PASSWORD", "CACHE_PASSWORD"):
        assert env[key] not in service_logs
    rows = await pool.fetch("SELECT detail::text FROM outbox WHERE tenant_id = $1", tenant)
    for key in ("DB_PASSWORD", "CACHE_PASSWORD"):
        assert all(env[key] not in r["detail"] for r in rows)


async def test_a_provisioner_killed_between_steps_is_finished_after_restart(res, tenant, running_platform):
    """SIGKILL while the cache step waits on a paused Valkey; a new provisioner process is
    started and SQS redelivers the message once its visibility lapses (the platform's
    `redelivery_s`: 15 s on test platforms, 60 s by default)."""
    if running_platform.emulator != "moto":
        pytest.skip("the wait for redelivery is paid once; the emulator plays no part in it")

    settings, pool = running_platform.settings, res.records.pool
    pid = load_state(settings.home_dir).components["provisioner"].pid
    await res.cache.client.execute_command("CLIENT", "PAUSE", "15000", "ALL")  # expires by itself
    request = requested(tenant)
    await publish(pool, request)
    deadline = time.monotonic() + 14  # a slow CI machine gets there too; the pause outlasts it
    while (await res.records.steps(tenant)).get("cache", {}).get("status") != "started":
        assert time.monotonic() < deadline, "the provisioner never reached the cache step"
        await asyncio.sleep(0.05)
    assert (await res.records.steps(tenant))["database"]["status"] == "done"
    os.kill(pid, signal.SIGKILL)
    await asyncio.sleep(max(0.0, deadline + 1.5 - time.monotonic()))  # let the pause lapse

    await asyncio.to_thread(restart_provisioner, running_platform)
    try:
        provisioned = await wait_for_event(pool, tenant, "TenantProvisioned", timeout=90)
    except AssertionError as exc:
        log = (settings.home_dir / "logs" / "provisioner.log").read_text(errors="replace").splitlines()
        waiting = await pool.fetch(
            "SELECT a.pid, a.state, a.wait_event_type, a.wait_event, l.locktype, l.granted, left(a.query, 80) AS q "
            "FROM pg_stat_activity a JOIN pg_locks l ON l.pid = a.pid WHERE l.locktype = 'advisory'")
        async with aws_client("sqs", settings) as sqs:
            url = (await sqs.get_queue_url(QueueName=f"{settings.name_prefix}-provisioner"))["QueueUrl"]
            depth = (await sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"]))["Attributes"]
        raise AssertionError(f"{exc}\nadvisory locks: {[dict(r) for r in waiting]}\nqueue: {depth}\n"
                             f"steps: {await res.records.steps(tenant)}\nprovisioner log tail:\n"
                             + "\n".join(line[:400] for line in log[-40:])) from None
    assert provisioned.causation_id == request.event_id
    steps = await res.records.steps(tenant)
    assert steps["database"]["attempts"] == 2 and steps["cache"]["attempts"] == 2
    assert {s["status"] for s in steps.values()} == {"done"}
    env = (await res.secrets.read(res.names(tenant))).env()
    conn = await asyncpg.connect(env["DATABASE_URL"], timeout=5)
    await conn.close()


def restart_provisioner(running) -> None:
    """What `up` does for a dead service, for this one component only (`up` would also
    re-check every server, and replaces a moto that is slow to dump its state)."""
    from hostplane.local.services import service_components
    from core.state import ComponentState, load_or_create_credentials, save_state

    settings = running.settings
    state = load_state(settings.home_dir)
    comps = service_components(settings, load_or_create_credentials(settings.home_dir), running.emulator)
    comp = next(c for c in comps if c.name == "provisioner")
    pid = comp.start()
    state.components["provisioner"] = ComponentState(name=comp.name, pid=pid, url=comp.url, port=comp.port,
                                                     log=str(comp.log_path))
    save_state(settings.home_dir, state)  # so `down` stops it

"""`hostplane events` and `hostplane dlq` as a user runs them, against the running platform."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from typing import Any, ClassVar

import asyncpg
import pytest

from contracts.envelope import Envelope, Event
from events.store import record_external
from core.state import load_or_create_credentials
from hostplane.local.ephemeral import RunningPlatform

pytestmark = pytest.mark.integration


class CliPing(Event):  # test-only payload, not registered
    event_type: ClassVar[str] = "CliPing"
    schema_version: ClassVar[str] = "1.0"


def hostplane(platform: RunningPlatform, *args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([sys.executable, "-m", "hostplane", *args], env=platform.env(),
                          capture_output=True, text=True, timeout=120)
    password = load_or_create_credentials(platform.settings.home_dir).postgres_password
    assert password not in done.stdout + done.stderr
    return done


@pytest.fixture
async def recorded(running_platform) -> Any:
    """Two events of a fresh tenant in the platform's event log; removed afterwards."""
    tenant = f"cli-{uuid.uuid4().hex[:8]}"
    conn = await asyncpg.connect(running_platform.conn.control_dsn)
    first = Envelope.new(CliPing(), tenant_id=tenant, producer="api")
    envs = [first, Envelope.new(CliPing(), tenant_id=tenant, producer="builder", cause=first)]
    for env in envs:
        assert await record_external(conn, env)
    assert not await record_external(conn, envs[0])  # recording twice keeps one row
    try:
        yield tenant, envs, conn
    finally:
        await conn.execute("DELETE FROM outbox WHERE tenant_id = $1", tenant)
        await conn.close()


async def test_events_list_shows_a_tenants_history(running_platform, recorded):
    tenant, envs, _ = recorded
    done = hostplane(running_platform, "events", "list", "--tenant", tenant, "--json")
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)
    assert [r["event_id"] for r in rows] == [str(e.event_id) for e in envs]
    assert rows[1]["causation_id"] == str(envs[0].event_id) and rows[1]["producer"] == "builder"
    table = hostplane(running_platform, "events", "list", "--tenant", tenant)
    assert table.returncode == 0 and "CliPing" in table.stdout


async def test_events_replay_queues_marked_replays(running_platform, recorded):
    tenant, envs, conn = recorded
    done = hostplane(running_platform, "events", "replay", "--tenant", tenant, "--since", "2000-01-01T00:00:00Z")
    assert done.returncode == 0, done.stderr
    assert "queued 2" in done.stdout
    rows = await conn.fetch(
        "SELECT event_id, detail->>'replay_id' AS marked FROM outbox "
        "WHERE tenant_id = $1 AND replay_id IS NOT NULL ORDER BY seq", tenant)
    assert [r["event_id"] for r in rows] == [e.event_id for e in envs] and all(r["marked"] for r in rows)
    audited = await conn.fetch("SELECT * FROM audit_log WHERE action = 'events.replay' AND tenant_id = $1", tenant)
    assert [(r["channel"], r["status"], r["outcome"]) for r in audited] == [("cli", 202, "accepted")]
    assert json.loads(audited[0]["request"]) == {"tenant": tenant, "since": "2000-01-01T00:00:00Z", "queued": 2}
    assert audited[0]["actor"].endswith("@cli") and audited[0]["identity"] == "local:control-database"


async def test_dlq_list_and_redrive_answer_for_every_queue(running_platform):
    conn = await asyncpg.connect(running_platform.conn.control_dsn)
    try:
        last = await conn.fetchval("SELECT coalesce(max(id), 0) FROM audit_log")
    except asyncpg.UndefinedTableError:
        last = 0
    done = hostplane(running_platform, "dlq", "list", "--json")
    assert done.returncode == 0, done.stderr
    reports = json.loads(done.stdout)
    assert {r["service"] for r in reports} >= {"provisioner", "builder", "migrator"}
    assert all(isinstance(r["depth"], int) for r in reports)
    table = hostplane(running_platform, "dlq", "list", "--queue", "builder")
    assert table.returncode == 0 and "hostplane-builder-dlq" in table.stdout, table.stderr
    assert hostplane(running_platform, "dlq", "redrive", "--queue", "builder").returncode == 0
    unknown = hostplane(running_platform, "dlq", "redrive", "--queue", "no-such-queue")
    assert unknown.returncode != 0 and "no queue" in unknown.stderr
    try:
        rows = await conn.fetch("SELECT * FROM audit_log WHERE id > $1 AND action = 'dlq.redrive' ORDER BY id", last)
    finally:
        await conn.close()
    asked = [(r["channel"], json.loads(r["request"]).get("queue"), r["status"]) for r in rows]
    assert asked == [("cli", "builder", 202), ("cli", "no-such-queue", 404)]
    assert "no queue" in rows[1]["error"] and rows[0]["outcome"] in ("accepted", "unchanged")

"""`hostplane events ...` and `hostplane dlq ...` (mounted by hostplane.cli).

Both talk to the running platform: PostgreSQL's event log for `events`, the emulator's
SQS for `dlq`. When it is not running they say so and exit 2. Connection strings hold
the generated password, so errors name the server, never the DSN. The two that change
something (`events replay`, `dlq redrive`) append to the same audit trail as the API and
the dashboard (channel `cli`; the credential is the local control database's).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from core.settings import Settings, get_settings

events_app = typer.Typer(help="the recorded event log and replays", no_args_is_help=True)
dlq_app = typer.Typer(help="dead-letter queues: list and redrive", no_args_is_help=True)
console = Console()
err = Console(stderr=True)

T = TypeVar("T")
NOT_RUNNING = 2


def _fail(message: str, code: int = NOT_RUNNING) -> NoReturn:
    err.print(f"[bold red]error:[/] {message}")
    raise typer.Exit(code)


def _control_dsn(settings: Settings) -> str:
    from core.state import connection_info

    try:
        return connection_info(settings.home_dir).control_dsn
    except RuntimeError as exc:
        _fail(str(exc))


def _unreachable(what: str, exc: BaseException) -> NoReturn:
    # The class name only: driver messages may echo connection parameters.
    _fail(f"cannot reach {what} ({type(exc).__name__}); is the platform running? see `hostplane status`")


def _run_db(settings: Settings, work: Callable[[Any], Awaitable[T]]) -> T:
    import asyncpg

    dsn = _control_dsn(settings)

    async def go() -> T:
        conn = await asyncpg.connect(dsn, timeout=10)
        try:
            return await work(conn)
        finally:
            await conn.close()

    try:
        return asyncio.run(go())
    except (OSError, TimeoutError, asyncpg.PostgresConnectionError, asyncpg.InvalidPasswordError) as exc:
        _unreachable("PostgreSQL", exc)
    except asyncpg.UndefinedTableError:
        _fail("the event tables do not exist yet; run `hostplane up`")


def _run_aws(settings: Settings, work: Callable[[], Awaitable[T]]) -> T:
    from botocore.exceptions import ClientError, EndpointConnectionError

    if not settings.aws_endpoint_url:
        _control_dsn(settings)  # only to fail clearly when the local platform is not running
    try:
        return asyncio.run(work())  # type: ignore[arg-type]
    except (OSError, EndpointConnectionError) as exc:
        _unreachable("the AWS emulator", exc)
    except ClientError as exc:
        if "NonExistentQueue" in str(exc) or "QueueDoesNotExist" in str(exc):
            _fail("the queues do not exist; run `hostplane up` to apply the topology")
        raise


def _parse_since(since: str | None) -> datetime | None:
    if since is None:
        return None
    try:
        when = datetime.fromisoformat(since)
    except ValueError:
        _fail(f"--since {since!r} is not an ISO 8601 time (e.g. 2026-05-01T12:00:00Z)")
    return when if when.tzinfo else when.replace(tzinfo=UTC)


@events_app.command("list")
def events_list(
    tenant: str | None = typer.Option(None, "--tenant", help="only this tenant's events"),
    event_type: str | None = typer.Option(None, "--type", help="only this event type"),
    since: str | None = typer.Option(None, "--since", help="only events at or after this ISO time"),
    limit: int = typer.Option(200, "--limit", help="show at most the latest N"),
    as_json: bool = typer.Option(False, "--json", help="machine-readable output"),
) -> None:
    """Show recorded (published) events, oldest first."""
    from events.replay import list_events

    when = _parse_since(since)
    records = _run_db(get_settings(), lambda db: list_events(db, tenant, event_type, when, limit))
    if as_json:
        typer.echo(json.dumps([r.to_json() for r in records], indent=2))
        return
    table = Table(title=f"events{f' of {tenant}' if tenant else ''}")
    for col in ("occurred", "tenant", "type", "producer", "event id", "replay", "cause"):
        table.add_column(col)
    for r in records:
        table.add_row(
            r.occurred_at.isoformat(timespec="seconds"),
            r.tenant_id,
            r.event_type,
            r.producer,
            str(r.event_id),
            "[yellow]replay[/]" if r.replay_id else "",
            str(r.causation_id)[:8] if r.causation_id else "",
        )
    console.print(table)


@events_app.command("replay")
def events_replay(
    tenant: str | None = typer.Option(None, "--tenant", help="replay this tenant's events"),
    event_type: str | None = typer.Option(None, "--type", help="only this event type"),
    since: str | None = typer.Option(None, "--since", help="only events at or after this ISO time"),
    everything: bool = typer.Option(False, "--all", help="allow replaying every recorded event"),
) -> None:
    """Re-publish recorded events through the bus, marked as replays (handlers run again)."""
    from events.replay import replay

    if not (tenant or event_type or since or everything):
        _fail("give --tenant, --type or --since (or --all to replay every recorded event)")
    when = _parse_since(since)
    asked = {"tenant": tenant, "type": event_type, "since": since, "all": everything}

    async def replay_audited(db: Any) -> int:
        count = await replay(db, tenant, event_type, when)
        await _audit(db, "events.replay", tenant, asked, 202, changed=count > 0, summary={"queued": count})
        return count

    count = _run_db(get_settings(), replay_audited)
    console.print(f"queued {count} event(s) for replay; the outbox relay publishes them")


def _topology(settings: Settings) -> Any:
    from events.topology import topology

    return topology(settings.name_prefix)


@dlq_app.command("list")
def dlq_list(
    queue: str | None = typer.Option(None, "--queue", help="one queue, by service or queue name"),
    as_json: bool = typer.Option(False, "--json", help="machine-readable output"),
) -> None:
    """Depth and messages of each dead-letter queue (peeked, not consumed)."""
    from events.dlq import list_dlq

    settings = get_settings()
    try:
        reports = _run_aws(settings, lambda: list_dlq(settings, _topology(settings), queue))
    except KeyError as exc:
        _fail(str(exc.args[0]), 1)
    if as_json:
        typer.echo(json.dumps([r.to_json() for r in reports], indent=2))
        return
    table = Table(title="dead-letter queues")
    for col in ("queue", "depth", "type", "tenant", "event id", "receives"):
        table.add_column(col)
    for r in reports:
        table.add_row(r.dlq, str(r.depth), "", "", "", "")
        for m in r.messages:
            ident = (m.event_type, m.tenant_id, m.event_id)
            table.add_row("", "", *(v or "?" for v in ident), str(m.receive_count))
    console.print(table)


@dlq_app.command("redrive")
def dlq_redrive(
    queue: str | None = typer.Option(None, "--queue", help="one queue, by service or queue name"),
) -> None:
    """Move dead-lettered messages back to their source queues."""
    from events.dlq import redrive

    settings = get_settings()
    try:
        moved = _run_aws(settings, lambda: redrive(settings, _topology(settings), queue))
    except KeyError as exc:
        missing = str(exc.args[0])
        _run_db(settings, lambda db: _audit(db, "dlq.redrive", None, {"queue": queue}, 404, error=missing))
        _fail(missing, 1)
    _run_db(settings, lambda db: _audit(db, "dlq.redrive", None, {"queue": queue}, 202, changed=moved > 0,
                                        summary={"moved": moved}))
    console.print(f"redrove {moved} message(s)")


async def _audit(db: Any, action: str, tenant: str | None, asked: dict[str, Any], status: int, *,
                 changed: bool | None = None, error: str | None = None,
                 summary: dict[str, Any] | None = None) -> None:
    """One audit row for a command run here (never raises, like every audit write)."""
    import socket

    from hostplane.cli_tenant import _user
    from services.api import audit

    await audit.ensure_schema(db)
    request = {k: v for k, v in asked.items() if v not in (None, False)} | (summary or {})
    await audit.record(db, audit.AuditEntry(
        identity="local:control-database", channel="cli", action=action, status=status,
        outcome=audit.outcome_of(status, changed), actor=f"{_user()}@cli", remote=socket.gethostname(),
        tenant_id=tenant, request=request, error=error))

"""A recording stand-in for the API's database (`FakeDb`: pool and connection in one) and
the token and spec a create sends: the API tests run the whole stack (guard, audit, routes,
commands) over it. The `db` and `published` fixtures are in tests/unit/conftest.py."""

from __future__ import annotations

import contextlib
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

TOKEN = "t0ken-" + "x" * 40
SPEC = (Path(__file__).resolve().parents[2] / "examples" / "tasks.yaml").read_text()
NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


def _columns(sql: str, keyword: str, end: str) -> list[str]:
    """The column names between `keyword` and `end` (a SELECT list or an INSERT's columns),
    each as its result name (alias, or the name after the table's dot)."""
    listed = sql.split(keyword, 1)[1].split(end, 1)[0]
    return [c.strip().split()[-1].split(".")[-1] for c in listed.split(",")]


class FakeDb:
    """The pool and its connection in one: every write is recorded; no tenant exists until
    a create inserts its row, and the status view answers with only the columns its
    SELECT names (a column it forgot is a KeyError in the view, as it would be)."""

    def __init__(self) -> None:
        self.writes: list[str] = []
        self.tenant: dict[str, Any] | None = None
        self.status: dict[str, Any] = {}  # status columns to answer other than a fresh tenant's

    @contextlib.asynccontextmanager
    async def acquire(self) -> Any:
        yield self

    def transaction(self) -> Any:
        return contextlib.nullcontext()

    async def execute(self, sql: str, *args: Any) -> str:
        self.writes.append(" ".join(sql.split()))
        if sql.lstrip().startswith("INSERT INTO tenants ("):
            self.tenant = dict(zip(_columns(sql, "INSERT INTO tenants (", ")"), args, strict=True))
        return "OK"

    async def executemany(self, sql: str, rows: list[Any]) -> None:
        self.writes += [" ".join(sql.split())] * len(rows)

    async def fetchval(self, sql: str, *args: Any) -> Any:
        return None  # no domain owner, no earlier request

    async def fetchrow(self, sql: str, *args: Any) -> Any:
        if "FROM tenants t" not in sql or self.tenant is None:
            return None  # no tenant row or status before the create
        status = {"state": "requested", "stage": "queued", "version": None, "last_error": None,
                  "last_error_stage": None, "last_error_at": None, "generation": self.tenant["generation"],
                  "request_kind": "create", "facts": "{}", "last_event_id": None, "last_event_type": None,
                  "last_event_at": None, "created_at": NOW, "updated_at": NOW, "correlation_id": uuid.uuid4(),
                  "request_at": NOW, "requested_by": "me@cli", "requested_at": NOW, "deleted_at": None,
                  "runtime": None, "runtime_failure": None}
        known = self.tenant | status | self.status
        return {name: known[name] for name in _columns(sql, "SELECT", "FROM")}

    async def fetch(self, sql: str, *args: Any) -> list[Any]:
        row = await self.fetchrow(sql, *args)
        return [row] if row is not None else []

    def data_writes(self) -> list[str]:
        """Writes but the audit trail's (a refusal is audited too)."""
        return [w for w in self.writes if not w.startswith("INSERT INTO audit_log")]

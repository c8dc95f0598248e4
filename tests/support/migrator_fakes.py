"""The migrator's tenant database in memory (services.migrator.adapters.TenantSchemas): a
ledger and the statements committed, with the real one's transaction semantics (a
migration that raises leaves nothing), for the handler's unit tests."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace
from typing import Any

from events.failure import PermanentFailure
from services.migrator.adapters import LedgerRow
from spec.plan import Step


class FakeMigration:
    def __init__(self, db: FakeSchemas) -> None:
        self.db, self.step = db, "ledger"
        self.statements: list[str] = []
        self.rows: dict[int, LedgerRow] = {}

    async def ledger(self, version: int) -> tuple[LedgerRow | None, LedgerRow | None]:
        rows = self.db.ledger
        return rows.get(version), rows[max(rows)] if rows else None

    async def apply(self, steps: Sequence[Step]) -> None:
        for step in steps:
            self.step = step.description
            for statement in step.sql:
                if self.db.refuse and self.db.refuse in statement:  # what the server refuses
                    raise PermanentFailure("apply", f"{self.step}: refused by the fake (SQLSTATE 42P07)")
                self.statements.append(statement)

    async def record(self, version: int, spec_sha256: str, model: dict, plan: list) -> None:
        self.rows[version] = LedgerRow(version, spec_sha256, json.dumps(model), False)


class FakeSession:
    def __init__(self, db: FakeSchemas) -> None:
        self.db = db

    @contextlib.asynccontextmanager
    async def migration(self) -> AsyncIterator[FakeMigration]:
        migration = FakeMigration(self.db)
        yield migration  # an exception here commits nothing, like the real transaction
        self.db.executed += migration.statements
        self.db.ledger |= migration.rows

    async def mark_released(self, version: int) -> None:
        self.db.ledger[version] = replace(self.db.ledger[version], released=True)


class FakeSchemas:
    """`refuse`: a text whose statement the 'server' refuses permanently."""

    def __init__(self, refuse: str | None = None) -> None:
        self.ledger: dict[int, LedgerRow] = {}
        self.executed: list[str] = []
        self.refuse = refuse
        self.sessions = 0

    @contextlib.asynccontextmanager
    async def session(self, creds: Any) -> AsyncIterator[FakeSession]:
        self.sessions += 1
        yield FakeSession(self)

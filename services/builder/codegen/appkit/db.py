"""SQL for one entity's table (the mapping in spec/model.py): every name
double-quoted, every value a parameter."""

from __future__ import annotations

from typing import Any

import asyncpg

from .schema import Entity
from .validation import Invalid


class Conflict(Exception):
    """The row is still referenced by another row (409)."""


def q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class Table:
    def __init__(self, entity: Entity) -> None:
        self.entity = entity
        self.name = q(entity.name)
        self.columns = ", ".join(q(c) for c in ("id", *(f.name for f in entity.fields), "created_at", "updated_at"))

    async def list(self, db: Any, limit: int, offset: int, filters: dict[str, Any]) -> list[Any]:
        where, args = self._where(filters)
        sql = (f"SELECT {self.columns} FROM {self.name}{where} ORDER BY {q('id')} "
               f"LIMIT ${len(args) + 1} OFFSET ${len(args) + 2}")
        return await db.fetch(sql, *args, limit, offset)

    async def get(self, db: Any, row_id: int) -> Any:
        return await db.fetchrow(f"SELECT {self.columns} FROM {self.name} WHERE {q('id')} = $1", row_id)

    async def insert(self, db: Any, values: dict[str, Any]) -> Any:
        if values:
            cols = ", ".join(q(c) for c in values)
            params = ", ".join(f"${i}" for i in range(1, len(values) + 1))
            sql = f"INSERT INTO {self.name} ({cols}) VALUES ({params}) RETURNING {self.columns}"
        else:
            sql = f"INSERT INTO {self.name} DEFAULT VALUES RETURNING {self.columns}"
        return await self._write(db.fetchrow(sql, *values.values()))

    async def update(self, db: Any, row_id: int, values: dict[str, Any]) -> Any:
        sets = ", ".join(f"{q(c)} = ${i}" for i, c in enumerate(values, start=2))
        sql = (f"UPDATE {self.name} SET {sets}, {q('updated_at')} = now() WHERE {q('id')} = $1 "
               f"RETURNING {self.columns}")
        return await self._write(db.fetchrow(sql, row_id, *values.values()))

    async def delete(self, db: Any, row_id: int) -> bool:
        try:
            status = await db.execute(f"DELETE FROM {self.name} WHERE {q('id')} = $1", row_id)
        except (asyncpg.RestrictViolationError, asyncpg.ForeignKeyViolationError) as exc:
            raise Conflict(f"{self.entity.name} {row_id} is still referenced ({exc.table_name})") from None
        return status.endswith(" 1")

    def _where(self, filters: dict[str, Any]) -> tuple[str, list[Any]]:
        if not filters:
            return "", []
        parts = [f"{q(c)} = ${i}" for i, c in enumerate(filters, start=1)]
        return " WHERE " + " AND ".join(parts), list(filters.values())

    async def _write(self, statement: Any) -> Any:
        """Run an INSERT/UPDATE; a constraint the app did not foresee still names the field."""
        try:
            return await statement
        except asyncpg.ForeignKeyViolationError as exc:
            field = self.entity.constraints.get(exc.constraint_name or "", "body")
            raise Invalid({field: "refers to a row that does not exist"}) from None
        except (asyncpg.CheckViolationError, asyncpg.NotNullViolationError) as exc:
            field = getattr(exc, "column_name", None) or self.entity.constraints.get(exc.constraint_name or "", "body")
            raise Invalid({field: "is not allowed by the database's rules"}) from None

"""The migration from one relational model to the next: ordered steps with their SQL.

Order matters and is fixed: drop the constraints that go or change, drop columns, drop
tables, create tables (in reference order; foreign keys come later, so cycles of
optional references are fine), add columns, alter columns, add constraints (checks,
then foreign keys once every table exists). A tighter limit is a new CHECK that the
rows already there must pass, or the whole migration rolls back.

Destructive steps (dropping a table or a column, changing a column's type or a
reference's target, making a field required without a default) are applied only when
the update was sent with --allow-destructive. A new required field without a default on
an existing entity is refused whatever the flag: its existing rows would have no value.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from typing import Any

from contracts.app_spec import AppSpec
from spec.model import PLATFORM_COLUMNS, Column, Model, Table, q, relational_model

FLAG_HINT = "send --allow-destructive"


@dataclass(frozen=True)
class Step:
    kind: str
    path: str  # where in the spec, e.g. entities.task.fields.due
    description: str
    sql: tuple[str, ...]
    destructive: str | None = None  # why it loses or rewrites data


@dataclass(frozen=True)
class Plan:
    steps: tuple[Step, ...]
    refused: tuple[str, ...] = ()  # problems no flag fixes

    @property
    def destructive(self) -> list[Step]:
        return [s for s in self.steps if s.destructive]

    @property
    def digest(self) -> str:
        return hashlib.sha256(json.dumps([s.sql for s in self.steps]).encode()).hexdigest()

    def name(self, version: int) -> str:
        return f"v{int(version)}-{self.digest[:12]}"

    def problems(self, allow_destructive: bool) -> list[str]:
        out = list(self.refused)
        if not allow_destructive:
            out += [f"{s.path}: {s.destructive}; {FLAG_HINT}" for s in self.destructive]
        return out

    def to_json(self) -> list[dict[str, Any]]:
        return [asdict(s) for s in self.steps]


def _path(table: str, column: str | None = None) -> str:
    return f"entities.{table}" + (f".fields.{column}" if column else "")


def _column_sql(name: str, col: Column) -> str:
    return (f"{q(name)} {col.type}" + (" NOT NULL" if col.not_null else "")
            + (f" DEFAULT {col.default}" if col.default is not None else ""))


def _creation_order(tables: dict[str, Table]) -> list[str]:
    """Referenced tables first; what is left in a cycle keeps the spec's order."""
    deps = {t: {c.references for c in tables[t].columns.values() if c.references in tables} - {t} for t in tables}
    order: list[str] = []
    while len(order) < len(tables):
        ready = [t for t in tables if t not in order and deps[t] <= set(order)]
        order += ready or [next(t for t in tables if t not in order)]
    return order


def plan(old: Model | None, new: Model) -> Plan:
    old = old or Model({})
    steps: list[Step] = []
    refused: list[str] = []
    kept = [t for t in new.tables if t in old.tables]
    gone = [t for t in old.tables if t not in new.tables]
    added = [t for t in new.tables if t not in old.tables]

    for t in [*kept, *gone]:  # constraints that go or change (only foreign keys of tables that go)
        before, after = old.tables[t].constraints, new.tables[t].constraints if t in new.tables else {}
        for name, definition in before.items():
            if after.get(name) != definition and (t in new.tables or definition.startswith("FOREIGN KEY")):
                steps.append(Step("drop_constraint", _path(t), f"drop constraint {name} of {t}",
                                  (f"ALTER TABLE {q(t)} DROP CONSTRAINT {q(name)}",)))
    for t in kept:
        for c in old.tables[t].columns:
            if c not in new.tables[t].columns:
                steps.append(Step("drop_column", _path(t, c), f"drop column {t}.{c}",
                                  (f"ALTER TABLE {q(t)} DROP COLUMN {q(c)}",),
                                  "removing a field deletes its data"))
    for t in gone:
        steps.append(Step("drop_table", _path(t), f"drop table {t}", (f"DROP TABLE {q(t)}",),
                          "removing an entity deletes its table and every row in it"))
    for t in _creation_order({t: new.tables[t] for t in added}):
        columns = [*PLATFORM_COLUMNS, *(_column_sql(c, col) for c, col in new.tables[t].columns.items())]
        steps.append(Step("create_table", _path(t), f"create table {t}",
                          (f"CREATE TABLE {q(t)} ({', '.join(columns)})",)))
    for t in kept:
        for c, col in new.tables[t].columns.items():
            if c not in old.tables[t].columns:
                steps.append(Step("add_column", _path(t, c), f"add column {t}.{c}",
                                  (f"ALTER TABLE {q(t)} ADD COLUMN {_column_sql(c, col)}",)))
                if col.not_null and col.default is None:
                    refused.append(f"{_path(t, c)}: a new required field needs a default for the rows that "
                                   "already exist; give it a default or make it optional")
    for t in kept:
        for c, col in new.tables[t].columns.items():
            if c in old.tables[t].columns:
                steps += _alter(t, c, old.tables[t].columns[c], col)
    for kind in ("CHECK", "FOREIGN KEY"):
        for t in new.tables:
            before = old.tables[t].constraints if t in old.tables else {}
            for name, definition in new.tables[t].constraints.items():
                if definition.startswith(kind) and before.get(name) != definition:
                    steps.append(Step("add_constraint", _path(t), f"add constraint {name} to {t}",
                                      (f"ALTER TABLE {q(t)} ADD CONSTRAINT {q(name)} {definition}",)))
    return Plan(tuple(steps), tuple(refused))


def _alter(t: str, c: str, old: Column, new: Column) -> list[Step]:
    table, col, path, steps = q(t), q(c), _path(t, c), []
    retyped = old.type != new.type
    if retyped:
        sql = [f"ALTER TABLE {table} ALTER COLUMN {col} DROP DEFAULT"] if old.default is not None else []
        sql.append(f"ALTER TABLE {table} ALTER COLUMN {col} TYPE {new.type} USING {col}::{new.type}")
        if new.default is not None:
            sql.append(f"ALTER TABLE {table} ALTER COLUMN {col} SET DEFAULT {new.default}")
        steps.append(Step("change_type", path, f"change {t}.{c} from {old.type} to {new.type}", tuple(sql),
                          f"changing a field's type from {old.type} to {new.type} rewrites its data "
                          "(values that do not convert fail the migration)"))
    elif old.references != new.references and old.references and new.references:
        steps.append(Step("retarget_reference", path, f"point {t}.{c} at {new.references}", (),
                          f"pointing a reference from {old.references} to {new.references} "
                          "invalidates its values"))
    if not retyped and old.default != new.default:
        action = f"SET DEFAULT {new.default}" if new.default is not None else "DROP DEFAULT"
        steps.append(Step("set_default", path, f"change the default of {t}.{c}",
                          (f"ALTER TABLE {table} ALTER COLUMN {col} {action}",)))
    if new.not_null and not old.not_null:
        fill = (f"UPDATE {table} SET {col} = {new.default} WHERE {col} IS NULL",) if new.default is not None else ()
        steps.append(Step("set_required", path, f"make {t}.{c} required",
                          (*fill, f"ALTER TABLE {table} ALTER COLUMN {col} SET NOT NULL"),
                          None if fill else "making a field required without a default fails on rows "
                                            "that have no value"))
    elif old.not_null and not new.not_null:
        steps.append(Step("drop_required", path, f"make {t}.{c} optional",
                          (f"ALTER TABLE {table} ALTER COLUMN {col} DROP NOT NULL",)))
    return steps


def check_update(old_spec: AppSpec | None, new_spec: AppSpec, allow_destructive: bool) -> list[str]:
    """Why an update cannot be accepted (empty: it can): for the API, before anything is written."""
    before = relational_model(old_spec) if old_spec is not None else None
    return plan(before, relational_model(new_spec)).problems(allow_destructive)


def check_rollback(target: Model, current: Model | None) -> list[str]:
    """Why the code of a release with data model `target` cannot serve the schema `current`
    (empty: it can): every migration since must have been additive, i.e. going from
    `target` to `current` needs no destructive step (a dropped field, a changed type...)."""
    steps = plan(target, current or Model({}))
    return [f"{s.description} ({s.path}): {s.destructive}" for s in steps.destructive] + list(steps.refused)

"""The data model as the generated app sees it (written out in `app.py`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Field:
    name: str
    type: str  # string text integer number boolean date datetime enum reference
    required: bool = False
    default: Any = None
    min_length: int | None = None
    max_length: int | None = None
    min: int | float | None = None
    max: int | float | None = None
    values: tuple[str, ...] = ()
    to: str | None = None  # referenced entity
    label: str | None = None


@dataclass(frozen=True)
class Entity:
    name: str
    fields: tuple[Field, ...]
    label: str | None = None
    # database constraint name -> field, so a database refusal names the field
    constraints: dict[str, str] = field(default_factory=dict)

    def field(self, name: str) -> Field | None:
        return next((f for f in self.fields if f.name == name), None)


@dataclass(frozen=True)
class Page:
    path: str
    title: str
    shows: str

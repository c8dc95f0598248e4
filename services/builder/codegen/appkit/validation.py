"""Input checks, the same rules as the database's constraints, so a client learns which
field is wrong (422) before anything is written. Pure functions: no I/O."""

from __future__ import annotations

import math
from datetime import date, datetime, timezone
from typing import Any

from .schema import Entity, Field

PLATFORM = ("id", "created_at", "updated_at")
INT64 = (-(2**63), 2**63 - 1)
DEFAULT_LIMIT, MAX_LIMIT = 50, 500


class Invalid(ValueError):
    """`fields` maps each bad field (or query parameter) to what is wrong with it."""

    def __init__(self, fields: dict[str, str]) -> None:
        self.fields = fields
        super().__init__("; ".join(f"{k}: {v}" for k, v in fields.items()))


def check_value(f: Field, value: Any) -> Any:
    """A JSON value for field `f` -> the Python value for the database, or ValueError."""
    t = f.type
    if t in ("string", "text", "enum"):
        if not isinstance(value, str):
            raise ValueError("must be text")
        if "\x00" in value:
            raise ValueError("must not contain NUL characters")
        if not _encodable(value):  # "\ud800" in JSON: no UTF-8 text (nor PostgreSQL) holds it
            raise ValueError("must be valid Unicode text (no unpaired surrogates)")
        if f.min_length is not None and len(value) < f.min_length:
            raise ValueError(f"must be at least {f.min_length} characters")
        if f.max_length is not None and len(value) > f.max_length:
            raise ValueError(f"must be at most {f.max_length} characters")
        if t == "enum" and value not in f.values:
            raise ValueError(f"must be one of: {', '.join(f.values)}")
        return value
    if t in ("integer", "reference"):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError("must be an id (a whole number)" if t == "reference" else "must be a whole number")
        if not INT64[0] <= value <= INT64[1]:
            raise ValueError("is out of range")
        if t == "reference" and value < 1:
            raise ValueError("must be a positive id")
        return _bounded(f, value)
    if t == "number":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError("must be a number")
        try:
            number = float(value)  # an int past the double's range raises OverflowError
        except OverflowError:
            raise ValueError("is out of range") from None
        if not math.isfinite(number):
            raise ValueError("must be a number")
        return _bounded(f, number)
    if t == "boolean":
        if not isinstance(value, bool):
            raise ValueError("must be true or false")
        return value
    if t == "date":
        if not isinstance(value, str):
            raise ValueError("must be a date (YYYY-MM-DD)")
        try:
            return date.fromisoformat(value)
        except (ValueError, UnicodeError):
            raise ValueError("must be a date (YYYY-MM-DD)") from None
    if t == "datetime":
        if not isinstance(value, str):
            raise ValueError("must be a date-time (ISO 8601)")
        try:
            parsed = datetime.fromisoformat(value)
        except (ValueError, UnicodeError):
            raise ValueError("must be a date-time (ISO 8601)") from None
        parsed = parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)
        try:  # the database stores UTC: 0001-01-01T00:00+01:00 is before year 1 there
            parsed.astimezone(timezone.utc)
        except OverflowError:
            raise ValueError("is out of range") from None
        return parsed
    raise ValueError(f"has an unknown type {t!r}")


def _encodable(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _bounded(f: Field, value: int | float) -> int | float:
    if f.min is not None and value < f.min:
        raise ValueError(f"must be at least {f.min}")
    if f.max is not None and value > f.max:
        raise ValueError(f"must be at most {f.max}")
    return value


def check_body(entity: Entity, body: Any, *, partial: bool) -> dict[str, Any]:
    """A create (partial=False) or update (partial=True) body -> column values."""
    if not isinstance(body, dict):
        raise Invalid({"body": "must be a JSON object of field values"})
    errors: dict[str, str] = {}
    out: dict[str, Any] = {}
    for key, value in body.items():
        f = entity.field(key)
        if f is None:
            errors[key] = "is set by the server" if key in PLATFORM else "is not a field of " + entity.name
        elif value is None:
            if f.required:
                errors[key] = "is required"
            else:
                out[key] = None
        else:
            try:
                out[key] = check_value(f, value)
            except ValueError as exc:
                errors[key] = str(exc)
    if not partial:
        for f in entity.fields:
            if f.required and f.default is None and f.name not in body:
                errors[f.name] = "is required"
    if partial and not body and not errors:
        errors["body"] = "names no field to change"
    if errors:
        raise Invalid(errors)
    return out


def parse_query(entity: Entity, params: list[tuple[str, str]]) -> tuple[int, int, dict[str, Any]]:
    """`?limit=&offset=&<field>=<value>` -> (limit, offset, equality filters)."""
    errors: dict[str, str] = {}
    limit, offset, filters = DEFAULT_LIMIT, 0, {}
    for key, raw in params:
        if key in ("limit", "offset"):
            try:
                number = int(raw)
            except ValueError:
                errors[key] = "must be a whole number"
                continue
            if key == "limit" and not 1 <= number <= MAX_LIMIT:
                errors[key] = f"must be between 1 and {MAX_LIMIT}"
            elif key == "offset" and not 0 <= number <= INT64[1]:
                errors[key] = "must be 0 or more"
            elif key == "limit":
                limit = number
            else:
                offset = number
            continue
        f = entity.field(key) if key != "id" else Field("id", "reference")
        if f is None:
            errors[key] = "is not a field of " + entity.name
        elif key in filters:
            errors[key] = "is given twice"
        else:
            try:
                filters[key] = check_value(f, _from_text(f, raw))
            except ValueError as exc:
                errors[key] = str(exc)
    if errors:
        raise Invalid(errors)
    return limit, offset, filters


def _from_text(f: Field, raw: str) -> Any:
    if f.type in ("integer", "reference"):
        try:
            return int(raw)
        except ValueError:
            return raw  # check_value names the problem
    if f.type == "number":
        try:
            return float(raw)
        except ValueError:
            return raw
    if f.type == "boolean":
        return {"true": True, "false": False}.get(raw.lower(), raw)
    return raw


def to_json(row: Any) -> dict[str, Any]:
    """A database row -> JSON-ready dict (dates and times as ISO 8601)."""
    return {k: (v.isoformat() if isinstance(v, (date, datetime)) else v) for k, v in dict(row).items()}

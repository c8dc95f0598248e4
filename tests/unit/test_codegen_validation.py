"""The generated app's input checks (pure): every field type, required, limits, queries."""

from datetime import date, datetime, timezone

import pytest

from services.builder.codegen.appkit.schema import Entity, Field
from services.builder.codegen.appkit.validation import Invalid, check_body, parse_query, to_json

THING = Entity("thing", fields=(
    Field("name", "string", required=True, min_length=2, max_length=5),
    Field("note", "text"),
    Field("count", "integer", min=0, max=9),
    Field("ratio", "number", max=1),
    Field("ok", "boolean"),
    Field("day", "date"),
    Field("at", "datetime"),
    Field("kind", "enum", values=("a", "b")),
    Field("owner", "reference", to="person"),
    Field("level", "integer", required=True, default=3),
))

GOOD = {"name": "abc", "note": "x", "count": 3, "ratio": 0.5, "ok": True, "day": "2024-02-29",
        "at": "2024-01-01T10:00:00Z", "kind": "a", "owner": 7}


def test_a_good_body_becomes_database_values():
    values = check_body(THING, GOOD, partial=False)
    assert values["day"] == date(2024, 2, 29) and values["ratio"] == 0.5 and values["owner"] == 7
    assert values["at"] == datetime(2024, 1, 1, 10, tzinfo=timezone.utc)
    assert check_body(THING, {"at": "2024-01-01T10:00:00"}, partial=True)["at"].tzinfo is timezone.utc


@pytest.mark.parametrize("field, value, message", [
    ("name", 5, "must be text"), ("name", "a", "at least 2"), ("name", "abcdef", "at most 5"),
    ("count", "3", "whole number"), ("count", True, "whole number"), ("count", 10, "at most 9"),
    ("count", 2**63, "out of range"), ("ratio", "x", "must be a number"), ("ratio", 2, "at most 1"),
    ("ok", 1, "true or false"), ("day", "2024-02-30", "YYYY-MM-DD"), ("at", "yesterday", "ISO 8601"),
    ("kind", "c", "one of: a, b"), ("owner", 0, "positive id"), ("owner", "7", "an id"),
    ("note", "a\x00b", "NUL"), ("name", None, "is required"),
])
def test_each_bad_value_is_named(field, value, message):
    with pytest.raises(Invalid) as err:
        check_body(THING, GOOD | {field: value}, partial=False)
    assert list(err.value.fields) == [field] and message in err.value.fields[field]


def test_required_unknown_and_server_fields():
    with pytest.raises(Invalid) as err:
        check_body(THING, {"note": "x", "bogus": 1, "id": 3}, partial=False)
    assert err.value.fields == {"name": "is required", "bogus": "is not a field of thing", "id": "is set by the server"}
    assert check_body(THING, {"name": "ab"}, partial=False) == {"name": "ab"}  # level has a default
    assert check_body(THING, {"note": None}, partial=True) == {"note": None}
    for body in ({}, [], "x"):
        with pytest.raises(Invalid, match="body"):
            check_body(THING, body, partial=True)


def test_list_query_parses_typed_filters_and_refuses_the_rest():
    limit, offset, filters = parse_query(THING, [("limit", "5"), ("offset", "10"), ("ok", "true"),
                                                 ("count", "3"), ("day", "2024-01-02"), ("id", "4")])
    assert (limit, offset) == (5, 10)
    assert filters == {"ok": True, "count": 3, "day": date(2024, 1, 2), "id": 4}
    with pytest.raises(Invalid) as err:
        parse_query(THING, [("limit", "0"), ("offset", "-1"), ("nope", "1"), ("kind", "z"), ("ok", "maybe")])
    assert set(err.value.fields) == {"limit", "offset", "nope", "kind", "ok"}
    assert parse_query(THING, [])[:2] == (50, 0)


def test_rows_become_json():
    row = {"id": 1, "day": date(2024, 1, 2), "at": datetime(2024, 1, 1, tzinfo=timezone.utc), "ok": None}
    assert to_json(row) == {"id": 1, "day": "2024-01-02", "at": "2024-01-01T00:00:00+00:00", "ok": None}

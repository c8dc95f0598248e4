"""A generated app's own OpenAPI 3.1 document (/openapi.json) and docs page (/docs): valid
OpenAPI 3.1 for every example spec and a spec with every field type, exact about the
routes, schemas and error bodies, and built from spec text only as data (any text in any
slot gives the document and page of a plain spec). Real responses of a running app are
checked against it in tests/integration/shared/test_generated_app_openapi.py."""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterator
from datetime import timezone
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate as validate_openapi
from starlette.testclient import TestClient

import services.builder.codegen.appkit as appkit
from spec.load import load_app_spec
from services.builder.codegen import generate
from services.builder.codegen.appkit.openapi import document, render_docs
from services.builder.codegen.appkit.schema import Field
from services.builder.codegen.appkit.validation import Invalid, check_body, check_value
from tests.support.specs import HOSTILE, PLAIN, SETTINGS, SLOTS, shape

EXAMPLES = sorted(Path("examples").glob("*.yaml"))
EVERY_TYPE = """
app: Everything
entities:
  person:
    label: People
    fields:
      name: {type: string, required: true, min_length: 2, max_length: 20, label: Full name}
      role: {type: enum, values: [admin, member], default: member}
  item:
    fields:
      title: {type: string, required: true, max_length: 50}
      body:  {type: text, max_length: 1000, default: "-"}
      qty:   {type: integer, min: 0, max: 100, default: 1, required: true}
      price: {type: number, min: 0.5}
      done:  {type: boolean, default: false}
      due:   {type: date, default: 2026-01-02}
      at:    {type: datetime}
      kind:  {type: enum, values: [a, b]}
      owner: {type: reference, to: person, required: true}
pages:
  - {path: /, title: Items, shows: item}
  - {path: /people, title: People, shows: person}
"""


@contextlib.contextmanager
def _appkit_importable() -> Iterator[None]:
    """The generated app.py imports `appkit` (top-level in the artifact)."""
    before = sys.modules.get("appkit")
    sys.modules["appkit"] = appkit
    try:
        yield
    finally:
        if before is None:
            del sys.modules["appkit"]
        else:
            sys.modules["appkit"] = before


def generated(spec_data: Any) -> dict[str, Any]:
    """The namespace of the generated app.py (TITLE, ENTITIES, PAGES, app): the document is
    derived from what the app itself holds, as the running app does."""
    namespace: dict[str, Any] = {}
    with _appkit_importable():
        exec(compile(generate(load_app_spec(spec_data))["app.py"], "app.py", "exec"), namespace)  # noqa: S102
    return namespace


def doc_of(spec_data: Any, **kw: Any) -> dict[str, Any]:
    ns = generated(spec_data)
    return document(ns["TITLE"], ns["ENTITIES"], ns["PAGES"], **kw)


def validator(doc: dict[str, Any], schema: dict[str, Any]) -> Draft202012Validator:
    """A validator for a schema of the document (its $refs resolve inside the document)."""
    return Draft202012Validator({**schema, "components": doc["components"]},
                                format_checker=Draft202012Validator.FORMAT_CHECKER)


@pytest.mark.parametrize("source", [*EXAMPLES, "every-type", "hostile"], ids=str)
def test_the_document_is_valid_openapi_3_1(source):
    data = (source.read_text() if isinstance(source, Path) else EVERY_TYPE if source == "every-type"
            else shape(HOSTILE))
    doc = doc_of(data)
    validate_openapi(doc)
    assert doc["openapi"] == "3.1.0"
    ids = [op["operationId"] for item in doc["paths"].values() for m, op in item.items() if m != "parameters"]
    assert len(ids) == len(set(ids))
    json.dumps(doc, ensure_ascii=False, allow_nan=False).encode("utf-8")  # sendable as it is
    for schema in doc["components"]["schemas"].values():
        Draft202012Validator.check_schema(schema)


def test_every_route_and_status_the_app_answers_is_described():
    doc = doc_of(EVERY_TYPE)
    routes = {(path, m): sorted(op["responses"]) for path, item in doc["paths"].items()
              for m, op in item.items() if m != "parameters"}
    crud = lambda e: {(f"/api/{e}", "get"): ["200", "422"], (f"/api/{e}", "post"): ["201", "422"],  # noqa: E731
                      (f"/api/{e}/{{row_id}}", "get"): ["200", "404"],
                      (f"/api/{e}/{{row_id}}", "patch"): ["200", "404", "422"],
                      (f"/api/{e}/{{row_id}}", "delete"): ["204", "404", "409"]}
    assert routes == {("/healthz", "get"): ["200", "503"], ("/openapi.json", "get"): ["200"],
                      ("/docs", "get"): ["200"], ("/", "get"): ["200"], ("/people", "get"): ["200"],
                      **crud("person"), **crud("item")}
    assert doc["paths"]["/"]["get"]["responses"]["200"]["content"] == {"text/html": {"schema": {"type": "string"}}}
    # the app's own route table holds exactly the documented paths
    app = generated(EVERY_TYPE)["app"]
    assert {r.path for r in app.routes} == set(doc["paths"])


def test_schemas_carry_types_required_limits_values_defaults_and_references():
    schemas = doc_of(EVERY_TYPE)["components"]["schemas"]
    create, row = schemas["item.Create"], schemas["item.Row"]
    assert create["required"] == ["title", "owner"]  # qty is required but has a default
    assert create["additionalProperties"] is False and "required" not in schemas["item.Update"]
    assert schemas["item.Update"]["minProperties"] == 1
    p = create["properties"]
    assert p["title"] == {"type": "string", "pattern": "^[^\\u0000]*$", "maxLength": 50}
    assert p["body"] == {"type": ["string", "null"], "pattern": "^[^\\u0000]*$", "maxLength": 1000, "default": "-"}
    assert p["qty"] == {"type": "integer", "format": "int64", "minimum": 0, "maximum": 100, "default": 1}
    assert p["price"] == {"type": ["number", "null"], "format": "double", "minimum": 0.5}
    assert p["done"] == {"type": ["boolean", "null"], "default": False}
    assert p["due"] == {"type": ["string", "null"], "format": "date", "default": "2026-01-02"}
    assert p["at"] == {"type": ["string", "null"], "format": "date-time"}
    assert p["kind"] == {"type": ["string", "null"], "enum": ["a", "b", None]}
    assert p["owner"]["type"] == "integer" and p["owner"]["x-references"] == "person"
    assert (p["owner"]["minimum"], p["owner"]["maximum"]) == (1, 2**63 - 1)
    person = schemas["person.Create"]["properties"]
    assert person["name"]["title"] == "Full name" and person["name"]["minLength"] == 2
    assert person["role"]["default"] == "member"
    assert row["required"] == ["id", "title", "body", "qty", "price", "done", "due", "at", "kind", "owner",
                               "created_at", "updated_at"]
    assert "default" not in row["properties"]["body"] and row["additionalProperties"] is False
    assert schemas["person.Row"]["title"] == "People"
    ok = {"id": 1, "title": "t", "body": None, "qty": 1, "price": None, "done": False, "due": "2026-01-02",
          "at": "2024-01-01T10:00:00+00:00", "kind": None, "owner": 3,
          "created_at": "2024-01-01T10:00:00.123456+00:00", "updated_at": "2024-01-01T10:00:00+00:00"}
    doc = doc_of(EVERY_TYPE)
    assert not list(validator(doc, row).iter_errors(ok))
    for bad in ({"qty": 101}, {"kind": "c"}, {"owner": None}, {"due": "2024-13-01"}, {"extra": 1}, {"title": None}):
        assert list(validator(doc, row).iter_errors({**ok, **bad})), bad


def test_the_documented_request_schemas_agree_with_the_app_s_checks():
    """Bodies the document accepts, the app accepts; each the document refuses, the app refuses (422)."""
    doc = doc_of(EVERY_TYPE)
    entity = next(e for e in generated(EVERY_TYPE)["ENTITIES"] if e.name == "item")
    create = validator(doc, doc["components"]["schemas"]["item.Create"])
    update = validator(doc, doc["components"]["schemas"]["item.Update"])
    good = {"title": "t", "owner": 1, "price": 0.5, "kind": "b", "at": "2024-01-01T10:00:00Z", "body": None}
    assert create.is_valid(good) and check_body(entity, good, partial=False)
    for bad in [{}, {"owner": 1}, {**good, "title": "x" * 51}, {**good, "title": "a\x00"}, {**good, "qty": -1},
                {**good, "price": 0.1}, {**good, "kind": "c"}, {**good, "owner": 0}, {**good, "owner": None},
                {**good, "done": "yes"}, {**good, "due": "2024-02-30"}, {**good, "id": 3}, {**good, "nope": 1}]:
        assert not create.is_valid(bad), bad
        with pytest.raises(Invalid):
            check_body(entity, bad, partial=False)
    assert not update.is_valid({})
    with pytest.raises(Invalid):
        check_body(entity, {}, partial=True)
    assert update.is_valid({"qty": 3}) and check_body(entity, {"qty": 3}, partial=True) == {"qty": 3}


def test_error_bodies_are_described_as_the_app_sends_them():
    doc = doc_of(EVERY_TYPE)
    answers = doc["paths"]["/api/item"]["post"]["responses"]
    invalid = answers["422"]["content"]["application/json"]["schema"]
    assert validator(doc, invalid).is_valid({"error": "invalid input", "fields": {"title": "is required"}})
    assert not validator(doc, invalid).is_valid({"detail": [{"loc": ["body"], "msg": "x"}]})
    missing = doc["paths"]["/api/item/{row_id}"]["get"]["responses"]["404"]["content"]["application/json"]["schema"]
    assert validator(doc, missing).is_valid({"error": "item 9 not found"})


# --- spec text is data in the document and the page ------------------------------------


def _shape_of(value: Any) -> Any:
    """Every string (key or value) and number becomes a placeholder: what remains is structure."""
    if isinstance(value, dict):
        return [("S", _shape_of(v)) for v in value.values()]
    if isinstance(value, list):
        return [_shape_of(v) for v in value]
    if isinstance(value, str):
        return "S"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return 0
    return value


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.seen: list[Any] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.seen.append((tag, tuple(k for k, _ in attrs)))

    def handle_endtag(self, tag: str) -> None:
        self.seen.append("/" + tag)

    def handle_comment(self, data: str) -> None:
        self.seen.append("comment")


def tags(html: str) -> list[Any]:
    parser = _Tags()
    parser.feed(html)
    parser.close()
    return parser.seen


PLAIN_DOC = doc_of(shape(PLAIN))


@SETTINGS
@given(SLOTS)
@example(HOSTILE)
def test_any_text_in_any_slot_gives_the_document_and_page_of_a_plain_spec(slots):
    doc = doc_of(shape(slots))
    assert _shape_of(doc) == _shape_of(PLAIN_DOC)
    assert json.loads(json.dumps(doc, ensure_ascii=False)) == doc
    assert doc["info"]["title"] == slots["app"]
    field = doc["components"]["schemas"][f"{slots['entities'][0]}.Create"]["properties"][slots["fields"][2]]
    assert field["enum"][:-1] == slots["values"] and field["title"] == slots["labels"][2]
    assert tags(render_docs(doc)) == tags(render_docs(PLAIN_DOC))


# --- served ----------------------------------------------------------------------------


def test_the_app_serves_its_document_and_an_offline_docs_page():
    ns = generated(shape(HOSTILE))
    client = TestClient(ns["app"])  # no lifespan: these two routes need no database
    served = client.get("/openapi.json")
    assert served.status_code == 200 and served.headers["content-type"] == "application/json"
    assert served.json() == document(ns["TITLE"], ns["ENTITIES"], ns["PAGES"])
    page = client.get("/docs")
    assert page.status_code == 200 and page.headers["content-type"] == "text/html; charset=utf-8"
    assert page.headers["content-security-policy"].startswith("default-src 'none'")
    seen = tags(page.text)
    assert not {t for t in seen if isinstance(t, tuple) and t[0] in ("script", "link", "img", "iframe")}
    assert "<script>alert(1)</script>" not in page.text and "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text
    assert "http://" not in page.text and "https://" not in page.text  # nothing fetched from anywhere
    assert client.get("/openapi.json").content == served.content  # built once, kept


def test_a_spec_page_at_docs_keeps_its_path():
    data = {**shape(PLAIN), "pages": [{"path": "/docs", "title": "Our docs", "shows": "one"}]}
    doc = doc_of(data, docs_page=False)
    assert doc["paths"]["/docs"]["get"]["operationId"] == "page_0"
    ns = generated(data)
    assert [r.path for r in ns["app"].routes].count("/docs") == 1
    assert TestClient(ns["app"]).get("/openapi.json").json() == doc


# --- inputs that were 500s ---------------------------------------------------------------


@pytest.mark.parametrize("field, value", [
    (Field("n", "number"), 10**400),  # past the double's range: OverflowError
    (Field("at", "datetime"), "0001-01-01T00:00:00+01:00"),  # before year 1 in UTC
    (Field("at", "datetime"), "9999-12-31T23:59:59-01:00"),  # after 9999 in UTC
    (Field("s", "string"), "a\ud800"),  # unpaired surrogate: no UTF-8 text holds it
    (Field("e", "enum", values=("a",)), "\udfff"),
])
def test_values_that_used_to_crash_are_refused(field, value):
    with pytest.raises(ValueError):
        check_value(field, value)


def test_a_date_time_in_range_keeps_its_offset():
    at = check_value(Field("at", "datetime"), "0001-01-01T01:00:00+01:00")
    assert at.astimezone(timezone.utc).year == 1


def test_health_without_a_database_answers_the_documented_503():
    ns = generated(EVERY_TYPE)
    doc = document(ns["TITLE"], ns["ENTITIES"], ns["PAGES"])
    answer = TestClient(ns["app"]).get("/healthz")  # no lifespan: no pool, as when the database is away
    assert answer.status_code == 503
    schema = doc["paths"]["/healthz"]["get"]["responses"]["503"]["content"]["application/json"]["schema"]
    assert validator(doc, schema).is_valid(answer.json()), answer.json()

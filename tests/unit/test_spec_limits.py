"""Names are whole-string matches and numbers stay in range: a trailing newline, a 5,000-digit
integer or an unpaired surrogate is a problem at its path (the API's 422), never a 500."""

from __future__ import annotations

import json
import typing

import httpx
import pytest
from pydantic import TypeAdapter

from contracts import fields
from contracts.app_spec import check_identifier
from spec.load import load_app_spec
from spec.problems import InvalidAppSpec
from contracts.tenant import InvalidTenantId, tenant_names, validate_tenant_id
from services.api.app import create_app
from services.api.http import ApiContext

BIG = "9" * 5000


def problems(source) -> list[tuple[str, str]]:
    with pytest.raises(InvalidAppSpec) as caught:
        load_app_spec(source)
    return [(p.path, p.message) for p in caught.value.problems]


def yaml_field(body: str) -> str:
    return f"app: x\nentities:\n  t:\n    fields:\n      a: {body}\n"


def json_field(body: str) -> str:
    return '{"app": "x", "entities": {"t": {"fields": {"a": %s}}}}' % body


@pytest.mark.parametrize("source, path", [
    (json_field('{"type": "number", "min": %s}' % BIG), "entities.t.fields.a.min"),
    (json_field('{"type": "integer", "default": -%s}' % BIG), "entities.t.fields.a.default"),
    (json_field('{"type": "string", "max_length": %s}' % BIG), "entities.t.fields.a.max_length"),
    (yaml_field("{type: integer, max: %s}" % BIG), "entities.t.fields.a.max"),
    (yaml_field("{type: number, default: 0x%s}" % ("f" * 5000)), "entities.t.fields.a.default"),
    (yaml_field("{type: number, default: 1%s}" % (":59" * 2000)), "entities.t.fields.a.default"),  # base 60
    (yaml_field("{type: text, max_length: 1%s}" % ("_000" * 1500)), "entities.t.fields.a.max_length"),
    ('{"app": %s, "entities": {"t": {"fields": {"a": {"type": "string"}}}}}' % BIG, "app"),
    ('{"app": "x", "pages": [{"path": "/", "title": "T", "shows": "t", "x": %s}], '
     '"entities": {"t": {"fields": {"a": {"type": "string"}}}}}' % BIG, "pages[0].x"),
], ids=["json-min", "json-negative", "json-length", "yaml", "yaml-hex", "yaml-sexagesimal", "yaml-underscores",
        "title", "unknown-key"])
def test_a_number_too_long_to_convert_is_a_problem_at_its_path(source, path):
    found = problems(source)
    assert [p for p, _ in found] == [path]
    assert "out of range" in found[0][1]


@pytest.mark.parametrize("body, path, message", [
    ('{"type": "number", "min": %s}' % ("9" * 400), "entities.t.fields.a.min", "out of range"),
    ('{"type": "number", "default": -%s}' % ("9" * 309), "entities.t.fields.a.default", "out of range"),
    ('{"type": "number", "max": 1e400}', "entities.t.fields.a.max", "finite"),
    ('{"type": "integer", "max": %d}' % 2**63, "entities.t.fields.a.max", "less than or equal"),
    ('{"type": "string", "max_length": 10001}', "entities.t.fields.a.max_length", "less than or equal"),
])
def test_numbers_a_slot_cannot_hold_are_refused(body, path, message):
    found = problems(json_field(body))
    assert [p for p, _ in found] == [path] and message in found[0][1]


def test_numbers_in_range_still_load():
    spec = load_app_spec(json_field('{"type": "number", "min": %s, "max": 1e308, "default": 1e300}' % ("9" * 300)))
    assert spec.entities["t"].fields["a"].min == int("9" * 300)
    spec = load_app_spec(yaml_field("{type: integer, min: -0x8000000000000000, max: 9_223_372_036_854_775_807}"))
    assert (spec.entities["t"].fields["a"].min, spec.entities["t"].fields["a"].max) == (-(2**63), 2**63 - 1)


# --- identifiers: the whole string, not a prefix followed by a newline ------------------


@pytest.mark.parametrize("value", ["task", "a1_b"])
def test_identifiers_refuse_a_trailing_newline(value):
    assert check_identifier(value) == value
    for bad in (value + "\n", value + "\r\n", "\n" + value, value + "\x00"):
        with pytest.raises(ValueError, match="not a valid name"):
            check_identifier(bad)


def test_tenant_ids_refuse_a_trailing_newline():
    assert validate_tenant_id("acme") == "acme"
    for bad in ("acme\n", "acme\r\n", "\nacme", "ac\nme"):
        with pytest.raises(InvalidTenantId):
            validate_tenant_id(bad)
        with pytest.raises(InvalidTenantId):
            tenant_names(bad)


@pytest.mark.parametrize("source, path", [
    ({"app": "x", "entities": {"task\n": {"fields": {"a": {"type": "string"}}}}}, "entities['task\\n']"),
    ({"app": "x", "entities": {"t": {"fields": {"a\n": {"type": "string"}}}}}, "entities.t.fields['a\\n']"),
    ({"app": "x", "entities": {"t": {"fields": {"a": {"type": "reference", "to": "t\n"}}}}}, "entities.t.fields.a.to"),
    ({"app": "x", "entities": {"t": {"fields": {"a": {"type": "string"}}}},
      "pages": [{"path": "/\n", "title": "T", "shows": "t"}]}, "pages[0].path"),
    ({"app": "x", "entities": {"t": {"fields": {"a": {"type": "string"}}}},
      "pages": [{"path": "/", "title": "T", "shows": "t\n"}]}, "pages[0].shows"),
    ({"app": "x", "entities": {"t": {"fields": {"a": {"type": "string"}}}}, "static": "static/\n"}, "static"),
])
def test_spec_names_with_a_trailing_newline_are_refused_at_their_path(source, path):
    assert [p for p, _ in problems(source)] == [path]


# Every constrained string of the event contracts, with a value it accepts: pydantic-core's
# regex `$` matches only at the very end (unlike Python's re), and this keeps it so.
VALID = {"Sha256": "0" * 64, "HostName": "acme.localhost", "CustomDomain": "shop.example.com", "SpecRef": "spec:x",
         "ArtifactPath": "acme/releases/1/app.pyz", "PgIdentifier": "t_acme", "CacheUser": "t-acme",
         "CachePrefix": "acme:", "BucketName": "hostplane-acme-static", "SecretName": "hostplane/tenants/acme",
         "SecretArn": "arn:aws:secretsmanager:us-east-1:123456789012:secret:hostplane/tenants/acme",
         "ServiceName": "hostplane-acme", "RouteId": "tenant-acme", "Upstream": "127.0.0.1:8000",
         "Code": "health_check", "ResourceRef": "db:t_acme", "MigrationName": "0001_create"}


def test_every_pattern_in_the_contracts_is_covered():
    patterned = {name for name, value in vars(fields).items() if typing.get_origin(value) is typing.Annotated
                 and "pattern" in repr(value)}
    assert patterned == set(VALID)


@pytest.mark.parametrize("name", sorted(VALID))
def test_contract_patterns_refuse_a_trailing_newline(name):
    adapter = TypeAdapter(getattr(fields, name))
    assert adapter.validate_python(VALID[name]) == VALID[name]
    for bad in (VALID[name] + "\n", "\n" + VALID[name]):
        with pytest.raises(ValueError):
            adapter.validate_python(bad)


# --- the API: 422 naming the field ----------------------------------------------------


class _Pool:
    """The audit trail's writes: these requests are refused before anything else is touched."""

    async def execute(self, *_: object) -> None:
        return None


TOKEN = "t0ken-" + "x" * 40


@pytest.fixture
async def api():
    app = create_app(ApiContext(pool=_Pool(), edge_port=8480, name_prefix="hostplane", secrets=None), TOKEN)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app, raise_app_exceptions=False),
                                 base_url="http://api", headers={"Authorization": f"Bearer {TOKEN}",
                                                                 "content-type": "application/json"}) as client:
        yield client


SPEC_WITH_BIG = '{"app": "x", "entities": {"t": {"fields": {"a": {"type": "number", "min": %s}}}}}' % BIG


@pytest.mark.parametrize("body, path", [
    ('{"name": "acme", "app": %s}' % SPEC_WITH_BIG, "app.entities.t.fields.a.min"),
    (json.dumps({"name": "acme", "app": SPEC_WITH_BIG}), "app.entities.t.fields.a.min"),
    (json.dumps({"name": "acme", "app": yaml_field("{type: integer, default: %s}" % BIG)}),
     "app.entities.t.fields.a.default"),
    ('{"name": "acme", "app": "x", "edge": %s}' % BIG, "edge"),
    (json.dumps({"name": "acme\n", "app": yaml_field("{type: string}")}), "name"),
    ('{"name": "acme", "app": {"app": "x", "entities": {"t": {"fields": {"a": {"type": "string", '
     '"default": "\\ud800"}}}}}}', "app.entities.t.fields.a.default"),
], ids=["object", "json-text", "yaml-text", "top-level", "name-newline", "surrogate"])
async def test_create_with_a_value_out_of_range_is_422_naming_the_field(api, body, path):
    resp = await api.post("/v1/tenants", content=body.encode("utf-8", "surrogatepass"))
    assert resp.status_code == 422, resp.text
    assert [e["path"] for e in resp.json()["errors"]] == [path]


async def test_update_with_a_huge_number_is_422_naming_the_field(api):
    resp = await api.put("/v1/tenants/acme/app", content=('{"app": %s}' % SPEC_WITH_BIG).encode())
    assert resp.status_code == 422, resp.text
    assert resp.json()["errors"] == [{"path": "app.entities.t.fields.a.min", "message": resp.json()["errors"][0][
        "message"]}] and "out of range" in resp.json()["errors"][0]["message"]

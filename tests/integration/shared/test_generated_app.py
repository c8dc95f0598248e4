"""The generated app, run from its built zipapp with only the tenant's own credentials (a
tenant provisioned by the provisioner on the real PostgreSQL and Valkey): every field type
through the CRUD API, validation and reference errors, cache invalidation, pages, health."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
import redis.asyncio as aredis

from contracts.app_spec import AppSpec
from spec.load import load_app_spec
from spec.model import relational_model
from tests.support.generated_app import EVERY_TYPE_SPEC, create_tables_sql, serve

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120),
              pytest.mark.parametrize("running_platform", ["moto"], indirect=True)]

@pytest.fixture
async def served(res, tenant) -> AsyncIterator[tuple[httpx.AsyncClient, dict[str, str]]]:
    async with serve(res, tenant, load_app_spec(EVERY_TYPE_SPEC), create_tables_sql) as out:
        yield out


async def test_crud_for_every_field_type(served):
    client, _ = served
    ada = (await client.post("/api/person", json={"name": "Ada", "role": "admin"})).json()
    full = {"title": "first", "body": "long text", "qty": 5, "price": 9.5, "done": True, "due": "2024-02-29",
            "at": "2024-01-01T10:00:00+00:00", "kind": "a", "owner": ada["id"]}
    created = await client.post("/api/item", json=full)
    assert created.status_code == 201, created.text
    row = created.json()
    assert {k: row[k] for k in full} == full and row["id"] >= 1 and row["created_at"]
    minimal = (await client.post("/api/item", json={"title": "second"})).json()
    assert (minimal["qty"], minimal["done"], minimal["owner"]) == (1, False, None)  # database defaults

    assert (await client.get(f"/api/item/{row['id']}")).json() == row
    for query, expected in [({"done": "true"}, ["first"]), ({"qty": "1"}, ["second"]), ({"kind": "a"}, ["first"]),
                            ({"due": "2024-02-29"}, ["first"]), ({"owner": str(ada["id"])}, ["first"]),
                            ({"price": "9.5"}, ["first"]), ({"at": "2024-01-01T10:00:00Z"}, ["first"]),
                            ({"title": "second"}, ["second"]), ({"limit": "1", "offset": "1"}, ["second"])]:
        listed = await client.get("/api/item", params=query)
        assert [i["title"] for i in listed.json()["items"]] == expected, query

    patched = await client.patch(f"/api/item/{row['id']}", json={"qty": 6, "body": None, "due": "2025-01-01"})
    assert patched.status_code == 200
    body = patched.json()
    assert (body["qty"], body["body"], body["due"], body["title"]) == (6, None, "2025-01-01", "first")
    assert body["updated_at"] > row["updated_at"]
    assert (await client.delete(f"/api/item/{minimal['id']}")).status_code == 204
    assert (await client.get(f"/api/item/{minimal['id']}")).status_code == 404
    assert (await client.delete(f"/api/item/{minimal['id']}")).status_code == 404
    assert (await client.patch("/api/item/999999", json={"qty": 1})).status_code == 404


async def test_validation_and_reference_errors_name_the_field(served):
    client, _ = served
    for body, field in [({}, "title"), ({"title": "x" * 51}, "title"), ({"title": "t", "qty": 101}, "qty"),
                        ({"title": "t", "price": -1}, "price"), ({"title": "t", "done": "yes"}, "done"),
                        ({"title": "t", "due": "2024-13-01"}, "due"), ({"title": "t", "kind": "c"}, "kind"),
                        ({"title": "t", "at": "noon"}, "at"), ({"title": "t", "nope": 1}, "nope"),
                        ({"title": "t", "owner": 424242}, "owner")]:
        answer = await client.post("/api/item", json=body)
        assert answer.status_code == 422 and field in answer.json()["fields"], (body, answer.text)
    bad_json = await client.post("/api/item", content=b"{not json")
    assert bad_json.status_code == 422 and "body" in bad_json.json()["fields"]
    assert (await client.get("/api/item", params={"qty": "many"})).json()["fields"] == {"qty": "must be a whole number"}
    assert (await client.get("/api/item")).json()["items"] == [], "nothing was written"

    bob = (await client.post("/api/person", json={"name": "Bob"})).json()
    item = (await client.post("/api/item", json={"title": "t", "owner": bob["id"]})).json()
    gone = await client.patch(f"/api/item/{item['id']}", json={"owner": bob["id"] + 1000})
    assert gone.status_code == 422 and gone.json()["fields"] == {"owner": "refers to a row that does not exist"}
    assert (await client.delete(f"/api/person/{bob['id']}")).status_code == 409
    assert (await client.delete(f"/api/item/{item['id']}")).status_code == 204
    assert (await client.delete(f"/api/person/{bob['id']}")).status_code == 204


async def test_lists_are_cached_in_the_tenant_prefix_and_a_write_is_visible_next(served):
    client, env = served
    first = await client.get("/api/person")
    again = await client.get("/api/person")
    assert (first.headers["x-cache"], again.headers["x-cache"]) == ("miss", "hit")
    await client.post("/api/person", json={"name": "Cy"})
    after_create = await client.get("/api/person")
    assert after_create.headers["x-cache"] == "miss" and [p["name"] for p in after_create.json()["items"]] == ["Cy"]
    cy = after_create.json()["items"][0]
    await client.get("/api/person")
    await client.patch(f"/api/person/{cy['id']}", json={"name": "Cyd"})
    assert [p["name"] for p in (await client.get("/api/person")).json()["items"]] == ["Cyd"]
    await client.delete(f"/api/person/{cy['id']}")
    assert (await client.get("/api/person")).json()["items"] == []
    cache = aredis.from_url(env["REDIS_URL"])
    try:
        assert int(await cache.get(f"{env['CACHE_PREFIX']}cache:person:gen")) == 3
    finally:
        await cache.aclose()


async def test_health_reports_the_runtime_version_and_pages_escape_rows(served):
    client, _ = served
    health = await client.get("/healthz")
    assert health.json() == {"version": 7, "database": "ok"}
    await client.post("/api/item", json={"title": "<script>alert(1)</script>"})
    page = await client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text and "<script>" not in page.text
    assert "<h1>Items</h1>" in page.text and '<a href="/people">People</a>' in page.text
    assert "No person yet." in (await client.get("/people")).text


# Every text slot holds what breaks naive quoting in Python, SQL or HTML; the tables are
# created by the migrator's own plan in a session with standard_conforming_strings off
# (a tenant may set that for its role): the literals must read the same either way.
HOSTILE = {
    "app": 'x"""; import os; os._exit(3) #\\ </title><script>alert(1)</script>',
    "entities": {"note": {"label": "</p><script>alert(2)</script>", "fields": {
        "title": {"type": "string", "label": "T'\"\\", "default": "it's \\'; DROP TABLE note; --\"\"\"\nline2\t\u2028"},
        "kind": {"type": "enum", "values": ["a'b", "c\\", '"""', "d\\'e"], "default": "c\\"},
        "body": {"type": "text", "default": "\\x00 \\\\ $$ $1 %s {0}"},
        # the extremes each slot accepts: bigint's bounds, 300-digit and 1e308 limits on a double
        "count": {"type": "integer", "min": -(2**63), "max": 2**63 - 1, "default": -(2**63)},
        "ratio": {"type": "number", "min": -int("9" * 300), "max": 1.7e308, "default": 1e300},
    }}},
    "pages": [{"path": "/", "title": '<b>"""</b>', "shows": "note"}],
}


def migrator_sql(spec: AppSpec) -> list[str]:
    from spec.plan import plan

    return [sql for step in plan(None, relational_model(spec)).steps for sql in step.sql]


async def test_a_hostile_spec_is_served_as_data(res, tenant):
    spec = load_app_spec(HOSTILE)
    fields = spec.entities["note"].fields
    async with serve(res, tenant, spec, migrator_sql, ("SET standard_conforming_strings = off",)) as (client, _):
        created = await client.post("/api/note", json={})
        assert created.status_code == 201, created.text
        row = created.json()
        assert (row["title"], row["kind"], row["body"]) == (fields["title"].default, "c\\", fields["body"].default)
        assert (row["count"], row["ratio"]) == (-(2**63), 1e300)
        big = await client.post("/api/note", json={"count": 2**63 - 1, "ratio": -1e299})
        assert big.status_code == 201 and (big.json()["count"], big.json()["ratio"]) == (2**63 - 1, -1e299)
        for value in fields["kind"].values:
            assert (await client.post("/api/note", json={"kind": value})).status_code == 201, value
        refused = await client.post("/api/note", json={"kind": "c"})
        assert refused.status_code == 422 and "kind" in refused.json()["fields"]
        page = await client.get("/")
        assert page.status_code == 200
        assert "<script>" not in page.text and "&lt;b&gt;&quot;&quot;&quot;&lt;/b&gt;" in page.text
        assert "&lt;/title&gt;&lt;script&gt;" in page.text

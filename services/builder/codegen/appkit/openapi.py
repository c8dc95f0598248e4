"""The app's own OpenAPI 3.1 document, derived from the data model in `app.py` (so an
edited app describes what it now serves), and a docs page rendered from it on the server.

Every spec string (title, labels, enum values, defaults) enters the document only as a
JSON value and the docs page only html-escaped. What is described is what `web.py` really
answers: the CRUD routes per entity with their request and row schemas (types, required,
limits, enum values, defaults, references), the 422 body `{"error": "invalid input",
"fields": {name: message}}`, the 404/409 body `{"error": text}`, the pages (text/html),
/healthz (200 or 503), /openapi.json and /docs. The document is built on first request
and kept (see `web.build_app`); nothing here runs at import or start-up."""

from __future__ import annotations

import json
from html import escape
from typing import Any

from .schema import Entity, Field, Page
from .validation import DEFAULT_LIMIT, INT64, MAX_LIMIT

OPENAPI_VERSION = "3.1.0"
NO_NUL = "^[^\\u0000]*$"  # PostgreSQL text cannot hold NUL; the app refuses it (422)
JSON = "application/json"
HTML = "text/html"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"description": description, "content": {JSON: {"schema": schema}}}
    if headers:
        out["headers"] = headers
    return out


def value_schema(f: Field) -> dict[str, Any]:
    """The JSON Schema of one non-null value of `f` (what `validation.check_value` takes)."""
    t = f.type
    if t in ("string", "text", "enum"):
        out: dict[str, Any] = {"type": "string"}
        if t == "enum":
            out["enum"] = list(f.values)
        else:
            out["pattern"] = NO_NUL
        if f.min_length is not None:
            out["minLength"] = f.min_length
        if f.max_length is not None:
            out["maxLength"] = f.max_length
        return out
    if t in ("integer", "reference"):
        low = max(INT64[0], 1) if t == "reference" else INT64[0]
        out = {"type": "integer", "format": "int64",
               "minimum": low if f.min is None else max(low, f.min),
               "maximum": INT64[1] if f.max is None else min(INT64[1], f.max)}
        if t == "reference":
            out["description"] = f"The id of a {f.to} row (GET /api/{f.to}/{{row_id}})."
            out["x-references"] = f.to
        return out
    if t == "number":
        out = {"type": "number", "format": "double"}
        if f.min is not None:
            out["minimum"] = f.min
        if f.max is not None:
            out["maximum"] = f.max
        return out
    if t == "boolean":
        return {"type": "boolean"}
    if t == "date":
        return {"type": "string", "format": "date"}
    if t == "datetime":
        return {"type": "string", "format": "date-time"}
    raise ValueError(f"unknown field type {t!r}")


def _nullable(schema: dict[str, Any], nullable: bool) -> dict[str, Any]:
    if nullable:
        schema = {**schema, "type": [schema["type"], "null"]}
        if "enum" in schema:
            schema["enum"] = [*schema["enum"], None]
    return schema


def _property(f: Field, *, nullable: bool, default: bool) -> dict[str, Any]:
    out = _nullable(value_schema(f), nullable)
    if f.label:
        out["title"] = f.label
    if default and f.default is not None:
        out["default"] = f.default
    return out


def entity_schemas(entity: Entity) -> dict[str, dict[str, Any]]:
    """`<name>.Row` (what every read and write returns), `<name>.Create` (POST body),
    `<name>.Update` (PATCH body), `<name>.List` (GET collection)."""
    name, fields = entity.name, entity.fields
    title = entity.label or name
    stamp = {"type": "string", "format": "date-time"}
    row = {"type": "object", "title": title, "additionalProperties": False,
           "required": ["id", *(f.name for f in fields), "created_at", "updated_at"],
           "properties": {"id": {"type": "integer", "format": "int64", "minimum": 1, "maximum": INT64[1]},
                          **{f.name: _property(f, nullable=not f.required, default=False) for f in fields},
                          "created_at": stamp, "updated_at": stamp}}
    writable = {f.name: _property(f, nullable=not f.required, default=True) for f in fields}
    create = {"type": "object", "title": f"new {title}", "additionalProperties": False, "properties": writable}
    if needed := [f.name for f in fields if f.required and f.default is None]:
        create["required"] = needed
    update = {"type": "object", "title": f"changes to a {title}", "additionalProperties": False,
              "minProperties": 1, "properties": writable}
    listed = {"type": "object", "additionalProperties": False, "required": ["items", "limit", "offset"],
              "properties": {"items": {"type": "array", "items": _ref(f"{name}.Row")},
                             "limit": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT},
                             "offset": {"type": "integer", "minimum": 0, "maximum": INT64[1]}}}
    return {f"{name}.Row": row, f"{name}.Create": create, f"{name}.Update": update, f"{name}.List": listed}


COMMON_SCHEMAS: dict[str, dict[str, Any]] = {
    "Error": {"type": "object", "additionalProperties": False, "required": ["error"],
              "properties": {"error": {"type": "string"}}},
    "ValidationError": {
        "type": "object", "additionalProperties": False, "required": ["error", "fields"],
        "description": "Each field (or query parameter, or `body`) that is wrong, with what is wrong with it.",
        "properties": {"error": {"const": "invalid input"},
                       "fields": {"type": "object", "minProperties": 1, "additionalProperties": {"type": "string"}}}},
    "Health": {"type": "object", "additionalProperties": False, "required": ["version", "database"],
               "properties": {"version": {"type": "integer", "description": "The release being served"},
                              "database": {"type": "string", "description": "`ok`, or the failure's kind"}}},
}

_INVALID = _json(_ref("ValidationError"), "Invalid input: names each wrong field")


def _not_found(name: str) -> dict[str, Any]:
    return _json(_ref("Error"), f"No {name} with this id")


def entity_paths(entity: Entity) -> dict[str, dict[str, Any]]:
    name = entity.name
    row = _ref(f"{name}.Row")
    filters = [{"name": "limit", "in": "query", "required": False,
                "schema": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT}},
               {"name": "offset", "in": "query", "required": False,
                "schema": {"type": "integer", "minimum": 0, "maximum": INT64[1], "default": 0}},
               {"name": "id", "in": "query", "required": False, "description": "Only the row with this id",
                "schema": value_schema(Field("id", "reference"))}]
    filters += [{"name": f.name, "in": "query", "required": False, "description": f"Only rows whose {f.name} "
                 "equals this value", "schema": value_schema(f)} for f in entity.fields]
    row_id = [{"name": "row_id", "in": "path", "required": True, "description": f"The {name}'s id (any other "
               "text is a 404)", "schema": {"type": "integer", "format": "int64", "minimum": 1,
                                            "maximum": INT64[1]}}]
    x_cache = {"X-Cache": {"description": "`hit` when the list came from the cache",
                           "schema": {"type": "string", "enum": ["hit", "miss"]}}}
    body = lambda kind: {"required": True, "content": {JSON: {"schema": _ref(f"{name}.{kind}")}}}  # noqa: E731
    tags = [name]
    return {
        f"/api/{name}": {
            "get": {"operationId": f"list_{name}", "tags": tags, "summary": f"List {name} rows (by id)",
                    "parameters": filters,
                    "responses": {"200": _json(_ref(f"{name}.List"), "A page of rows", x_cache), "422": _INVALID}},
            "post": {"operationId": f"create_{name}", "tags": tags, "summary": f"Create a {name}",
                     "requestBody": body("Create"),
                     "responses": {"201": _json(row, "The created row"), "422": _INVALID}},
        },
        f"/api/{name}/{{row_id}}": {
            "parameters": row_id,
            "get": {"operationId": f"get_{name}", "tags": tags, "summary": f"Read one {name}",
                    "responses": {"200": _json(row, "The row"), "404": _not_found(name)}},
            "patch": {"operationId": f"update_{name}", "tags": tags, "summary": f"Change some fields of a {name}",
                      "requestBody": body("Update"),
                      "responses": {"200": _json(row, "The changed row"), "404": _not_found(name),
                                    "422": _INVALID}},
            "delete": {"operationId": f"delete_{name}", "tags": tags, "summary": f"Delete a {name}",
                       "responses": {"204": {"description": "Deleted"}, "404": _not_found(name),
                                     "409": _json(_ref("Error"), "Other rows still refer to it")}},
        },
    }


def _html(description: str) -> dict[str, Any]:
    return {"description": description, "content": {HTML: {"schema": {"type": "string"}}}}


def document(title: str, entities: list[Entity], pages: list[Page], *, version: str = "0",
             docs_page: bool = True) -> dict[str, Any]:
    """The OpenAPI 3.1 document of an app built by `build_app(title, entities, pages)`."""
    paths: dict[str, Any] = {
        "/healthz": {"get": {"operationId": "healthz", "tags": ["platform"], "summary": "Health",
                             "responses": {"200": _json(_ref("Health"), "The database answers"),
                                           "503": _json(_ref("Health"), "The database does not answer")}}},
        "/openapi.json": {"get": {"operationId": "openapi", "tags": ["platform"], "summary": "This document",
                                  "responses": {"200": _json({"type": "object"}, "The OpenAPI document")}}},
    }
    if docs_page:
        paths["/docs"] = {"get": {"operationId": "docs", "tags": ["platform"], "summary": "This document as a page",
                                  "responses": {"200": _html("The API reference")}}}
    for i, page in enumerate(pages):
        paths[page.path] = {"get": {"operationId": f"page_{i}", "tags": ["pages"], "summary": page.title,
                                    "description": f"Lists the first 100 {page.shows} rows.",
                                    "responses": {"200": _html("The page")}}}
    schemas = dict(COMMON_SCHEMAS)
    tags = []
    for entity in entities:
        paths.update(entity_paths(entity))
        schemas.update(entity_schemas(entity))
        tags.append({"name": entity.name, **({"description": entity.label} if entity.label else {})})
    tags += [{"name": "pages", "description": "Server-rendered HTML"},
             {"name": "platform", "description": "Health and this document"}]
    return {"openapi": OPENAPI_VERSION,
            "info": {"title": title, "version": version,
                     "description": "Generated by hostplane from the app's data model."},
            "paths": paths, "components": {"schemas": schemas}, "tags": tags}


def document_bytes(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


# --- the docs page: the document rendered as plain HTML (no script, no external resource)

_STYLE = ("body{font-family:system-ui,sans-serif;max-width:70em;margin:1em auto;padding:0 1em}"
          "pre{background:#f5f5f5;padding:.5em;overflow-x:auto}table{border-collapse:collapse}"
          "td,th{border:1px solid #ccc;padding:.2em .5em;text-align:left;vertical-align:top}"
          ".m{font-weight:bold;text-transform:uppercase}")
DOCS_CSP = "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'"


def _code(value: Any) -> str:
    return f"<pre>{escape(json.dumps(value, ensure_ascii=False, indent=2))}</pre>"


def _inline(value: Any) -> str:
    return f"<code>{escape(json.dumps(value, ensure_ascii=False, separators=(', ', ': ')))}</code>"


def _schema_link(schema: dict[str, Any]) -> str:
    ref = schema.get("$ref", "")
    if ref.startswith("#/components/schemas/"):
        name = ref.removeprefix("#/components/schemas/")
        return f'<a href="#schema-{escape(name)}">{escape(name)}</a>'
    return _inline(schema)


def render_docs(doc: dict[str, Any]) -> str:
    info = doc["info"]
    out = [f'<!doctype html><html><head><meta charset="utf-8"><title>{escape(info["title"])} · API</title>'
           f'<style>{_STYLE}</style></head><body><h1>{escape(info["title"])} · API</h1>'
           f'<p>{escape(info["description"])} Release {escape(str(info["version"]))}. '
           f'OpenAPI {escape(doc["openapi"])}: <a href="/openapi.json">/openapi.json</a>.</p><h2>Routes</h2>']
    for path, item in doc["paths"].items():
        shared = item.get("parameters", [])
        for method, op in item.items():
            if method == "parameters":
                continue
            out.append(f'<h3 id="op-{escape(op["operationId"])}"><span class="m">{escape(method)}</span> '
                       f'<code>{escape(path)}</code> · {escape(op.get("summary", ""))}</h3>')
            if op.get("description"):
                out.append(f"<p>{escape(op['description'])}</p>")
            params = [*shared, *op.get("parameters", [])]
            if params:
                out.append("<table><tr><th>parameter</th><th>in</th><th>required</th><th>schema</th></tr>")
                out += [f"<tr><td><code>{escape(p['name'])}</code></td><td>{escape(p['in'])}</td>"
                        f"<td>{'yes' if p.get('required') else 'no'}</td><td>{_inline(p['schema'])}</td></tr>"
                        for p in params]
                out.append("</table>")
            if body := op.get("requestBody"):
                for media, content in body["content"].items():
                    out.append(f"<p>Body ({escape(media)}): {_schema_link(content['schema'])}</p>")
            out.append("<table><tr><th>status</th><th>meaning</th><th>body</th></tr>")
            for status, response in op["responses"].items():
                bodies = " ".join(f"{escape(media)} {_schema_link(c['schema'])}"
                                  for media, c in response.get("content", {}).items()) or "none"
                out.append(f"<tr><td>{escape(status)}</td><td>{escape(response['description'])}</td>"
                           f"<td>{bodies}</td></tr>")
            out.append("</table>")
    out.append("<h2>Schemas</h2>")
    for name, schema in doc["components"]["schemas"].items():
        out.append(f'<h3 id="schema-{escape(name)}">{escape(name)}</h3>{_code(schema)}')
    out.append("</body></html>")
    return "".join(out)

"""App specs for tests: `spec()` builds a one-entity spec, and `BAD_SPECS` holds invalid
specs with the exact problem the loader reports for each (the unit tests check the loader,
the API tests that the same problems reach a client)."""

from __future__ import annotations

import textwrap

from spec.load import MAX_SPEC_BYTES


def spec(fields: str, extra: str = "") -> str:
    """A one-entity spec with `fields` (YAML flow lines, indented under fields:)."""
    body = "\n".join(f"      {line}" for line in textwrap.dedent(fields).strip().splitlines())
    return f"app: T\nentities:\n  task:\n    fields:\n{body}\n{extra}"


BAD_SPECS = [
    # (spec, expected problem — exact text of one problem)
    (spec("owner: {type: reference, to: persn}"),
     "entities.task.fields.owner.to: unknown entity 'persn' (entities: task)"),
    (spec("title: {type: strin}"),
     "entities.task.fields.title.type: unknown field type 'strin'; use one of: string, text, integer, number, "
     "boolean, date, datetime, enum, reference"),
    (spec("title: {required: true}"),
     "entities.task.fields.title: a field needs a type: one of string, text, integer, number, boolean, date, "
     "datetime, enum, reference"),
    (spec("title: {type: string, maxlength: 3}"),
     "entities.task.fields.title.maxlength: unknown key; allowed here: required, label, type, min_length, "
     "max_length, default"),
    (spec("Title: {type: string}"),
     "entities.task.fields.Title: 'Title' is not a valid name: use 1-41 lowercase letters, digits or "
     "underscores, starting with a letter"),
    (spec("select: {type: string}"),
     "entities.task.fields.select: 'select' is a reserved word (an SQL keyword); choose another name"),
    (spec("class: {type: string}"),
     "entities.task.fields.class: 'class' is a reserved word (a Python keyword); choose another name"),
    (spec("id: {type: integer}"),
     "entities.task.fields.id: 'id' is a reserved word (defined by the platform); choose another name"),
    (spec("pg_x: {type: integer}"),
     "entities.task.fields.pg_x: 'pg_x' is reserved (names starting with 'pg_' belong to PostgreSQL)"),
    (spec(f"{'a' * 42}: {{type: string}}"),
     f"entities.task.fields.{'a' * 42}: '{'a' * 42}' is not a valid name: use 1-41 lowercase letters, digits "
     "or underscores, starting with a letter"),
    (spec("n: {type: integer, min: 5, max: 1}"), "entities.task.fields.n.min: 5 is greater than max (1)"),
    (spec("n: {type: integer, max: 5, default: 9}"), "entities.task.fields.n.default: 9 is above max (5)"),
    (spec("n: {type: number, min: 0.5, default: 0.1}"), "entities.task.fields.n.default: 0.1 is below min (0.5)"),
    (spec("n: {type: integer, default: true}"),
     "entities.task.fields.n.default: must be a valid integer (got a boolean)"),
    (spec("n: {type: integer, default: 1.5}"),
     "entities.task.fields.n.default: must be a valid integer (got a number)"),
    (spec("s: {type: string, min_length: 5, max_length: 2}"),
     "entities.task.fields.s.min_length: 5 is greater than max_length (2)"),
    (spec("s: {type: string, max_length: 2, default: abc}"),
     "entities.task.fields.s.default: is 3 characters, longer than max_length (2)"),
    (spec("s: {type: string, max_length: 0}"),
     "entities.task.fields.s.max_length: must be greater than or equal to 1 (got a number)"),
    (spec("r: {type: enum, values: [a, a]}"), "entities.task.fields.r.values[1]: 'a' is listed twice"),
    (spec("r: {type: enum, values: [a, b], default: c}"),
     "entities.task.fields.r.default: 'c' is not one of the values (a, b)"),
    (spec("r: {type: enum, values: []}"), "entities.task.fields.r.values: has 0 entries; at least 1"),
    (spec("r: {type: enum}"), "entities.task.fields.r.values: is required"),
    (spec("o: {type: reference}"), "entities.task.fields.o.to: is required"),
    (spec("d: {type: date, default: tomorrow}"),
     "entities.task.fields.d.default: must be a valid date or datetime, input is too short (got text)"),
    (spec("b: {type: boolean, required: maybe}"),
     "entities.task.fields.b.required: must be a valid boolean (got text)"),
    (spec("b: [boolean]"), "entities.task.fields.b: must be a mapping (key: value) (got a list)"),
    ("app: T\nentities:\n  task:\n    fields: {}\n", "entities.task.fields: has 0 entries; at least 1"),
    ("app: T\nentities: {}\n", "entities: has 0 entries; at least 1"),
    ("app: T\n", "entities: is required"),
    ("entities: {t: {fields: {a: {type: string}}}}\n", "app: is required"),
    ("app: T\nentities: [task]\n", "entities: must be a mapping (key: value) (got a list)"),
    ("app: T\nentities: {t: {fields: {a: {type: string}}}}\ntheme: dark\n",
     "theme: unknown key; allowed here: app, entities, pages, static"),
    ("app: T\nentities: {t: {colour: red, fields: {a: {type: string}}}}\n",
     "entities.t.colour: unknown key; allowed here: label, fields"),
    ("app: T\nentities: {t: {fields: {a: {type: string}}}}\npages:\n  - {path: /, title: Home, shows: u}\n",
     "pages[0].shows: unknown entity 'u' (entities: t)"),
    ("app: T\nentities: {t: {fields: {a: {type: string}}}}\npages:\n  - {path: /, title: A, shows: t}\n"
     "  - {path: /, title: B, shows: t}\n", "pages[1].path: '/' is already used by pages[0]"),
    ("app: T\nentities: {t: {fields: {a: {type: string}}}}\npages:\n  - {path: /api/t, title: A, shows: t}\n",
     "pages[0].path: '/api/t' is reserved by the platform (/api, /static, /healthz, /runtime)"),
    ("app: T\nentities: {t: {fields: {a: {type: string}}}}\npages:\n  - {path: Home, title: A, shows: t}\n",
     "pages[0].path: String should match pattern '^/(?:[a-z0-9][a-z0-9_-]*(?:/[a-z0-9][a-z0-9_-]*)*)?$'"),
    ("app: T\nentities: {t: {fields: {a: {type: string}}}}\nstatic: ../../etc\n",
     "static: '../../etc' must stay inside the spec's folder (no '.' or '..' parts)"),
    ("app: T\nentities:\n  a: {fields: {b: {type: reference, to: b, required: true}}}\n"
     "  b: {fields: {a: {type: reference, to: a, required: true}}}\n",
     "entities.a.fields.b.required: required references form a cycle (a.b → b.a → a); make one of them optional"),
    ("app: T\nentities:\n  a: {fields: {me: {type: reference, to: a, required: true}}}\n",
     "entities.a.fields.me.required: required references form a cycle (a.me → a); make one of them optional"),
    # not a spec at all
    ("", "spec: is empty"),
    ("- a\n- b\n", "spec: must be a mapping with app, entities and pages, got a list"),
    ("app: [unclosed\n", "spec: invalid YAML at line 2, column 1: expected ',' or ']', but got '<stream end>'"),
    ('{"app": "T",}', "spec: invalid JSON at line 1, column 13: Expecting property name enclosed in double quotes"),
    ("a: &x [1, 2]\nb: *x\n", "spec: YAML aliases (*name) are not accepted (line 2); write values out"),
    ("base: &b {type: string}\nx:\n  <<: *b\n", "spec: YAML aliases (*name) are not accepted (line 3); write values out"),
    ("app: T\napp: U\n", "spec: key 'app' appears twice in one mapping (line 2)"),
    ('{"app": "T", "app": "U"}', "spec: key 'app' appears twice in one object"),
    (spec("yes: {type: boolean}"), "spec: key 'yes' at line 5 is read as a boolean, not a name; quote it"),
    ("app: T\n--- \napp: U\n", "spec: invalid YAML at line 2, column 1: but found another document"),
    (b"app: \xff\n", "spec: is not UTF-8 text (byte 5)"),
    ("[" * 50_000, "spec: nested too deeply"),
    ("app: " + "x" * MAX_SPEC_BYTES, f"spec: is {MAX_SPEC_BYTES + 5} bytes; the limit is {MAX_SPEC_BYTES}"),
]

"""App specs for tests: `spec()` builds a one-entity spec, and `BAD_SPECS` holds invalid
specs with the exact problem the loader reports for each (the unit tests check the loader,
the API tests that the same problems reach a client). `shape()` fills every text slot of a
spec: from `PLAIN`, `HOSTILE` or hypothesis' `SLOTS` (run with `SETTINGS`), for the
"specs are data" property tests of the generated app and of its OpenAPI document."""

from __future__ import annotations

import textwrap
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from contracts.app_spec import RESERVED_NAMES
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


# --- every text slot of a spec, for the property tests -------------------------------------

SETTINGS = settings(max_examples=40, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# Slots the model refuses control characters in (labels, titles, enum values): everything else.
NASTY = ['"""', "'''", '"', "'", "\\", "\\'", '\\"', "\\N{BULLET}", "{}", "{0}", "%s", "#", "\x85", "\u2028",
         "\u202e", "\ufeff", "<script>", "</title>", "&amp;", "`", "$(", "\U0001f600", "é", "\x80", "\x9b"]
LABEL_CHARS = st.characters(codec="utf-8", exclude_characters="".join(map(chr, [*range(0x20), 0x7f])))
DEFAULT_CHARS = st.characters(codec="utf-8", exclude_characters="\x00")


def text(chars: st.SearchStrategy[str], max_pieces: int) -> st.SearchStrategy[str]:
    """Random text with the known-dangerous pieces mixed in."""
    safe = [n for n in NASTY if all(not (ord(c) < 0x20 or ord(c) == 0x7f) for c in n)] if chars is LABEL_CHARS \
        else NASTY
    piece = st.one_of(st.sampled_from(safe), st.sampled_from(safe), st.text(chars, min_size=1, max_size=8))
    return st.lists(piece, min_size=1, max_size=max_pieces).map("".join)


LABEL = text(LABEL_CHARS, 8).filter(lambda s: len(s) <= 200)
ENUM_VALUE = text(LABEL_CHARS, 4).filter(lambda s: len(s) <= 64)
DEFAULT = text(DEFAULT_CHARS, 10) | st.just("")  # newlines, CR, tabs, C1 controls: all allowed in a default
NAME = st.from_regex(r"[a-z][a-z0-9_]{0,12}", fullmatch=True).filter(
    lambda s: s not in RESERVED_NAMES and not s.startswith("pg_"))
INT = st.integers(-(2**63), 2**63 - 1)
FLOAT = st.floats(allow_nan=False, allow_infinity=False)


def shape(t: dict[str, Any]) -> dict[str, Any]:
    """One spec with every kind of text slot, filled from `t`."""
    e1, e2 = t["entities"]
    f = t["fields"]
    return {
        "app": t["app"],
        "entities": {
            e1: {"label": t["entity_label"], "fields": {
                f[0]: {"type": "string", "label": t["labels"][0], "default": t["string_default"], "max_length": 10_000},
                f[1]: {"type": "text", "label": t["labels"][1], "default": t["text_default"]},
                f[2]: {"type": "enum", "label": t["labels"][2], "values": t["values"], "default": t["values"][-1]},
                f[3]: {"type": "integer", "label": t["labels"][3], "min": t["ints"][0], "max": t["ints"][2],
                       "default": t["ints"][1]},
                f[4]: {"type": "number", "label": t["labels"][4], "default": t["float"]},
                f[5]: {"type": "boolean", "label": t["labels"][5], "default": True},
                f[6]: {"type": "date", "label": t["labels"][6], "default": "2026-01-02"},
                f[7]: {"type": "datetime", "label": t["labels"][7], "default": "2026-01-02T03:04:05+00:00"},
                f[8]: {"type": "reference", "label": t["labels"][8], "to": e2},
            }},
            e2: {"label": t["entity_label2"], "fields": {f[0]: {"type": "string", "required": True}}},
        },
        "pages": [{"path": "/", "title": t["page_titles"][0], "shows": e1},
                  {"path": "/second-page", "title": t["page_titles"][1], "shows": e2}],
        "static": "static/",
    }


PLAIN = {"app": "A", "entities": ["one", "two"], "fields": [f"f{i}" for i in range(9)], "entity_label": "L",
         "entity_label2": "M", "labels": ["l"] * 9, "string_default": "d", "text_default": "d",
         "values": ["a", "b", "c"], "ints": [-5, 0, 5], "float": 1.5, "page_titles": ["P", "Q"]}

# Every slot at once holding what breaks naive quoting, whatever the random draws do.
HOSTILE_LABEL = 'x"""\'\'\'\\"</title><script>alert(1)</script><!--&amp;\u202e\x85'
HOSTILE = {**PLAIN, "app": HOSTILE_LABEL, "entity_label": HOSTILE_LABEL, "entity_label2": HOSTILE_LABEL + "2",
           "labels": [HOSTILE_LABEL + str(i) for i in range(9)], "string_default": '"""\n\r\\0\t',
           "text_default": "'''\\\n#", "values": ['"""', "'''", "\\"], "ints": [-(2**63), 0, 2**63 - 1],
           "float": -1.7e308, "page_titles": [HOSTILE_LABEL, "<b>"]}

SLOTS = st.fixed_dictionaries({
    "app": LABEL, "entities": st.lists(NAME, min_size=2, max_size=2, unique=True),
    "fields": st.lists(NAME, min_size=9, max_size=9, unique=True), "entity_label": LABEL, "entity_label2": LABEL,
    "labels": st.lists(LABEL, min_size=9, max_size=9), "string_default": DEFAULT, "text_default": DEFAULT,
    "values": st.lists(ENUM_VALUE, min_size=3, max_size=3, unique=True),
    "ints": st.lists(INT, min_size=3, max_size=3).map(sorted), "float": FLOAT,
    "page_titles": st.lists(LABEL, min_size=2, max_size=2),
})

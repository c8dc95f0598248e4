"""Specs are data: whatever text a spec holds, the generated app has the statements of a
plain spec, with that text only inside string constants (the property test below), and
the pages it renders have the tags of a plain page."""

from __future__ import annotations

import ast
import copy
import json
from html.parser import HTMLParser
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from contracts.app_spec import RESERVED_NAMES
from spec.load import load_app_spec
from spec.problems import InvalidAppSpec
from services.builder.codegen import generate, package
from services.builder.codegen.appkit.pages import render_page
from services.builder.codegen.appkit.schema import Entity, Field, Page

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


class _Normalise(ast.NodeTransformer):
    """Every string and number constant becomes a placeholder: what remains is structure."""

    def visit_Constant(self, node: ast.Constant) -> ast.AST:
        if isinstance(node.value, str):
            return ast.Constant("S")
        if isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
            return ast.Constant(0)
        return node

    def visit_UnaryOp(self, node: ast.UnaryOp) -> ast.AST:  # repr(-5) parses as -(5)
        if isinstance(node.op, ast.USub) and isinstance(node.operand, ast.Constant):
            return ast.Constant(0)
        return self.generic_visit(node)


def structure(source: str) -> str:
    return ast.dump(_Normalise().visit(ast.parse(source)))


def strings(source: str) -> set[str]:
    return {n.value for n in ast.walk(ast.parse(source)) if isinstance(n, ast.Constant) and isinstance(n.value, str)}


PLAIN_APP = generate(load_app_spec(shape(PLAIN)))["app.py"]


@SETTINGS
@given(SLOTS)
@example(HOSTILE)
def test_any_text_in_any_slot_generates_the_statements_of_a_plain_spec(slots):
    data = shape(slots)
    spec = load_app_spec(data)
    files = generate(spec)
    source = files["app.py"]
    compile(source, "app.py", "exec", dont_inherit=True)
    assert structure(source) == structure(PLAIN_APP)
    # ...and each value arrives intact, as a constant (repr round-trips it).
    found = strings(source)
    texts = [slots["app"], slots["entity_label"], slots["entity_label2"], *slots["labels"], slots["string_default"],
             slots["text_default"], *slots["values"], *slots["page_titles"], *slots["entities"], *slots["fields"]]
    assert set(texts) <= found
    assert load_app_spec(files["spec.json"]) == spec
    assert load_app_spec(spec.canonical_json()) == spec  # the stored form reads back the same


@SETTINGS
@given(SLOTS)
@example(HOSTILE)
def test_any_text_renders_the_tags_of_a_plain_page(slots):
    def page_html(s: dict[str, Any]) -> str:
        fields = tuple(Field(n, "string", label=lbl) for n, lbl in zip(s["fields"], s["labels"]))
        entity = Entity(s["entities"][0], fields, label=s["entity_label"])
        pages = [Page("/", s["page_titles"][0], entity.name), Page("/second-page", s["page_titles"][1], entity.name)]
        row = {"id": 1, **{f.name: s["string_default"] for f in fields}}
        return render_page(s["app"], pages[0], entity, [row], pages, ("/static/style.css",))

    assert tags(page_html(slots)) == tags(page_html(PLAIN))


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.seen: list[tuple[str, tuple[tuple[str, str | None], ...]] | str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.seen.append((tag, tuple((k, v if k != "href" or v.startswith("/static") else "/") for k, v in attrs)))

    def handle_endtag(self, tag: str) -> None:
        self.seen.append("/" + tag)

    def handle_comment(self, data: str) -> None:
        self.seen.append("comment")


def tags(html: str) -> list[Any]:
    parser = _Tags()
    parser.feed(html)
    parser.close()
    return parser.seen


def test_a_title_that_closes_the_docstring_stays_a_string():
    attack = 'x"""\nimport os; os.system("touch /tmp/pwned")\n"""'
    spec = load_app_spec({**shape(PLAIN), "app": attack.replace("\n", " ")})
    source = generate(spec)["app.py"]
    assert structure(source) == structure(PLAIN_APP)
    module = ast.parse(source)
    assert isinstance(module.body[0], ast.Expr) and "generated by hostplane" in module.body[0].value.value
    assert {n.id for n in ast.walk(module) if isinstance(n, ast.Name)} <= {
        "Entity", "Field", "Page", "build_app", "TITLE", "ENTITIES", "PAGES", "app"}
    assert package(generate(spec))  # compiles and packs


@pytest.mark.parametrize("slot", ["app", "label", "values", "page"])
def test_control_characters_in_a_label_slot_are_refused_at_their_path(slot):
    data = copy.deepcopy(shape(PLAIN))
    entity = data["entities"]["one"]
    where = {"app": "app", "label": "entities.one.fields.f0.label", "values": "entities.one.fields.f2.values[0]",
             "page": "pages[0].title"}[slot]
    if slot == "app":
        data["app"] = "a\nb"
    elif slot == "label":
        entity["fields"]["f0"]["label"] = "a\x1bb"
    elif slot == "values":
        entity["fields"]["f2"]["values"][0] = "a\x00"
    else:
        data["pages"][0]["title"] = "a\rb"
    with pytest.raises(InvalidAppSpec) as caught:
        load_app_spec(data)
    assert [p.path for p in caught.value.problems] == [where]
    assert "control characters" in caught.value.problems[0].message


@pytest.mark.parametrize("text, path", [
    ('{"app": "x", "entities": {"t": {"fields": {"a": {"type": "string", "default": "a\\u0000b"}}}}}',
     "entities.t.fields.a.default"),
    ('{"app": "x", "entities": {"t": {"fields": {"a": {"type": "text", "default": "\\u0000"}}}}}',
     "entities.t.fields.a.default"),
])
def test_a_nul_in_a_default_is_refused(text, path):
    """A PostgreSQL text column cannot hold NUL; the app refuses it in rows too."""
    with pytest.raises(InvalidAppSpec) as caught:
        load_app_spec(text)
    assert [(p.path, p.message) for p in caught.value.problems] == [(path, "must not contain NUL characters")]


@pytest.mark.parametrize("text, path", [
    ('{"app": "x\\ud800", "entities": {"t": {"fields": {"a": {"type": "string"}}}}}', "app"),
    ('{"app": "x", "entities": {"t": {"fields": {"a": {"type": "string", "default": "\\udfff"}}}}}',
     "entities.t.fields.a.default"),
    ('{"app": "x", "entities": {"t": {"fields": {"a": {"type": "enum", "values": ["\\ud83d"]}}}}}',
     "entities.t.fields.a.values[0]"),
    ('app: x\nentities:\n  t:\n    fields:\n      a: {type: string, label: "\\ud800"}\n', "entities.t.fields.a.label"),
])
def test_an_unpaired_surrogate_is_refused_at_its_path(text, path):
    """JSON and YAML escapes can spell a lone surrogate, which no UTF-8 text can carry: it
    would fail later, encoding the stored spec (a 500)."""
    with pytest.raises(InvalidAppSpec) as caught:
        load_app_spec(text)
    assert [p.path for p in caught.value.problems] == [path]
    assert "unpaired surrogate" in caught.value.problems[0].message
    json.dumps(str(caught.value), ensure_ascii=False).encode()  # the error itself is sendable


def test_a_key_that_does_not_print_is_quoted_in_the_path():
    with pytest.raises(InvalidAppSpec) as caught:
        load_app_spec({"app": "x", "entities": {"t\n": {"fields": {"a": {"type": "string"}}}}})
    assert caught.value.problems[0].path == "entities['t\\n']"

"""The app spec: what a tenant hands over (the visual designer's export), as a pydantic model.

    app: Tasks
    entities:
      task:
        fields:
          title: {type: string, required: true, max_length: 200}
          owner: {type: reference, to: person}
      person:
        fields:
          name: {type: string, required: true}
    pages:
      - {path: /, title: My tasks, shows: task}
    static: static/

`load_app_spec` reads YAML or JSON text (or an already parsed object), refuses anything
it would be unsafe or ambiguous to build (aliases, duplicate keys, > MAX_SPEC_BYTES) and
raises `InvalidAppSpec` listing every problem with its exact path, e.g.
`entities.task.fields.owner.to: unknown entity 'persn'`. The API stores the spec's
canonical JSON under its digest; events carry only `spec_ref(digest)`.

Every name is a whole-string match (no "task\n"); every number fits the column it
becomes (bigint, double precision), and one too long to convert is a problem at its path
like any other; text is whatever Unicode the slot allows (no control characters in
labels, no NUL in defaults, no unpaired surrogates anywhere).

    python -m contracts.app_spec [--check]   # (re)write / check app_spec.schema.json
"""

from __future__ import annotations

import hashlib
import json
import keyword
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, StrictBool, StrictInt
from pydantic import ValidationError, model_validator
from pydantic_core import PydanticCustomError

MAX_SPEC_BYTES = 256 * 1024
MAX_ENTITIES = 100
MAX_FIELDS = 100
MAX_PAGES = 100
MAX_PROBLEMS = 50
SCHEMA_FILE = Path(__file__).resolve().parent / "app_spec.schema.json"
SPEC_REF_PREFIX = "spec:sha256:"

IDENTIFIER_PATTERN = r"^[a-z][a-z0-9_]{0,40}$"
_IDENTIFIER_RE = re.compile(IDENTIFIER_PATTERN)  # used with fullmatch (see check_identifier)
# A whole number in spec text longer than this is refused before it is converted (the
# values that fit any slot have at most 309 digits; Python refuses > 4300 with ValueError).
MAX_NUMBER_CHARS = 400
DOUBLE_MAX = sys.float_info.max
# PostgreSQL's reserved key words (pg_get_keywords() catcode R and T): unusable as bare names.
SQL_KEYWORDS = frozenset("""
    all analyse analyze and any array as asc asymmetric authorization binary both case cast check
    collate collation column concurrently constraint create cross current_catalog current_date
    current_role current_schema current_time current_timestamp current_user default deferrable
    desc distinct do else end except false fetch for foreign freeze from full grant group having
    ilike in initially inner intersect into is isnull join lateral leading left like limit
    localtime localtimestamp natural not notnull null offset on only or order outer overlaps
    placing primary references returning right select session_user similar some symmetric
    system_user table tablesample then to trailing true union unique user using variadic verbose
    when where window with
""".split())
PYTHON_KEYWORDS = frozenset(k for k in keyword.kwlist if k.islower())
# Columns and names every generated app defines itself.
PLATFORM_NAMES = frozenset({"id", "created_at", "updated_at", "tenant", "tenant_id"})
RESERVED_NAMES = SQL_KEYWORDS | PYTHON_KEYWORDS | PLATFORM_NAMES
RESERVED_PAGE_PREFIXES = ("/api", "/static", "/healthz", "/runtime")

FIELD_TYPES = ("string", "text", "integer", "number", "boolean", "date", "datetime", "enum", "reference")


def check_identifier(value: str) -> str:
    # fullmatch: `re.match` with `$` would accept a trailing newline ("task\n").
    if not _IDENTIFIER_RE.fullmatch(value):
        raise ValueError(
            f"{value!r} is not a valid name: use 1-41 lowercase letters, digits or underscores, "
            "starting with a letter"
        )
    if value.startswith("pg_"):
        raise ValueError(f"{value!r} is reserved (names starting with 'pg_' belong to PostgreSQL)")
    if value in RESERVED_NAMES:
        why = ("an SQL keyword" if value in SQL_KEYWORDS else "a Python keyword" if value in PYTHON_KEYWORDS
               else "defined by the platform")
        raise ValueError(f"{value!r} is a reserved word ({why}); choose another name")
    return value


Identifier = Annotated[
    str,
    AfterValidator(check_identifier),
    Field(json_schema_extra={"pattern": IDENTIFIER_PATTERN, "not": {"enum": sorted(RESERVED_NAMES)}}),
]
TEXT_PATTERN = r"^[^\x00-\x1f\x7f]+$"
DEFAULT_TEXT_PATTERN = r"^[^\x00]*$"
Label = Annotated[str, Field(min_length=1, max_length=200, pattern=TEXT_PATTERN)]
EnumValue = Annotated[str, Field(min_length=1, max_length=64, pattern=TEXT_PATTERN)]
Int64 = Annotated[StrictInt, Field(ge=-(2**63), le=2**63 - 1)]


def _double_range(value: Any) -> Any:
    """A whole number a `number` field (double precision) cannot hold is refused here:
    pydantic would raise OverflowError converting it (a 500, not a problem report)."""
    if isinstance(value, int) and not isinstance(value, bool) and not -DOUBLE_MAX <= value <= DOUBLE_MAX:
        raise ValueError(f"is out of range: a number must lie between -{DOUBLE_MAX:.4g} and {DOUBLE_MAX:.4g}")
    return value


Number = Annotated[StrictInt | float, BeforeValidator(_double_range), Field(allow_inf_nan=False)]
# A default is stored in a PostgreSQL text column, which cannot hold NUL.
DefaultText = Annotated[str, Field(pattern=DEFAULT_TEXT_PATTERN)]


def _problem(key: str, message: str) -> PydanticCustomError:
    """A problem found by a model validator, reported at `key` inside the model."""
    return PydanticCustomError("spec", "{message}", {"subpath": key, "message": message})


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _FieldBase(_Strict):
    required: StrictBool = False
    label: Label | None = None


class _Bounded(_FieldBase):
    def _check_bounds(self, low: Any, high: Any, what: str) -> None:
        if low is not None and high is not None and low > high:
            raise _problem(f"min{what}", f"{low} is greater than max{what} ({high})")


class StringField(_Bounded):
    type: Literal["string"]
    min_length: Annotated[StrictInt, Field(ge=0, le=10_000)] | None = None
    max_length: Annotated[StrictInt, Field(ge=1, le=10_000)] | None = None
    default: DefaultText | None = None

    @model_validator(mode="after")
    def _limits(self) -> StringField:
        self._check_bounds(self.min_length, self.max_length, "_length")
        if self.default is not None and self.max_length is not None and len(self.default) > self.max_length:
            raise _problem("default", f"is {len(self.default)} characters, longer than max_length ({self.max_length})")
        return self


class TextField(_FieldBase):
    type: Literal["text"]
    max_length: Annotated[StrictInt, Field(ge=1, le=1_000_000)] | None = None
    default: DefaultText | None = None


class IntegerField(_Bounded):
    type: Literal["integer"]
    min: Int64 | None = None
    max: Int64 | None = None
    default: Int64 | None = None

    @model_validator(mode="after")
    def _limits(self) -> IntegerField:
        _check_range(self)
        return self


class NumberField(_Bounded):
    type: Literal["number"]
    min: Number | None = None
    max: Number | None = None
    default: Number | None = None

    @model_validator(mode="after")
    def _limits(self) -> NumberField:
        _check_range(self)
        return self


def _check_range(f: IntegerField | NumberField) -> None:
    f._check_bounds(f.min, f.max, "")
    if f.default is not None and f.min is not None and f.default < f.min:
        raise _problem("default", f"{f.default} is below min ({f.min})")
    if f.default is not None and f.max is not None and f.default > f.max:
        raise _problem("default", f"{f.default} is above max ({f.max})")


class BooleanField(_FieldBase):
    type: Literal["boolean"]
    default: StrictBool | None = None


class DateField(_FieldBase):
    type: Literal["date"]
    default: date | None = None


class DatetimeField(_FieldBase):
    type: Literal["datetime"]
    default: datetime | None = None


class EnumField(_FieldBase):
    type: Literal["enum"]
    values: Annotated[list[EnumValue], Field(min_length=1, max_length=200)]
    default: EnumValue | None = None

    @model_validator(mode="after")
    def _values(self) -> EnumField:
        seen: set[str] = set()
        for i, value in enumerate(self.values):
            if value in seen:
                raise _problem(f"values[{i}]", f"{value!r} is listed twice")
            seen.add(value)
        if self.default is not None and self.default not in seen:
            raise _problem("default", f"{self.default!r} is not one of the values ({', '.join(self.values)})")
        return self


class ReferenceField(_FieldBase):
    type: Literal["reference"]
    to: Identifier = Field(description="Name of the referenced entity")


FieldSpec = Annotated[
    StringField | TextField | IntegerField | NumberField | BooleanField | DateField | DatetimeField
    | EnumField | ReferenceField,
    Field(discriminator="type"),
]


class Entity(_Strict):
    label: Label | None = None
    fields: Annotated[dict[Identifier, FieldSpec], Field(min_length=1, max_length=MAX_FIELDS)]


class Page(_Strict):
    path: Annotated[str, Field(max_length=200, pattern=r"^/(?:[a-z0-9][a-z0-9_-]*(?:/[a-z0-9][a-z0-9_-]*)*)?$")]
    title: Label
    shows: Identifier = Field(description="Entity the page lists")


def _relative_folder(value: str) -> str:
    if any(part in (".", "..") for part in value.rstrip("/").split("/")):
        raise ValueError(f"{value!r} must stay inside the spec's folder (no '.' or '..' parts)")
    return value


StaticFolder = Annotated[
    str, Field(max_length=200, pattern=r"^[A-Za-z0-9_.-]+(?:/[A-Za-z0-9_.-]+)*/?$"), AfterValidator(_relative_folder)
]


class AppSpec(_Strict):
    """An app: its data model (entities with typed fields), its pages, its static files."""

    app: Label = Field(description="Display name")
    entities: Annotated[dict[Identifier, Entity], Field(min_length=1, max_length=MAX_ENTITIES)]
    pages: Annotated[list[Page], Field(max_length=MAX_PAGES)] = []
    static: StaticFolder | None = Field(default=None, description="Folder of static files, relative to the spec")

    def canonical_json(self) -> str:
        """The stored form: defaults left out, order kept, so a re-indented YAML file and
        the same spec as JSON have one digest."""
        return json.dumps(self.model_dump(mode="json", exclude_defaults=True), ensure_ascii=False,
                          separators=(",", ":"))

    def digest(self) -> str:
        return hashlib.sha256(self.canonical_json().encode()).hexdigest()


@dataclass(frozen=True)
class SpecProblem:
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


class InvalidAppSpec(ValueError):
    """The spec cannot be accepted; `problems` says where and why, one per path."""

    def __init__(self, problems: list[SpecProblem]) -> None:
        self.problems = problems[:MAX_PROBLEMS]
        more = f" (and {len(problems) - MAX_PROBLEMS} more)" if len(problems) > MAX_PROBLEMS else ""
        super().__init__("invalid app spec: " + "; ".join(map(str, self.problems)) + more)


class SpecTooLarge(InvalidAppSpec):
    """The spec is over MAX_SPEC_BYTES (an API answers 413)."""


def spec_ref(digest: str) -> str:
    return SPEC_REF_PREFIX + digest


def digest_of_ref(ref: str) -> str:
    digest = ref.removeprefix(SPEC_REF_PREFIX)
    if not ref.startswith(SPEC_REF_PREFIX) or not re.fullmatch(r"[0-9a-f]{64}", digest):
        raise ValueError(f"{ref!r} is not an app spec reference ({SPEC_REF_PREFIX}<sha256>)")
    return digest


def load_app_spec(source: str | bytes | Mapping[str, Any]) -> AppSpec:
    """Parse (YAML or JSON text, or an already parsed object) and validate completely."""
    data = source if isinstance(source, Mapping) else parse_text(source)
    return validate_app_spec(data)


def validate_app_spec(data: Any) -> AppSpec:
    if not isinstance(data, Mapping):
        raise InvalidAppSpec([SpecProblem("spec", f"must be a mapping with app, entities and pages, "
                                                  f"got {_kind(data)}")])
    if oversized := sorted(_oversized_numbers(data, []), key=_order):
        raise InvalidAppSpec(oversized)
    try:
        spec = AppSpec.model_validate(data)
    except ValidationError as exc:
        raise InvalidAppSpec(sorted({_from_pydantic(e) for e in exc.errors()}, key=_order)) from None
    except RecursionError:
        raise InvalidAppSpec([SpecProblem("spec", "nested too deeply")]) from None
    if problems := cross_check(spec):
        raise InvalidAppSpec(problems)
    return spec


# --- text → data ----------------------------------------------------------------------


def parse_text(source: str | bytes) -> Any:
    """YAML or JSON (text starting with '{') → plain data. Refuses oversize input, YAML
    aliases (the "billion laughs" bomb), duplicate and non-string keys."""
    raw = source.encode() if isinstance(source, str) else source
    if len(raw) > MAX_SPEC_BYTES:
        raise SpecTooLarge([SpecProblem("spec", f"is {len(raw)} bytes; the limit is {MAX_SPEC_BYTES}")])
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidAppSpec([SpecProblem("spec", f"is not UTF-8 text (byte {exc.start})")]) from None
    if not text.strip():
        raise InvalidAppSpec([SpecProblem("spec", "is empty")])
    try:
        if text.lstrip().startswith("{"):
            return json.loads(text, object_pairs_hook=_unique_pairs, parse_int=whole_number)
        return yaml.load(text, Loader=_SpecLoader)  # noqa: S506 (a SafeLoader subclass)
    except json.JSONDecodeError as exc:
        message = f"invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        message = f"invalid YAML{where}: {exc.problem or exc.context}"
    except (yaml.YAMLError, _Refused) as exc:
        message = str(exc)
    except RecursionError:
        message = "nested too deeply"
    raise InvalidAppSpec([SpecProblem("spec", message)])


class _Refused(ValueError):
    pass


class Oversized(str):
    """A whole number too long to convert (its digits, unconverted): `validate_app_spec`
    reports it at its path. Python's int() raises ValueError past 4300 digits, and even
    below that such a number fits no slot of a spec."""


def whole_number(digits: str) -> int | Oversized:
    """`json.loads(..., parse_int=whole_number)`: the API reads request bodies with it too."""
    return Oversized(digits) if len(digits) > MAX_NUMBER_CHARS else int(digits)


def _oversized_numbers(node: Any, loc: list[Any]) -> list[SpecProblem]:
    if isinstance(node, Oversized):
        return [SpecProblem(_path(loc), f"is a number {len(node)} characters long; it is out of range "
                                        "for every number in a spec")]
    if isinstance(node, Mapping):
        return [p for key, value in node.items() for p in _oversized_numbers(value, [*loc, key])]
    if isinstance(node, list):
        return [p for i, value in enumerate(node) for p in _oversized_numbers(value, [*loc, i])]
    return []


def _unique_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _Refused(f"key {key!r} appears twice in one object")
        out[key] = value
    return out


class _SpecLoader(yaml.SafeLoader):
    def construct_yaml_int(self, node: Any) -> int | Oversized:
        # YAML 1.1 ints also come as hex, octal, binary or base 60 ("1:20:00"): the text's
        # length bounds them all before any conversion.
        if len(node.value) > MAX_NUMBER_CHARS:
            return Oversized(node.value)
        return super().construct_yaml_int(node)

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            mark = self.peek_event().start_mark
            raise _Refused(f"YAML aliases (*name) are not accepted (line {mark.line + 1}); write values out")
        return super().compose_node(parent, index)

    def construct_mapping(self, node: Any, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            line = key_node.start_mark.line + 1
            if key_node.tag == "tag:yaml.org,2002:merge":
                raise _Refused(f"YAML merge keys (<<) are not accepted (line {line})")
            key = self.construct_object(key_node, deep=True)
            if not isinstance(key, str):
                raise _Refused(f"key {key_node.value!r} at line {line} is read as {_kind(key)}, not a name; "
                               "quote it")
            if key in seen:
                raise _Refused(f"key {key!r} appears twice in one mapping (line {line})")
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


_SpecLoader.add_constructor("tag:yaml.org,2002:int", _SpecLoader.construct_yaml_int)


# --- pydantic errors → path problems --------------------------------------------------

_MODELS: dict[str, type[BaseModel]] = {
    "spec": AppSpec, "entity": Entity, "page": Page,
    **{t: m for m in (StringField, TextField, IntegerField, NumberField, BooleanField, DateField,
                      DatetimeField, EnumField, ReferenceField) for t in m.model_fields["type"].annotation.__args__},
}


_PATTERN_HINTS = {
    TEXT_PATTERN: "must not contain control characters (newline, tab, NUL, ...)",
    DEFAULT_TEXT_PATTERN: "must not contain NUL characters",
}


def _from_pydantic(err: Any) -> SpecProblem:
    loc, kind, ctx = list(err["loc"]), err["type"], err.get("ctx") or {}
    field_type = None
    if len(loc) > 4 and loc[0] == "entities" and loc[2] == "fields" and loc[4] in FIELD_TYPES:
        field_type = loc.pop(4)  # the discriminator pydantic puts in the path
    if loc and loc[-1] == "[key]":
        loc.pop()
    if kind == "spec":
        loc.append(ctx["subpath"])
        message = ctx["message"]
    elif kind == "union_tag_invalid":
        loc.append("type")
        message = f"unknown field type {ctx['tag']!r}; use one of: {', '.join(FIELD_TYPES)}"
    elif kind == "union_tag_not_found":
        message = f"a field needs a type: one of {', '.join(FIELD_TYPES)}"
    elif kind == "missing":
        message = "is required"
    elif kind == "string_pattern_mismatch" and ctx.get("pattern") in _PATTERN_HINTS:
        message = _PATTERN_HINTS[ctx["pattern"]]
    elif kind == "string_unicode":  # a lone surrogate ("\\ud800" in JSON): not text UTF-8 can carry
        message = "must be valid Unicode text (it holds an unpaired surrogate escape such as \\ud800)"
    elif kind == "extra_forbidden":
        model = _MODELS[field_type or ("entity" if len(loc) == 3 and loc[0] == "entities" else
                                       "page" if loc[0] == "pages" else "spec")]
        message = f"unknown key; allowed here: {', '.join(model.model_fields)}"
    elif kind in ("model_attributes_type", "model_type", "dict_type"):
        message = f"must be a mapping (key: value) (got {_kind(err['input'])})"
    elif kind in ("too_short", "too_long"):
        bound = ctx.get("min_length") if kind == "too_short" else ctx.get("max_length")
        message = f"has {ctx.get('actual_length')} entries; {'at least' if kind == 'too_short' else 'at most'} {bound}"
    else:
        message = str(err["msg"]).removeprefix("Value error, ")
        if message.startswith("Input should be"):
            message = "must be" + message.removeprefix("Input should be") + f" (got {_kind(err['input'])})"
    return SpecProblem(_path(loc), message)


def _path(loc: list[Any]) -> str:
    """`entities.task.fields.title`; a key with a character that does not print is quoted
    (`entities['a\\n']`), so a path never carries a newline, a control character or an
    unpaired surrogate."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif not str(part).isprintable():
            out += f"[{str(part)!r}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "spec"


def _order(p: SpecProblem) -> tuple[str, str]:
    return (p.path, p.message)


def _kind(value: Any) -> str:
    names = {dict: "a mapping", list: "a list", str: "text", bool: "a boolean", int: "a number",
             float: "a number", type(None): "nothing (null)", date: "a date", datetime: "a date-time"}
    return names.get(type(value), type(value).__name__)


# --- what one model cannot see --------------------------------------------------------


def cross_check(spec: AppSpec) -> list[SpecProblem]:
    """References and pages name existing entities; page paths are free; required
    references do not form a cycle (no first row could ever be inserted)."""
    names = sorted(spec.entities)
    problems: list[SpecProblem] = []
    for ename, entity in spec.entities.items():
        for fname, field in entity.fields.items():
            if isinstance(field, ReferenceField) and field.to not in spec.entities:
                problems.append(SpecProblem(f"entities.{ename}.fields.{fname}.to",
                                            f"unknown entity {field.to!r} (entities: {', '.join(names)})"))
    used: dict[str, int] = {}
    for i, page in enumerate(spec.pages):
        if page.shows not in spec.entities:
            problems.append(SpecProblem(f"pages[{i}].shows",
                                        f"unknown entity {page.shows!r} (entities: {', '.join(names)})"))
        if any(page.path == p or page.path.startswith(p + "/") for p in RESERVED_PAGE_PREFIXES):
            problems.append(SpecProblem(f"pages[{i}].path", f"{page.path!r} is reserved by the platform "
                                                             f"({', '.join(RESERVED_PAGE_PREFIXES)})"))
        elif page.path in used:
            problems.append(SpecProblem(f"pages[{i}].path", f"{page.path!r} is already used by pages[{used[page.path]}]"))
        used.setdefault(page.path, i)
    if not problems:
        problems += _required_cycles(spec)
    return problems


def _required_cycles(spec: AppSpec) -> list[SpecProblem]:
    edges = {e: [(f, fld.to) for f, fld in ent.fields.items() if isinstance(fld, ReferenceField) and fld.required]
             for e, ent in spec.entities.items()}
    done: set[str] = set()

    def visit(node: str, trail: list[tuple[str, str]]) -> list[tuple[str, str]] | None:
        starts = [e for e, _ in trail]
        if node in starts:
            return trail[starts.index(node):]
        if node in done:
            return None
        for fname, target in edges[node]:
            if cycle := visit(target, [*trail, (node, fname)]):
                return cycle
        done.add(node)
        return None

    for start in spec.entities:
        if cycle := visit(start, []):
            text = " → ".join(f"{e}.{f}" for e, f in cycle) + f" → {cycle[0][0]}"
            entity, fname = cycle[0]
            return [SpecProblem(f"entities.{entity}.fields.{fname}.required",
                                f"required references form a cycle ({text}); make one of them optional")]
    return []


# --- the committed JSON Schema --------------------------------------------------------


def json_schema() -> dict[str, Any]:
    schema = AppSpec.model_json_schema()
    _close_name_maps(schema)
    schema.update({"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": "urn:hostplane:app-spec:1",
                   "title": "hostplane app spec"})
    return schema


def _close_name_maps(node: Any) -> None:
    """pydantic describes a dict keyed by names as patternProperties; without this a key
    that is not a name would pass a JSON Schema validator."""
    if isinstance(node, dict):
        if "patternProperties" in node:
            node["additionalProperties"] = False
        for child in node.values():
            _close_name_maps(child)
    elif isinstance(node, list):
        for child in node:
            _close_name_maps(child)


def rendered_schema() -> str:
    return json.dumps(json_schema(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    current = SCHEMA_FILE.read_text(encoding="utf-8") if SCHEMA_FILE.exists() else None
    if "--check" in argv:
        if current != rendered_schema():
            print(f"stale: {SCHEMA_FILE} (run `python -m contracts.app_spec`)", file=sys.stderr)
            return 1
        return 0
    if current != rendered_schema():
        SCHEMA_FILE.write_text(rendered_schema(), encoding="utf-8")
        print(f"wrote {SCHEMA_FILE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The app spec: what a tenant hands over (the visual designer's export), as pydantic
models; they are the published schema (`app_spec.schema.json`, generated from them).

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

Every name is a whole-string match (no "task\n"); every number fits the column it
becomes (bigint, double precision); text is whatever Unicode the slot allows (no control
characters in labels, no NUL in defaults). Reading a spec from text, with every problem
reported at its exact path, is `spec.load.load_app_spec`. The API stores the spec's
canonical JSON under its digest; events carry only `spec_ref(digest)`.

    python -m contracts.app_spec [--check]   # (re)write / check app_spec.schema.json
"""

from __future__ import annotations

import hashlib
import json
import keyword
import re
import sys
from datetime import date, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, StrictBool, StrictInt
from pydantic import model_validator
from pydantic_core import PydanticCustomError

MAX_ENTITIES = 100
MAX_FIELDS = 100
MAX_PAGES = 100
SCHEMA_FILE = Path(__file__).resolve().parent / "app_spec.schema.json"
SPEC_REF_PREFIX = "spec:sha256:"

IDENTIFIER_PATTERN = r"^[a-z][a-z0-9_]{0,40}$"
_IDENTIFIER_RE = re.compile(IDENTIFIER_PATTERN)  # used with fullmatch (see check_identifier)
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


def spec_ref(digest: str) -> str:
    return SPEC_REF_PREFIX + digest


def digest_of_ref(ref: str) -> str:
    digest = ref.removeprefix(SPEC_REF_PREFIX)
    if not ref.startswith(SPEC_REF_PREFIX) or not re.fullmatch(r"[0-9a-f]{64}", digest):
        raise ValueError(f"{ref!r} is not an app spec reference ({SPEC_REF_PREFIX}<sha256>)")
    return digest


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

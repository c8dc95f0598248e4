"""What is wrong with an app spec, said at its exact path: `InvalidAppSpec` lists every
problem (`entities.task.fields.owner.to: unknown entity 'persn'`). pydantic's errors are
rewritten into these paths and plain messages (`from_pydantic`), and `cross_check` finds
what no single model can see (unknown entities, reserved or repeated page paths, cycles of
required references). A path never carries a newline, a control character or an unpaired
surrogate: a key that does not print is quoted."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from pydantic import BaseModel

from contracts.app_spec import (DEFAULT_TEXT_PATTERN, FIELD_TYPES, RESERVED_PAGE_PREFIXES, TEXT_PATTERN, AppSpec,
                                BooleanField, DateField, DatetimeField, Entity, EnumField, IntegerField, NumberField,
                                Page, ReferenceField, StringField, TextField)

MAX_PROBLEMS = 50


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


_MODELS: dict[str, type[BaseModel]] = {
    "spec": AppSpec, "entity": Entity, "page": Page,
    **{t: m for m in (StringField, TextField, IntegerField, NumberField, BooleanField, DateField,
                      DatetimeField, EnumField, ReferenceField) for t in m.model_fields["type"].annotation.__args__},
}


_PATTERN_HINTS = {
    TEXT_PATTERN: "must not contain control characters (newline, tab, NUL, ...)",
    DEFAULT_TEXT_PATTERN: "must not contain NUL characters",
}


def from_pydantic(err: Any) -> SpecProblem:
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
        message = f"must be a mapping (key: value) (got {kind_of(err['input'])})"
    elif kind in ("too_short", "too_long"):
        bound = ctx.get("min_length") if kind == "too_short" else ctx.get("max_length")
        message = f"has {ctx.get('actual_length')} entries; {'at least' if kind == 'too_short' else 'at most'} {bound}"
    else:
        message = str(err["msg"]).removeprefix("Value error, ")
        if message.startswith("Input should be"):
            message = "must be" + message.removeprefix("Input should be") + f" (got {kind_of(err['input'])})"
    return SpecProblem(path_of(loc), message)


def path_of(loc: list[Any]) -> str:
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


def problem_order(p: SpecProblem) -> tuple[str, str]:
    return (p.path, p.message)


def kind_of(value: Any) -> str:
    names = {dict: "a mapping", list: "a list", str: "text", bool: "a boolean", int: "a number",
             float: "a number", type(None): "nothing (null)", date: "a date", datetime: "a date-time"}
    return names.get(type(value), type(value).__name__)


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



"""An app spec read from text: `load_app_spec` takes YAML or JSON text (or an already
parsed object), refuses anything it would be unsafe or ambiguous to build (aliases, merge
keys, duplicate or non-string keys, > MAX_SPEC_BYTES, numbers too long to convert) and
validates it completely, raising `InvalidAppSpec` with every problem at its path."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import yaml
from pydantic import ValidationError

from contracts.app_spec import AppSpec
from spec.limits import MAX_SPEC_BYTES
from spec.problems import (InvalidAppSpec, SpecProblem, SpecTooLarge, cross_check, from_pydantic, kind_of, path_of,
                           problem_order)

# A whole number in spec text longer than this is refused before it is converted (the
# values that fit any slot have at most 309 digits; Python refuses > 4300 with ValueError).
MAX_NUMBER_CHARS = 400


def load_app_spec(source: str | bytes | Mapping[str, Any]) -> AppSpec:
    """Parse (YAML or JSON text, or an already parsed object) and validate completely."""
    data = source if isinstance(source, Mapping) else parse_text(source)
    return validate_app_spec(data)


def validate_app_spec(data: Any) -> AppSpec:
    if not isinstance(data, Mapping):
        raise InvalidAppSpec([SpecProblem("spec", f"must be a mapping with app, entities and pages, "
                                                  f"got {kind_of(data)}")])
    if oversized := sorted(_oversized_numbers(data, []), key=problem_order):
        raise InvalidAppSpec(oversized)
    try:
        spec = AppSpec.model_validate(data)
    except ValidationError as exc:
        raise InvalidAppSpec(sorted({from_pydantic(e) for e in exc.errors()}, key=problem_order)) from None
    except RecursionError:
        raise InvalidAppSpec([SpecProblem("spec", "nested too deeply")]) from None
    if problems := cross_check(spec):
        raise InvalidAppSpec(problems)
    return spec


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
        return [SpecProblem(path_of(loc), f"is a number {len(node)} characters long; it is out of range "
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
                raise _Refused(f"key {key_node.value!r} at line {line} is read as {kind_of(key)}, not a name; "
                               "quote it")
            if key in seen:
                raise _Refused(f"key {key!r} appears twice in one mapping (line {line})")
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


_SpecLoader.add_constructor("tag:yaml.org,2002:int", _SpecLoader.construct_yaml_int)


"""Compatibility of committed schema versions: a minor only adds optional fields.

Within a major, producers and consumers of different minors run side by side in
both directions (an old reader gets a new payload, a new reader gets an old or
replayed one), so each committed version is compared with every committed
predecessor of the same major. Removing a property, changing its type (type,
`$ref` target, format, enum/const, anyOf/oneOf/allOf shape, constraints, nested
objects and `$defs`), or adding a required property is an error. Majors are not
compared: a breaking change is a new major published side by side.

    python -m contracts.compat [--root contracts/schemas]   # exit 1 with the problems
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

SCHEMAS_DIR = Path(__file__).resolve().parent / "schemas"
VERSION_FILE = re.compile(r"^(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.json$")
COMBINATORS = ("anyOf", "oneOf", "allOf")
# A change to any of these narrows or widens what is valid: one side refuses the other's data.
KEYWORDS = (
    "format", "enum", "const", "pattern", "minimum", "maximum", "exclusiveMinimum",
    "exclusiveMaximum", "minLength", "maxLength", "minItems", "maxItems", "uniqueItems",
)
_MISSING = object()


def _fmt(value: Any) -> str:
    return "(none)" if value is _MISSING else json.dumps(value, sort_keys=True)


class _Comparison:
    """One old/new document pair; `seen` stops recursion through cyclic `$ref`s."""

    def __init__(self, old_doc: dict[str, Any], new_doc: dict[str, Any]) -> None:
        self.old_doc, self.new_doc = old_doc, new_doc
        self.problems: list[str] = []
        self.seen: set[tuple[str, str]] = set()

    def problem(self, path: str, text: str) -> None:
        self.problems.append(f"{path or '(root)'}: {text}")

    def resolve(self, doc: dict[str, Any], node: dict[str, Any]) -> dict[str, Any] | None:
        ref = node["$ref"]
        if not ref.startswith("#"):
            return None
        target: Any = doc
        for part in filter(None, ref[1:].split("/")):
            part = part.replace("~1", "/").replace("~0", "~")
            if not isinstance(target, dict) or part not in target:
                return None
            target = target[part]
        siblings = {k: v for k, v in node.items() if k != "$ref"}
        return {**target, **siblings} if isinstance(target, dict) else None

    def shape(self, doc: dict[str, Any], node: Any) -> str:
        """Short description of a node's type, for messages and the shape check."""
        if not isinstance(node, dict):
            return json.dumps(node)
        if "$ref" in node:
            return node["$ref"].rsplit("/", 1)[-1]
        for comb in COMBINATORS:
            if comb in node:
                return f"{comb}[" + ", ".join(self.shape(doc, n) for n in node[comb]) + "]"
        kind = node.get("type", "any")
        return "|".join(sorted(kind)) if isinstance(kind, list) else str(kind)

    def compare(self, old: Any, new: Any, path: str) -> None:
        if not (isinstance(old, dict) and isinstance(new, dict)):
            if old != new:
                self.problem(path, f"schema changed from {_fmt(old)} to {_fmt(new)}")
            return
        if "$ref" in old or "$ref" in new:
            old_ref, new_ref = old.get("$ref"), new.get("$ref")
            if old_ref != new_ref:
                self.problem(
                    path,
                    f"type changed from {self.shape(self.old_doc, old)} to {self.shape(self.new_doc, new)}",
                )
                return
            if (old_ref, new_ref) in self.seen:
                return
            self.seen.add((old_ref, new_ref))
            old, new = self.resolve(self.old_doc, old), self.resolve(self.new_doc, new)
            if old is None or new is None:
                self.problem(path, f"reference {new_ref} does not resolve")
            else:
                self.compare(old, new, path)  # the target may itself be a $ref
            return
        old_shape, new_shape = self.shape(self.old_doc, old), self.shape(self.new_doc, new)
        same_combinators = all(
            len(old.get(c, ())) == len(new.get(c, ())) for c in COMBINATORS
        )
        if not same_combinators or _kind(old) != _kind(new):
            self.problem(path, f"type changed from {old_shape} to {new_shape}")
            return
        for kw in KEYWORDS:
            before, after = old.get(kw, _MISSING), new.get(kw, _MISSING)
            if before != after:
                self.problem(path, f"'{kw}' changed from {_fmt(before)} to {_fmt(after)}")
        for comb in COMBINATORS:
            for i, (a, b) in enumerate(zip(old.get(comb, ()), new.get(comb, ()))):
                self.compare(a, b, f"{path}<{comb}[{i}]>")
        if "items" in old or "items" in new:
            self.compare(old.get("items", {}), new.get("items", {}), f"{path}[]")
        if "additionalProperties" in old or "additionalProperties" in new:
            self.compare(
                old.get("additionalProperties", True),
                new.get("additionalProperties", True),
                f"{path}{{*}}",
            )
        self.compare_properties(old, new, path)

    def compare_properties(self, old: dict[str, Any], new: dict[str, Any], path: str) -> None:
        old_props, new_props = old.get("properties", {}), new.get("properties", {})
        old_req, new_req = set(old.get("required", ())), set(new.get("required", ()))
        prefix = f"{path}." if path else ""
        for name, schema in old_props.items():
            if name not in new_props:
                self.problem(prefix + name, "property removed")
            else:
                self.compare(schema, new_props[name], prefix + name)
        for name in sorted(new_req - old_req):
            if name in old_props:
                self.problem(prefix + name, "optional property became required")
            else:
                self.problem(prefix + name, "new required property (a minor may add optional ones only)")
        for name in sorted((old_req - new_req) & set(new_props)):
            self.problem(prefix + name, "required property became optional (older readers require it)")

    def run(self) -> list[str]:
        self.compare(self.old_doc, self.new_doc, "")
        old_defs, new_defs = self.old_doc.get("$defs", {}), self.new_doc.get("$defs", {})
        for name in sorted(set(old_defs) & set(new_defs)):
            ref = {"$ref": f"#/$defs/{name}"}
            self.compare(ref, ref, f"$defs.{name}")
        return self.problems


def _kind(node: dict[str, Any]) -> Any:
    kind = node.get("type", _MISSING)
    return tuple(sorted(kind)) if isinstance(kind, list) else kind


def compare_schemas(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Problems that make `new` an incompatible successor of `old` (same major)."""
    return _Comparison(old, new).run()


def _committed_versions(event_dir: Path, problems: list[str]) -> dict[int, list[tuple[int, Path]]]:
    by_major: dict[int, list[tuple[int, Path]]] = defaultdict(list)
    for path in sorted(event_dir.iterdir()):
        match = VERSION_FILE.match(path.name)
        if not match:
            problems.append(f"{event_dir.name}: {path.name} is not named MAJOR.MINOR.json")
            continue
        by_major[int(match[1])].append((int(match[2]), path))
    return {major: sorted(minors) for major, minors in by_major.items()}


def _load(path: Path, problems: list[str]) -> dict[str, Any] | None:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        problems.append(f"{path.parent.name} {path.stem}: unreadable schema: {exc}")
        return None
    pinned = doc.get("properties", {}).get("event_type", {}).get("const")
    if pinned is not None and pinned != path.parent.name:
        problems.append(f"{path.parent.name} {path.stem}: schema is for event type {pinned!r}")
    return doc


def check_compatibility(schemas_root: Path = SCHEMAS_DIR) -> list[str]:
    """Compare every committed `<EventType>/<MAJOR.MINOR>.json` under `schemas_root`
    with its predecessors of the same major; returns human-readable problems."""
    problems: list[str] = []
    for event_dir in sorted(p for p in Path(schemas_root).iterdir() if p.is_dir()):
        for major, minors in sorted(_committed_versions(event_dir, problems).items()):
            docs = [(minor, _load(path, problems)) for minor, path in minors]
            for i, (minor, new) in enumerate(docs):
                for old_minor, old in docs[:i]:
                    if new is None or old is None:
                        continue
                    for text in compare_schemas(old, new):
                        problems.append(
                            f"{event_dir.name} {major}.{minor} vs {major}.{old_minor}: {text}"
                        )
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m contracts.compat", description=__doc__.split("\n")[0])
    parser.add_argument("--root", type=Path, default=SCHEMAS_DIR, help="schemas directory")
    args = parser.parse_args(argv)
    problems = check_compatibility(args.root)
    for text in problems:
        print(text, file=sys.stderr)
    if problems:
        print(f"{len(problems)} compatibility problem(s); a breaking change needs a new major", file=sys.stderr)
        return 1
    print(f"schemas under {args.root} are compatible")
    return 0


if __name__ == "__main__":
    sys.exit(main())

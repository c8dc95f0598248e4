"""Check recorded resource inputs against the pinned provider's generated input classes.

Pulumi's mocks accept any input: a misspelt field, a dict where the provider wants a list,
or a missing required field reach AWS only at `pulumi up`. The provider's Python SDK
(`pulumi_aws`, pinned in constraints.txt) is generated from its schema: every resource has
an `<Resource>Args` class and every nested object an `*Args` input type, whose properties
carry the wire (camelCase) names and whose type hints say object, list or map. Walking the
inputs a mock run recorded (`tests.support.pulumi_mocks.RecordingMocks`) against those classes finds
those defects offline.

Values the mocks leave unknown (Pulumi's unknown sentinel) are skipped, not guessed; a
field counts as missing only when its parent object is known and does not hold it.
"""

from __future__ import annotations

import collections.abc
import importlib
import inspect
import typing
from dataclasses import dataclass, field
from typing import Any

import pulumi
from pulumi import _types as ptypes  # the SDK's own name and type tables of input types

UNKNOWN = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"  # pulumi.runtime's UNKNOWN marker on the wire
SKIP_TYPES = ("pulumi:pulumi:StackReference",)  # not a provider resource


@dataclass
class SchemaReport:
    resources: int = 0
    inputs: int = 0  # every (nested) field value checked against its declared type
    skipped_unknown: int = 0
    by_type: collections.Counter = field(default_factory=collections.Counter)
    problems: list[str] = field(default_factory=list)


def args_class(token: str) -> type | None:
    """`aws:cloudfront/multitenantDistribution:MultitenantDistribution` →
    pulumi_aws.cloudfront.MultitenantDistributionArgs; `pulumi:providers:aws` → ProviderArgs."""
    if token == "pulumi:providers:aws":
        return importlib.import_module("pulumi_aws").ProviderArgs
    package, module_path, name = token.split(":")
    if package != "aws":
        return None
    package_module = importlib.import_module(f"pulumi_aws.{module_path.split('/')[0]}")
    # The resource's own module: a same-named nested input type (s3's legacy
    # BucketServerSideEncryptionConfigurationArgs) shadows it in the package namespace.
    module = importlib.import_module(getattr(package_module, name).__module__)
    # The generator names it <Resource>InitArgs where <Resource>Args is a nested type's name.
    for candidate in (f"{name}InitArgs", f"{name}Args"):
        cls = getattr(module, candidate, None)
        if cls is not None and cls.__module__ == module.__name__:
            return cls
    raise LookupError(f"no generated args class for {token}")


def _required(cls: type) -> set[str]:
    """Python names of the constructor's keyword parameters without a default."""
    params = inspect.signature(cls.__init__).parameters
    return {n for n, p in params.items() if n not in ("self", "__self__") and p.default is inspect.Parameter.empty
            and p.kind is inspect.Parameter.KEYWORD_ONLY}


def _strip(tp: Any, value: Any = None) -> Any:
    """Input[T], Optional[T], InputType[T] → T (the SDK's own unwrapping); of a union
    (e.g. `str | PolicyDocumentArgs`), the member the value's shape stands for."""
    tp = ptypes.unwrap_type(tp)
    if typing.get_origin(tp) is typing.Union:
        args = [ptypes.unwrap_type(a) for a in typing.get_args(tp) if a is not type(None)]
        objects = [a for a in args if isinstance(a, type) and ptypes.is_input_type(a)]
        seqs = [a for a in args if typing.get_origin(a) in (collections.abc.Sequence, list)]
        maps = [a for a in args if typing.get_origin(a) in (collections.abc.Mapping, dict)]
        scalars = [a for a in args if a in (str, bool, int, float)]
        if isinstance(value, dict):
            return (objects or maps or args)[0]
        if isinstance(value, list):
            return (seqs or args)[0]
        return (scalars or objects or seqs or maps or args)[0]
    return tp


def _is_unknown(value: Any) -> bool:
    return value == UNKNOWN or (isinstance(value, pulumi.Output))


def check_object(cls: type, value: Any, where: str, report: SchemaReport, *, strings: bool = False) -> None:
    """`strings`: a provider resource, whose scalar inputs travel as strings."""
    if _is_unknown(value):
        report.skipped_unknown += 1
        return
    if not isinstance(value, dict):
        report.problems.append(f"{where}: {cls.__name__} wants an object, got {type(value).__name__}")
        return
    names = ptypes.input_type_py_to_pulumi_names(cls)  # python → wire
    types = ptypes.input_type_types(cls)  # wire → type
    wire_to_py = {w: p for p, w in names.items()}
    for key, sub in value.items():
        if key not in wire_to_py:
            report.problems.append(f"{where}.{key}: no such field in {cls.__name__} "
                                   f"(fields: {', '.join(sorted(wire_to_py))})")
            continue
        report.inputs += 1
        if strings and isinstance(sub, str):
            continue
        check_value(types.get(key, Any), sub, f"{where}.{key}", report)
    for py in sorted(_required(cls)):
        wire = names.get(py, py)
        if wire not in value or value[wire] is None:
            report.problems.append(f"{where}: required field {wire} of {cls.__name__} missing")


def check_value(tp: Any, value: Any, where: str, report: SchemaReport) -> None:
    if value is None:
        return
    if _is_unknown(value):
        report.skipped_unknown += 1
        return
    tp = _strip(tp, value)
    if isinstance(tp, type) and ptypes.is_input_type(tp):
        check_object(tp, value, where, report)
        return
    origin = typing.get_origin(tp)
    if origin in (collections.abc.Sequence, list):
        if not isinstance(value, list):
            report.problems.append(f"{where}: wants a list, got {type(value).__name__}")
            return
        (item,) = typing.get_args(tp) or (Any,)
        for i, v in enumerate(value):
            check_value(item, v, f"{where}[{i}]", report)
        return
    if origin in (collections.abc.Mapping, dict):
        if not isinstance(value, dict):
            report.problems.append(f"{where}: wants a map, got {type(value).__name__}")
            return
        args = typing.get_args(tp)
        for k, v in value.items():
            check_value(args[1] if len(args) == 2 else Any, v, f"{where}[{k!r}]", report)
        return
    scalar = {str: str, bool: bool, int: (int, float), float: (int, float)}
    if tp in scalar:
        if isinstance(value, (dict, list)):
            report.problems.append(f"{where}: wants a {tp.__name__}, got {type(value).__name__}")
        elif tp is bool and not isinstance(value, bool):
            report.problems.append(f"{where}: wants a bool, got {value!r}")
        elif tp in (int, float) and (isinstance(value, bool) or not isinstance(value, (int, float))):
            report.problems.append(f"{where}: wants a number, got {value!r}")


def check_resources(resources: list[Any], report: SchemaReport | None = None) -> SchemaReport:
    """`resources`: `tests.support.pulumi_mocks.Declared` records (type token, name, wire inputs)."""
    report = report or SchemaReport()
    for r in resources:
        if r.typ in SKIP_TYPES:
            continue
        cls = args_class(r.typ)
        if cls is None:  # a component resource of ours
            continue
        report.resources += 1
        report.by_type[r.typ] += 1
        check_object(cls, r.inputs, f"{r.typ}::{r.name}", report, strings=r.typ.startswith("pulumi:providers:"))
    return report

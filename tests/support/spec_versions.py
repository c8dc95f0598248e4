"""The example app's spec and successive versions of a spec, for the integration tests that
create a tenant and change its app. `TASKS_YAML` is examples/tasks.yaml as a client sends
it; `tasks_spec(n)` is that example at version n (additive, then destructive: the rollback
and incarnation tests); `growing_spec(n)` is a small task app that only grows (the
migrator's tests and the API's precheck of a migration)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

TASKS_YAML = (Path(__file__).resolve().parents[2] / "examples" / "tasks.yaml").read_text()

_TASKS = yaml.safe_load(TASKS_YAML)


def tasks_spec(n: int) -> dict[str, Any]:
    """1: the example; 2: + optional task.notes; 3: 2 without task.done (destructive)."""
    out = copy.deepcopy(_TASKS)
    if n >= 2:
        out["entities"]["task"]["fields"]["notes"] = {"type": "text"}
    if n >= 3:
        del out["entities"]["task"]["fields"]["done"]
    return out


_GROWING_V1 = {"app": "Tasks", "entities": {"task": {"fields": {
    "title": {"type": "string", "required": True, "max_length": 200},
    "done": {"type": "boolean", "default": False},
}}}}


def growing_spec(n: int) -> dict[str, Any]:
    """1: task with title and done, then n-1 steps: + entity person, + optional task.owner, + required
    task.priority with default."""
    spec = copy.deepcopy(_GROWING_V1)
    if n >= 2:
        spec["entities"]["person"] = {"fields": {"name": {"type": "string", "required": True}}}
    if n >= 3:
        spec["entities"]["task"]["fields"]["owner"] = {"type": "reference", "to": "person"}
    if n >= 4:
        spec["entities"]["task"]["fields"]["priority"] = {"type": "integer", "required": True, "default": 3,
                                                          "min": 1}
    return spec

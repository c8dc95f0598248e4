"""Write the JSON Schemas and the AsyncAPI document from the event models.

    python -m contracts.generate           # (re)write what changed
    python -m contracts.generate --check   # exit 1 naming stale files (CI, tests)

Output is byte-stable (sorted keys, fixed `$id`s, trailing newline) so the
committed files change only when a model does. Files of older versions are
never deleted: they are the predecessors `contracts.compat` compares against.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import contracts.events_v1  # noqa: F401  (registers every event model)
import contracts.failures_v1  # noqa: F401
from contracts.catalog import SERVICES
from contracts.envelope import RUNTIME_SOURCE_PREFIX, Envelope, Event, producer_source
from contracts.registry import registered_events

CONTRACTS_DIR = Path(__file__).resolve().parent
ASYNCAPI_FILE = "asyncapi.json"
BUS_NAME = "hostplane"
DIALECT = "https://json-schema.org/draft/2020-12/schema"
ASYNCAPI_DOC_VERSION = "1.4.0"  # the catalog: a minor per added type or field (1.1: RouteFailed; 1.2: RuntimeSlept,
# RuntimeWoke, TenantRequested 1.3; 1.3: IdleAfterChangeRequested, IdleAfterChanged; 1.4: RuntimeFailed)


def schema_file(model: type[Event]) -> str:
    """Path of a model's schema, relative to the contracts directory."""
    return f"schemas/{model.event_type}/{model.schema_version}.json"


def message_id(model: type[Event]) -> str:
    return f"{model.event_type}.{model.schema_version}"


def _summary(model: type[Event]) -> str:
    return (model.__doc__ or model.event_type).strip().split("\n\n")[0].replace("\n", " ")


def envelope_schema(model: type[Event]) -> dict[str, Any]:
    """The full envelope with `model` as `data`: what a consumer receives as `detail`.
    `event_type` is pinned, `schema_version` accepts any minor of the major, as
    the Python reader does."""
    schema = Envelope[model].model_json_schema()  # type: ignore[valid-type]
    props = schema["properties"]
    props["event_type"] = {**props["event_type"], "const": model.event_type}
    props["schema_version"] = {**props["schema_version"], "pattern": rf"^{model.major()}\.[0-9]+$"}
    schema.update(
        {
            "$schema": DIALECT,
            "$id": f"urn:hostplane:event:{model.event_type}:{model.schema_version}",
            "title": f"{model.event_type} {model.schema_version}",
            "description": _summary(model),
        }
    )
    return schema


def asyncapi_document() -> dict[str, Any]:
    """AsyncAPI 3.0.0: one channel per detail-type, one message per version,
    a `send` operation per producer and a `receive` operation per consumer."""
    channels: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    for model in registered_events():
        etype, mid = model.event_type, message_id(model)
        messages[mid] = {
            "name": etype,
            "title": f"{etype} {model.schema_version}",
            "summary": _summary(model),
            "contentType": "application/json",
            "correlationId": {"$ref": "#/components/correlationIds/correlation"},
            "payload": {"$ref": f"./{schema_file(model)}"},
            "x-schema-version": model.schema_version,
            "x-producers": list(model.producers),
            "x-consumers": list(model.consumers),
        }
        channel = channels.setdefault(
            etype,
            {
                "address": etype,
                "title": etype,
                "description": f"Events with detail-type `{etype}` on the EventBridge bus `{BUS_NAME}`.",
                "servers": [{"$ref": "#/servers/bus"}],
                "messages": {},
                "x-eventbridge": {"bus": BUS_NAME, "detail-type": etype, "sources": []},
            },
        )
        channel["messages"][mid] = {"$ref": f"#/components/messages/{mid}"}
        sources = channel["x-eventbridge"]["sources"]
        sources[:] = sorted(set(sources) | {producer_source(p, "<tenant_id>") for p in model.producers})
        ref = {"$ref": f"#/channels/{etype}/messages/{mid}"}
        for action, services in (("send", model.producers), ("receive", model.consumers)):
            for service in services:
                op = operations.setdefault(
                    f"{service}.{action}.{etype}",
                    {
                        "action": action,
                        "channel": {"$ref": f"#/channels/{etype}"},
                        "summary": f"{service} {'publishes' if action == 'send' else 'consumes'} {etype}",
                        "messages": [],
                        "x-service": service,
                    },
                )
                op["messages"].append(ref)
    return {
        "asyncapi": "3.0.0",
        "id": "urn:hostplane:events",
        "info": {
            "title": "hostplane events",
            "version": ASYNCAPI_DOC_VERSION,
            "description": (
                "Lifecycle events of the hostplane control plane. Every message is an "
                "EventBridge `detail` envelope; `source` is `hostplane.<service>` (a tenant runtime's "
                f"events: `{RUNTIME_SOURCE_PREFIX}<tenant_id>`), "
                "`detail-type` the event type. Services: " + ", ".join(SERVICES) + "."
            ),
        },
        "defaultContentType": "application/json",
        "servers": {
            "bus": {
                "host": "events.{region}.amazonaws.com",
                "protocol": "https",
                "title": f"EventBridge bus {BUS_NAME}",
                "description": "PutEvents on AWS; locally the same API on the moto or LocalStack emulator.",
                "variables": {"region": {"default": "us-east-1"}},
            }
        },
        "channels": channels,
        "operations": operations,
        "components": {
            "messages": messages,
            "correlationIds": {
                "correlation": {
                    "description": "One per user request, carried through every stage.",
                    "location": "$message.payload#/correlation_id",
                }
            },
        },
    }


def dump(obj: Any) -> str:
    return json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def rendered() -> dict[str, str]:
    """Every generated file: relative path → exact content."""
    files = {schema_file(m): dump(envelope_schema(m)) for m in registered_events()}
    files[ASYNCAPI_FILE] = dump(asyncapi_document())
    return files


def stale_files(root: Path = CONTRACTS_DIR) -> list[str]:
    """Generated files missing under `root` or differing from the models."""
    stale = []
    for rel, content in sorted(rendered().items()):
        path = root / rel
        if not path.is_file() or path.read_text(encoding="utf-8") != content:
            stale.append(rel)
    return stale


def write(root: Path = CONTRACTS_DIR) -> list[str]:
    """Write the stale files; returns what was written."""
    files = rendered()
    changed = stale_files(root)
    for rel in changed:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(files[rel], encoding="utf-8")
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m contracts.generate", description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if generated files are stale")
    parser.add_argument("--root", type=Path, default=CONTRACTS_DIR, help="contracts directory")
    args = parser.parse_args(argv)
    if args.check:
        stale = stale_files(args.root)
        if stale:
            print("stale contract files (run `python -m contracts.generate`):", file=sys.stderr)
            for rel in stale:
                print(f"  {args.root / rel}", file=sys.stderr)
            return 1
        print("contract files are up to date")
        return 0
    for rel in write(args.root):
        print(f"wrote {args.root / rel}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

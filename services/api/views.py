"""What the API answers: tenant status documents and error bodies.

A status document never holds a secret: names, states, versions, digests, times, and
failure messages that the services already scrubbed (contracts: no secret in events).
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from contracts.events_v1 import RUNTIME_FAILURE_REASONS, RuntimeFailureReason
from contracts.tenant import TERMINAL
from services.api.projection import WAITING_FOR, Facts, failure_in_force


def tenant_url(name: str, edge_port: int, public_domain: str | None = None) -> str:
    if public_domain:
        return f"https://{name}.{public_domain}/"
    return f"http://{name}.localhost:{edge_port}/"


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def runtime_of(state: str, stage: str | None, said: str | None, facts: Facts) -> str:
    """running | asleep | starting | failed: the newest runtime fact (store.record_runtime),
    except that a tenant whose release never started is failed."""
    if state == "failed" and stage in ("releasing", "migrating") and facts.active_version is None:
        return "failed"
    return said or ("running" if facts.active_version is not None else "starting")


def tenant_view(row: Any, edge_port: int, public_domain: str | None = None) -> dict[str, Any]:
    facts = Facts.from_json(json.loads(row["facts"]))
    kind = row["request_kind"]
    failure = failure_in_force(kind, facts)
    deleted = row["state"] == "deleted"
    return {
        "name": row["tenant_id"],
        "state": row["state"],
        "stage": row["stage"],
        "waiting_for": None if row["state"] in TERMINAL[kind] else WAITING_FOR.get(row["stage"] or ""),
        "version": row["version"],
        "url": None if deleted else tenant_url(row["tenant_id"], edge_port, public_domain),
        "custom_domain": row["custom_domain"],
        "edge": row["edge"],  # chosen at creation; None: the installation's default
        "idle_after_s": row["idle_after_s"],
        "runtime": (runtime := None if deleted else runtime_of(row["state"], row["stage"], row["runtime"], facts)),
        "runtime_failure": (json.loads(row["runtime_failure"]) if runtime == "failed" and row["runtime_failure"]
                            else None),
        "domain_pending": facts.pending_domain,  # not served yet: its DNS records are not published
        "dns_records": facts.dns_records,
        "spec_sha256": row["spec_sha256"],
        "error": (
            {"stage": failure.stage, "step": failure.step, "message": failure.error,
             "retryable": failure.retryable, "at": failure.at}
            if failure else None
        ),
        "last_error": (
            {"stage": row["last_error_stage"], "message": row["last_error"], "at": _iso(row["last_error_at"])}
            if row["last_error"] else None
        ),
        "progress": {
            "provisioned": facts.provisioned, "routed": facts.routed, "built_version": facts.built_version,
            "migrated_version": facts.migrated_version, "active_version": facts.active_version,
            "route_removed": facts.route_removed, "deprovisioned": facts.deprovisioned,
        },
        "request": {
            "kind": kind, "generation": row["generation"], "correlation_id": str(row["correlation_id"]),
            "requested_at": _iso(row["request_at"]), "requested_by": row["requested_by"],
            "settled": row["state"] in TERMINAL[kind],
        },
        "last_event": (
            {"type": row["last_event_type"], "id": str(row["last_event_id"]), "at": _iso(row["last_event_at"])}
            if row["last_event_id"] else None
        ),
        "created_at": _iso(row["created_at"]),
        "updated_at": _iso(row["updated_at"]),
        "deleted_at": _iso(row["deleted_at"]),
    }


def error_body(detail: str, errors: list[dict[str, str]] | None = None) -> dict[str, Any]:
    return {"detail": detail, "errors": errors or []}


def validation_errors(errors: list[dict[str, Any]]) -> tuple[int, dict[str, Any]]:
    """FastAPI's request validation errors as (status, body) that say what to fix."""
    out: list[dict[str, str]] = []
    status = 422
    for err in errors:
        loc = [str(p) for p in err.get("loc", ()) if p != "body"]
        kind = err.get("type", "")
        message = str(err.get("msg", "")).removeprefix("Value error, ")
        if kind == "json_invalid":
            status, loc = 400, []
            message = f"the body is not valid JSON ({err.get('ctx', {}).get('error', 'parse error')})"
        elif kind == "missing" and not loc:
            message = "send a JSON object body"
        elif kind == "missing":
            message = "is required"
        elif kind == "extra_forbidden":
            message = "unknown key"
        elif kind in ("model_attributes_type", "dict_type") and not loc:
            message = "the body must be a JSON object"
        out.append({"path": ".".join(loc) or "body", "message": message})
    detail = "; ".join(f"{e['path']}: {e['message']}" if e["path"] != "body" else e["message"] for e in out)
    return status, error_body(detail, out)


# --- What the OpenAPI document says the answers are (the dicts above, as schemas) ---------
# Documentation only (routes answer JSONResponse): the fuzzer (tests/integration/shared/test_api_fuzz.py)
# checks every answer against them, so they cannot drift from tenant_view and friends.

class _Doc(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FailureDoc(_Doc):
    stage: str | None
    step: str | None
    message: str | None
    retryable: bool | None
    at: str | None


class LastErrorDoc(_Doc):
    stage: str | None
    message: str | None
    at: str | None


class ProgressDoc(_Doc):
    provisioned: bool
    routed: bool
    built_version: int | None
    migrated_version: int | None
    active_version: int | None
    route_removed: bool
    deprovisioned: bool


class RequestDoc(_Doc):
    kind: str
    generation: int
    correlation_id: str
    requested_at: str | None
    requested_by: str | None
    settled: bool


class LastEventDoc(_Doc):
    type: str
    id: str
    at: str | None


class RuntimeFailureDoc(_Doc):
    reason: RuntimeFailureReason = Field(description=RUNTIME_FAILURE_REASONS)
    detail: str = Field(description="What the host saw, never a secret's value")
    at: str = Field(description="When the host said so (ISO 8601)")


class TenantDoc(_Doc):
    """A tenant's status document (GET /v1/tenants/{name})."""
    name: str
    state: str
    stage: str | None
    waiting_for: str | None
    version: int | None
    url: str | None
    custom_domain: str | None
    edge: str | None
    idle_after_s: int | None = Field(description="Scale-to-zero idle period (chosen at creation, changed with PUT "
                                                 "/v1/tenants/{name}/idle-after); 0: always on; null: the platform's "
                                                 "default")
    runtime: Literal["running", "asleep", "starting", "failed"] | None = Field(
        description="The tenant's runtime: serving, scaled to zero (its next request wakes it), starting, or "
                    "unable to serve; null once deleted")
    runtime_failure: RuntimeFailureDoc | None = Field(
        description="Why the host cannot run it (the host's RuntimeFailed), while `runtime` is failed because of it")
    domain_pending: str | None
    dns_records: list[dict[str, Any]]
    spec_sha256: str | None
    error: FailureDoc | None
    last_error: LastErrorDoc | None
    progress: ProgressDoc
    request: RequestDoc
    last_event: LastEventDoc | None
    created_at: str | None
    updated_at: str | None
    deleted_at: str | None


class TenantListDoc(_Doc):
    tenants: list[TenantDoc]


class ReleasesDoc(_Doc):
    name: str
    live: int | None
    releases: list[dict[str, Any]] = Field(description="Newest first: version, digests, times, who, retained, live")


class EventsDoc(_Doc):
    name: str
    events: list[dict[str, Any]] = Field(description="The recorded events (envelope fields), oldest first")


class EnvDoc(_Doc):
    name: str
    env: dict[str, Any] = Field(description="DATABASE_URL, REDIS_URL, ...: secrets")


class AuditDoc(_Doc):
    records: list[dict[str, Any]] = Field(description="Audit rows, newest first")


class ErrorItem(BaseModel):
    path: str = Field(description="Where: a dotted path into the body, a parameter name, or 'body'")
    message: str


class Error(BaseModel):
    """Every 4xx/5xx body the API sends (the guard's 401/413/415 too)."""
    detail: str = Field(description="What went wrong and what to do, in one line")
    errors: list[ErrorItem] = Field(description="One item per field at fault (empty when none is)")


class RequestRef(BaseModel):
    kind: str
    generation: int
    correlation_id: str


class AcceptedBody(BaseModel):
    """The answer to a change: 202 when it was accepted, 200 when it changed nothing."""
    name: str
    changed: bool
    request: RequestRef
    status_url: str
    tenant: TenantDoc = Field(description="The tenant's status document (as GET /v1/tenants/{name})")


class Queued(BaseModel):
    name: str
    queued: int = Field(description="How many recorded events go out again")

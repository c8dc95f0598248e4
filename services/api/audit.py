"""The audit trail: who asked the platform to change what, when, from where, and how it went.

`audit_log` is append-only in the control database: under `hostplane up` PostgreSQL's
superuser owns it (hostplane.local.datastores) and the API's role may only SELECT and
INSERT, and a trigger refuses UPDATE, DELETE and TRUNCATE to whoever else holds them, so
not even a bug in the API (nor anyone with the API's database role) can rewrite history
through SQL the API runs; there is no API route that edits it either.

Rows are written by the API for every mutating request (`AuditedApi`, an ASGI layer inside
the bearer guard) and by the dashboard for each of its actions (login, create, update,
delete, replay, redrive, reveal credentials), and by the CLI for the commands that act on
the platform directly (`events replay`, `dlq redrive`). A row holds no secret and no spec body:
the request summary keeps the spec's size and sha256 only.

Who: `identity` is the credential's fingerprint (a short sha256 of the token, never the
token), `actor` the human name the caller declared (X-Hostplane-Actor, or the name typed
at the dashboard login).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import structlog

from events.store import apply_schema

log = structlog.get_logger(__name__)
_SCHEMA_LOCK = 0x61756469  # "audi"
MAX_LIMIT = 1000

SCHEMA_SQL = """
CREATE TABLE IF NOT EXISTS audit_log (
    id             bigserial PRIMARY KEY,
    at             timestamptz NOT NULL DEFAULT now(),
    identity       text        NOT NULL,
    actor          text,
    channel        text        NOT NULL,
    remote         text,
    action         text        NOT NULL,
    tenant_id      text,
    request        jsonb       NOT NULL DEFAULT '{}',
    status         integer     NOT NULL,
    outcome        text        NOT NULL,
    error          text,
    correlation_id uuid
);
CREATE INDEX IF NOT EXISTS audit_log_tenant ON audit_log (tenant_id, id);
CREATE OR REPLACE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only: % refused', TG_OP USING ERRCODE = 'insufficient_privilege';
END $$;
CREATE OR REPLACE TRIGGER audit_log_no_rewrite BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
CREATE OR REPLACE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();
"""

_ACTIONS: list[tuple[str, re.Pattern[str], str]] = [
    ("POST", re.compile(r"^/v1/tenants/?$"), "tenant.create"),
    ("PUT", re.compile(r"^/v1/tenants/(?P<tenant>[^/]+)/app$"), "tenant.update"),
    ("POST", re.compile(r"^/v1/tenants/(?P<tenant>[^/]+)/app$"), "tenant.update"),
    ("DELETE", re.compile(r"^/v1/tenants/(?P<tenant>[^/]+)/?$"), "tenant.delete"),
    ("POST", re.compile(r"^/v1/tenants/(?P<tenant>[^/]+)/replay$"), "tenant.replay"),
    ("GET", re.compile(r"^/v1/tenants/(?P<tenant>[^/]+)/env$"), "tenant.reveal_credentials"),
    ("PUT", re.compile(r"^/v1/tenants/(?P<tenant>[^/]+)/domain$"), "tenant.domain"),
    ("PUT", re.compile(r"^/v1/tenants/(?P<tenant>[^/]+)/idle-after$"), "tenant.idle_after"),
    ("POST", re.compile(r"^/v1/tenants/(?P<tenant>[^/]+)/rollback$"), "tenant.rollback"),
    ("POST", re.compile(r"^/v1/tenants/(?P<tenant>[^/]+)/source$"), "tenant.deploy_source"),
]
SUMMARY_KEYS = ("name", "domain", "allow_destructive", "type", "since", "idle_after_s")


async def ensure_schema(db: Any) -> None:
    """Create the audit log, unless it exists and is another role's: `hostplane up` installs it
    as PostgreSQL's superuser, so the API's own role may read and append but never alter it."""
    if await db.fetchval("SELECT c.relowner <> (SELECT oid FROM pg_roles WHERE rolname = current_user) "
                         "FROM pg_class c WHERE c.oid = to_regclass('audit_log')"):
        return
    await apply_schema(db, SCHEMA_SQL, _SCHEMA_LOCK)


def token_identity(token: str) -> str:
    """A stable, non-reversible name for a credential: `token:<12 hex of its sha256>`."""
    return "token:" + hashlib.sha256(token.encode()).hexdigest()[:12]


@dataclass
class AuditEntry:
    identity: str
    channel: str  # api | dashboard | cli
    action: str
    status: int
    outcome: str  # accepted | unchanged | refused | failed | done
    actor: str | None = None
    remote: str | None = None
    tenant_id: str | None = None
    request: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    correlation_id: str | None = None


def outcome_of(status: int, changed: bool | None = None) -> str:
    if status >= 500:
        return "failed"
    if status >= 400:
        return "refused"
    return "unchanged" if changed is False else "accepted"


def summarize(body: bytes | dict[str, Any] | None) -> dict[str, Any]:
    """What was asked, without secrets or spec bodies: known scalar keys + the spec's digest."""
    if isinstance(body, (bytes, bytearray)):
        try:
            body = json.loads(body) if body else {}
        except ValueError:
            return {"body": f"not JSON ({len(body)} bytes)"}
    if not isinstance(body, dict):
        return {"body": type(body).__name__} if body is not None else {}
    out = {k: body[k][:200] if isinstance(body[k], str) else body[k]
           for k in SUMMARY_KEYS if k in body and isinstance(body[k], (str, int, bool, type(None)))}
    if "app" in body:
        raw = body["app"] if isinstance(body["app"], str) else json.dumps(body["app"], sort_keys=True)
        out["app"] = {"bytes": len(raw.encode()), "sha256": hashlib.sha256(raw.encode()).hexdigest()}
    return out


_TENANT_PATH = re.compile(r"^/v1/tenants/(?P<tenant>[^/]+)(?P<rest>/.*)?$")
MUTATING = ("POST", "PUT", "PATCH", "DELETE")


def classify(method: str, path: str) -> tuple[str, str | None] | None:
    """(action, tenant) of an audited API request, or None for reads. Any write under /v1/
    is audited, also one added after this list: it is named `<method> <path template>`."""
    for verb, pattern, action in _ACTIONS:
        if verb == method and (m := pattern.match(path)):
            return action, m.groupdict().get("tenant")
    if method not in MUTATING or not path.startswith("/v1/"):
        return None
    if m := _TENANT_PATH.match(path):
        return f"{method.lower()} /v1/tenants/{{name}}{m['rest'] or ''}", m["tenant"]
    return f"{method.lower()} {path}", None


class AuditWriteFailed(RuntimeError):
    """The row could not be written (the database refused or is away)."""


_UNWRITABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


def clean(value: Any) -> Any:
    """What PostgreSQL can store and a reader can see: NUL, control characters and lone
    surrogates (text and jsonb refuse NUL and unpaired surrogates) become visible escapes
    (\\x00, \\udc00); dicts and lists are cleaned through, keys too."""
    if isinstance(value, str):
        return _UNWRITABLE.sub(lambda m: (f"\\x{ord(m[0]):02x}" if ord(m[0]) < 0x100
                                          else f"\\u{ord(m[0]):04x}"), value)
    if isinstance(value, dict):
        return {clean(str(k)): clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean(v) for v in value]
    return value


async def record(db: Any, entry: AuditEntry, *, strict: bool = False) -> None:
    """Append one row, every string cleaned first (`clean`). A failing write is logged loudly;
    with `strict` it raises AuditWriteFailed, so the caller can fail the request it was
    recording (the API does: no answer goes out for a change that left no trace)."""
    def text(value: str | None, limit: int) -> str | None:
        return clean(value)[:limit] if value else value

    try:
        await db.execute(
            "INSERT INTO audit_log (identity, actor, channel, remote, action, tenant_id, request, status, "
            "outcome, error, correlation_id) VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, $8, $9, $10, $11::uuid)",
            clean(entry.identity), text(entry.actor, 128), clean(entry.channel), text(entry.remote, 200),
            text(entry.action, 300), text(entry.tenant_id, 64), json.dumps(clean(entry.request)), entry.status,
            entry.outcome, text(entry.error or None, 500), entry.correlation_id,
        )
    except Exception as exc:
        log.exception("audit.write_failed", action=clean(entry.action), tenant_id=clean(entry.tenant_id))
        if strict:
            raise AuditWriteFailed(type(exc).__name__) from None


async def read(db: Any, tenant: str | None = None, limit: int = 200) -> list[dict[str, Any]]:
    """Newest first."""
    limit = max(1, min(limit, MAX_LIMIT))
    where, args = ("WHERE tenant_id = $2", [tenant]) if tenant else ("", [])
    rows = await db.fetch(f"SELECT * FROM audit_log {where} ORDER BY id DESC LIMIT $1", limit, *args)
    return [_row_json(r) for r in rows]


def _row_json(row: Any) -> dict[str, Any]:
    out = dict(row)
    out["at"] = row["at"].isoformat() if isinstance(row["at"], datetime) else row["at"]
    out["request"] = json.loads(row["request"]) if isinstance(row["request"], str) else row["request"]
    out["correlation_id"] = str(row["correlation_id"]) if row["correlation_id"] else None
    return out


class AuditedApi:
    """ASGI layer (inside services.api.guard.Guard, so only authorized requests reach it):
    after a mutating /v1/ request is answered, append what was asked and the outcome."""

    def __init__(self, app: Any, pool: Any, identity: str) -> None:
        self.app = app
        self.pool = pool
        self.identity = identity

    def __getattr__(self, name: str) -> Any:  # the wrapped FastAPI app's attributes (openapi, routes)
        return getattr(self.app, name)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        kind = classify(scope.get("method", ""), scope.get("path", "")) if scope["type"] == "http" else None
        if kind is None:
            await self.app(scope, receive, send)
            return
        body = bytearray()
        answer = {"status": 500, "body": bytearray()}
        held: list[Any] = []  # the answer, sent once its audit row is written

        async def reading() -> Any:
            message = await receive()
            if message["type"] == "http.request":
                body.extend(message.get("body", b""))
            return message

        async def sending(message: Any) -> None:
            if message["type"] == "http.response.start":
                answer["status"] = message["status"]
            elif message["type"] == "http.response.body" and kind[0] != "tenant.reveal_credentials":
                answer["body"].extend(message.get("body", b""))  # never keep the credentials answer
            held.append(message)

        failure: BaseException | None = None
        try:
            await self.app(scope, reading, sending)
        except Exception as exc:  # FastAPI sent its 500 first (held), then re-raised
            failure = exc
        try:
            await record(self.pool, self._entry(scope, kind, bytes(body), answer["status"], bytes(answer["body"])),
                         strict=True)
        except AuditWriteFailed:
            # Not audited, not answered: the caller sees a failure (the change may have been made)
            payload = json.dumps({"detail": "the request could not be audited, so it is answered as failed; "
                                            "check GET /v1/tenants/{name} before retrying", "errors": []}).encode()
            held = [{"type": "http.response.start", "status": 500,
                     "headers": [(b"content-type", b"application/json"),
                                 (b"content-length", str(len(payload)).encode())]},
                    {"type": "http.response.body", "body": payload}]
        for message in held:
            await send(message)
        if failure is not None:
            raise failure

    def _entry(self, scope: Any, kind: tuple[str, str | None], body: bytes, status: int,
               reply: bytes) -> AuditEntry:
        action, tenant = kind
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        request = summarize(body)
        try:
            answer = json.loads(reply) if reply else {}
        except ValueError:
            answer = {}
        tenant = (tenant or request.get("name") or None)
        changed = answer.get("changed") if isinstance(answer, dict) else None
        return AuditEntry(
            identity=self.identity, channel="api", action=action, status=status,
            outcome=outcome_of(status, changed), actor=headers.get("x-hostplane-actor", "api")[:128],
            remote=(scope.get("client") or [None])[0], tenant_id=tenant[:64] if isinstance(tenant, str) else None,
            request=request, error=answer.get("detail") if status >= 400 and isinstance(answer, dict) else None,
            correlation_id=((answer.get("request") or {}).get("correlation_id")
                            if isinstance(answer, dict) and status < 400 else None),
        )


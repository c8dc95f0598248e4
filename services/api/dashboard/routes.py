"""The web dashboard under /ui/: server-rendered pages, a little JavaScript for live updates.

Every action goes through the API's own command functions (services.api.commands, the
same spec parsing, events.replay, events.dlq) and is written to the audit trail. Reads
need a session (services.api.dashboard.session); writes also need the CSRF token and our
own Origin. No page renders a secret except the answer to POST .../reveal.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote

import jinja2
import structlog
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.staticfiles import StaticFiles

from contracts.tenant import tenant_names
from events.replay import list_events, replay
from services.api.requests import CreateTenant  # the API's own validation of name and domain
from services.api import audit, store
from services.api.commands import RequestRefused, TenantCommands
from services.api.dashboard import facts
from services.api.dashboard import session as sess
from contracts.tenant import STATES
from services.api.views import tenant_view

log = structlog.get_logger(__name__)
HERE = Path(__file__).parent
MAX_FORM_BYTES = 1024 * 1024
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                               "frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    "X-Frame-Options": "DENY", "X-Content-Type-Options": "nosniff", "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
_env = jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True,
                          undefined=jinja2.StrictUndefined)


class _NeedLogin(Exception):
    pass


def mount_dashboard(app: FastAPI, ctx: Any, token: str, commands: TenantCommands,
                    parse_spec: Callable[[Any], Any]) -> None:
    ui = _Dashboard(ctx, token, commands, parse_spec)
    app.mount("/ui/static", StaticFiles(directory=HERE / "static"), name="ui-static")

    @app.exception_handler(_NeedLogin)
    async def need_login(request: Request, _: _NeedLogin) -> Response:
        if request.url.path.startswith("/ui/fragments/"):
            return Response("log in again", status_code=401)
        return RedirectResponse("/ui/login", status_code=303)

    get, post = (lambda p: app.get(p, include_in_schema=False)), (lambda p: app.post(p, include_in_schema=False))
    get("/")(lambda: RedirectResponse("/ui/", status_code=303))
    get("/ui")(lambda: RedirectResponse("/ui/", status_code=303))
    get("/ui/login")(ui.login_page)
    post("/ui/login")(ui.login)
    post("/ui/logout")(ui.logout)
    get("/ui/")(ui.tenants_page)
    get("/ui/fragments/tenants")(ui.tenant_rows)
    post("/ui/tenants")(ui.create)
    get("/ui/tenants/{name}")(ui.tenant_page)
    get("/ui/fragments/tenants/{name}")(ui.tenant_live)
    post("/ui/tenants/{name}/app")(ui.update)
    post("/ui/tenants/{name}/delete")(ui.delete)
    post("/ui/tenants/{name}/rollback")(ui.rollback)
    post("/ui/tenants/{name}/replay")(ui.replay)
    post("/ui/tenants/{name}/reveal")(ui.reveal)
    get("/ui/dlq")(ui.dlq_page)
    post("/ui/dlq/redrive")(ui.redrive)
    get("/ui/audit")(ui.audit_page)


def render(template: str, status: int = 200, **values: Any) -> HTMLResponse:
    return HTMLResponse(_env.get_template(template).render(**values), status_code=status, headers=SECURITY_HEADERS)


class _Dashboard:
    def __init__(self, ctx: Any, token: str, commands: TenantCommands, parse_spec: Callable[[Any], Any]) -> None:
        self.ctx = ctx
        self.token = token
        self.identity = audit.token_identity(token)
        self.commands = commands
        self.parse_spec = parse_spec

    # --- sessions, forms, audit -------------------------------------------------------
    def session(self, request: Request) -> sess.Session:
        found = sess.verify(self.token, request.cookies.get(sess.COOKIE))
        if found is None:
            raise _NeedLogin
        return found

    async def form(self, request: Request, session: sess.Session | None) -> dict[str, str]:
        """The posted form after the origin (and, in a session, CSRF) checks; else RequestRefused(403)."""
        if not sess.same_origin(request.headers.get("origin"), request.headers.get("referer"),
                                request.url.scheme, request.headers.get("host")):
            raise RequestRefused(403, "refused: the form was not posted from this dashboard (Origin check)")
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype != "application/x-www-form-urlencoded":
            raise RequestRefused(415, "send the form as application/x-www-form-urlencoded")
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_FORM_BYTES:
                raise RequestRefused(413, f"the form is larger than {MAX_FORM_BYTES} bytes")
        fields = {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True).items()}
        if session is not None and not sess.csrf_ok(self.token, session, fields.get("csrf")):
            raise RequestRefused(403, "refused: missing or wrong CSRF token; reload the page and try again")
        return fields

    async def audit(self, request: Request, actor: str | None, action: str, tenant: str | None, status: int,
                    *, changed: bool | None = None, error: str | None = None, correlation: str | None = None,
                    summary: dict[str, Any] | None = None, identity: str | None = None) -> None:
        await audit.record(self.ctx.pool, audit.AuditEntry(
            identity=identity or self.identity, channel="dashboard", action=action, status=status,
            outcome=audit.outcome_of(status, changed), actor=actor,
            remote=request.client.host if request.client else None, tenant_id=tenant,
            request=summary or {}, error=error, correlation_id=correlation))

    def base(self, session: sess.Session | None, **values: Any) -> dict[str, Any]:
        return {"session": session, "csrf": sess.csrf_token(self.token, session) if session else "",
                "error": None, "notice": None, **values}

    # --- login ------------------------------------------------------------------------
    async def login_page(self, request: Request) -> Response:
        return render("login.html", **self.base(None))

    async def login(self, request: Request) -> Response:
        try:
            fields = await self.form(request, None)
        except RequestRefused as exc:
            return render("login.html", exc.status, **self.base(None, error=exc.message))
        actor = sess.clean_actor(fields.get("actor", ""))
        if actor is None:
            return render("login.html", 422, **self.base(None, error="your name: 1-64 printable ASCII characters"))
        if not sess.token_matches(fields.get("token", ""), self.token):
            await self.audit(request, actor, "dashboard.login", None, 401, error="wrong token",
                             identity="anonymous")
            return render("login.html", 401, **self.base(None, error="wrong token (see credentials.json)"))
        await self.audit(request, actor, "dashboard.login", None, 200, changed=True)
        resp = RedirectResponse("/ui/", status_code=303)
        resp.set_cookie(sess.COOKIE, sess.issue(self.token, actor), max_age=sess.SESSION_TTL_S, path="/ui",
                        httponly=True, samesite="strict", secure=request.url.scheme == "https")
        return resp

    async def logout(self, request: Request) -> Response:
        resp = RedirectResponse("/ui/login", status_code=303)
        resp.delete_cookie(sess.COOKIE, path="/ui")
        return resp

    # --- tenants ----------------------------------------------------------------------
    async def rows(self, state: str | None) -> list[dict[str, Any]]:
        rows = await store.read_tenants(self.ctx.pool, include_deleted=state == "deleted")
        views = [tenant_view(r, self.ctx.edge_port, self.ctx.public_domain) for r in rows]
        return [v for v in views if not state or v["state"] == state]

    async def tenants_page(self, request: Request, state: str | None = None) -> Response:
        return await self.show_tenants(request, state)

    async def show_tenants(self, request: Request, state: str | None = None, *, error: str | None = None,
                           form: dict[str, str] | None = None, status: int = 200) -> Response:
        session = self.session(request)
        state = state if state in STATES else None
        return render("tenants.html", status, **self.base(session, tenants=await self.rows(state), state=state,
                                                          states=STATES, error=error, form=form or {}))

    async def tenant_rows(self, request: Request, state: str | None = None) -> Response:
        self.session(request)
        return render("_tenant_rows.html", tenants=await self.rows(state if state in STATES else None))

    async def create(self, request: Request) -> Response:
        session = self.session(request)
        fields: dict[str, str] = {}
        name = None
        try:
            fields = await self.form(request, session)
            name = fields.get("name", "").strip()

            try:
                req = CreateTenant(name=name, app=fields.get("app", ""), domain=fields.get("domain") or None)
            except ValueError as exc:
                raise RequestRefused(422, "; ".join(e["msg"].removeprefix("Value error, ") for e in exc.errors())) from None
            result = await self.commands.create(req.name, self.parse_spec(req.app), self.ctx.claimable(req.domain),
                                                session.actor)
        except RequestRefused as exc:
            await self.audit(request, session.actor, "tenant.create", name or None, exc.status, error=exc.message,
                             summary=audit.summarize(fields))
            return await self.show_tenants(request, error=exc.message, form=fields, status=exc.status)
        await self.audit(request, session.actor, "tenant.create", name, 202, changed=result.changed,
                         correlation=str(result.correlation_id), summary=audit.summarize(fields))
        return RedirectResponse(f"/ui/tenants/{quote(name)}", status_code=303)

    async def tenant_data(self, name: str) -> dict[str, Any]:
        row = await store.read_tenant(self.ctx.pool, name)
        if row is None:
            raise RequestRefused(404, f"no tenant named {name!r}")
        events = [e.to_json() for e in await list_events(self.ctx.pool, name, None, None, 300)]
        return {"tenant": tenant_view(row, self.ctx.edge_port, self.ctx.public_domain), "events": events}

    async def tenant_page(self, request: Request, name: str) -> Response:
        return await self.show_tenant(request, name)

    async def show_tenant(self, request: Request, name: str, *, error: str | None = None,
                          notice: str | None = None, status: int = 200, secrets: dict[str, str] | None = None) -> Response:
        session = self.session(request)
        try:
            data = await self.tenant_data(name)
        except RequestRefused as exc:
            return render("error.html", 404, **self.base(session, error=exc.message))
        values = self.base(session, **data, resources=await facts.resources(self.ctx, name, data["tenant"]),
                           releases=facts.retained_releases(self.ctx, name), audit_rows=await audit.read(self.ctx.pool, name, 20),
                           secrets=secrets)
        values.update(error=error, notice=notice)
        return render("tenant.html", status, **values)

    async def tenant_live(self, request: Request, name: str) -> Response:
        self.session(request)
        try:
            data = await self.tenant_data(name)
        except RequestRefused as exc:
            return Response(exc.message, status_code=404)
        return render("_tenant_live.html", **data)

    async def _act(self, request: Request, name: str, action: str, run: Callable[..., Any]) -> Response:
        session = self.session(request)
        fields: dict[str, str] = {}
        try:
            fields = await self.form(request, session)
            status, notice, changed, correlation, extra = await run(session, fields)
        except RequestRefused as exc:
            await self.audit(request, session.actor, action, name, exc.status, error=exc.message,
                             summary=audit.summarize(fields))
            return await self.show_tenant(request, name, error=exc.message, status=exc.status)
        await self.audit(request, session.actor, action, name, status, changed=changed, correlation=correlation,
                         summary=audit.summarize(fields))
        if action == "tenant.reveal_credentials":
            return await self.show_tenant(request, name, notice=notice, secrets=extra)
        return RedirectResponse(f"/ui/tenants/{quote(name)}", status_code=303)

    async def update(self, request: Request, name: str) -> Response:
        async def run(session: sess.Session, fields: dict[str, str]) -> tuple:
            result = await self.commands.update(name, self.parse_spec(fields.get("app", "")),
                                                fields.get("allow_destructive") == "on", session.actor)
            return 202, None, result.changed, str(result.correlation_id), None

        return await self._act(request, name, "tenant.update", run)

    async def delete(self, request: Request, name: str) -> Response:
        async def run(session: sess.Session, fields: dict[str, str]) -> tuple:
            if fields.get("confirm", "").strip() != name:
                raise RequestRefused(422, f"type the tenant's name ({name}) to confirm the deletion")
            result = await self.commands.delete(name, session.actor)
            return 202, None, result.changed, str(result.correlation_id), None

        return await self._act(request, name, "tenant.delete", run)

    async def rollback(self, request: Request, name: str) -> Response:
        """Serve a retained release again (the API's rollback: a new version copying it)."""
        async def run(session: sess.Session, fields: dict[str, str]) -> tuple:
            try:
                to = int(fields.get("to", ""))
            except ValueError:
                raise RequestRefused(422, "to: give the version of a retained release") from None
            kept = {r["version"] for r in facts.retained_releases(self.ctx, name)} or None
            result = await self.commands.rollback(name, to, session.actor, kept)
            return 202, None, result.changed, str(result.correlation_id), None

        return await self._act(request, name, "tenant.rollback", run)

    async def replay(self, request: Request, name: str) -> Response:
        async def run(session: sess.Session, fields: dict[str, str]) -> tuple:
            await self.tenant_data(name)
            count = await replay(self.ctx.pool, name)
            return 202, f"{count} events queued for replay", count > 0, None, None

        return await self._act(request, name, "tenant.replay", run)

    async def reveal(self, request: Request, name: str) -> Response:
        async def run(session: sess.Session, fields: dict[str, str]) -> tuple:
            tenant = (await self.tenant_data(name))["tenant"]
            values = None
            if tenant["state"] != "deleted":
                values = await self.ctx.secrets(tenant_names(name, prefix=self.ctx.name_prefix).secret)
            if values is None:
                raise RequestRefused(404, f"tenant {name!r} has no credentials (state {tenant['state']})")
            return 200, "credentials revealed (recorded in the audit trail)", None, None, values

        return await self._act(request, name, "tenant.reveal_credentials", run)

    # --- DLQ and audit ----------------------------------------------------------------
    async def dlq_page(self, request: Request) -> Response:
        return await self.show_dlq(request)

    async def show_dlq(self, request: Request, *, error: str | None = None, notice: str | None = None,
                       status: int = 200) -> Response:
        session = self.session(request)
        reports: list[Any] = []
        from events.dlq import list_dlq
        from events.topology import topology

        try:
            reports = [r.to_json() for r in await list_dlq(self.ctx.settings, topology(self.ctx.name_prefix),
                                                           max_messages=50)]
        except Exception as exc:
            error = error or f"cannot read the queues ({type(exc).__name__})"
        errors = await self._dead_letter_errors([m["event_id"] for r in reports for m in r["messages"]])
        for m in (m for r in reports for m in r["messages"]):
            m["error"] = errors.get(m["event_id"] or "")
        return render("dlq.html", status, **self.base(session, reports=reports, error=error, notice=notice))

    async def _dead_letter_errors(self, event_ids: list[str | None]) -> dict[str, str]:
        """The error each dead-lettered event failed with, from the MessageDeadLettered notices."""
        ids = [i for i in event_ids if i]
        if not ids:
            return {}
        rows = await self.ctx.pool.fetch(
            "SELECT detail->'data'->>'failed_event_id' AS id, detail->'data'->>'error' AS error FROM outbox "
            "WHERE event_type = 'MessageDeadLettered' AND detail->'data'->>'failed_event_id' = ANY($1::text[]) "
            "ORDER BY seq", ids)
        return {r["id"]: r["error"] for r in rows}

    async def redrive(self, request: Request) -> Response:
        session = self.session(request)
        fields: dict[str, str] = {}
        from events.dlq import redrive
        from events.topology import topology

        try:
            fields = await self.form(request, session)
            queue = fields.get("queue") or None
            try:
                moved = await redrive(self.ctx.settings, topology(self.ctx.name_prefix), queue)
            except KeyError as exc:
                raise RequestRefused(404, str(exc.args[0])) from None
        except RequestRefused as exc:
            await self.audit(request, session.actor, "dlq.redrive", None, exc.status, error=exc.message,
                             summary={"queue": fields.get("queue")})
            return await self.show_dlq(request, error=exc.message, status=exc.status)
        await self.audit(request, session.actor, "dlq.redrive", None, 202, changed=moved > 0,
                         summary={"queue": queue, "moved": moved})
        return await self.show_dlq(request, notice=f"{moved} messages sent back to their queues")

    async def audit_page(self, request: Request, tenant: str | None = None) -> Response:
        session = self.session(request)
        return render("audit.html", **self.base(session, rows=await audit.read(self.ctx.pool, tenant or None, 300),
                                                tenant=tenant or ""))

"""`hostplane tenant ...` (mounted by hostplane.cli): every command goes through the HTTP API.

The API's address and token come from the running platform (state.json, credentials.json)
or from HOSTPLANE_API_URL / HOSTPLANE_API_TOKEN. Exit codes: 0 done; 1 the API refused
the request or the tenant ended `failed`; 2 the platform or API cannot be reached (or the
token is refused); 3 `--wait` timed out. Only `tenant env` prints secrets.
"""

from __future__ import annotations

import getpass
import json
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import quote

import typer
from rich.console import Console
from rich.live import Live
from rich.table import Table

from spec.limits import MAX_SPEC_BYTES
from contracts.naming import EdgeMode
from hostplane.cli_http import Http, HttpError
from hostplane.cli_show import NoLive, details_table, progress, shown, state_markup
from core.state import CREDENTIALS_FILE, load_state
from core.settings import get_settings
from contracts.naming import RANK, TERMINAL

tenant_app = typer.Typer(help="tenants: create, update, delete, list, show, env, releases, rollback", no_args_is_help=True)
console = Console()
err = Console(stderr=True, soft_wrap=True)  # errors stay one line each: easy to grep and copy

REFUSED, UNREACHABLE, TIMED_OUT = 1, 2, 3
UNTIL = ("provisioning", "building", "migrating", "ready")


def _fail(message: str, code: int = REFUSED, errors: list[dict[str, str]] | None = None) -> NoReturn:
    err.print(f"[bold red]error:[/] {message}", highlight=False)
    for e in errors or []:
        if e.get("message") and e["message"] not in message:
            err.print(f"  {e['path']}: {e['message']}", highlight=False)
    raise typer.Exit(code)


class Api:
    """A small client of /v1/; errors become clear messages and exit codes."""

    def __init__(self, base_url: str, token: str) -> None:
        self.base_url = base_url
        self.http = Http(base_url, timeout=30, headers={
            "Authorization": f"Bearer {token}", "X-Hostplane-Actor": f"{_user()}@cli"})

    def call(self, method: str, path: str, body: dict[str, Any] | None = None, *, retries: int = 0) -> dict[str, Any]:
        """`retries`: for reads that poll (--wait), how many 5xx or unreachable answers in a
        row to ride out (0.5 s apart) before failing; changes are never retried."""
        for attempt in range(retries + 1):
            try:
                resp = self.http.request(method, path, json=body)
            except HttpError as exc:  # the class only: messages may echo request details
                if attempt < retries:
                    time.sleep(0.5)
                    continue
                _fail(f"cannot reach the API at {self.base_url} ({type(exc).__name__}); is the platform running? "
                      "see `hostplane status`", UNREACHABLE)
            if resp.status_code < 500 or attempt == retries:
                break
            time.sleep(0.5)
        try:
            data = resp.json()
        except ValueError:
            data = {"detail": resp.text[:200]}
        if resp.status_code == 401:
            _fail("the API refused the token (401); is HOSTPLANE_API_TOKEN or credentials.json current?", UNREACHABLE)
        if resp.status_code >= 400:
            _fail(f"{data.get('detail', resp.reason_phrase)} (HTTP {resp.status_code})", REFUSED, data.get("errors"))
        return data


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:
        return "unknown"


def api_client() -> Api:
    settings = get_settings()
    url, token = os.environ.get("HOSTPLANE_API_URL"), os.environ.get("HOSTPLANE_API_TOKEN")
    if not url or not token:
        state = load_state(settings.home_dir)
        if state is None:
            _fail("the local platform is not running; start it with `hostplane up`", UNREACHABLE)
        url = url or state.api_url or f"http://{state.host}:{state.ports.get('api_port', settings.api_port)}"
        try:
            token = token or json.loads((settings.home_dir / CREDENTIALS_FILE).read_text())["api_token"]
        except (OSError, ValueError, KeyError):
            _fail(f"no API token in {settings.home_dir / CREDENTIALS_FILE}; run `hostplane up`", UNREACHABLE)
    try:
        return Api(url.rstrip("/"), token)
    except ValueError as exc:
        _fail(f"{exc}: set HOSTPLANE_API_URL to the API's http(s) address", UNREACHABLE)


def _read_spec(path: str) -> str:
    try:
        if path == "-":
            raw = sys.stdin.buffer.read(MAX_SPEC_BYTES + 1)
        else:
            with Path(path).open("rb") as fh:
                raw = fh.read(MAX_SPEC_BYTES + 1)
    except OSError as exc:
        _fail(f"cannot read the app spec {path!r}: {exc.strerror}")
    if len(raw) > MAX_SPEC_BYTES:
        _fail(f"the app spec {path!r} is larger than {MAX_SPEC_BYTES} bytes (the limit)")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        _fail(f"the app spec {path!r} is not UTF-8 text")


def _static_zip(path: str, spec_text: str) -> str | None:
    """The spec's static folder as the API takes it (hostplane.static_folder), or None."""
    from hostplane.static_folder import StaticFolderError, pack_static, static_folder_name

    if path == "-":
        if static_folder_name(spec_text):
            _fail("a spec read from stdin cannot name a static folder; give the spec as a file")
        return None
    try:
        return pack_static(Path(path), spec_text)
    except StaticFolderError as exc:
        _fail(str(exc))


APP = typer.Option(..., "--app", help="app spec file (YAML or JSON), '-' for stdin")
WAIT = typer.Option(False, "--wait", help="follow the stages until the tenant settles")
TIMEOUT = typer.Option(300.0, "--timeout", help="seconds --wait waits at most")
AS_JSON = typer.Option(False, "--json", help="machine-readable output")


@tenant_app.command("create")
def create(
    name: str = typer.Argument(..., help="tenant name: a DNS label, e.g. acme"),
    app: str = APP,
    domain: str | None = typer.Option(None, "--domain", help="custom domain the tenant owns"),
    edge: EdgeMode | None = typer.Option(
        None, "--edge",
        help="matters on the AWS target only: where its traffic enters, its own CloudFront distribution "
             "(dedicated) or the platform's shared one (pooled); default: the installation's (HOSTPLANE_AWS_EDGE)"),
    idle_after: int | None = typer.Option(
        None, "--idle-after", min=0, max=31_536_000,
        help="scale to zero: stop its runtime after this many seconds without a request (the next request "
             "wakes it); default: the platform's (HOSTPLANE_SCALE_TO_ZERO_AFTER)"),
    always_on: bool = typer.Option(False, "--always-on", help="never scale to zero (same as --idle-after 0)"),
    wait: bool = WAIT,
    until: str = typer.Option("ready", "--until", help=f"with --wait: stop at this state ({', '.join(UNTIL)})"),
    timeout: float = TIMEOUT,
    as_json: bool = AS_JSON,
) -> None:
    """Create a tenant from an app spec."""
    if until not in UNTIL:
        _fail(f"--until must be one of {', '.join(UNTIL)}")
    if always_on and idle_after is not None:
        _fail("give --idle-after SECONDS or --always-on, not both")
    api = api_client()
    spec_text = _read_spec(app)
    body: dict[str, Any] = {"name": name, "app": spec_text}
    if static := _static_zip(app, spec_text):
        body["static_zip"] = static
    if domain:
        body["domain"] = domain
    if edge:
        body["edge"] = edge
    if always_on or idle_after is not None:
        body["idle_after_s"] = 0 if always_on else idle_after
    _follow(api, api.call("POST", "/v1/tenants", body), wait, timeout, as_json, until)


@tenant_app.command("update")
def update(
    name: str = typer.Argument(...),
    app: str | None = typer.Option(None, "--app", help="new app spec file (YAML or JSON), '-' for stdin"),
    domain: str | None = typer.Option(None, "--domain", help="set the custom domain"),
    no_domain: bool = typer.Option(False, "--no-domain", help="remove the custom domain"),
    idle_after: int | None = typer.Option(
        None, "--idle-after", min=0, max=31_536_000,
        help="scale to zero: stop its runtime after this many seconds without a request (0: always on)"),
    always_on: bool = typer.Option(False, "--always-on", help="never scale to zero (same as --idle-after 0)"),
    allow_destructive: bool = typer.Option(False, "--allow-destructive", help="accept migrations that drop data"),
    wait: bool = WAIT,
    timeout: float = TIMEOUT,
    as_json: bool = AS_JSON,
) -> None:
    """Publish a new app spec, change the custom domain and/or the idle period of a tenant."""
    idle = always_on or idle_after is not None
    if app is None and domain is None and not no_domain and not idle:
        _fail("nothing to update: give --app SPEC, --domain HOST, --no-domain, --idle-after SECONDS or --always-on")
    if domain is not None and no_domain:
        _fail("give either --domain HOST or --no-domain, not both")
    if always_on and idle_after is not None:
        _fail("give --idle-after SECONDS or --always-on, not both")
    if idle and (app is not None or domain is not None or no_domain) and not wait:
        # each change must settle before the next is accepted: only --wait sees them through in turn
        _fail("--idle-after/--always-on with --app or --domain needs --wait (each change settles before the "
              "next); or run them as separate updates")
    body = None
    if app is not None:
        spec_text = _read_spec(app)
        body = {"app": spec_text, "allow_destructive": allow_destructive}
        if static := _static_zip(app, spec_text):
            body["static_zip"] = static
    api = api_client()
    if domain is not None or no_domain:  # the domain first: it only changes the route
        _follow(api, api.call("PUT", f"/v1/tenants/{name}/domain", {"domain": domain}), wait, timeout, as_json)
    if idle:  # then the idle period: it only changes the runtime's registration
        body_idle = {"idle_after_s": 0 if always_on else idle_after}
        _follow(api, api.call("PUT", f"/v1/tenants/{name}/idle-after", body_idle), wait, timeout, as_json)
    if body is not None:
        _follow(api, api.call("PUT", f"/v1/tenants/{name}/app", body), wait, timeout, as_json)


@tenant_app.command("rollback")
def rollback(
    name: str = typer.Argument(...),
    to: int | None = typer.Option(None, "--to", min=1, help="the retained release to serve again "
                                                            "(default: the one before the live one)"),
    wait: bool = WAIT,
    timeout: float = TIMEOUT,
    as_json: bool = AS_JSON,
) -> None:
    """Serve a retained release again, instantly (no rebuild): a new version copying it."""
    api = api_client()
    _follow(api, api.call("POST", f"/v1/tenants/{name}/rollback", {"to": to}), wait, timeout, as_json)


@tenant_app.command("releases")
def releases(name: str = typer.Argument(...), as_json: bool = AS_JSON) -> None:
    """List a tenant's releases: version, digests, times, who released them."""
    doc = api_client().call("GET", f"/v1/tenants/{name}/releases")
    if as_json:
        typer.echo(json.dumps(doc, indent=2))
        return
    table = Table(title=f"releases of {name}")
    for col in ("version", "sha256", "spec", "built", "activated", "by", "note"):
        table.add_column(col)
    for r in doc["releases"]:
        note = ", ".join(n for n in ("live" if r["live"] else "",
                                     f"rollback of {r['rollback_of']}" if r["rollback_of"] else "",
                                     "pruned" if r["retained"] is False else "") if n)
        table.add_row(str(r["version"]), (r["sha256"] or "")[:12], (r["spec_sha256"] or "")[:12],
                      (r["built_at"] or "")[:19], (r["activated_at"] or "")[:19], r["requested_by"] or "", note)
    console.print(table)


@tenant_app.command("delete")
def delete(name: str = typer.Argument(...), wait: bool = WAIT, timeout: float = TIMEOUT,
           as_json: bool = AS_JSON) -> None:
    """Delete a tenant and everything it owns."""
    api = api_client()
    _follow(api, api.call("DELETE", f"/v1/tenants/{name}"), wait, timeout, as_json)


@tenant_app.command("list")
def list_(include_deleted: bool = typer.Option(False, "--all", help="include deleted tenants"),
          as_json: bool = AS_JSON) -> None:
    """List tenants with their state."""
    tenants = api_client().call("GET", f"/v1/tenants{'?all=true' if include_deleted else ''}")["tenants"]
    if as_json:
        typer.echo(json.dumps(tenants, indent=2))
        return
    table = Table(title="tenants")
    for col in ("name", "state", "stage", "version", "url", "updated"):
        table.add_column(col)
    for t in tenants:
        table.add_row(t["name"], state_markup(t), t["stage"] or "", str(t["version"] or ""), t["url"] or "",
                      (t["updated_at"] or "")[:19])
    console.print(table)


@tenant_app.command("show")
def show(name: str = typer.Argument(...), as_json: bool = AS_JSON) -> None:
    """Show a tenant's state, version, URL and last error."""
    tenant = api_client().call("GET", f"/v1/tenants/{name}")
    if as_json:
        typer.echo(json.dumps(tenant, indent=2))
        return
    console.print(details_table(tenant))


@tenant_app.command("env")
def env(name: str = typer.Argument(...), as_json: bool = AS_JSON) -> None:
    """Print the tenant's own connection settings (DATABASE_URL, REDIS_URL, ...). Reveals secrets."""
    values = api_client().call("GET", f"/v1/tenants/{name}/env")["env"]
    if as_json:
        typer.echo(json.dumps(values, indent=2))
        return
    for key in sorted(values):
        typer.echo(f"{key}={shlex.quote(str(values[key]))}")


def _follow(api: Api, answer: dict[str, Any], wait: bool, timeout: float, as_json: bool,
            until: str = "ready") -> None:
    request = answer["request"]
    if not answer["changed"] and not as_json:
        console.print(f"nothing to do: tenant {answer['name']} already has this {request['kind']} in hand")
    if not wait:
        if as_json:
            typer.echo(json.dumps(answer, indent=2))
        else:
            console.print(f"accepted: {request['kind']} of tenant {answer['name']} (request #{request['generation']},"
                          f" correlation {request['correlation_id']}); follow it with "
                          f"`hostplane tenant show {answer['name']}`")
        return
    tenant = _wait(api, answer["name"], request, timeout, until, quiet=as_json)
    if as_json:
        typer.echo(json.dumps(tenant, indent=2))
    if tenant["state"] == "failed":
        e = tenant["error"] or {}
        _fail(shown(f"tenant {tenant['name']} failed at stage {e.get('stage')} ({e.get('step')}): {e.get('message')}"))


POLL_RETRIES = 4
LONG_POLL_S = 1


def _wait(api: Api, name: str, request: dict[str, Any], timeout: float, until: str, quiet: bool) -> dict[str, Any]:
    started = time.monotonic()
    tenant = api.call("GET", f"/v1/tenants/{name}")
    with Live(progress(tenant, request, 0), console=err, transient=False, refresh_per_second=8,
              auto_refresh=False) if not quiet else NoLive() as live:
        while True:
            elapsed = time.monotonic() - started
            live.update(progress(tenant, request, elapsed), refresh=True)
            if tenant["request"]["generation"] > request["generation"]:
                _fail(f"tenant {name}: a newer request (#{tenant['request']['generation']}) superseded this one")
            if _settled(tenant, request["kind"], until):
                return tenant
            if elapsed > timeout:
                waiting = f", waiting for {tenant['waiting_for']}" if tenant.get("waiting_for") else ""
                _fail(f"timed out after {timeout:g}s: tenant {name} is {tenant['state']} "
                      f"(stage {tenant['stage']}{waiting})", TIMED_OUT)
            # Long-poll: answered as soon as the status moves past what we saw (services.api.watch);
            # a second at most, so the elapsed time on screen keeps moving.
            seen, asked = tenant.get("updated_at"), time.monotonic()
            tenant = api.call("GET", f"/v1/tenants/{name}?after={quote(seen or '', safe='')}&wait={LONG_POLL_S}",
                              retries=POLL_RETRIES)
            if tenant.get("updated_at") == seen:  # unchanged at once: an API without long-polls; poll gently
                time.sleep(max(0.0, 0.5 - (time.monotonic() - asked)))


def _settled(tenant: dict[str, Any], kind: str, until: str) -> bool:
    state = tenant["state"]
    if state in TERMINAL[kind]:
        return True
    return kind == "create" and state in RANK and RANK[state] >= RANK[until]

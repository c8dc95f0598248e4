"""`hostplane demo`: after `up`, the example tenant through the whole pipeline, timed.

Every step is a real request: the API creates tenant `demo` from examples/tasks.yaml
(provision → route → build → migrate → release), rows are written through the edge to
the generated API, then the spec gains a field (`task.notes`) and the new version goes
live with the rows intact. Re-running reuses the tenant (an unchanged spec is no new
version). Each step's time is printed at the end.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import yaml
from rich.console import Console
from rich.table import Table

from hostplane.cli_show import details_table
from hostplane.cli_tenant import Api, api_client
from core.settings import Settings

EXAMPLE_TENANT = "demo"
EXAMPLE_SPEC = Path(__file__).resolve().parents[1] / "examples" / "tasks.yaml"
WAIT_S = 90.0


class DemoFailed(RuntimeError):
    pass


def _static() -> dict[str, str]:
    """The example's static folder (its stylesheet and logo), sent with the spec as the CLI does."""
    from hostplane.static_folder import pack_static

    packed = pack_static(EXAMPLE_SPEC, EXAMPLE_SPEC.read_text())
    return {"static_zip": packed} if packed else {}


def updated_spec() -> dict[str, Any]:
    """The example plus an optional `notes` field on task: an additive migration."""
    spec = yaml.safe_load(EXAMPLE_SPEC.read_text())
    spec["entities"]["task"]["fields"]["notes"] = {"type": "text"}
    return spec


def _wait_ready(api: Api, newer_than: int | None = None) -> dict[str, Any]:
    deadline = time.monotonic() + WAIT_S
    while True:
        tenant = api.call("GET", f"/v1/tenants/{EXAMPLE_TENANT}")
        if tenant["state"] == "failed":
            raise DemoFailed(f"tenant {EXAMPLE_TENANT!r} failed at {tenant['stage']}: {tenant.get('error')}")
        if tenant["state"] == "ready" and (newer_than is None or (tenant["version"] or 0) > newer_than):
            return tenant
        if time.monotonic() > deadline:
            raise DemoFailed(f"tenant {EXAMPLE_TENANT!r} not ready within {WAIT_S:.0f}s (state {tenant['state']}, "
                             f"stage {tenant['stage']}); see `hostplane tenant show {EXAMPLE_TENANT}` and "
                             "`hostplane logs`")
        time.sleep(0.1)


def _app(tenant: dict[str, Any]) -> httpx.Client:
    """The tenant's app through the edge (loopback + Host header: no DNS for *.localhost needed)."""
    url = httpx.URL(tenant["url"])
    return httpx.Client(base_url=f"http://127.0.0.1:{url.port or 80}", headers={"Host": url.host}, timeout=10)


def _ok(resp: httpx.Response, what: str) -> Any:
    if resp.status_code >= 300:
        raise DemoFailed(f"{what}: HTTP {resp.status_code} {resp.text[:200]}")
    return resp.json()


def run_demo(settings: Settings, console: Console, up_s: float | None = None) -> None:
    api = api_client()
    timings: list[tuple[str, float]] = [("platform up", up_s)] if up_s is not None else []

    def step(label: str, run: Callable[[], Any]) -> Any:
        started = time.perf_counter()
        with console.status(label + "..."):
            result = run()
        timings.append((label, time.perf_counter() - started))
        return result

    def create() -> dict[str, Any]:
        names = {t["name"]: t for t in api.call("GET", "/v1/tenants")["tenants"]}
        if EXAMPLE_TENANT not in names or names[EXAMPLE_TENANT]["state"] == "deleted":
            api.call("POST", "/v1/tenants", {"name": EXAMPLE_TENANT, "app": EXAMPLE_SPEC.read_text(), **_static()})
        return _wait_ready(api)

    tenant = step(f"create tenant {EXAMPLE_TENANT!r} (provision, route, build, migrate, release)", create)
    console.print(f"tenant [bold]{EXAMPLE_TENANT}[/] v{tenant['version']} live at [link]{tenant['url']}[/]")
    console.print(f"dashboard: [link]{api.base_url}/ui/[/] (log in with the API token in "
                  f"{settings.home_dir / 'credentials.json'})")

    with _app(tenant) as app:
        def write() -> list[dict[str, Any]]:
            ada = _ok(app.post("/api/person", json={"name": "Ada", "role": "admin"}), "POST /api/person")
            return [_ok(app.post("/api/task", json={"title": title, "owner": ada["id"], "priority": p}),
                        "POST /api/task") for title, p in (("write the demo", 1), ("ship it", 2), ("rest", 5))]

        written = step("write 1 person + 3 tasks through the generated API", write)
        before = tenant["version"]

        def update() -> dict[str, Any]:
            answer = api.call("PUT", f"/v1/tenants/{EXAMPLE_TENANT}/app", {"app": updated_spec(), **_static()})
            return _wait_ready(api, before if answer["changed"] else None)

        tenant = step("update the spec (+ task.notes) until the new version is live", update)

        def check() -> list[dict[str, Any]]:
            rows = {r["id"]: r for r in _ok(app.get("/api/task?limit=200"), "GET /api/task")["items"]}
            missing = [w["title"] for w in written if rows.get(w["id"], {}).get("title") != w["title"]]
            if missing:
                raise DemoFailed(f"rows lost across the update: {missing}")
            noted = _ok(app.post("/api/task", json={"title": "uses the new field", "notes": "added in v2"}),
                        "POST /api/task with notes")
            if noted.get("notes") != "added in v2":
                raise DemoFailed(f"the new field is not live: {noted}")
            return [rows[w["id"]] for w in written] + [noted]

        rows = step(f"read the rows back from v{tenant['version']}", check)

    table = Table(title=f"tasks of {EXAMPLE_TENANT!r} at v{tenant['version']} (rows written at v{before} intact)")
    for col in ("id", "title", "priority", "notes"):
        table.add_column(col)
    for r in rows:
        table.add_row(str(r["id"]), r["title"], str(r.get("priority") or ""), str(r.get("notes") or ""))
    console.print(table)
    console.print(details_table(tenant))
    times = Table(title="demo timings")
    times.add_column("step")
    times.add_column("seconds", justify="right")
    for label, seconds in timings:
        times.add_row(label, f"{seconds:.1f}")
    times.add_row("total", f"{sum(s for _, s in timings):.1f}")
    console.print(times)
    console.print(f"try: `hostplane tenant releases {EXAMPLE_TENANT}`, `hostplane tenant rollback "
                  f"{EXAMPLE_TENANT} --wait`; `hostplane down` stops everything.")

"""The whole tenant lifecycle through the CLI, as a user runs it, on each emulator.

up → create from the example spec → the tenant URL serves the generated app and its
static files → rows written → spec updated twice (new entity, new field) → new version
live with the rows intact → custom domain added and served → rollback to v2 → delete → orphan scan clean.
`make test` runs it against moto and LocalStack; `make e2e EMULATOR=...` against one.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import httpx
import pytest
import yaml

from hostplane.local.ephemeral import RunningPlatform, platform_settings
from tests.support.cli import hostplane, ok

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]
EMULATOR = os.environ.get("HOSTPLANE_E2E_EMULATOR")
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


class Edge:
    """Requests to a tenant through Caddy, with the tenant's host name."""

    def __init__(self, port: int) -> None:
        self.client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10)

    def get(self, host: str, path: str) -> httpx.Response:
        return self.client.get(path, headers={"Host": host})

    def post(self, host: str, path: str, body: dict) -> httpx.Response:
        return self.client.post(path, json=body, headers={"Host": host})

    def version(self, host: str) -> int | None:
        resp = self.get(host, "/healthz")
        return resp.json().get("version") if resp.status_code == 200 else None

    def wait_version(self, host: str, version: int, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while self.version(host) != version:
            assert time.monotonic() < deadline, f"{host} does not serve version {version} (serves {self.version(host)})"
            time.sleep(0.2)


def spec_with(tmp: Path, name: str, change) -> Path:
    """The example spec with `change` applied, written beside a copy of its static folder."""
    spec = yaml.safe_load((EXAMPLES / "tasks.yaml").read_text())
    change(spec)
    folder = tmp / name
    folder.mkdir()
    if (EXAMPLES / "static").is_dir():
        (folder / "static").symlink_to(EXAMPLES / "static")
    path = folder / "tasks.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


@pytest.mark.parametrize("emulator", [EMULATOR] if EMULATOR else ["moto", "localstack"])
def test_tenant_lifecycle_through_the_cli(tmp_path, emulator):
    settings = platform_settings(tmp_path / "home", emulator)
    env = RunningPlatform(settings=settings, conn=None, emulator=emulator).env()  # type: ignore[arg-type]
    env["COLUMNS"] = "200"
    edge = Edge(settings.edge_port)
    host = "shop.localhost"
    try:
        ok(hostplane(env, "up"))
        status = json.loads(ok(hostplane(env, "status", "--json")))
        assert status["api"] and status["edge"]

        made = json.loads(ok(hostplane(env, "tenant", "create", "shop", "--app", str(EXAMPLES / "tasks.yaml"),
                                       "--wait", "--json")))
        assert made["state"] == "ready" and made["version"] == 1, made
        assert edge.version(host) == 1
        page = edge.get(host, "/")
        assert page.status_code == 200 and "text/html" in page.headers["content-type"]
        if (EXAMPLES / "static").is_dir():
            asset = next(p for p in sorted((EXAMPLES / "static").rglob("*")) if p.is_file())
            served = edge.get(host, "/static/" + asset.relative_to(EXAMPLES / "static").as_posix())
            assert served.status_code == 200 and served.content == asset.read_bytes()
        assert edge.get("nobody.localhost", "/healthz").status_code == 404

        person = edge.post(host, "/api/person", {"name": "Ada", "role": "admin"})
        assert person.status_code == 201, person.text
        rows = [edge.post(host, "/api/task", {"title": f"task {i}", "owner": person.json()["id"], "priority": 3})
                for i in range(5)]
        assert all(r.status_code == 201 for r in rows), [r.text for r in rows]
        ids = sorted(r.json()["id"] for r in rows)

        v2 = spec_with(tmp_path, "v2", lambda s: s["entities"].update(
            {"project": {"fields": {"name": {"type": "string", "required": True}}}}))
        shown = json.loads(ok(hostplane(env, "tenant", "update", "shop", "--app", str(v2), "--wait", "--json")))
        assert shown["state"] == "ready" and shown["version"] == 2, shown
        edge.wait_version(host, 2)
        assert edge.post(host, "/api/project", {"name": "launch"}).status_code == 201

        v3 = spec_with(tmp_path, "v3", lambda s: (
            s["entities"].update({"project": {"fields": {"name": {"type": "string", "required": True}}}}),
            s["entities"]["task"]["fields"].update({"notes": {"type": "text"}})))
        shown = json.loads(ok(hostplane(env, "tenant", "update", "shop", "--app", str(v3), "--wait", "--json")))
        assert shown["version"] == 3, shown
        edge.wait_version(host, 3)
        listed = edge.get(host, "/api/task?limit=100").json()
        items = listed["items"] if isinstance(listed, dict) else listed
        assert sorted(t["id"] for t in items) == ids, "rows written at v1 must survive v2 and v3"
        assert all("notes" in t and t["title"].startswith("task ") for t in items)

        ok(hostplane(env, "tenant", "update", "shop", "--domain", "shop.example.com", "--wait"))
        assert edge.version("shop.example.com") == 3
        assert edge.version(host) == 3

        # Rollback to v2 (v3 only added a column): a new version copying v2's artifact, rows intact.
        started = time.monotonic()
        rolled = json.loads(ok(hostplane(env, "tenant", "rollback", "shop", "--to", "2", "--wait", "--json")))
        assert rolled["state"] == "ready" and rolled["version"] == 4, rolled
        edge.wait_version(host, 4)
        print(f"rollback v3 -> copy of v2 serving at the edge in {time.monotonic() - started:.2f} s")
        releases = json.loads(ok(hostplane(env, "tenant", "releases", "shop", "--json")))
        by_version = {r["version"]: r for r in releases["releases"]}
        assert by_version[4]["rollback_of"] == 2 and by_version[4]["live"], releases
        assert by_version[4]["sha256"] == by_version[2]["sha256"], "a rollback serves the retained bytes"
        assert "rollback of 2" in ok(hostplane(env, "tenant", "releases", "shop"))
        timeline = [e["event_type"] for e in json.loads(ok(hostplane(env, "events", "list", "--tenant", "shop",
                                                                      "--json")))]
        assert "RollbackRequested" in timeline, timeline
        listed = edge.get(host, "/api/task?limit=100").json()
        items = listed["items"] if isinstance(listed, dict) else listed
        assert sorted(t["id"] for t in items) == ids, "rows survive the rollback"

        ok(hostplane(env, "tenant", "delete", "shop", "--wait"))
        assert edge.get(host, "/healthz").status_code == 404
        assert edge.get("shop.example.com", "/healthz").status_code == 404
        orphans = json.loads(ok(hostplane(env, "doctor", "--orphans", "--json")))
        assert not any(orphans.values()) if isinstance(orphans, dict) else orphans == [], orphans
    finally:
        edge.client.close()
        hostplane(env, "down", "--purge")

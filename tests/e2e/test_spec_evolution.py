"""Spec evolution through the CLI, as a user does it: v1 → add an entity → add an
optional field → add a required field with a default; the rows written at v1 are all
still there and readable through the app at v4. A destructive change without the flag
is refused with a clear message and changes nothing; with the flag it applies."""

from __future__ import annotations

import copy
import json
import os

import httpx
import pytest

from hostplane.local.ephemeral import RunningPlatform, platform_settings
from tests.support.cli import hostplane

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]
EMULATOR = os.environ.get("HOSTPLANE_E2E_EMULATOR") or "moto"
NAME = "evo"
V1 = {"app": "Evolving", "entities": {"task": {"fields": {
    "title": {"type": "string", "required": True, "max_length": 100}}}},
    "pages": [{"path": "/", "title": "Tasks", "shows": "task"}]}


@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    settings = platform_settings(tmp_path_factory.mktemp("evolution") / "home", EMULATOR)
    env = RunningPlatform(settings=settings, conn=None, emulator=EMULATOR).env()  # type: ignore[arg-type]
    env["COLUMNS"] = "200"
    up = hostplane(env, "up")
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        yield settings, env
    finally:
        hostplane(env, "down", "--purge")


def version(n: int) -> dict:
    spec = copy.deepcopy(V1)
    fields = spec["entities"]["task"]["fields"]
    if n >= 2:
        spec["entities"]["person"] = {"fields": {"name": {"type": "string", "required": True}}}
    if n >= 3:
        fields["note"] = {"type": "text"}
    if n >= 4:
        fields["priority"] = {"type": "integer", "required": True, "default": 3, "min": 1, "max": 5}
    return spec


def write(tmp_path, n: int, spec: dict) -> str:
    path = tmp_path / f"v{n}.json"
    path.write_text(json.dumps(spec))
    return str(path)


def show(env) -> dict:
    shown = hostplane(env, "tenant", "show", NAME, "--json")
    assert shown.returncode == 0, shown.stderr
    return json.loads(shown.stdout)


def app_client(settings) -> httpx.Client:
    return httpx.Client(base_url=f"http://127.0.0.1:{settings.edge_port}", headers={"Host": f"{NAME}.localhost"},
                        timeout=10)


def test_spec_evolution_keeps_the_data(platform, tmp_path):
    settings, env = platform
    created = hostplane(env, "tenant", "create", NAME, "--app", write(tmp_path, 1, version(1)), "--wait")
    assert created.returncode == 0, created.stdout + created.stderr
    assert (show(env)["state"], show(env)["version"]) == ("ready", 1)
    with app_client(settings) as app:
        for i in range(3):
            resp = app.post("/api/task", json={"title": f"written at v1 #{i}"})
            assert resp.status_code == 201, resp.text

        for n in (2, 3, 4):
            updated = hostplane(env, "tenant", "update", NAME, "--app", write(tmp_path, n, version(n)), "--wait")
            assert updated.returncode == 0, updated.stdout + updated.stderr
            assert (show(env)["state"], show(env)["version"]) == ("ready", n)
        rows = app.get("/api/task").json()["items"]
        assert [(r["title"], r["note"], r["priority"]) for r in rows] == [
            (f"written at v1 #{i}", None, 3) for i in range(3)]
        assert app.post("/api/person", json={"name": "ada"}).status_code == 201

        without_note = version(4)
        del without_note["entities"]["task"]["fields"]["note"]
        spec5 = write(tmp_path, 5, without_note)
        refused = hostplane(env, "tenant", "update", NAME, "--app", spec5, "--wait")
        assert refused.returncode != 0
        assert ("entities.task.fields.note: removing a field deletes its data; send --allow-destructive"
                in refused.stdout + refused.stderr)
        assert (show(env)["state"], show(env)["version"]) == ("ready", 4)
        assert app.get("/api/task").json()["items"] == rows, "nothing changed"

        applied = hostplane(env, "tenant", "update", NAME, "--app", spec5, "--allow-destructive", "--wait")
        assert applied.returncode == 0, applied.stdout + applied.stderr
        assert (show(env)["state"], show(env)["version"]) == ("ready", 5)
        after = app.get("/api/task?limit=37").json()["items"]  # a query no earlier release cached
        assert [(r["title"], r["priority"]) for r in after] == [(f"written at v1 #{i}", 3) for i in range(3)]
        assert all("note" not in r for r in after)
        cached = app.get("/api/task")  # the query v4 cached: v5 must not serve v4's list
        assert not any("note" in r for r in cached.json()["items"]), cached.headers.get("X-Cache")

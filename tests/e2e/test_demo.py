"""`hostplane demo` as a user runs it: platform up, the example tenant created, rows
written, the spec updated to version 2 with the rows intact, each step timed."""

from __future__ import annotations

import json
import os

import httpx
import pytest

from hostplane.demo import EXAMPLE_SPEC
from hostplane.local.ephemeral import RunningPlatform, platform_settings
from tests.support.cli import hostplane

pytestmark = pytest.mark.e2e
EMULATOR = os.environ.get("HOSTPLANE_E2E_EMULATOR")


@pytest.mark.timeout(600)
@pytest.mark.parametrize("emulator", [EMULATOR] if EMULATOR else ["moto", "localstack"])
def test_demo_creates_writes_updates_and_times_the_example(tmp_path, emulator):
    settings = platform_settings(tmp_path / "home", emulator)
    env = RunningPlatform(settings=settings, conn=None, emulator=emulator).env()  # type: ignore[arg-type]
    env["COLUMNS"] = "200"
    try:
        demo = hostplane(env, "demo")
        assert demo.returncode == 0, demo.stdout + demo.stderr
        out = demo.stdout
        assert "demo timings" in out and "platform up" in out and "total" in out, out
        assert "http://demo.localhost:" in out and "/ui/" in out, out
        shown = json.loads(hostplane(env, "tenant", "show", "demo", "--json").stdout)
        assert (shown["state"], shown["version"]) == ("ready", 2), shown
        assert "rows written at v1 intact" in out and "added in v2" in out, out
        app = httpx.Client(base_url=f"http://127.0.0.1:{settings.edge_port}", headers={"Host": "demo.localhost"})
        rows = app.get("/api/task?limit=99").json()["items"]
        assert {"write the demo", "ship it", "rest", "uses the new field"} <= {r["title"] for r in rows}
        assert all("notes" in r for r in rows)
        css = app.get("/static/style.css")  # the example's static folder went with its spec
        assert css.status_code == 200 and css.content == (EXAMPLE_SPEC.parent / "static" / "style.css").read_bytes()
        listed = hostplane(env, "events", "list", "--tenant", "demo", "--json")
        assert listed.returncode == 0, listed.stderr
        types = [e["event_type"] for e in json.loads(listed.stdout)]
        assert types[0] == "TenantRequested" and types.count("ReleaseActivated") >= 2, types

        again = hostplane(env, "demo")  # re-run: the tenant is reused, the spec is unchanged
        assert again.returncode == 0, again.stdout + again.stderr
        assert json.loads(hostplane(env, "tenant", "show", "demo", "--json").stdout)["version"] == 2
        creds = (settings.home_dir / "credentials.json").read_text()
        for secret in json.loads(creds).values():
            assert secret not in out + demo.stderr + again.stdout + again.stderr + listed.stdout
        if emulator == "moto":  # its state is kept across down and up (LocalStack's community edition keeps none)
            assert hostplane(env, "down").returncode == 0
            back = hostplane(env, "demo")  # up again: the tenant's secret and static files are still there
            assert back.returncode == 0, back.stdout + back.stderr
            shown = json.loads(hostplane(env, "tenant", "show", "demo", "--json").stdout)
            assert (shown["state"], shown["version"], shown["runtime_failure"]) == ("ready", 2, None), shown
            rows = app.get("/api/task?limit=99").json()["items"]
            assert {"write the demo", "ship it", "rest", "uses the new field"} <= {r["title"] for r in rows}
            assert app.get("/static/style.css").status_code == 200
    finally:
        down = hostplane(env, "down", "--purge")
    assert down.returncode == 0, down.stderr

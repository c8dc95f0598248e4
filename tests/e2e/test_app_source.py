"""Taking over the generated code, as a developer does it, on a platform started with
`hostplane up`: create from examples/tasks.yaml (its static folder is served), `app
export`, edit, `app deploy --source --wait`, the edit is live at the edge; an
uncompilable edit fails with file:line and the old version keeps serving; a file added
under static/ is served at /static/<name>."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import httpx
import pytest

from hostplane.local.ephemeral import RunningPlatform, platform_settings
from tests.support.cli import hostplane

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]
EMULATOR = os.environ.get("HOSTPLANE_E2E_EMULATOR") or "moto"
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
NAME = "shop"


@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    settings = platform_settings(tmp_path_factory.mktemp("source") / "home", EMULATOR)
    env = RunningPlatform(settings=settings, conn=None, emulator=EMULATOR).env()  # type: ignore[arg-type]
    up = hostplane(env, "up")
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        yield settings, env
    finally:
        hostplane(env, "down", "--purge")


def edge_get(settings, path: str, expect: str, *, wait_s: float = 20.0, name: str = NAME,
             status: int = 200) -> httpx.Response:
    """GET through the edge until the body holds `expect` (routes and swaps settle in ms)."""
    deadline = time.monotonic() + wait_s
    with httpx.Client(base_url=f"http://127.0.0.1:{settings.edge_port}", headers={"Host": f"{name}.localhost"},
                      timeout=5) as edge:
        while True:
            resp = edge.get(path)
            if resp.status_code == status and expect in resp.text:
                return resp
            if time.monotonic() > deadline:
                raise AssertionError(f"{path} never served {expect!r}: {resp.status_code} {resp.text[:200]}")
            time.sleep(0.1)


def test_export_edit_deploy_and_static_files(platform, tmp_path):
    settings, env = platform
    made = hostplane(env, "tenant", "create", NAME, "--app", str(EXAMPLES / "tasks.yaml"), "--wait", "--timeout", "120")
    assert made.returncode == 0, made.stdout + made.stderr
    css = edge_get(settings, "/static/style.css", "font-family")
    assert css.content == (EXAMPLES / "static" / "style.css").read_bytes() and "text/css" in css.headers["content-type"]
    assert b"<svg" in edge_get(settings, "/static/logo.svg", "<svg").content
    page = edge_get(settings, "/", "<title>My tasks · Tasks</title>")
    assert '<link rel="stylesheet" href="/static/style.css">' in page.text  # the spec has static files

    src = tmp_path / "src"
    exported = hostplane(env, "app", "export", NAME, str(src))
    assert exported.returncode == 0, exported.stderr
    app_py = src / "app.py"
    original = app_py.read_text()
    assert "TITLE = 'Tasks'" in original
    app_py.write_text(original.replace("TITLE = 'Tasks'", "TITLE = 'Edited by hand'"))
    (src / "static").mkdir(exist_ok=True)
    (src / "static" / "hello.txt").write_text("hello from the source folder\n")
    deployed = hostplane(env, "app", "deploy", NAME, "--source", str(src), "--wait", "--timeout", "120")
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    edge_get(settings, "/", "<title>My tasks · Edited by hand</title>")
    assert edge_get(settings, "/static/hello.txt", "hello from").text == "hello from the source folder\n"
    edge_get(settings, "/static/style.css", "font-family")  # a source deploy adds; it does not mirror
    live = httpx.get(f"http://127.0.0.1:{settings.edge_port}/healthz", headers={"Host": f"{NAME}.localhost"}).json()

    lines = app_py.read_text().splitlines()
    app_py.write_text("\n".join([*lines, "def broken(:", ""]))
    failed = hostplane(env, "app", "deploy", NAME, "--source", str(src), "--wait", "--timeout", "120")
    assert failed.returncode != 0
    assert f"app.py:{len(lines) + 1}" in failed.stdout + failed.stderr, failed.stdout + failed.stderr
    time.sleep(1)  # nothing is on its way: the old version keeps serving
    edge_get(settings, "/", "<title>My tasks · Edited by hand</title>", wait_s=2)
    still = httpx.get(f"http://127.0.0.1:{settings.edge_port}/healthz", headers={"Host": f"{NAME}.localhost"}).json()
    assert still["version"] == live["version"]


def test_tenant_update_mirrors_the_static_folder(platform, tmp_path):
    settings, env = platform
    shutil.copytree(EXAMPLES, tmp_path / "app")
    spec, static = tmp_path / "app" / "tasks.yaml", tmp_path / "app" / "static"
    made = hostplane(env, "tenant", "create", "mirror", "--app", str(spec), "--wait", "--timeout", "120")
    assert made.returncode == 0, made.stdout + made.stderr
    edge_get(settings, "/static/logo.svg", "<svg", name="mirror")
    (static / "logo.svg").unlink()
    (static / "extra.css").write_text("h1 { color: teal; }\n")
    updated = hostplane(env, "tenant", "update", "mirror", "--app", str(spec), "--wait", "--timeout", "120")
    assert updated.returncode == 0, updated.stdout + updated.stderr
    edge_get(settings, "/static/extra.css", "teal", name="mirror")
    edge_get(settings, "/static/logo.svg", "", name="mirror", status=404)  # gone from the folder, gone
    again = hostplane(env, "tenant", "update", "mirror", "--app", str(spec), "--json")
    assert again.returncode == 0 and '"changed": false' in again.stdout, again.stdout + again.stderr

"""The dashboard in a real browser: headless Chromium (Debian's `chromium`) driven by Playwright.

Log in, create a tenant from the page, watch its row follow the pipeline until the state the
platform settles on (the API says which: `ready` once every stage's service runs), open its
timeline, delete it. Saves dashboard-tenants.png and dashboard-timeline.png in the test's
temporary folder; `SCREENSHOTS_TO=docs` refreshes the ones docs/ shows (a test run never
writes into the checkout otherwise).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import httpx
import pytest

from hostplane.local.ephemeral import start_platform, stop_platform
from hostplane.local.services import CONTROL_PLANE, installed_services

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(420)]
EMULATOR = os.environ.get("HOSTPLANE_E2E_EMULATOR") or "moto"
REPO = Path(__file__).resolve().parents[2]
SPEC = (REPO / "examples" / "tasks.yaml").read_text()
NAME = "web-shop"
QUIET_S = 12.0  # a state unchanged this long, with no service left to move it, is where it settles


@pytest.fixture(scope="module")
def running(tmp_path_factory):
    plat = start_platform(tmp_path_factory.mktemp("browser"), EMULATOR)
    try:
        yield plat
    finally:
        stop_platform(plat)


@pytest.fixture(scope="module")
def browser():
    executable = shutil.which("chromium")
    if executable is None:
        pytest.fail("chromium is not installed: `apt-get install -y chromium` (make test installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        try:
            yield chromium
        finally:
            chromium.close()


def settled_state(api: httpx.Client, name: str, timeout: float = 150.0) -> dict:
    """Poll the API until the request settles, or its state stops moving for QUIET_S."""
    deadline = time.monotonic() + timeout
    last, since = None, time.monotonic()
    while time.monotonic() < deadline:
        tenant = api.get(f"/v1/tenants/{name}").json()
        if tenant["request"]["settled"]:
            return tenant
        key = (tenant["state"], tenant["stage"])
        if key != last:
            last, since = key, time.monotonic()
        elif time.monotonic() - since > QUIET_S:
            return tenant
        time.sleep(0.5)
    raise AssertionError(f"{name} kept changing for {timeout}s (last {last})")


def test_login_create_watch_timeline_delete(running, browser, tmp_path):
    from playwright.sync_api import expect

    base = f"http://127.0.0.1:{running.settings.api_port}"
    token = json.loads((running.settings.home_dir / "credentials.json").read_text())["api_token"]
    api = httpx.Client(base_url=base, timeout=15, headers={"Authorization": f"Bearer {token}"})
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    page.set_default_timeout(20_000)

    page.goto(f"{base}/ui/")
    expect(page).to_have_url(f"{base}/ui/login")
    page.fill("input[name=actor]", "e2e-browser")
    page.fill("input[name=token]", token)
    page.click("#login button[type=submit]")
    expect(page.locator("h1")).to_have_text("Tenants")
    cookie = next(c for c in page.context.cookies() if c["name"] == "hp_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and token not in cookie["value"]

    page.fill("#create-tenant input[name=name]", NAME)
    page.fill("#create-tenant textarea[name=app]", SPEC)
    page.click("#create-tenant button[type=submit]")
    expect(page.locator("#tenant-name")).to_have_text(NAME)

    page.goto(f"{base}/ui/")
    row = page.locator(f"tr[data-tenant={NAME}]")
    expect(row).to_be_visible()
    seen = {row.get_attribute("data-state")}
    final = settled_state(api, NAME)
    deadline = time.monotonic() + 30  # the page polls: it must come to show what the API says
    while (state := page.locator(f"tr[data-tenant={NAME}]").get_attribute("data-state")) != final["state"]:
        seen.add(state)
        assert time.monotonic() < deadline, f"page shows {state}, the API says {final['state']}"
        page.wait_for_timeout(300)
    seen.add(state)
    assert final["state"] in ("ready", "provisioning", "building", "migrating", "failed"), final
    if set(CONTROL_PLANE) <= set(installed_services()):  # every stage has its service: nothing less will do
        assert final["state"] == "ready", final
    assert seen - {"requested"}, seen  # the row moved past `requested` without a reload
    shots = REPO / os.environ["SCREENSHOTS_TO"] if os.environ.get("SCREENSHOTS_TO") else tmp_path
    shots.mkdir(exist_ok=True)
    page.screenshot(path=str(shots / "dashboard-tenants.png"), full_page=True)

    page.click(f"tr[data-tenant={NAME}] a")
    expect(page.locator("#tenant-name")).to_have_text(NAME)
    expect(page.locator("#timeline")).to_contain_text("TenantRequested")
    expect(page.locator("#timeline")).to_contain_text("from api")
    expect(page.locator("#tenant-state")).to_have_text(final["state"])
    if final["progress"]["provisioned"]:
        expect(page.locator("#timeline")).to_contain_text("TenantProvisioned")
    page.locator("#timeline").scroll_into_view_if_needed()
    page.screenshot(path=str(shots / "dashboard-timeline.png"), full_page=True)

    page.fill("#delete-tenant input[name=confirm]", NAME)
    page.click("#delete-tenant button[type=submit]")
    expect(page.locator("#tenant-name")).to_have_text(NAME)
    after = settled_state(api, NAME)
    assert after["request"]["kind"] == "delete"
    expect(page.locator("#tenant-state")).to_have_text(after["state"], timeout=20_000)
    records = api.get("/v1/audit", params={"tenant": NAME}).json()["records"]
    assert [(r["action"], r["actor"], r["channel"]) for r in reversed(records)] == [
        ("tenant.create", "e2e-browser", "dashboard"), ("tenant.delete", "e2e-browser", "dashboard")]
    for shot in ("dashboard-tenants.png", "dashboard-timeline.png"):
        assert (shots / shot).stat().st_size > 10_000

"""The dashboard and the audit trail on a real platform (API process, PostgreSQL, moto).

Login sets an HttpOnly SameSite=Strict session; a form without the CSRF token or from
another origin changes nothing; dashboard and API writes both land in the append-only
audit_log (the database refuses UPDATE/DELETE); no page carries the token or a password.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import asyncpg
import httpx
import pytest

from hostplane.local.ephemeral import RunningPlatform, start_platform, stop_platform
from services.api.audit import token_identity

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]
REPO = Path(__file__).resolve().parents[2]
SPEC = (REPO / "examples" / "tasks.yaml").read_text()


@pytest.fixture(scope="module")
def platform(tmp_path_factory) -> RunningPlatform:
    running = start_platform(tmp_path_factory.mktemp("dash"), "moto")
    try:
        yield running
    finally:
        stop_platform(running)


@pytest.fixture(scope="module")
def token(platform) -> str:
    return json.loads((platform.settings.home_dir / "credentials.json").read_text())["api_token"]


@pytest.fixture
def base(platform) -> str:
    return f"http://127.0.0.1:{platform.settings.api_port}"


def _csrf(html: str) -> str:
    return re.search(r'name="csrf" value="([0-9a-f]+)"', html).group(1)


def _login(base: str, token: str, actor: str = "alice") -> httpx.Client:
    client = httpx.Client(base_url=base, timeout=15, headers={"Origin": base})
    resp = client.post("/ui/login", data={"token": token, "actor": actor})
    assert resp.status_code == 303, resp.text
    return client


async def _audit(platform, sql: str = "SELECT * FROM audit_log ORDER BY id", *args):
    conn = await asyncpg.connect(platform.conn.control_dsn)
    try:
        return await conn.fetch(sql, *args)
    finally:
        await conn.close()


def test_login_sets_a_strict_httponly_session_and_a_wrong_token_is_refused(base, token):
    anon = httpx.Client(base_url=base, timeout=15, headers={"Origin": base})
    assert anon.get("/ui/").status_code == 303  # to the login page
    assert anon.get("/ui/fragments/tenants").status_code == 401
    wrong = anon.post("/ui/login", data={"token": "x" * 40, "actor": "mallory"})
    assert wrong.status_code == 401 and "hp_session" not in wrong.cookies
    ok = anon.post("/ui/login", data={"token": token, "actor": "alice"})
    assert ok.status_code == 303
    cookie = ok.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict") and "Path=/ui" in cookie
    assert token not in cookie
    page = anon.get("/ui/")
    assert page.status_code == 200 and "Create a tenant" in page.text
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]


def test_login_from_another_origin_is_refused(base, token):
    evil = httpx.Client(base_url=base, timeout=15, headers={"Origin": "http://evil.example"})
    assert evil.post("/ui/login", data={"token": token}).status_code == 403
    bare = httpx.Client(base_url=base, timeout=15)  # neither Origin nor Referer
    assert bare.post("/ui/login", data={"token": token}).status_code == 403


async def test_forms_without_csrf_or_from_elsewhere_change_nothing(platform, base, token):
    client = _login(base, token)
    before = await _audit(platform, "SELECT count(*) AS n FROM tenants")
    no_csrf = client.post("/ui/tenants", data={"name": "dash-nocsrf", "app": SPEC})
    assert no_csrf.status_code == 403 and "CSRF" in no_csrf.text
    csrf = _csrf(client.get("/ui/").text)
    other = client.post("/ui/tenants", data={"name": "dash-nocsrf", "app": SPEC, "csrf": csrf},
                        headers={"Origin": "http://evil.example"})
    assert other.status_code == 403
    forged = client.post("/ui/tenants", data={"name": "dash-nocsrf", "app": SPEC, "csrf": "0" * 64})
    assert forged.status_code == 403
    invalid = client.post("/ui/tenants", data={"name": "Bad Name", "app": SPEC, "csrf": csrf})
    assert invalid.status_code == 422 and "tenant id" in invalid.text
    after = await _audit(platform, "SELECT count(*) AS n FROM tenants")
    assert after[0]["n"] == before[0]["n"]


async def test_dashboard_and_api_writes_are_audited_and_the_audit_log_is_append_only(platform, base, token):
    client = _login(base, token, actor="alice")
    csrf = _csrf(client.get("/ui/").text)
    created = client.post("/ui/tenants", data={"name": "dash-one", "app": SPEC, "csrf": csrf})
    assert created.status_code == 303 and created.headers["location"] == "/ui/tenants/dash-one"
    page = client.get("/ui/tenants/dash-one")
    assert page.status_code == 200 and 'id="tenant-name">dash-one<' in page.text
    deadline = time.monotonic() + 20  # the timeline lists events once the relay published them
    while "TenantRequested" not in client.get("/ui/fragments/tenants/dash-one").text:
        assert time.monotonic() < deadline, "TenantRequested never reached the timeline"
        time.sleep(0.3)

    api = httpx.Client(base_url=base, timeout=15, headers={"Authorization": f"Bearer {token}",
                                                           "X-Hostplane-Actor": "bob@cli"})
    assert api.post("/v1/tenants", json={"name": "dash-one", "app": SPEC}).status_code == 409
    assert api.post("/v1/tenants", json={"name": "dash-two", "app": SPEC}).status_code == 202
    assert api.get("/v1/tenants/dash-two").status_code == 200  # reads are not audited

    records = api.get("/v1/audit", params={"tenant": "dash-one"}).json()["records"]
    kinds = [(r["channel"], r["action"], r["outcome"], r["actor"]) for r in records]
    assert ("dashboard", "tenant.create", "accepted", "alice") in kinds
    assert ("api", "tenant.create", "refused", "bob@cli") in kinds
    dash = next(r for r in records if r["channel"] == "dashboard" and r["action"] == "tenant.create")
    assert dash["identity"] == token_identity(token) and dash["remote"] == "127.0.0.1"
    assert dash["correlation_id"] and len(dash["request"]["app"]["sha256"]) == 64
    refused = next(r for r in records if r["outcome"] == "refused")
    assert refused["status"] == 409 and "already exists" in refused["error"]
    assert all("entities" not in json.dumps(r) for r in records)  # no spec body in the trail
    two = api.get("/v1/audit", params={"tenant": "dash-two"}).json()["records"]
    assert [(r["action"], r["status"]) for r in two] == [("tenant.create", 202)]
    logins = await _audit(platform, "SELECT * FROM audit_log WHERE action = 'dashboard.login' ORDER BY id")
    assert {r["outcome"] for r in logins} >= {"accepted"}

    for sql in ("UPDATE audit_log SET outcome = 'accepted'", "DELETE FROM audit_log", "TRUNCATE audit_log"):
        # the control role holds no such privilege (hostplane up); the trigger refuses anyone who does
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only|permission denied"):
            await _audit(platform, sql)
    assert api.request("DELETE", "/v1/audit").status_code == 405
    assert api.put("/v1/audit", json={}).status_code == 405


async def test_delete_needs_the_typed_name_then_goes_through_the_commands(platform, base, token):
    client = _login(base, token, actor="carol")
    csrf = _csrf(client.get("/ui/").text)
    assert client.post("/ui/tenants", data={"name": "dash-del", "app": SPEC, "csrf": csrf}).status_code == 303
    csrf = _csrf(client.get("/ui/tenants/dash-del").text)
    wrong = client.post("/ui/tenants/dash-del/delete", data={"confirm": "nope", "csrf": csrf})
    assert wrong.status_code == 422 and "to confirm" in wrong.text
    rows = await _audit(platform, "SELECT deleted_at FROM tenants WHERE tenant_id = 'dash-del'")
    assert rows[0]["deleted_at"] is None
    resp = client.post("/ui/tenants/dash-del/delete", data={"confirm": "dash-del", "csrf": csrf})
    assert resp.status_code == 303, resp.text
    rows = await _audit(platform, "SELECT deleted_at FROM tenants WHERE tenant_id = 'dash-del'")
    assert rows[0]["deleted_at"] is not None
    actions = await _audit(platform, "SELECT action, status FROM audit_log WHERE tenant_id = 'dash-del' ORDER BY id")
    assert [(a["action"], a["status"]) for a in actions] == [
        ("tenant.create", 202), ("tenant.delete", 422), ("tenant.delete", 202)]


def test_pages_never_carry_the_token(base, token):
    client = _login(base, token)
    for path in ("/ui/", "/ui/tenants/dash-one", "/ui/audit", "/ui/dlq", "/ui/fragments/tenants",
                 "/ui/fragments/tenants/dash-one"):
        resp = client.get(path)
        assert resp.status_code == 200, (path, resp.status_code)
        assert token not in resp.text and "password" not in resp.text.lower()


def test_the_audit_command_lists_the_trail(platform, base, token):
    import subprocess
    import sys

    api = httpx.Client(base_url=base, timeout=15, headers={"Authorization": f"Bearer {token}"})
    assert api.post("/v1/tenants", json={"name": "dash-cli", "app": SPEC}).status_code == 202
    out = subprocess.run([sys.executable, "-m", "hostplane", "audit", "--tenant", "dash-cli", "--json"],
                         env=platform.env(), capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    records = json.loads(out.stdout)
    assert [(r["tenant_id"], r["action"], r["actor"]) for r in records] == [("dash-cli", "tenant.create", "api")]
    assert {"at", "identity", "actor", "channel", "remote", "action", "request", "status", "outcome"} <= set(records[0])
    pretty = subprocess.run([sys.executable, "-m", "hostplane", "audit", "--tenant", "dash-cli"],
                            env=platform.env() | {"COLUMNS": "220"}, capture_output=True, text=True, timeout=60)
    assert pretty.returncode == 0 and "tenant.create" in pretty.stdout


async def test_reveal_replay_and_redrive_are_audited_without_the_secret(platform, base, token):
    client = _login(base, token, actor="dave")
    api = httpx.Client(base_url=base, timeout=15, headers={"Authorization": f"Bearer {token}"})
    assert api.post("/v1/tenants", json={"name": "dash-sec", "app": SPEC}).status_code == 202
    deadline = time.monotonic() + 60
    while not api.get("/v1/tenants/dash-sec").json()["progress"]["provisioned"]:
        assert time.monotonic() < deadline, "dash-sec was never provisioned"
        time.sleep(0.5)
    page = client.get("/ui/tenants/dash-sec")
    assert "DATABASE_URL" not in page.text
    csrf = _csrf(page.text)
    assert client.post("/ui/tenants/dash-sec/reveal", data={"x": "1"}).status_code == 403  # no CSRF token
    revealed = client.post("/ui/tenants/dash-sec/reveal", data={"csrf": csrf})
    assert revealed.status_code == 200 and "DATABASE_URL" in revealed.text
    assert revealed.headers["cache-control"] == "no-store"
    env = api.get("/v1/tenants/dash-sec/env").json()["env"]
    secret_values = [v for k, v in env.items() if "PASSWORD" in k or "SECRET" in k or (k.endswith("_URL") and "@" in v)]
    replayed = client.post("/ui/tenants/dash-sec/replay", data={"csrf": csrf})
    assert replayed.status_code == 303
    dlq = client.get("/ui/dlq")
    assert dlq.status_code == 200 and 'data-queue="provisioner"' in dlq.text
    redriven = client.post("/ui/dlq/redrive", data={"csrf": _csrf(dlq.text), "queue": "provisioner"})
    assert redriven.status_code == 200 and "messages sent back" in redriven.text
    unknown = client.post("/ui/dlq/redrive", data={"csrf": _csrf(dlq.text), "queue": "nope"})
    assert unknown.status_code == 404

    rows = await _audit(platform, "SELECT * FROM audit_log WHERE actor = 'dave' OR tenant_id = 'dash-sec' ORDER BY id")
    actions = [(r["channel"], r["action"], r["status"]) for r in rows]
    assert ("dashboard", "tenant.reveal_credentials", 403) in actions
    assert ("dashboard", "tenant.reveal_credentials", 200) in actions
    assert ("api", "tenant.reveal_credentials", 200) in actions
    assert ("dashboard", "tenant.replay", 202) in actions
    assert ("dashboard", "dlq.redrive", 202) in actions and ("dashboard", "dlq.redrive", 404) in actions
    everything = json.dumps([dict(r) for r in await _audit(platform)], default=str)
    assert secret_values and not any(v in everything for v in secret_values)
    assert token not in everything


async def test_the_state_filter_and_the_update_form(platform, base, token):
    client = _login(base, token, actor="dave")
    csrf = _csrf(client.get("/ui/").text)
    assert client.post("/ui/tenants", data={"name": "dash-upd", "app": SPEC, "csrf": csrf}).status_code == 303
    assert 'data-tenant="dash-upd"' in client.get("/ui/").text
    for state in ("deleted", "failed", "ready"):
        page = client.get("/ui/", params={"state": state}).text
        assert set(re.findall(r'data-state="([a-z]+)"', page)) <= {state}, f"the {state} filter shows other states"
    assert 'data-tenant="dash-upd"' not in client.get("/ui/", params={"state": "deleted"}).text

    csrf = _csrf(client.get("/ui/tenants/dash-upd").text)
    assert client.post("/ui/tenants/dash-upd/app", data={"app": SPEC + "\n  # ", "csrf": "0" * 32}).status_code == 403
    bad = client.post("/ui/tenants/dash-upd/app", data={"app": "app: [", "csrf": csrf})
    assert bad.status_code == 422, bad.text
    assert bad.status_code == 422 and "invalid YAML" in bad.text
    deadline = time.monotonic() + 90  # an update is refused (409) until the tenant is provisioned
    while (state := httpx.get(f"{base}/v1/tenants/dash-upd", headers={"Authorization": f"Bearer {token}"})
           .json()["state"]) not in ("building", "migrating", "ready"):
        assert time.monotonic() < deadline and state not in ("failed", "deleted"), state
        time.sleep(0.2)
    changed = SPEC.replace("app: Tasks", "app: Tasks v2")
    assert changed != SPEC
    resp = client.post("/ui/tenants/dash-upd/app", data={"app": changed, "csrf": csrf})
    assert resp.status_code == 303, resp.text
    kinds = await _audit(platform, "SELECT kind FROM tenant_requests WHERE tenant_id = 'dash-upd' ORDER BY generation")
    assert [k["kind"] for k in kinds] == ["create", "update"]
    actions = await _audit(platform, "SELECT action, status FROM audit_log WHERE tenant_id = 'dash-upd' ORDER BY id")
    assert [(a["action"], a["status"]) for a in actions] == [
        ("tenant.create", 202), ("tenant.update", 403), ("tenant.update", 422), ("tenant.update", 202)]

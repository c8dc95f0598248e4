"""`hostplane tenant ...` against a scripted API: output, --wait progress and exit codes."""

from __future__ import annotations

import base64
import io
import json
import zipfile
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from hostplane import cli_tenant
from hostplane.cli_tenant import Api, tenant_app

runner = CliRunner()
SPEC = Path(__file__).resolve().parents[2] / "examples" / "tasks.yaml"


def tenant(state="requested", stage="queued", generation=1, kind="create", error=None, waiting="api", edge=None):
    return {
        "name": "acme", "state": state, "stage": stage, "waiting_for": waiting, "version": None,
        "url": "http://acme.localhost:8480/", "custom_domain": None, "edge": edge, "error": error,
        "request": {"kind": kind, "generation": generation, "correlation_id": "c0ffee", "requested_by": "me@cli",
                    "requested_at": "2026-05-01T12:00:00+00:00", "settled": state in ("ready", "failed", "deleted")},
        "created_at": "2026-05-01T12:00:00+00:00", "updated_at": "2026-05-01T12:00:01+00:00",
    }


def accepted(kind="create", changed=True):
    return {"name": "acme", "changed": changed, "request": {"kind": kind, "generation": 1, "correlation_id": "c0ffee"},
            "status_url": "/v1/tenants/acme", "tenant": tenant(kind=kind)}


@pytest.fixture
def api(monkeypatch):
    """Install a scripted API: `script(handler)` where handler(request) -> httpx.Response."""
    seen: list[httpx.Request] = []

    def install(handler: Callable[[httpx.Request], httpx.Response]) -> list[httpx.Request]:
        def record(request: httpx.Request) -> httpx.Response:
            seen.append(request)
            return handler(request)

        client = Api("http://api", "tok")
        client.http = httpx.Client(base_url="http://api", transport=httpx.MockTransport(record),
                                   headers=client.http.headers)
        monkeypatch.setattr(cli_tenant, "api_client", lambda: client)
        monkeypatch.setattr(cli_tenant.time, "sleep", lambda _s: None)
        return seen

    return install


def run(*args: str):
    return runner.invoke(tenant_app, list(args))


def test_create_sends_the_spec_text_and_says_how_to_follow(api):
    seen = api(lambda r: httpx.Response(202, json=accepted()))
    result = run("create", "acme", "--app", str(SPEC), "--domain", "shop.example.com")
    assert result.exit_code == 0, result.output
    body = json.loads(seen[0].content)
    static = body.pop("static_zip")  # the example names its static folder: the CLI packs it
    assert body == {"name": "acme", "app": SPEC.read_text(), "domain": "shop.example.com"}
    with zipfile.ZipFile(io.BytesIO(base64.b64decode(static))) as zf:
        assert sorted(zf.namelist()) == sorted("static/" + p.name for p in (SPEC.parent / "static").iterdir())
        assert zf.read("static/style.css") == (SPEC.parent / "static" / "style.css").read_bytes()
    assert seen[0].headers["authorization"] == "Bearer tok" and seen[0].headers["x-hostplane-actor"].endswith("@cli")
    assert "accepted: create of tenant acme" in result.output and "hostplane tenant show acme" in result.output


def test_create_sends_the_chosen_edge_and_json_shows_the_apis_answer(api):
    answer = accepted() | {"tenant": tenant(edge="dedicated")}
    seen = api(lambda r: httpx.Response(202, json=answer))
    result = run("create", "acme", "--app", str(SPEC), "--edge", "dedicated", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(seen[0].content)["edge"] == "dedicated"
    assert json.loads(result.stdout)["tenant"]["edge"] == "dedicated"
    assert "AWS" in run("create", "--help").output


@pytest.mark.parametrize("bad", ["shared", "Pooled", ""])
def test_a_bad_edge_is_refused_by_the_cli_before_any_request(api, bad):
    seen = api(lambda r: httpx.Response(500))
    result = run("create", "acme", "--app", str(SPEC), "--edge", bad)
    assert result.exit_code == 2, result.output
    assert "--edge" in result.output and "pooled" in result.output and "dedicated" in result.output
    assert seen == []


@pytest.mark.parametrize(("args", "sent"), [(["--idle-after", "300"], 300), (["--always-on"], 0),
                                             (["--idle-after", "0"], 0), ([], None)])
def test_create_sends_the_idle_period_or_leaves_the_platforms(api, args, sent):
    seen = api(lambda r: httpx.Response(202, json=accepted()))
    result = run("create", "acme", "--app", str(SPEC), *args)
    assert result.exit_code == 0, result.output
    assert json.loads(seen[0].content).get("idle_after_s") == sent


@pytest.mark.parametrize("args", [["--idle-after", "60", "--always-on"], ["--idle-after", "-1"],
                                  ["--idle-after", "soon"]])
def test_a_bad_idle_period_is_refused_by_the_cli_before_any_request(api, args):
    seen = api(lambda r: httpx.Response(500))
    result = run("create", "acme", "--app", str(SPEC), *args)
    assert result.exit_code in (1, 2), result.output
    assert "--idle-after" in result.output
    assert seen == []


@pytest.mark.parametrize(("args", "sent"), [(["--idle-after", "300"], 300), (["--always-on"], 0),
                                             (["--idle-after", "0"], 0)])
def test_update_sends_the_new_idle_period_to_its_own_endpoint(api, args, sent):
    seen = api(lambda r: httpx.Response(202, json=accepted("idle")))
    result = run("update", "acme", *args)
    assert result.exit_code == 0, result.output
    assert [(r.method, r.url.path) for r in seen] == [("PUT", "/v1/tenants/acme/idle-after")]
    assert json.loads(seen[0].content) == {"idle_after_s": sent}
    assert "accepted: idle of tenant acme" in result.output


@pytest.mark.parametrize(("args", "says"), [
    (["--idle-after", "60", "--always-on"], "not both"),
    (["--idle-after", "-1"], "--idle-after"),
    (["--idle-after", "31536001"], "--idle-after"),
    (["--idle-after", "soon"], "--idle-after"),
    (["--always-on", "--app", str(SPEC)], "needs --wait"),
    (["--idle-after", "60", "--domain", "shop.example.com"], "needs --wait"),
    ([], "--idle-after SECONDS or --always-on"),
])
def test_a_bad_idle_update_is_refused_by_the_cli_before_any_request(api, args, says):
    seen = api(lambda r: httpx.Response(500))
    result = run("update", "acme", *args)
    assert result.exit_code in (1, 2), result.output
    assert says in " ".join(result.output.split()), result.output
    assert seen == []


def test_update_with_wait_follows_the_idle_change_to_ready_then_the_domain_and_idle_in_turn(api):
    states = iter([tenant("updating", "settings", kind="idle", waiting="provisioner"),
                   tenant("ready", None, kind="idle")])
    seen = api(lambda r: httpx.Response(202, json=accepted("idle")) if r.method == "PUT"
               else httpx.Response(200, json=next(states)))
    result = run("update", "acme", "--always-on", "--wait")
    assert result.exit_code == 0, result.output
    assert "acme: ready" in result.output and "✓ settings" in result.output

    both = iter([tenant("ready", None, kind="domain"), tenant("ready", None, kind="idle")])
    seen.clear()
    api(lambda r: httpx.Response(202, json=accepted("domain" if r.url.path.endswith("domain") else "idle"))
               if r.method == "PUT" else httpx.Response(200, json=next(both)))
    result = run("update", "acme", "--domain", "shop.example.com", "--idle-after", "60", "--wait")
    assert result.exit_code == 0, result.output
    assert [r.url.path for r in seen if r.method == "PUT"] == ["/v1/tenants/acme/domain", "/v1/tenants/acme/idle-after"]


def test_a_failed_idle_change_exits_1_naming_the_step(api):
    failure = {"stage": "provisioning", "step": "runtime", "message": "tenant 'acme' has no registered runtime",
               "retryable": False}
    states = iter([tenant("failed", "provisioning", kind="idle", error=failure)])
    api(lambda r: httpx.Response(202, json=accepted("idle")) if r.method == "PUT"
        else httpx.Response(200, json=next(states)))
    result = run("update", "acme", "--idle-after", "60", "--wait")
    assert result.exit_code == 1
    assert "failed at stage provisioning (runtime): tenant 'acme' has no registered runtime" in result.output
    assert "✗ settings" in result.output


def test_show_says_the_runtime_and_its_idle_period(api):
    api(lambda r: httpx.Response(200, json=tenant() | {"runtime": "asleep", "idle_after_s": 300}))
    out = run("show", "acme").output
    assert "asleep" in out and "300 s" in out
    api(lambda r: httpx.Response(200, json=tenant() | {"runtime": "running", "idle_after_s": 0}))
    assert "always on" in run("show", "acme").output


def test_show_names_the_edge_or_the_installation_default(api):
    api(lambda r: httpx.Response(200, json=tenant(edge="pooled")))
    assert "pooled" in run("show", "acme").output
    api(lambda r: httpx.Response(200, json=tenant()))
    assert "installation default" in run("show", "acme").output


def test_refusal_exits_1_with_the_apis_message_and_paths(api):
    api(lambda r: httpx.Response(422, json={"detail": "the app spec is invalid: entities.t.fields.o.to: unknown entity 'x'",
                                            "errors": [{"path": "app.entities.t.fields.o.to", "message": "unknown"}]}))
    result = run("create", "acme", "--app", str(SPEC))
    assert result.exit_code == 1
    assert "unknown entity 'x'" in result.output and "HTTP 422" in result.output


def test_wrong_token_and_unreachable_api_exit_2(api):
    api(lambda r: httpx.Response(401, json={"detail": "missing or wrong bearer token"}))
    assert run("list").exit_code == 2

    def down(_r):
        raise ConnectionRefusedError("refused")  # what http.client raises

    api(down)
    result = run("show", "acme")
    assert result.exit_code == 2 and "cannot reach the API" in result.output


def test_wait_shows_progress_until_ready(api):
    states = iter([tenant("provisioning", "provision"), tenant("building", "build"), tenant("ready", None)])

    def handler(r):
        return httpx.Response(202, json=accepted()) if r.method == "POST" else httpx.Response(200, json=next(states))

    api(handler)
    result = run("create", "acme", "--app", str(SPEC), "--wait")
    assert result.exit_code == 0, result.output
    assert "acme: ready" in result.output and "✓ release" in result.output


def test_wait_exits_1_naming_the_failed_stage_and_error(api):
    failure = {"stage": "building", "step": "codegen", "message": "entity task: cannot build", "retryable": False}
    states = iter([tenant("building", "build"), tenant("failed", "building", error=failure)])

    def handler(r):
        return httpx.Response(202, json=accepted()) if r.method == "POST" else httpx.Response(200, json=next(states))

    api(handler)
    result = run("create", "acme", "--app", str(SPEC), "--wait")
    assert result.exit_code == 1
    assert "failed at stage building (codegen): entity task: cannot build" in result.output
    assert "✗ build" in result.output


def test_wait_rides_out_a_few_server_errors_while_polling_but_not_many(api):
    answers = iter([tenant("provisioning", "provision"), httpx.Response(500, json={"detail": "internal error"}),
                    ConnectionRefusedError("refused"), tenant("ready", None)])

    def handler(r):
        if r.method == "POST":
            return httpx.Response(202, json=accepted())
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer if isinstance(answer, httpx.Response) else httpx.Response(200, json=answer)

    api(handler)
    result = run("create", "acme", "--app", str(SPEC), "--wait")
    assert result.exit_code == 0, result.output

    api(lambda r: httpx.Response(202, json=accepted()) if r.method == "POST"
        else httpx.Response(500, json={"detail": "internal error (PoolTimeout)"}))
    result = run("create", "acme", "--app", str(SPEC), "--wait")
    assert result.exit_code == 1 and "internal error (PoolTimeout) (HTTP 500)" in result.output


def test_wait_times_out_with_exit_3_naming_what_it_waits_for(api, monkeypatch):
    clock = iter(range(0, 1000, 10))
    monkeypatch.setattr(cli_tenant.time, "monotonic", lambda: next(clock))
    api(lambda r: httpx.Response(202, json=accepted()) if r.method == "POST"
        else httpx.Response(200, json=tenant("building", "build", waiting="builder")))
    result = run("create", "acme", "--app", str(SPEC), "--wait", "--timeout", "25")
    assert result.exit_code == 3
    assert "timed out after 25s: tenant acme is building (stage build, waiting for builder)" in result.output


def test_wait_until_stops_at_an_earlier_state(api):
    api(lambda r: httpx.Response(202, json=accepted()) if r.method == "POST"
        else httpx.Response(200, json=tenant("building", "build")))
    assert run("create", "acme", "--app", str(SPEC), "--wait", "--until", "building", "--json").exit_code == 0
    assert run("create", "acme", "--app", str(SPEC), "--wait", "--until", "sideways").exit_code == 1


def test_delete_wait_ends_at_deleted(api):
    states = iter([tenant("deleting", "deprovision", kind="delete"), tenant("deleted", None, kind="delete")])
    api(lambda r: httpx.Response(202, json=accepted("delete")) if r.method == "DELETE"
        else httpx.Response(200, json=next(states)))
    result = run("delete", "acme", "--wait", "--json")
    assert result.exit_code == 0 and json.loads(result.stdout)["state"] == "deleted"


def test_unchanged_update_says_so(api):
    api(lambda r: httpx.Response(200, json=accepted("update", changed=False)))
    result = run("update", "acme", "--app", str(SPEC))
    assert result.exit_code == 0 and "nothing to do" in result.output


def test_show_and_list_json_are_the_apis_documents(api):
    api(lambda r: httpx.Response(200, json={"tenants": [tenant()]} if r.url.path == "/v1/tenants" else tenant()))
    shown = json.loads(run("show", "acme", "--json").stdout)
    assert {"name", "state", "version", "url"} <= set(shown)
    assert json.loads(run("list", "--json").stdout)[0]["name"] == "acme"
    table = run("list")
    assert table.exit_code == 0 and "acme" in table.output


def test_env_prints_shell_assignments(api):
    api(lambda r: httpx.Response(200, json={"name": "acme", "env": {"DB_PASSWORD": "p w'd", "DB_NAME": "t_acme"}}))
    result = run("env", "acme")
    assert result.stdout.splitlines() == ["DB_NAME=t_acme", "DB_PASSWORD='p w'\"'\"'d'"]


def test_missing_spec_file_is_a_clear_error(api):
    api(lambda r: httpx.Response(500))
    result = run("create", "acme", "--app", "/nonexistent/spec.yaml")
    assert result.exit_code == 1 and "cannot read the app spec" in result.output


def test_not_running_platform_exits_2(tmp_path, monkeypatch):
    monkeypatch.setenv("HOSTPLANE_HOME", str(tmp_path))
    monkeypatch.delenv("HOSTPLANE_API_URL", raising=False)
    cli_tenant.get_settings.cache_clear()
    try:
        result = run("list")
    finally:
        cli_tenant.get_settings.cache_clear()
    assert result.exit_code == 2 and "not running" in result.output


def test_a_spec_without_static_folder_sends_no_static_zip_and_a_missing_folder_is_refused(api, tmp_path):
    seen = api(lambda r: httpx.Response(202, json=accepted()))
    plain = tmp_path / "plain.yaml"
    plain.write_text(SPEC.read_text().replace("static: static/\n", ""))
    assert run("create", "acme", "--app", str(plain)).exit_code == 0
    assert "static_zip" not in json.loads(seen[0].content)
    missing = tmp_path / "missing.yaml"
    missing.write_text(SPEC.read_text().replace("static: static/", "static: nowhere/"))
    result = run("create", "acme", "--app", str(missing))
    assert result.exit_code != 0 and "nowhere" in result.output and len(seen) == 1


def test_show_lists_the_dns_records_of_a_pending_domain(api):
    records = [{"name": "_a1.shop.example.com.", "type": "CNAME", "value": "_b2.acm-validations.aws."}]
    api(lambda r: httpx.Response(200, json=tenant() | {"domain_pending": "shop.example.com", "dns_records": records}))
    out = " ".join(run("show", "acme").output.split())
    assert "domain pending" in out and "shop.example.com: served once" in out
    assert "_a1.shop.example.com. CNAME _b2.acm-validations.aws." in out


def test_show_says_why_the_host_cannot_run_a_failed_runtime(api):
    why = {"reason": "crash_loop", "detail": "died 3 times [x]",
           "at": "2026-05-01T12:00:03+00:00"}
    api(lambda r: httpx.Response(200, json=tenant("ready", None) | {"runtime": "failed", "runtime_failure": why}))
    out = " ".join(run("show", "acme").output.split())
    assert "runtime failure" in out and "crash_loop: died 3 times [x]" in out
    api(lambda r: httpx.Response(200, json=tenant("ready", None) | {"runtime": "running", "runtime_failure": None}))
    assert "runtime failure" not in run("show", "acme").output


def test_an_error_quoting_tenant_output_prints_no_terminal_escape_or_markup(api):
    """A failure's message may carry the app's own log lines: its ESC sequences print as
    escapes and its brackets as text, in `show` and in `--wait`'s failure."""
    hostile = "crash \x1b[2J\x1b]0;owned\x07 [bold red]fake[/] [link=http://evil]x[/link]"
    failure = {"stage": "building", "step": "start", "message": hostile, "retryable": False}
    api(lambda r: httpx.Response(202, json=accepted()) if r.method == "POST"
        else httpx.Response(200, json=tenant("failed", "building", error=failure)))
    for result in (run("show", "acme"), run("create", "acme", "--app", str(SPEC), "--wait")):
        assert "\x1b" not in result.output and "\x07" not in result.output, repr(result.output)
        assert "\\x1b[2J" in result.output and "fake[/]" in result.output, result.output  # printed as text
        assert "[link=http://evil]" in result.output

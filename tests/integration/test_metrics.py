"""Each service serves Prometheus metrics: after a tenant request, the provisioner's and the
API's /metrics (URLs from `hostplane status --json`) count the handled events."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import httpx
import pytest

from hostplane.local import platform as local_platform
from hostplane.local.ephemeral import start_platform, stop_platform

REPO = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


@pytest.fixture(scope="module")
def running(tmp_path_factory):
    plat = start_platform(tmp_path_factory.mktemp("metrics"), "moto")
    try:
        yield plat
    finally:
        stop_platform(plat)


def _sample(text: str, name: str, **labels: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_services_count_handled_messages_and_expose_queue_gauges(running):
    status = local_platform.status(running.settings)
    urls = {name: c.get("metrics") for name, c in status["components"].items()}
    assert urls["api"] and urls["provisioner"], urls
    assert all(re.fullmatch(r"http://127\.0\.0\.1:\d+/metrics", u) for u in (urls["api"], urls["provisioner"]))

    token = json.loads((running.settings.home_dir / "credentials.json").read_text())["api_token"]
    spec = (REPO / "examples" / "tasks.yaml").read_text()
    resp = httpx.post(f"http://127.0.0.1:{running.settings.api_port}/v1/tenants", timeout=15,
                      json={"name": "metrics-one", "app": spec}, headers={"Authorization": f"Bearer {token}"})
    assert resp.status_code == 202, resp.text

    deadline = time.monotonic() + 60
    while True:
        text = httpx.get(urls["provisioner"], timeout=5).text
        handled = _sample(text, "hostplane_messages_total", service="provisioner", event_type="TenantRequested",
                          outcome="handled")
        if handled >= 1 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert handled >= 1
    assert _sample(text, "hostplane_handler_seconds_count", service="provisioner",
                   event_type="TenantRequested") >= 1
    assert "hostplane_queue_depth{" in text and "hostplane_dlq_depth{" in text
    assert "hostplane_outbox_lag_seconds " in text
    api_text = httpx.get(urls["api"], timeout=5).text
    assert _sample(api_text, "hostplane_messages_total", service="api", event_type="TenantRequested",
                   outcome="handled") >= 1
    assert token not in text + api_text


def test_logs_merge_the_services_lines_about_a_tenant(running):
    """Runs after the test above created metrics-one: its lines from several services, in order."""
    import subprocess
    import sys

    deadline = time.monotonic() + 30
    while True:
        out = subprocess.run([sys.executable, "-m", "hostplane", "logs", "--tenant", "metrics-one", "--json",
                              "-n", "500"], env=running.env(), capture_output=True, text=True,
                             timeout=60)
        assert out.returncode == 0, out.stderr
        records = [json.loads(line) for line in out.stdout.splitlines()]
        handled = [r for r in records if r.get("event") == "message.handled"]
        if {r["service"] for r in handled} >= {"api", "provisioner"} or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert {r["service"] for r in handled} >= {"api", "provisioner"}, {r.get("service") for r in records}
    for r in handled:
        assert r["tenant_id"] == "metrics-one" and r["correlation_id"] and r["event_type"]
    stamps = [r["timestamp"] for r in records if "timestamp" in r]
    assert stamps == sorted(stamps)
    assert all(r.get("service") for r in records)
    pretty = subprocess.run([sys.executable, "-m", "hostplane", "logs", "--correlation", handled[0]["correlation_id"]],
                            env=running.env() | {"COLUMNS": "200"}, capture_output=True, text=True, timeout=60)
    assert pretty.returncode == 0 and "message.handled" in pretty.stdout

"""Every control-plane service serves Prometheus metrics (URLs from `hostplane status`): after
one tenant's creation and deletion, each /metrics shows the events that service handled and
their latency, its own queue's and DLQ's depth, the outbox lag, and router-config the edge
route count."""

from __future__ import annotations

import json
import math
import re
import time
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from events.topology import topology
from hostplane.local import platform as local_platform
from hostplane.local.ephemeral import start_platform, stop_platform
from hostplane.local.services import CONTROL_PLANE

REPO = Path(__file__).resolve().parents[2]
TENANT = "metrics-one"
pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

# What each service handles while one tenant is created (the deprovisioner: on deletion only).
HANDLED_ON_CREATE = {"api": "TenantRequested", "provisioner": "TenantRequested", "builder": "TenantProvisioned",
                     "router-config": "TenantProvisioned", "migrator": "TenantChanged"}


@pytest.fixture(scope="module")
def running(tmp_path_factory):
    plat = start_platform(tmp_path_factory.mktemp("metrics"), "moto")
    try:
        yield plat
    finally:
        stop_platform(plat)


class Scrape:
    """One /metrics answer, parsed: sample values by name and exact labels."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.samples = [s for family in text_string_to_metric_families(text) for s in family.samples]

    def value(self, name: str, **labels: str) -> float | None:
        return next((s.value for s in self.samples if s.name == name and s.labels == labels), None)

    def labels_of(self, name: str, key: str) -> set[str]:
        return {s.labels[key] for s in self.samples if s.name == name}

    def handled(self, service: str, event_type: str) -> float:
        return self.value("hostplane_messages_total", service=service, event_type=event_type, outcome="handled") or 0


def _metrics_urls(running) -> dict[str, str]:
    components = local_platform.status(running.settings)["components"]
    return {name: c["metrics"] for name, c in components.items() if c.get("metrics")}


def _scrape_all(urls: dict[str, str]) -> dict[str, Scrape]:
    return {name: Scrape(httpx.get(url, timeout=5).text) for name, url in urls.items()}


def _scrape_until(urls: dict[str, str], done, timeout: float = 90.0) -> dict[str, Scrape]:
    deadline = time.monotonic() + timeout
    while not done(scrapes := _scrape_all(urls)) and time.monotonic() < deadline:
        time.sleep(0.5)
    return scrapes


def _api(running, method: str, path: str, **kw) -> httpx.Response:
    token = json.loads((running.settings.home_dir / "credentials.json").read_text())["api_token"]
    return httpx.request(method, f"http://127.0.0.1:{running.settings.api_port}{path}", timeout=15,
                         headers={"Authorization": f"Bearer {token}"}, **kw)


def _latency_problems(service: str, scrape: Scrape, event_type: str) -> list[str]:
    """The handler histogram timed every handled run of this event type (it observes before
    the counter counts, so a scrape never sees fewer timings than handled runs)."""
    labels = {"service": service, "event_type": event_type}
    count = scrape.value("hostplane_handler_seconds_count", **labels) or 0
    total = scrape.value("hostplane_handler_seconds_sum", **labels) or 0
    if count >= scrape.handled(service, event_type) >= 1 and total > 0:
        return []
    return [f"{service}: hostplane_handler_seconds{labels} count {count} sum {total}, "
            f"handled {scrape.handled(service, event_type)}"]


def _gauge_problems(running, service: str, scrape: Scrape) -> list[str]:
    """Its own queue's and DLQ's depth (nothing dead-lettered), and an outbox lag read from the database."""
    queue = topology(running.settings.name_prefix).queue(service).name
    problems = []
    for gauge in ("hostplane_queue_depth", "hostplane_dlq_depth"):
        if scrape.labels_of(gauge, "queue") != {queue}:
            problems.append(f"{service}: {gauge} for queues {scrape.labels_of(gauge, 'queue')}, not {{{queue!r}}}")
    if scrape.value("hostplane_dlq_depth", queue=queue) not in (None, 0):
        problems.append(f"{service}: {scrape.value('hostplane_dlq_depth', queue=queue)} messages in its DLQ")
    lag = scrape.value("hostplane_outbox_lag_seconds")
    if lag is None or not math.isfinite(lag) or not 0 <= lag < 60 or scrape.value("hostplane_outbox_pending") is None:
        problems.append(f"{service}: hostplane_outbox_lag_seconds {lag}, hostplane_outbox_pending "
                        f"{scrape.value('hostplane_outbox_pending')}")
    # The gauges above read 0 also when their refresh fails; it logs every failure.
    log = (running.settings.home_dir / "logs" / f"{service}.log").read_text()
    if "metrics.refresh_failed" in log:
        problems.append(f"{service}: its metrics refresh failed: "
                        + next(line for line in log.splitlines() if "metrics.refresh_failed" in line))
    return problems


def test_every_service_serves_its_metrics_after_a_tenant_is_created(running):
    urls = _metrics_urls(running)
    assert set(urls) == set(CONTROL_PLANE) == set(HANDLED_ON_CREATE) | {"deprovisioner"}, urls
    assert all(re.fullmatch(r"http://127\.0\.0\.1:\d+/metrics", u) for u in urls.values()), urls
    assert len(set(urls.values())) == len(urls), "one port per service"

    spec = (REPO / "examples" / "tasks.yaml").read_text()
    resp = _api(running, "POST", "/v1/tenants", json={"name": TENANT, "app": spec})
    assert resp.status_code == 202, resp.text

    def created(s: dict[str, Scrape]) -> bool:
        return all(s[name].handled(name, event) >= 1 for name, event in HANDLED_ON_CREATE.items()) \
            and s["router-config"].value("hostplane_edge_routes") == 1

    scrapes = _scrape_until(urls, created)
    problems = []
    for name, event in HANDLED_ON_CREATE.items():
        problems += _latency_problems(name, scrapes[name], event)
    for name in urls:
        problems += _gauge_problems(running, name, scrapes[name])
    if (routes := scrapes["router-config"].value("hostplane_edge_routes")) != 1:
        problems.append(f"router-config: hostplane_edge_routes {routes} after the tenant's route, not 1")
    assert not problems, "\n".join(problems)
    token = json.loads((running.settings.home_dir / "credentials.json").read_text())["api_token"]
    assert not any(token in s.text for s in scrapes.values())


def test_logs_merge_the_services_lines_about_a_tenant(running):
    """Runs after the test above created the tenant: its lines from several services, in order."""
    import subprocess
    import sys

    deadline = time.monotonic() + 30
    while True:
        out = subprocess.run([sys.executable, "-m", "hostplane", "logs", "--tenant", TENANT, "--json",
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
        assert r["tenant_id"] == TENANT and r["correlation_id"] and r["event_type"]
    stamps = [r["timestamp"] for r in records if "timestamp" in r]
    assert stamps == sorted(stamps)
    assert all(r.get("service") for r in records)
    pretty = subprocess.run([sys.executable, "-m", "hostplane", "logs", "--correlation", handled[0]["correlation_id"]],
                            env=running.env() | {"COLUMNS": "200"}, capture_output=True, text=True, timeout=60)
    assert pretty.returncode == 0 and "message.handled" in pretty.stdout


def test_deletion_is_counted_by_the_deprovisioner_and_the_edge_route_gauge_drops(running):
    """Runs after the creation above: its deletion reaches the deprovisioner and router-config."""
    urls = _metrics_urls(running)
    assert _api(running, "DELETE", f"/v1/tenants/{TENANT}").status_code == 202

    def deleted(s: dict[str, Scrape]) -> bool:
        return s["deprovisioner"].handled("deprovisioner", "TenantDeletionRequested") >= 1 \
            and s["router-config"].handled("router-config", "TenantDeletionRequested") >= 1 \
            and s["router-config"].value("hostplane_edge_routes") == 0

    scrapes = _scrape_until(urls, deleted)
    problems = []
    for name in ("deprovisioner", "router-config"):
        problems += _latency_problems(name, scrapes[name], "TenantDeletionRequested")
        problems += _gauge_problems(running, name, scrapes[name])
    if (routes := scrapes["router-config"].value("hostplane_edge_routes")) != 0:
        problems.append(f"router-config: hostplane_edge_routes {routes} after the route was removed, not 0")
    assert not problems, "\n".join(problems)

"""docker-compose.yml, checked without a Docker engine: pinned images, health checks or
a start order everywhere, every control-plane service and the runtime agent present, and
the same HOSTPLANE_* configuration as `hostplane up` hands its processes."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from hostplane.compose_init import ComposeInitError, credentials_from_env, platform_state
from hostplane.local.services import CONTROL_PLANE, module_of, settings_env
from core.settings import Settings

REPO = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((REPO / "docker-compose.yml").read_text())
SERVICES: dict = COMPOSE["services"]
SERVERS = ("localstack", "postgres", "valkey", "caddy")


def test_every_image_is_pinned_and_never_latest():
    for name, svc in SERVICES.items():
        image = svc.get("image")
        assert image, f"{name} has no image"
        repo, _, tag = image.rpartition(":")
        assert repo and tag and tag != "latest", f"{name}: image {image!r} must carry a fixed tag"
        if "build" not in svc:
            assert re.match(r"^\d+(\.\d+)+", tag), f"{name}: pulled image {image!r} needs a version tag"


def test_localstack_is_the_last_tag_without_auth_token():
    assert SERVICES["localstack"]["image"] == "localstack/localstack:4.14.0"


def test_every_service_has_a_health_check_or_waits_for_one():
    for name, svc in SERVICES.items():
        check = svc.get("healthcheck", {})
        has_check = bool(check.get("test")) and not check.get("disable")
        waits = any(dep.get("condition") in ("service_healthy", "service_completed_successfully")
                    for dep in (svc.get("depends_on") or {}).values())
        assert has_check or waits, f"{name} has neither a health check nor a dependency order"
        if name != "netns":
            assert waits, f"{name} must start after what it needs"


def test_the_six_services_and_the_runtime_agent_run_the_real_modules():
    for service in CONTROL_PLANE:
        assert service in SERVICES, f"control-plane service {service} missing"
        assert SERVICES[service]["command"] == ["python", "-m", module_of(service)]
    agent = SERVICES["runtime-agent"]["command"]
    assert agent[:3] == ["python", "-m", "hostplane.local.agent"] and "--dsn-from-home" in agent


def test_services_wait_for_init_which_waits_for_every_server():
    init_deps = SERVICES["init"]["depends_on"]
    assert set(SERVERS) <= set(init_deps)
    assert all(init_deps[s]["condition"] == "service_healthy" for s in SERVERS)
    for name in (*CONTROL_PLANE, "runtime-agent"):
        assert SERVICES[name]["depends_on"]["init"]["condition"] == "service_completed_successfully"


def test_same_configuration_variables_as_hostplane_up():
    wanted = set(settings_env(Settings(), "localstack"))
    for name in (*CONTROL_PLANE, "runtime-agent", "init"):
        env = SERVICES[name]["environment"]
        assert wanted <= set(env), f"{name} lacks {sorted(wanted - set(env))}"
        assert env["HOSTPLANE_EMULATOR"] == "localstack"
    defaults = Settings()
    env = SERVICES["provisioner"]["environment"]
    for field in ("localstack_port", "postgres_port", "valkey_port", "caddy_admin_port", "edge_port", "api_port",
                  "redelivery_s", "retry_delay_s", "scale_to_zero_after"):
        assert env[f"HOSTPLANE_{field.upper()}"] == str(getattr(defaults, field))


def test_shared_network_namespace_and_loopback_only_ports():
    for name, svc in SERVICES.items():
        if name != "netns":
            assert svc.get("network_mode") == "service:netns", f"{name} must share the netns"
            assert "ports" not in svc
    for mapping in SERVICES["netns"]["ports"]:
        assert mapping.startswith("127.0.0.1:"), f"{mapping} must be published on loopback only"


def test_no_secret_is_written_into_the_file():
    secrets = ("HOSTPLANE_POSTGRES_PASSWORD", "HOSTPLANE_VALKEY_PASSWORD", "HOSTPLANE_API_TOKEN", "POSTGRES_PASSWORD")
    seen = 0
    for name, svc in SERVICES.items():
        for var, value in (svc.get("environment") or {}).items():
            if var in secrets:
                seen += 1
                assert re.fullmatch(r"\$\{\w+:\?[^}]+\}", str(value)), f"{name}.{var} must come from the environment"
    assert seen >= 4


def test_compose_init_refuses_missing_secrets_without_echoing_values():
    with pytest.raises(ComposeInitError) as err:
        credentials_from_env({"HOSTPLANE_POSTGRES_PASSWORD": "pw-value-1"})
    assert "HOSTPLANE_VALKEY_PASSWORD" in str(err.value) and "pw-value-1" not in str(err.value)
    creds = credentials_from_env({"HOSTPLANE_POSTGRES_PASSWORD": "a" * 12, "HOSTPLANE_VALKEY_PASSWORD": "b" * 12,
                                  "HOSTPLANE_API_TOKEN": "c" * 12})
    assert "aaaa" not in repr(creds)


def test_compose_init_state_points_at_loopback_servers():
    state = platform_state(Settings())
    assert state.emulator == "localstack" and state.aws_endpoint == "http://127.0.0.1:4566"
    assert state.postgres_port == 54329 and state.api_url == "http://127.0.0.1:8400"
    assert set(state.components) == set(SERVERS)


def test_the_compose_caddy_runs_the_same_fixed_edge_as_hostplane_up():
    import json

    from hostplane.local.edge import base_config

    defaults = Settings()
    wanted = base_config(f"http://127.0.0.1:{defaults.caddy_admin_port}", "127.0.0.1", defaults.edge_port,
                         resolver_port=defaults.resolver_port, origin=f"127.0.0.1:{defaults.localstack_port}",
                         listen_host="0.0.0.0")
    assert json.loads((REPO / "docker" / "caddy-base.json").read_text()) == wanted
    assert SERVICES["route-resolver"]["command"] == ["python", "-m", "services.router_config.resolver"]

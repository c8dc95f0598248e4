"""Control-plane services as local processes (`python -m services.<name>.main`).

`up` starts every service whose package exists, after the servers; `down` stops them
first. A service is healthy when its process lives and it has written its ready file
(the runner does so once its consumer and relay run).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from core import process
from hostplane.local.components import Component
from core.settings import Settings

CONTROL_PLANE = ("api", "provisioner", "builder", "migrator", "router-config", "deprovisioner")
# The settings a child process inherits from the platform that starts it.
CHILD_ENV = ("moto_port", "localstack_port", "postgres_port", "valkey_port", "edge_port", "resolver_port", "api_port",
             "runtime_port_base", "runtime_port_count", "redelivery_s", "retry_delay_s", "scale_to_zero_after")


def module_of(service: str) -> str:
    return f"services.{service.replace('-', '_')}.main"


def installed_services() -> list[str]:
    return [s for s in CONTROL_PLANE if importlib.util.find_spec(module_of(s).rsplit(".", 1)[0]) and
            importlib.util.find_spec(module_of(s))]


def settings_env(settings: Settings, emulator: str) -> dict[str, str]:
    """The environment that makes a child process see exactly this platform."""
    env = {
        "HOSTPLANE_HOME": str(settings.home_dir),
        "HOSTPLANE_EMULATOR": emulator,
        "HOSTPLANE_HOST": settings.host,
        "HOSTPLANE_NAME_PREFIX": settings.name_prefix,
        "HOSTPLANE_LOCALSTACK_VENV": str(settings.localstack_venv.resolve()),
    }
    env |= {f"HOSTPLANE_{name.upper()}": str(getattr(settings, name)) for name in CHILD_ENV}
    return env


class ServiceProcess(Component):
    emulator: str = "moto"

    @property
    def ready_file(self) -> Path:
        return self.settings.home_dir / "run" / f"{self.name}.ready"

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}" if self.port else f"process:{self.name}"

    def prepare(self) -> None:
        self.ready_file.parent.mkdir(parents=True, exist_ok=True)
        self.ready_file.unlink(missing_ok=True)
        self.ready_file.with_name(self.ready_file.name + ".metrics").unlink(missing_ok=True)

    def command(self) -> list[str]:
        return [sys.executable, "-m", module_of(self.name)]

    def env(self) -> dict[str, str]:
        return settings_env(self.settings, self.emulator) | {"HOSTPLANE_READY_FILE": str(self.ready_file)}

    def healthy(self) -> bool:
        return self.ready_file.exists() and (not self.port or process.port_open(self.host, self.port))

    def start(self) -> int:
        if self.port:
            process.require_free(self.host, self.port, self.name, self.port_env)
        self.prepare()
        pid = process.spawn(self.command(), self.log_path, env=self.env())
        process.wait_until(self.healthy, timeout=self.settings.start_timeout, what=self.name, pid=pid,
                           log_path=self.log_path)
        return pid


class RuntimeAgent(ServiceProcess):
    """The local stand-in for ECS: one reloader per registered tenant runtime (hostplane.local.agent)."""

    def command(self) -> list[str]:
        return [sys.executable, "-m", "hostplane.local.agent", "--home", str(self.settings.home_dir), "--dsn-from-home"]


class RouteResolver(ServiceProcess):
    """The DNS responder the edge asks for each host's upstream (services.router_config.resolver);
    data plane, so it runs on its own and before the control plane."""

    @property
    def url(self) -> str:
        return f"dns+tcp://{self.host}:{self.port}"

    def command(self) -> list[str]:
        return [sys.executable, "-m", "services.router_config.resolver"]


def service_components(settings: Settings, credentials, emulator: str) -> list[Component]:
    resolver = RouteResolver("route-resolver", settings.resolver_port, settings, credentials,
                             "HOSTPLANE_RESOLVER_PORT")
    agent = RuntimeAgent("runtime-agent", 0, settings, credentials, "")
    comps: list[Component] = [resolver, agent]
    for comp in comps:
        comp.emulator = emulator
    for name in installed_services():
        port = settings.api_port if name == "api" else 0
        comp = ServiceProcess(name, port, settings, credentials, "HOSTPLANE_API_PORT" if port else "")
        comp.emulator = emulator
        comps.append(comp)
    return comps

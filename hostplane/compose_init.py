"""One-shot set-up for the docker-compose stack: `python -m hostplane.compose_init`.

`hostplane up` starts the servers from wheels and records them in `<home>/state.json`
and `<home>/credentials.json`; under docker-compose the servers are containers instead,
so this writes the same two files (every hostplane process then finds the servers the
same way), waits for the servers and converges the topology and control-plane schema,
exactly as `up` does before it starts the services. All containers share one network
namespace, so the addresses are the same loopback ports as `hostplane up` uses.

Passwords and the API token come from the environment (HOSTPLANE_POSTGRES_PASSWORD,
HOSTPLANE_VALKEY_PASSWORD, HOSTPLANE_API_TOKEN); none of them is ever printed.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time

import structlog

from core import process
from core.state import (
    CREDENTIALS_FILE,
    ComponentState,
    Credentials,
    PlatformState,
    save_state,
    write_private,
)
from core.settings import Settings

log = structlog.get_logger(__name__)
SECRET_ENV = {"postgres_password": "HOSTPLANE_POSTGRES_PASSWORD", "valkey_password": "HOSTPLANE_VALKEY_PASSWORD",
              "api_token": "HOSTPLANE_API_TOKEN"}


class ComposeInitError(RuntimeError):
    """The stack cannot be set up; the message names what to fix."""


def credentials_from_env(environ: dict[str, str]) -> Credentials:
    missing = [var for var in SECRET_ENV.values() if not environ.get(var)]
    if missing:
        raise ComposeInitError(f"set {', '.join(missing)} (see docker-compose.yml)")
    return Credentials(**{field: environ[var] for field, var in SECRET_ENV.items()})


def platform_state(settings: Settings) -> PlatformState:
    """What `up` would record, with the servers as containers (no pids)."""
    host = settings.host
    ports = {"localstack_port": settings.localstack_port, "postgres_port": settings.postgres_port,
             "valkey_port": settings.valkey_port, "caddy_admin_port": settings.caddy_admin_port,
             "edge_port": settings.edge_port, "resolver_port": settings.resolver_port,
             "api_port": settings.api_port,
             "moto_port": settings.moto_port}
    endpoint = settings.aws_endpoint_url or f"http://{host}:{settings.localstack_port}"
    return PlatformState(
        emulator="localstack", aws_endpoint=endpoint, host=host,
        edge_url=f"http://localhost:{settings.edge_port}", api_url=f"http://{host}:{settings.api_port}",
        postgres_port=settings.postgres_port, valkey_port=settings.valkey_port,
        caddy_admin_url=f"http://{host}:{settings.caddy_admin_port}", ports=ports,
        components={name: ComponentState(name=name, url=f"container:{name}", port=port)
                    for name, port in (("localstack", settings.localstack_port),
                                       ("postgres", settings.postgres_port), ("valkey", settings.valkey_port),
                                       ("caddy", settings.caddy_admin_port))},
    )


def write_home(settings: Settings, creds: Credentials) -> None:
    home = settings.home_dir
    home.mkdir(parents=True, exist_ok=True)
    if (home / CREDENTIALS_FILE).exists():  # a re-run keeps the control role's password (services use it)
        kept = json.loads((home / CREDENTIALS_FILE).read_text()).get("postgres_control_password", "")
        creds = creds.model_copy(update={"postgres_control_password": kept or creds.postgres_control_password})
    write_private(home / CREDENTIALS_FILE, creds.model_dump_json())
    save_state(home, platform_state(settings))


def wait_for_servers(settings: Settings, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    for name, port in (("localstack", settings.localstack_port), ("postgres", settings.postgres_port),
                       ("valkey", settings.valkey_port), ("caddy", settings.caddy_admin_port)):
        while not process.port_open(settings.host, port):
            if time.monotonic() > deadline:
                raise ComposeInitError(f"{name} does not answer on {settings.host}:{port} after {timeout:.0f} s")
            time.sleep(1.0)


def main() -> int:
    from hostplane.local.platform import _converge_control_plane
    from core.logging import configure_logging

    configure_logging(json_output=True)
    settings = Settings()
    try:
        creds = credentials_from_env(dict(os.environ))
        wait_for_servers(settings, settings.start_timeout)
    except ComposeInitError as exc:
        log.error("compose_init.failed", error=str(exc))
        return 2
    write_home(settings, creds)
    asyncio.run(_converge_control_plane(settings))
    log.info("compose_init.done", home=str(settings.home_dir))
    return 0


if __name__ == "__main__":
    sys.exit(main())

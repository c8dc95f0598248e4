"""What one tenant runtime needs to know, and the tenant environment its app gets.

The app runs with only its own environment: the variables its launcher hands the
reloader (a JSON file written by the local agent, or on AWS a JSON secret the task
definition injects as HOSTPLANE_TENANT_ENV), plus PORT, TENANT_ID and APP_VERSION.
Nothing of the reloader's own environment (AWS credentials, HOSTPLANE_*) leaks in.
Values are never logged; `Scrubber` removes them from app output before it is logged
or put into an event.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from core.logging import redact

ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
TENANT_ENV_VAR = "HOSTPLANE_TENANT_ENV"
BASE_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "PYTHONUNBUFFERED": "1",
            "PYTHONDONTWRITEBYTECODE": "1"}


class TenantEnvError(ValueError):
    """The tenant environment is not a JSON object of variable names to strings."""


@dataclass(frozen=True)
class RuntimeConfig:
    tenant_id: str
    artifacts: Path
    work_dir: Path
    host: str = "127.0.0.1"
    port: int = 0
    health_port: int = 0
    listen_fd: int | None = None  # a listening socket handed over by the launcher (the agent owns it)
    poll_interval: float = 1.0
    start_timeout: float = 15.0  # worker imports the app and reports `started`
    health_timeout: float = 10.0  # then /healthz must answer the new version
    smoke_path: str = "/"
    grace: float = 10.0  # drain budget for an old generation and for SIGTERM
    probation: float = 3.0  # old generation kept idle after cutover
    memory_mb: int = 512
    memory_check_interval: float = 0.5
    backoff_initial: float = 0.5
    backoff_max: float = 30.0
    stable_after: float = 30.0  # up this long without a crash: the backoff resets
    crash_loop_threshold: int = 3  # crashes in a row before falling back to the last good release
    health_interval: float = 2.0  # live app health probe, for /runtime/healthz
    verify_retry_for: float = 5.0  # an incomplete artifact may still be arriving (NFS)
    idle_close: float = 0.5
    count_interval: float = 1.0  # workers report requests served this often while it changes
    zygote: bool = True  # fork workers from a warm interpreter (reloader.zygote); False: every start is cold
    zygote_delay: float = 0.2  # after a deploy goes live, before the zygote starts
    zygote_idle: float = 300.0  # the zygote is retired after this long without a fork
    tenant_env: dict[str, str] = field(default_factory=dict, repr=False)

    @property
    def cache_dir(self) -> Path:
        return self.work_dir / "releases"


def parse_tenant_env(raw: str | bytes, where: str) -> dict[str, str]:
    try:
        data = json.loads(raw) if raw else {}
    except ValueError:
        raise TenantEnvError(f"{where} is not JSON") from None  # never echo the content
    if not isinstance(data, dict):
        raise TenantEnvError(f"{where} must be a JSON object of environment variables")
    bad = [k for k in data if not isinstance(k, str) or not ENV_NAME.fullmatch(k)]
    if bad:
        raise TenantEnvError(f"{where} has invalid variable names: {bad[:5]}")
    return {k: v if isinstance(v, str) else json.dumps(v) for k, v in data.items() if v is not None}


def load_tenant_env(env_file: Path | None, environ: dict[str, str]) -> dict[str, str]:
    """The tenant's variables: from `env_file` if given, else from HOSTPLANE_TENANT_ENV."""
    if env_file is not None:
        return parse_tenant_env(env_file.read_bytes(), str(env_file))
    return parse_tenant_env(environ.get(TENANT_ENV_VAR, ""), TENANT_ENV_VAR)


def app_environment(cfg: RuntimeConfig, version: int) -> dict[str, str]:
    """Exactly what the app process sees; platform variables win over tenant ones."""
    return BASE_ENV | cfg.tenant_env | {"PORT": str(cfg.port), "TENANT_ID": cfg.tenant_id,
                                        "APP_VERSION": str(version)}


class Scrubber:
    """Replace the tenant's secret values (and URL passwords) in app output."""

    MIN_SECRET_LEN = 6  # shorter values ("1", "true") would mangle every line

    def __init__(self, tenant_env: dict[str, str]) -> None:
        self.values = sorted({v for v in tenant_env.values() if len(v) >= self.MIN_SECRET_LEN}, key=len,
                             reverse=True)

    def __call__(self, line: str) -> str:
        for value in self.values:
            if value in line:
                line = line.replace(value, "<redacted>")
        return redact(None, "", {"line": line})["line"]

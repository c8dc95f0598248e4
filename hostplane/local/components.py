"""The servers of the local platform, each a real process on loopback.

A component knows how to prepare its state folder, the command that runs it, how to
tell it is healthy, and which signal stops it cleanly. `hostplane.local.platform`
starts and stops them in order.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass
from pathlib import Path

import httpx

from core import process
from hostplane.local.emulator import HEALTH_PATH
from core.state import Credentials
from core.settings import Settings


@dataclass
class Component:
    name: str
    port: int
    settings: Settings
    credentials: Credentials
    port_env: str = ""
    stop_signal: int = signal.SIGTERM

    @property
    def host(self) -> str:
        return self.settings.host

    @property
    def folder(self) -> Path:
        return self.settings.home_dir / self.name

    @property
    def log_path(self) -> Path:
        return self.settings.home_dir / "logs" / f"{self.name}.log"

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def prepare(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)

    def command(self) -> list[str]:
        raise NotImplementedError

    def env(self) -> dict[str, str]:
        return {}

    def user(self) -> str | None:
        return None

    def healthy(self) -> bool:
        return process.port_open(self.host, self.port)

    def after_start(self) -> None:
        """Work that needs the server up (databases, initial config)."""

    def start(self) -> int:
        process.require_free(self.host, self.port, self.name, self.port_env)
        self.prepare()
        pid = process.spawn(self.command(), self.log_path, env=self.env(), user=self.user())
        process.wait_until(
            self.healthy, timeout=self.settings.start_timeout, what=self.name, pid=pid, log_path=self.log_path
        )
        self.after_start()
        return pid


def _http_ok(url: str, timeout: float = 1.0) -> bool:
    try:
        return httpx.get(url, timeout=timeout).status_code < 500
    except httpx.HTTPError:
        return False


class Moto(Component):
    """moto (EventBridge, SQS, S3, Secrets Manager... in one process) served by our launcher,
    hostplane.local.emulator: IAM enforced with the platform's key from credentials.json,
    /moto-api/ and CORS refused, its state kept across restarts in its folder
    (hostplane.local.emulator_state)."""

    def command(self) -> list[str]:
        import sys

        from core.state import CREDENTIALS_FILE
        from hostplane.local.emulator_state import STATE_FILE

        return [sys.executable, "-m", "hostplane.local.emulator", "--host", self.host, "--port", str(self.port),
                "--credentials", str(self.settings.home_dir / CREDENTIALS_FILE),
                "--state", str(self.folder / STATE_FILE)]

    def healthy(self) -> bool:
        # The launcher answers it only after its IAM bootstrap and the state it kept are in place.
        try:
            return httpx.get(f"{self.url}{HEALTH_PATH}", timeout=3.0).status_code == 200
        except httpx.HTTPError:
            return False


LOCALSTACK_SERVICES = ("events", "sqs", "s3", "secretsmanager", "sts", "iam", "route53", "acm")


class LocalStack(Component):
    """LocalStack in host mode from its own Python 3.13 venv (no Docker)."""

    def python(self) -> Path:
        return self.settings.localstack_venv.resolve() / "bin" / "python"

    def command(self) -> list[str]:
        return [str(self.python()), "-m", "localstack.runtime.main"]

    def env(self) -> dict[str, str]:
        return {
            "GATEWAY_LISTEN": f"{self.host}:{self.port}",
            # Queue URLs on our loopback address, not a public DNS name that points home.
            "LOCALSTACK_HOST": f"{self.host}:{self.port}",
            "SQS_ENDPOINT_STRATEGY": "path",
            "SERVICES": ",".join(LOCALSTACK_SERVICES),
            "LOCALSTACK_VOLUME_DIR": str(self.folder / "volume"),
            "TMPDIR": str(self.folder / "tmp"),
            "DNS_ADDRESS": "0",
            "DISABLE_EVENTS": "1",
            "SKIP_SSL_CERT_DOWNLOAD": "1",
            "LS_LOG": "warn",
        }

    def prepare(self) -> None:
        super().prepare()
        (self.folder / "tmp").mkdir(parents=True, exist_ok=True)
        if not self.python().exists():
            raise process.StartFailed(
                f"LocalStack's venv is missing ({self.python()}); create it with `make localstack-venv`"
            )

    def healthy(self) -> bool:
        try:
            services = httpx.get(f"{self.url}/_localstack/health", timeout=1.0).json()["services"]
        except (httpx.HTTPError, ValueError, KeyError):
            return False
        return all(services.get(s) in ("available", "running") for s in LOCALSTACK_SERVICES)

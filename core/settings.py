"""Configuration, from HOSTPLANE_* environment variables, with loopback defaults.

The running platform's addresses are written by `hostplane up` to `<home>/state.json`;
`Platform` (core.state) reads them back so every process finds the same servers.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

Emulator = Literal["moto", "localstack"]
Target = Literal["local", "aws"]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="HOSTPLANE_", extra="ignore")

    home: Path = Field(default=Path(".hostplane"), description="state folder (git-ignored)")
    emulator: Emulator = "moto"
    target: Target = Field(
        default="local", description="tenant resources: local drivers, or AWS tenant stacks (HOSTPLANE_AWS_*)")
    host: str = "127.0.0.1"
    public_domain: str | None = Field(
        default=None, description="zone of tenant host names when the edge is not local (AWS: the platform's "
        "base domain): tenant URLs are https://<tenant>.<public_domain>/ and no custom domain may be under it")
    region: str = "us-east-1"
    name_prefix: str = "hostplane"

    moto_port: int = 4580
    localstack_port: int = 4566
    postgres_port: int = 54329
    valkey_port: int = 6390
    valkey_maxmemory_mb: int = Field(default=256, ge=1, description="Valkey's maxmemory (the tenants' shared "
                                     "cache; the least recently used keys go when it is full)")
    # Only the docker-compose stack's Caddy container listens for admin on TCP; `hostplane up`
    # serves Caddy's admin API on <home>/run/caddy-admin.sock and ignores this.
    caddy_admin_port: int = 2099
    edge_port: int = 8480
    resolver_port: int = Field(default=8453, description="the route resolver (DNS over TCP, loopback) "
                               "the edge asks for each host's upstream")
    api_port: int = 8400
    metrics_port: int = Field(default=0, description="each service's /metrics port (0: any free port)")
    # Tenant app ports (the runtime registry's addresses), below Linux's ephemeral range.
    runtime_port_base: int = Field(default=10000, ge=1024, le=65000)
    runtime_port_count: int = Field(default=2000, ge=1, le=20000)

    aws_endpoint_url: str | None = Field(
        default=None, description="override the emulator endpoint (else taken from state.json)"
    )
    localstack_venv: Path = Path(".venv-localstack")
    artifacts_dir: Path | None = Field(default=None, description="artifact store root (default <home>/artifacts; EFS on AWS)")
    start_timeout: float = 90.0
    release_retention: int = Field(default=20, ge=2, description="releases kept per tenant (for rollbacks)")
    redelivery_s: int = Field(default=60, ge=5, le=43200, description=(
        "how long a message a service received stays invisible to the others (SQS visibility per receive, "
        "kept up by a heartbeat while it is handled): a service that dies holding one gets it back this late"))
    retry_delay_s: float = Field(default=2.0, ge=0, le=900, description=(
        "backoff base after a failed handler: receive n waits 2^(n-1) times this, at most redelivery_s"))
    scale_to_zero_after: int = Field(default=900, ge=0, le=31_536_000, description=(
        "seconds without a request after which a tenant's runtime is stopped (it wakes on its next request); "
        "0: never. A tenant's own --idle-after / --always-on overrides it"))

    @property
    def home_dir(self) -> Path:
        return self.home.resolve()

    def emulator_port(self, emulator: Emulator | None = None) -> int:
        return self.moto_port if (emulator or self.emulator) == "moto" else self.localstack_port


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()

"""The one AWS client factory. Every AWS call in hostplane gets its client here.

Locally the endpoint is the emulator `hostplane up` started (or HOSTPLANE_AWS_ENDPOINT_URL);
on AWS it is None and botocore's own resolution applies.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import lru_cache
from typing import Any

from aiobotocore.config import AioConfig
from aiobotocore.session import AioSession, get_session

from hostplane.logging import keep_secret_values_out_of_botocore_logs
from hostplane.settings import Settings, get_settings

# Emulators accept any credentials; real AWS uses the normal credential chain.
EMULATOR_CREDENTIALS = {"aws_access_key_id": "test", "aws_secret_access_key": "test"}


@lru_cache(maxsize=1)
def _session() -> AioSession:
    return get_session()


def endpoint_url(settings: Settings) -> str | None:
    if settings.aws_endpoint_url:
        return settings.aws_endpoint_url
    from hostplane.local.state import load_state

    state = load_state(settings.home_dir)
    return state.aws_endpoint if state else None


@asynccontextmanager
async def aws_client(
    service: str, settings: Settings | None = None, *, endpoint: str | None = None, **config: Any
) -> AsyncIterator[Any]:
    """An aiobotocore client for `service`, pointed at the emulator when one runs."""
    settings = settings or get_settings()
    keep_secret_values_out_of_botocore_logs()
    url = endpoint or endpoint_url(settings)
    kwargs: dict[str, Any] = {"region_name": settings.region}
    if url:
        kwargs |= {"endpoint_url": url, **EMULATOR_CREDENTIALS}
    aio_config = AioConfig(
        retries={"max_attempts": 4, "mode": "standard"},
        connect_timeout=5,
        read_timeout=config.pop("read_timeout", 30),
        max_pool_connections=config.pop("max_pool_connections", 20),
        **config,
    )
    async with _session().create_client(service, config=aio_config, **kwargs) as client:
        yield client

"""The one AWS client factory. Every AWS call in hostplane gets its client here.

Locally the endpoint is the emulator `hostplane up` started (or HOSTPLANE_AWS_ENDPOINT_URL);
on AWS it is None and botocore's own resolution applies.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any

from aiobotocore.config import AioConfig
from aiobotocore.session import AioSession, get_session

from core.logging import keep_secret_values_out_of_botocore_logs
from core.settings import Settings, get_settings

# LocalStack's community edition checks no credentials (IAM enforcement is a Pro feature) and
# derives the account from the key id: it gets its conventional dummy key. moto (our launcher,
# hostplane.local.emulator) enforces IAM: it gets the platform's key from credentials.json.
# Real AWS uses botocore's normal credential chain.
LOCALSTACK_CREDENTIALS = {"aws_access_key_id": "test", "aws_secret_access_key": "test"}


@lru_cache(maxsize=1)
def _session() -> AioSession:
    return get_session()


def endpoint_url(settings: Settings) -> str | None:
    if settings.aws_endpoint_url:
        return settings.aws_endpoint_url
    from core.state import load_state

    state = load_state(settings.home_dir)
    return state.aws_endpoint if state else None


def emulator_credentials(settings: Settings) -> dict[str, str]:
    """The key this process signs emulator requests with.

    moto: the platform's key in `<home>/credentials.json` (root-only, 0600). A process that
    cannot read it (a tenant) gets no key from here: its requests are refused by the emulator.
    """
    from core.state import CREDENTIALS_FILE, load_state

    state = load_state(settings.home_dir)
    if state is not None and state.emulator == "localstack":
        return dict(LOCALSTACK_CREDENTIALS)
    key = _platform_key(settings.home_dir / CREDENTIALS_FILE)
    if key is None:
        return dict(LOCALSTACK_CREDENTIALS)  # moto answers InvalidClientTokenId
    return {"aws_access_key_id": key[0], "aws_secret_access_key": key[1]}


_key_cache: dict[Path, tuple[int, tuple[str, str] | None]] = {}


def _platform_key(path: Path) -> tuple[str, str] | None:
    try:
        mtime = path.stat().st_mtime_ns
        if (cached := _key_cache.get(path)) and cached[0] == mtime:
            return cached[1]
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    key_id, secret = data.get("emulator_key_id"), data.get("emulator_secret")
    key = (key_id, secret) if key_id and secret else None
    _key_cache[path] = (mtime, key)
    return key


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
        kwargs |= {"endpoint_url": url, **emulator_credentials(settings)}
    aio_config = AioConfig(
        retries={"max_attempts": 4, "mode": "standard"},
        connect_timeout=5,
        read_timeout=config.pop("read_timeout", 30),
        max_pool_connections=config.pop("max_pool_connections", 20),
        **config,
    )
    async with _session().create_client(service, config=aio_config, **kwargs) as client:
        yield client

"""The API's HTTP server, run inside the service process beside its consumer.

services.runner runs the consumer and the outbox relay; `bootstrap` (its deps) opens
the HTTP side first — its own small pool, the API tables, uvicorn on an already bound
socket — and returns the deps whose `aclose` the runner calls after the consumer stops.
uvicorn's own signal handling is switched off: the runner's consumer owns SIGTERM/SIGINT,
and the HTTP server stops when the runner closes the deps. Because the socket is bound
before the runner writes its ready file, "ready" means the port answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import asyncpg
import structlog
import uvicorn

from core.aws import aws_client
from core.state import CREDENTIALS_FILE
from core.settings import Settings
from services.api import audit, store
from services.api.app import create_app
from services.api.http import ApiContext
from services.api.watch import StatusWatch

log = structlog.get_logger(__name__)
HTTP_POOL_SIZE = 6
STARTUP_TIMEOUT_S = 15.0
SHUTDOWN_GRACE_S = 5


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:  # the runner's consumer handles signals
        yield


def api_token(settings: Settings) -> str:
    """HOSTPLANE_API_TOKEN (AWS), else the one `hostplane up` generated into credentials.json."""
    if token := os.environ.get("HOSTPLANE_API_TOKEN"):
        return token
    path = settings.home_dir / CREDENTIALS_FILE
    try:
        return json.loads(path.read_text())["api_token"]
    except (OSError, ValueError, KeyError):
        raise RuntimeError(f"no API token: {path} is missing or unreadable; run `hostplane up`") from None


def bind(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise RuntimeError(f"cannot listen on {host}:{port} ({exc.strerror}); set HOSTPLANE_API_PORT") from None
    sock.listen(128)
    sock.setblocking(False)
    return sock


def secret_reader(settings: Settings) -> Any:
    async def read(secret_name: str) -> dict[str, str] | None:
        async with aws_client("secretsmanager", settings) as sm:
            try:
                value = await sm.get_secret_value(SecretId=secret_name)
            except sm.exceptions.ResourceNotFoundException:
                return None
        return json.loads(value["SecretString"])

    return read


@dataclass
class ApiDeps:
    pool: asyncpg.Pool
    server: _Server
    task: asyncio.Task[None]
    watch: StatusWatch

    async def aclose(self) -> None:
        self.server.should_exit = True
        try:
            await asyncio.wait_for(asyncio.shield(self.task), SHUTDOWN_GRACE_S + 2)
        except TimeoutError:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
        finally:
            await self.watch.close()
            await self.pool.close()
        log.info("http.stopped")


async def bootstrap(settings: Settings, _consumer_pool: asyncpg.Pool, *, dsn: str | None = None) -> ApiDeps:
    from services.runner import control_dsn

    token = api_token(settings)
    pool = await asyncpg.create_pool(dsn or control_dsn(settings), min_size=1, max_size=HTTP_POOL_SIZE)
    watch = StatusWatch(dsn or control_dsn(settings))
    try:
        await watch.start()
        await store.ensure_schema(pool)
        await audit.ensure_schema(pool)
        sock = bind(settings.host, settings.api_port)
        ctx = ApiContext(pool=pool, edge_port=settings.edge_port, name_prefix=settings.name_prefix,
                         secrets=secret_reader(settings), settings=settings, public_domain=settings.public_domain,
                         watch=watch)
        config = uvicorn.Config(create_app(ctx, token), lifespan="off", log_config=None, access_log=False,
                                server_header=False, timeout_graceful_shutdown=SHUTDOWN_GRACE_S)
        server = _Server(config)
        task = asyncio.create_task(server.serve(sockets=[sock]))
        await _started(server, task)
    except BaseException:
        await watch.close()
        await pool.close()
        raise
    log.info("http.started", url=f"http://{settings.host}:{settings.api_port}")
    return ApiDeps(pool, server, task, watch)


async def _started(server: _Server, task: asyncio.Task[None]) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + STARTUP_TIMEOUT_S
    while not server.started:
        if task.done():
            task.result()  # raises what stopped it
            raise RuntimeError("the HTTP server stopped during start-up")
        if loop.time() > deadline:
            raise RuntimeError("the HTTP server did not start in time")
        await asyncio.sleep(0.02)

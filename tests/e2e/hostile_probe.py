"""What a hostile tenant's code tries, from inside its own runtime (deployed as `attack.py`).

This file is not a test: tests/e2e/test_hostile_tenant.py copies it into the attacker's
exported source tree beside a `targets.py` naming the victim and the platform's addresses,
adds the route `/attack` to the attacker's app and reads the verdicts through the edge.
Each probe returns ("refused" | "SUCCEEDED", detail); anything but "refused" is a breach.
Only the standard library and what the runtime image already carries (botocore, asyncpg,
redis, httpx) are used, the way a real attacker's code would.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import time
import traceback
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

import targets as T  # written by the test beside this file

REFUSED, SUCCEEDED = "refused", "SUCCEEDED"


def _read(path: str) -> tuple[str, str]:
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        return REFUSED, f"{type(exc).__name__}"
    return SUCCEEDED, f"read {len(data)} bytes"


def probe_files() -> dict[str, tuple[str, str]]:
    home = T.HOME
    out = {}
    for label, path in {
        "credentials.json": f"{home}/credentials.json",
        "state.json": f"{home}/state.json",
        "victim env.json": f"{home}/runtime/{T.VICTIM}/env.json",
        "victim current.json": f"{home}/artifacts/{T.VICTIM}/current.json",
        "platform log": f"{home}/logs/api.log",
    }.items():
        out[f"file: {label}"] = _read(path)
    try:
        names = os.listdir(f"{home}/runtime")
        others = [n for n in names if n != T.ATTACKER]
        out["file: list other runtimes"] = (SUCCEEDED, f"saw {others}") if others else (REFUSED, "only own")
    except OSError as exc:
        out["file: list other runtimes"] = (REFUSED, type(exc).__name__)
    return out


def probe_processes() -> tuple[str, str]:
    """Other uids' processes (the platform's, other tenants') are not even visible."""
    mine = os.getuid()
    foreign = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if os.stat(f"/proc/{pid}").st_uid != mine and pid != "1":  # 1: the sandbox's own init (bwrap)
                foreign.append(f"{pid}:{Path(f'/proc/{pid}/comm').read_text().strip()}")
        except OSError:
            pass
    return (SUCCEEDED, f"foreign processes visible: {foreign[:5]}") if foreign else (REFUSED, "only own processes")


def probe_bind() -> tuple[str, str]:
    """Squatting a port: a runtime that restarts (or a tenant not yet started) would have its
    traffic sent to whoever holds its registered port."""
    try:
        with socket.create_server(("127.0.0.1", 0)) as sock:
            return SUCCEEDED, f"bound {sock.getsockname()}"
    except OSError as exc:
        return REFUSED, type(exc).__name__


def probe_root() -> tuple[str, str]:
    return (SUCCEEDED, "runs as root") if os.getuid() == 0 else (REFUSED, f"uid {os.getuid()}")


async def _pg(user: str, password: str, database: str) -> tuple[str, str]:
    import asyncpg

    try:
        conn = await asyncpg.connect(host="127.0.0.1", port=T.POSTGRES_PORT, user=user, password=password,
                                     database=database, timeout=5)
    except Exception as exc:  # noqa: BLE001 - any refusal is the expected outcome
        return REFUSED, type(exc).__name__
    try:
        await conn.execute("SET session_replication_role = replica")
        return SUCCEEDED, f"connected as {user} to {database} with superuser powers"
    except Exception:  # noqa: BLE001
        return SUCCEEDED, f"connected as {user} to {database}"
    finally:
        await conn.close()


def probe_postgres() -> dict[str, tuple[str, str]]:
    own = os.environ.get("DATABASE_URL", "")
    from urllib.parse import urlsplit

    parts = urlsplit(own)
    out = {}
    for guess in ("", "postgres", "hostplane"):
        out[f"postgres: superuser password {guess!r}"] = asyncio.run(_pg("postgres", guess, "postgres"))
    out["postgres: own role on the victim's database"] = asyncio.run(
        _pg(parts.username or "", parts.password or "", T.VICTIM_DATABASE))
    out["postgres: own role on the control database"] = asyncio.run(
        _pg(parts.username or "", parts.password or "", T.CONTROL_DATABASE))
    return out


def probe_valkey() -> dict[str, tuple[str, str]]:
    import redis

    out = {}
    client = redis.Redis.from_url(os.environ["REDIS_URL"], socket_timeout=5)
    for label, call in {
        "valkey: read the victim's keys": lambda: client.keys(f"{T.VICTIM}:*"),
        "valkey: CONFIG GET": lambda: client.config_get("requirepass"),
        "valkey: ACL LIST": lambda: client.acl_list(),
    }.items():
        try:
            out[label] = (SUCCEEDED, repr(call())[:80])
        except redis.RedisError as exc:
            out[label] = (REFUSED, type(exc).__name__)
    try:
        redis.Redis(host="127.0.0.1", port=T.VALKEY_PORT, socket_timeout=5).ping()
        out["valkey: default user"] = (SUCCEEDED, "PING answered without a password")
    except redis.RedisError as exc:
        out["valkey: default user"] = (REFUSED, type(exc).__name__)
    return out


def probe_caddy_admin() -> dict[str, tuple[str, str]]:
    out = {}
    try:
        with socket.create_connection(("127.0.0.1", T.CADDY_ADMIN_PORT), timeout=2) as s:
            s.sendall(b"GET /config/ HTTP/1.0\r\nHost: localhost\r\n\r\n")
            answer = s.recv(200)
        out["caddy admin: TCP port"] = (SUCCEEDED, answer[:60].decode(errors="replace")) if b"200" in answer \
            else (REFUSED, answer[:60].decode(errors="replace"))
    except OSError as exc:
        out["caddy admin: TCP port"] = (REFUSED, type(exc).__name__)
    sock = T.CADDY_ADMIN_SOCKET
    try:
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(2)
            s.connect(sock)
            s.sendall(b"GET /config/ HTTP/1.0\r\nHost: localhost\r\n\r\n")
            answer = s.recv(200)
        out["caddy admin: unix socket"] = (SUCCEEDED, answer[:60].decode(errors="replace"))
    except OSError as exc:
        out["caddy admin: unix socket"] = (REFUSED, type(exc).__name__)
    return out


def _aws(service: str, key: str | None, secret: str | None):
    import botocore.session
    from botocore.config import Config

    session = botocore.session.get_session()
    kwargs: dict[str, Any] = {"region_name": T.REGION, "endpoint_url": T.EMULATOR_URL,
                              "config": Config(retries={"max_attempts": 1})}
    if key:
        kwargs |= {"aws_access_key_id": key, "aws_secret_access_key": secret}
    else:
        from botocore import UNSIGNED

        kwargs["config"] = Config(retries={"max_attempts": 1}, signature_version=UNSIGNED)
    return session.create_client(service, **kwargs)


def _forged_detail(event_type: str, data: dict[str, Any], producer: str) -> str:
    import uuid
    from datetime import UTC, datetime

    return json.dumps({"event_id": str(uuid.uuid4()), "event_type": event_type, "schema_version": "1.0",
                       "occurred_at": datetime.now(UTC).isoformat(), "tenant_id": T.VICTIM,
                       "correlation_id": str(uuid.uuid4()), "producer": producer, "data": data})


def probe_emulator() -> dict[str, tuple[str, str]]:
    out: dict[str, tuple[str, str]] = {}
    for who, (key, secret) in {"dummy keys": ("test", "test"), "unsigned": (None, None)}.items():
        calls = {
            "list secrets": lambda c=None: _aws("secretsmanager", key, secret).list_secrets(),
            "read the victim's secret": lambda: _aws("secretsmanager", key, secret).get_secret_value(
                SecretId=T.VICTIM_SECRET),
            "write into the victim's bucket": lambda: _aws("s3", key, secret).put_object(
                Bucket=T.VICTIM_BUCKET, Key="static/pwned.txt", Body=b"pwned"),
            "publish a forged TenantDeletionRequested": lambda: _put_events(key, secret),
            "send straight to the deprovisioner's queue": lambda: _send_to_queue(key, secret),
        }
        for label, call in calls.items():
            try:
                answer = call()
                failed = isinstance(answer, dict) and answer.get("FailedEntryCount")
                out[f"emulator ({who}): {label}"] = (REFUSED, "entry failed") if failed else (SUCCEEDED, "accepted")
            except Exception as exc:  # noqa: BLE001 - botocore ClientError or a transport error
                out[f"emulator ({who}): {label}"] = (REFUSED, type(exc).__name__)
    import httpx

    for path in ("/moto-api/data.json", "/moto-api/reset"):
        try:
            resp = httpx.post(T.EMULATOR_URL + path, timeout=5) if path.endswith("reset") else \
                httpx.get(T.EMULATOR_URL + path, timeout=5)
            out[f"emulator: {path}"] = (REFUSED, str(resp.status_code)) if resp.status_code >= 400 \
                else (SUCCEEDED, str(resp.status_code))
        except httpx.HTTPError as exc:
            out[f"emulator: {path}"] = (REFUSED, type(exc).__name__)
    resp = httpx.options(T.EMULATOR_URL + "/", headers={"Origin": "http://evil.example",
                                                        "Access-Control-Request-Method": "POST"}, timeout=5)
    allowed = resp.headers.get("access-control-allow-origin")
    out["emulator: CORS preflight from a foreign origin"] = (SUCCEEDED, f"allowed {allowed}") if allowed \
        else (REFUSED, str(resp.status_code))
    return out


def _put_events(key, secret):
    detail = _forged_detail("TenantDeletionRequested", {}, "api")
    return _aws("events", key, secret).put_events(Entries=[{
        "EventBusName": T.BUS, "Source": "hostplane.api", "DetailType": "TenantDeletionRequested",
        "Detail": detail}])


def _send_to_queue(key, secret):
    sqs = _aws("sqs", key, secret)
    url = sqs.get_queue_url(QueueName=T.DEPROVISIONER_QUEUE)["QueueUrl"]
    body = json.dumps({"source": "hostplane.api", "detail-type": "TenantDeletionRequested",
                       "detail": json.loads(_forged_detail("TenantDeletionRequested", {}, "api"))})
    return sqs.send_message(QueueUrl=url, MessageBody=body)


def probe_api() -> tuple[str, str]:
    import httpx

    resp = httpx.delete(f"{T.API_URL}/v1/tenants/{T.VICTIM}", timeout=5)
    return (REFUSED, str(resp.status_code)) if resp.status_code in (401, 403) else (SUCCEEDED, str(resp.status_code))


def spawn_daemon() -> tuple[str, str]:
    """Double-fork and setsid: a process that tries to outlive the tenant."""
    pid = os.fork()
    if pid == 0:
        os.setsid()
        if os.fork() != 0:
            os._exit(0)
        beat = Path(os.environ.get("HOME_WORK", os.getcwd())) / "daemon.beat"
        while True:
            try:
                beat.write_text(str(time.time()))
            except OSError:
                pass
            time.sleep(0.5)
    os.waitpid(pid, 0)
    return REFUSED, "spawned (the test checks it dies with the tenant)"


def run_all() -> dict[str, dict[str, str]]:
    results: dict[str, tuple[str, str]] = {}
    for probe in (probe_files, probe_postgres, probe_valkey, probe_caddy_admin, probe_emulator):
        try:
            results |= probe()
        except Exception:  # noqa: BLE001 - a probe that crashes is reported, not hidden
            results[probe.__name__] = ("ERROR", traceback.format_exc()[-400:])
    for name, probe in {"processes of others": probe_processes, "runs as root": probe_root, "bind a TCP port": probe_bind,
                        "API without its token": probe_api, "daemon": spawn_daemon}.items():
        try:
            results[name] = probe()
        except Exception:  # noqa: BLE001
            results[name] = ("ERROR", traceback.format_exc()[-400:])
    return {k: {"outcome": v[0], "detail": v[1]} for k, v in results.items()}


async def attack(request: Request) -> JSONResponse:
    return JSONResponse(await asyncio.to_thread(run_all))

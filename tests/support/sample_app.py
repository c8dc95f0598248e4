"""Tiny ASGI apps packed as zipapps, for tests and the redeploy benchmark.

They follow the contract the builder's generated apps must meet: module `app` exposing an
ASGI `app`, `/healthz` answering 200 with {"version": N}. Knobs make the misbehaving
releases the reloader must refuse or survive (crash at start, never healthy, wrong
version, crash later, memory hog, hang, a health check that can be broken at run time).
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass

_SOURCE = '''\
import os, sys, threading, time
from starlette.applications import Starlette
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

VERSION = {version}
HEALTH_VERSION = {health_version}
STATE = {{"broken": {never_healthy}, "hog": []}}
print("app starting version", VERSION, flush=True)
print("stderr hello from version", VERSION, file=sys.stderr, flush=True)
if {exit_at_start} or ({exit_if_env!r} and os.environ.get({exit_if_env!r})):
    print("fatal: cannot start version", VERSION, file=sys.stderr, flush=True)
    sys.exit(3)
if {hang_at_start}:
    time.sleep(3600)
if {crash_after} > 0:
    def _crash():
        time.sleep({crash_after})
        print("crashing on purpose", file=sys.stderr, flush=True)
        os._exit(7)
    threading.Thread(target=_crash, daemon=True).start()
if {hog_mb_at_start} > 0:
    STATE["hog"].append(b"\\x01" * ({hog_mb_at_start} * 1024 * 1024))  # written, so resident
if {print_env!r}:
    print("env", {print_env!r}, "=", os.environ.get({print_env!r}), flush=True)


async def healthz(request):
    if {hang_health}:
        time.sleep(3600)
    if STATE["broken"]:
        return JSONResponse({{"version": HEALTH_VERSION, "ok": False}}, status_code=503)
    return JSONResponse({{"version": HEALTH_VERSION, "ok": True}})


async def index(request):
    return JSONResponse({{"version": VERSION, "pid": os.getpid()}})


async def slow(request):
    import asyncio
    await asyncio.sleep(float(request.query_params.get("s", "1")))
    return JSONResponse({{"version": VERSION, "slow": True}})


async def env(request):
    return JSONResponse(sorted(os.environ))


async def loaded(request):
    return JSONResponse(request.query_params["name"] in sys.modules)


async def break_health(request):
    STATE["broken"] = True
    return PlainTextResponse("broken")


async def hog(request):
    mb = int(request.query_params.get("mb", "200"))
    STATE["hog"].append(b"\\x01" * (mb * 1024 * 1024))  # written, so resident
    return PlainTextResponse("hogging")


app = Starlette(routes=[Route("/", index), Route("/healthz", healthz), Route("/slow", slow),
                        Route("/env", env), Route("/loaded", loaded), Route("/break", break_health),
                        Route("/hog", hog)])
'''


@dataclass(frozen=True)
class SampleApp:
    version: int
    health_version: int | None = None  # answer health with another version (a bad build)
    exit_at_start: bool = False
    exit_if_env: str = ""  # exit at start when this variable is set (a good release its environment breaks)
    hang_at_start: bool = False
    hang_health: bool = False
    never_healthy: bool = False
    crash_after: float = 0.0  # seconds after import
    hog_mb_at_start: int = 0
    print_env: str = ""  # print this variable at start (secrets in output must be scrubbed)

    def source(self) -> str:
        return _SOURCE.format(
            version=self.version,
            health_version=self.version if self.health_version is None else self.health_version,
            exit_at_start=self.exit_at_start, exit_if_env=self.exit_if_env, hang_at_start=self.hang_at_start, hang_health=self.hang_health,
            never_healthy=self.never_healthy, crash_after=self.crash_after, hog_mb_at_start=self.hog_mb_at_start,
            print_env=self.print_env,
        )

    def zipapp(self) -> bytes:
        """The release artifact: a zipapp whose `app` module is the ASGI app."""
        buf = io.BytesIO()
        buf.write(b"#!/usr/bin/env python3\n")
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
            info = zipfile.ZipInfo("app.py", date_time=(2020, 1, 1, 0, 0, 0))  # reproducible bytes
            zf.writestr(info, self.source())
        return buf.getvalue()

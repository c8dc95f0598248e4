"""The control channel between the reloader and an app worker: JSON lines on a socketpair.

reloader → worker: {"cmd": "accept"} | {"cmd": "drain"} | {"cmd": "exit", "grace": s}
worker → reloader: {"event": "started"} | {"event": "accepting"} | {"event": "draining"}
                   | {"event": "drained"} | {"event": "served"} | {"event": "stopped"}
Every worker event carries "served": the requests it has answered on the shared socket
so far (a running total: a report lost or repeated changes nothing); `served` is sent
while that total changes, `stopped` last, just before the worker exits.
A worker whose channel reaches EOF (reloader gone) stops accepting, drains and exits,
so app processes never outlive their reloader.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

WORKER_NAME, ZYGOTE_NAME = "hp-worker", "hp-zygote"  # what `ps` and psutil's name() show for them


def name_process(name: str) -> None:
    """Set this process's name (/proc/self/comm): a forked worker would otherwise look like
    its zygote, and both like any other python."""
    with contextlib.suppress(OSError):
        with open("/proc/self/comm", "w") as comm:
            comm.write(name)


def encode(message: dict[str, Any]) -> bytes:
    return json.dumps(message, separators=(",", ":")).encode() + b"\n"


async def receive(reader: asyncio.StreamReader) -> dict[str, Any] | None:
    """Next message, or None at EOF. A garbled line is skipped, not fatal."""
    while True:
        line = await reader.readline()
        if not line:
            return None
        try:
            message = json.loads(line)
        except ValueError:
            continue
        if isinstance(message, dict):
            return message

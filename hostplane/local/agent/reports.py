"""The runtime agent's half of local runtime reporting: tenant reports onto the bus.

Locally a tenant's reloader has no AWS credentials and imports no AWS SDK: it appends
its envelopes, one JSON line each, to `events.jsonl` in its runtime folder
(reloader.reporting.FileReporter, which rotates the file to `events.jsonl.1` past
ROTATE_AT). The agent, trusted like ECS's credential vending, reads each tenant's file
from where it stopped (inode + offset, kept in the agent's state file across restarts;
a rotated file is finished first, a truncated one re-read from the start), and publishes
through events.publisher only the lines that are a reloader-produced event type about
that same tenant, not replays, not the sleep and wake facts only the agent states; the
envelope then carries its own runtime source (`hostplane.runtime.<tenant>`). Anything else is refused: logged
(`runtime.report_refused`) and counted, never published. The file is written by hostile
code: it is opened without following a symlink, must be a regular file, is read in
bounded chunks, a line longer than MAX_LINE is skipped whole, and at most MAX_EVENTS
go out per tenant and round (the rest wait): a tenant cannot flood the bus.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import stat
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import structlog

from contracts.envelope import Envelope
from contracts.registry import parse_envelope, registered_events

log = structlog.get_logger("runtime-agent")

EVENTS_FILE = "events.jsonl"
ROTATED_SUFFIX = ".1"
MAX_LINE = 256 * 1024  # EventBridge's own entry limit: nothing longer could be published
MAX_READ = 1 << 20  # per tenant per round: one tenant's flood cannot stall the others
MAX_EVENTS = 10  # published per tenant per round (one PutEvents call); a swap reports one or two
RUNTIME_PRODUCER = "reloader"
# The agent says when a tenant sleeps, never the tenant (Event.tenant_may_report).
AGENT_ONLY = tuple(sorted(e.event_type for e in registered_events() if not e.tenant_may_report))


@dataclass
class Cursor:
    """Where the agent stopped reading one tenant's report file."""

    inode: int | None = None
    offset: int = 0
    skipping: bool = False  # inside a line longer than MAX_LINE: drop up to its newline
    published: int = 0
    refused: int = 0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Cursor:
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


@dataclass
class Batch:
    """What one round read from a tenant's file; `cursor` applies once `envelopes` are out."""

    cursor: Cursor
    envelopes: list[Envelope[Any]] = field(default_factory=list)
    refused: list[tuple[str, str | None]] = field(default_factory=list)  # (reason, event_type)


def check(line: bytes, tenant_id: str) -> Envelope[Any] | tuple[str, str | None]:
    """The envelope, or (reason, event type if readable) for a line that must not go out."""
    try:
        env = parse_envelope(line)
    except Exception:  # bad JSON, unknown type, invalid fields: all the same refusal
        return "not_a_known_event", None
    event_type = env.event_type
    if env.producer != RUNTIME_PRODUCER or RUNTIME_PRODUCER not in type(env.data).producers:
        return "not_a_runtime_event", event_type
    if event_type in AGENT_ONLY:
        return "agent_only", event_type
    if env.tenant_id != tenant_id:
        return "other_tenant", event_type
    if env.replay_id is not None:
        return "replay", event_type
    return env


def _open(path: Path) -> tuple[int, os.stat_result] | None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:  # missing, or a symlink the tenant planted (ELOOP)
        return None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):  # a FIFO or a device would block or never end
        os.close(fd)
        return None
    return fd, info


def _lines(fd: int, cursor: Cursor, batch: Batch, tenant_id: str) -> None:
    data = os.pread(fd, MAX_READ, cursor.offset)
    pos = 0
    while len(batch.envelopes) < MAX_EVENTS and (end := data.find(b"\n", pos)) >= 0:
        line, pos = data[pos:end], end + 1
        if cursor.skipping:
            cursor.skipping = False  # the end of an overlong line
        elif len(line) > MAX_LINE:
            batch.refused.append(("line_too_long", None))
        elif line.strip():
            result = check(line, tenant_id)
            (batch.envelopes.append(result) if isinstance(result, Envelope) else batch.refused.append(result))
    rest = len(data) - pos
    if rest > MAX_LINE and data.find(b"\n", pos) < 0:  # no newline in sight: drop it, and the rest of it next round
        if not cursor.skipping:
            batch.refused.append(("line_too_long", None))
        cursor.skipping, pos = True, len(data)
    cursor.offset += pos


def read(folder: Path, tenant_id: str, cursor: Cursor) -> Batch:
    """The next lines of the tenant's report file after `cursor` (which is not changed)."""
    batch = Batch(Cursor(**asdict(cursor)))
    cur = batch.cursor
    current = _open(folder / EVENTS_FILE)
    try:
        if current is not None and cur.inode is not None and current[1].st_ino != cur.inode:
            rotated = _open(folder / (EVENTS_FILE + ROTATED_SUFFIX))
            if rotated is not None:
                try:
                    if rotated[1].st_ino == cur.inode and cur.offset < rotated[1].st_size:
                        _lines(rotated[0], cur, batch, tenant_id)  # finish the old file first
                        return batch
                finally:
                    os.close(rotated[0])
            cur.inode, cur.offset, cur.skipping = None, 0, False
        if current is None:
            return batch
        fd, info = current
        if cur.inode is None or info.st_size < cur.offset:  # new file, or truncated
            cur.inode, cur.offset, cur.skipping = info.st_ino, 0, False
        _lines(fd, cur, batch, tenant_id)
        return batch
    finally:
        if current is not None:
            with contextlib.suppress(OSError):
                os.close(current[0])


def pending(runtime_root: Path, tenants: list[str], cursors: dict[str, dict[str, Any]]) -> list[str]:
    """The tenants whose report file holds bytes past their cursor (or is a new file): one
    lstat each and no read, cheap enough to ask several times a second of a thousand tenants."""
    out, root = [], os.fspath(runtime_root)
    for tenant in tenants:
        try:  # a string join, not pathlib's: at 1,000 tenants a round, pathlib was most of this
            info = os.stat(f"{root}/{tenant}/{EVENTS_FILE}", follow_symlinks=False)
        except OSError:
            continue
        if not stat.S_ISREG(info.st_mode):
            continue  # a planted symlink or FIFO: the round's read refuses it, no need to ask again
        cur = cursors.get(tenant, {})
        if info.st_ino != cur.get("inode") or info.st_size != cur.get("offset", 0):
            out.append(tenant)
    return out


async def relay(runtime_root: Path, tenants: list[str], cursors: dict[str, dict[str, Any]],
                publish: Callable[[list[Envelope[Any]]], Awaitable[None]]) -> None:
    """One round: each tenant's new lines out, its cursor (in `cursors`) moved past them.
    A failed publish moves nothing: the same lines go again next round (consumers
    deduplicate on event_id). Only files that grew are read (`pending`): the rest cost a
    stat, not a thread hop each (at 1,000 sleeping tenants those hops were most of the
    agent's round, bench/agent_round.py)."""
    for tenant in pending(runtime_root, tenants, cursors):
        cursor = Cursor.from_json(cursors.get(tenant, {}))
        batch = await asyncio.to_thread(read, runtime_root / tenant, tenant, cursor)
        if batch.envelopes:
            try:
                await publish(batch.envelopes)
            except Exception as exc:  # the bus is down or refused the batch
                log.warning("runtime.report_publish_failed", tenant_id=tenant, error=type(exc).__name__)
                continue
        if batch.refused:  # one line per tenant and round: a flood of junk is not a flood of logs
            log.warning("runtime.report_refused", tenant_id=tenant, count=len(batch.refused),
                        reasons=dict(Counter(r for r, _ in batch.refused)),
                        event_types=sorted({t for _, t in batch.refused if t})[:5])
        batch.cursor.published += len(batch.envelopes)
        batch.cursor.refused += len(batch.refused)
        cursors[tenant] = batch.cursor.to_json()
        for env in batch.envelopes:
            log.info("runtime.report_published", tenant_id=tenant, event_type=env.event_type,
                     event_id=str(env.event_id), source=env.source)

"""`hostplane logs [--tenant NAME] [--correlation ID] [--service S] [--follow] [--json]`.

Every process `hostplane up` starts appends its output to `<home>/logs/<name>.log`
(services and the runtime agent as structlog JSON; each tenant's reloader to
`runtime-<tenant>.log`). This merges the JSON lines of all of them in time order,
filters them, and prints them pretty on a terminal (or as JSON lines with --json).
Lines that are not JSON (the servers' own output) are left out. Tenant code writes some
of these lines: pretty output shows their control characters as escapes (`\\x1b`), so a
line cannot move the cursor, retitle the window or rewrite what was printed before;
--json keeps JSON's own escapes.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console
from rich.text import Text

from core.settings import get_settings

console = Console(highlight=False, soft_wrap=True)
LEVEL_STYLE = {"debug": "dim", "info": "green", "warning": "yellow", "error": "bold red", "critical": "bold red"}
CONTEXT_KEYS = ("timestamp", "level", "event", "service", "tenant_id", "correlation_id", "event_type")
# C0 controls but tab and newline (ESC starts every CSI/OSC sequence), DEL, C1 controls
# (0x9b is a one-byte CSI), and the bidirectional overrides that reorder what is shown.
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def printable(text: str) -> str:
    """`text` with each control character written as its escape: ESC [ 2 J prints as `\\x1b[2J`."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m[0]):02x}" if ord(m[0]) < 0x100 else f"\\u{ord(m[0]):04x}", text)


@dataclass(frozen=True)
class LogLine:
    at: datetime
    source: str
    record: dict[str, Any]


def _when(record: dict[str, Any]) -> datetime | None:
    stamp = record.get("timestamp")
    if isinstance(stamp, str):
        try:
            when = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
        except ValueError:
            return None
        return when if when.tzinfo else when.replace(tzinfo=UTC)
    if isinstance(record.get("ts"), (int, float)):  # Caddy's JSON logs
        return datetime.fromtimestamp(record["ts"], UTC)
    return None


def parse_line(source: str, raw: str) -> LogLine | None:
    """A JSON log line with a time, with `service` (and a reloader's tenant) filled in from its file."""
    raw = raw.strip()
    if not raw.startswith("{"):
        return None
    try:
        record = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(record, dict) or (at := _when(record)) is None:
        return None
    if source.startswith("runtime-") and source != "runtime-agent":
        record.setdefault("service", "reloader")
        record.setdefault("tenant_id", source.removeprefix("runtime-"))
    record.setdefault("service", source)
    record.setdefault("event", record.get("msg", ""))
    return LogLine(at, source, record)


def matches(line: LogLine, tenant: str | None, correlation: str | None, service: str | None) -> bool:
    rec = line.record
    return ((tenant is None or rec.get("tenant_id") == tenant)
            and (correlation is None or str(rec.get("correlation_id", "")).startswith(correlation))
            and (service is None or rec.get("service") == service))


def read_file(path: Path, offset: int = 0) -> tuple[list[LogLine], int]:
    """The complete lines after `offset`, and the offset after the last complete line.
    A file now shorter than `offset` was truncated or replaced (`down --purge`, then `up`):
    it is read from its start."""
    try:
        with path.open("rb") as fh:
            if fh.seek(0, os.SEEK_END) < offset:
                offset = 0
            fh.seek(offset)
            data = fh.read()
    except OSError:
        return [], offset
    end = data.rfind(b"\n") + 1
    lines = [p for raw in data[:end].decode("utf-8", "replace").splitlines() if (p := parse_line(path.stem, raw))]
    return lines, offset + end


def merge(groups: Iterable[list[LogLine]]) -> list[LogLine]:
    """All lines in time order (stable: lines of one file keep their order on equal times)."""
    return sorted((line for group in groups for line in group), key=lambda line: line.at)


def render(line: LogLine) -> Text:
    rec = line.record
    level = str(rec.get("level", "info")).lower()
    text = Text()
    text.append(line.at.strftime("%H:%M:%S.%f")[:-3] + " ", style="dim")
    text.append(f"{printable(str(rec.get('service', line.source))):<14} ", style="cyan")
    text.append(f"{printable(level):<7} ", style=LEVEL_STYLE.get(level, ""))
    text.append(printable(str(rec.get("event", ""))), style="bold")
    for key in ("tenant_id", "event_type", "correlation_id"):
        if rec.get(key):
            value = str(rec[key])[:8] if key == "correlation_id" else str(rec[key])
            text.append(f" {key.split('_')[0]}={printable(value)}", style="magenta")
    extras = {k: v for k, v in rec.items() if k not in CONTEXT_KEYS and k not in ("ts", "msg", "logger")}
    for key, value in extras.items():
        text.append(f" {printable(key)}=", style="dim")
        text.append(printable(value if isinstance(value, str) else json.dumps(value, default=str)))
    return text


def log_files(home: Path) -> list[Path]:
    return sorted((home / "logs").glob("*.log"))


def _emit(lines: Iterable[LogLine], as_json: bool) -> None:
    for line in lines:
        if as_json:
            typer.echo(json.dumps(line.record, default=str))
        else:
            console.print(render(line))


def follow(home: Path, offsets: dict[Path, int], keep: Any, as_json: bool, interval: float = 0.5) -> Iterator[None]:
    """Poll for new lines (new files too); each poll's lines are printed in time order."""
    while True:
        groups = []
        for path in log_files(home):
            lines, offsets[path] = read_file(path, offsets.get(path, 0))
            groups.append([line for line in lines if keep(line)])
        _emit(merge(groups), as_json)
        yield
        time.sleep(interval)


def logs(tenant: Optional[str] = typer.Option(None, "--tenant", help="only lines about this tenant"),
         correlation: Optional[str] = typer.Option(None, "--correlation", help="only this request (id or prefix)"),
         service: Optional[str] = typer.Option(None, "--service", help="only this service"),
         lines: int = typer.Option(200, "--lines", "-n", min=0, help="how many of the newest lines first"),
         follow_: bool = typer.Option(False, "--follow", "-f", help="keep printing new lines"),
         as_json: bool = typer.Option(False, "--json", help="JSON lines instead of pretty output")) -> None:
    """Merge the platform's JSON logs in time order."""
    home = get_settings().home_dir
    if not (home / "logs").is_dir():
        console.print(f"no logs under {home / 'logs'}; start the platform with `hostplane up`")
        raise typer.Exit(1)

    def keep(line: LogLine) -> bool:
        return matches(line, tenant, correlation, service)

    offsets: dict[Path, int] = {}
    groups = []
    for path in log_files(home):
        found, offsets[path] = read_file(path)
        groups.append([line for line in found if keep(line)])
    merged = merge(groups)
    _emit(merged[-lines:] if lines else [], as_json)
    if follow_:
        try:
            for _ in follow(home, offsets, keep, as_json):
                pass
        except KeyboardInterrupt:
            pass

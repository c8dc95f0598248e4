"""The local emulator's state across `hostplane down` and `up`, as AWS keeps its own.

moto holds everything in memory. Without this, `down` then `up` lost every tenant's secret
and static bucket (PostgreSQL, Valkey and the artifacts kept theirs), so every tenant created
before failed to start (RuntimeFailed `environment`) and the edge answered 502, and messages
still queued in SQS were gone.

Our launcher (hostplane.local.emulator) saves the services the local platform uses on its way
out (SIGTERM, what `down` sends) and loads them before it serves its first request:
- KEPT: Secrets Manager (tenants' secrets), S3 (static buckets), SQS (queues and the messages
  in them), EventBridge (the bus, its rules and targets), ACM. IAM is not kept: the launcher
  creates the platform's users again at every start, from credentials.json;
- the file: `<home>/moto/state.bin`, owner-only like credentials.json (it holds the tenants'
  secrets, as Secrets Manager does), written whole to a temporary file, then renamed. A header
  line names the format and moto's version: moto's classes are pickled, and a state from
  another moto version is refused with a clear message rather than half-loaded;
- pickle runs code from the file it loads. The file is read only from the platform's own home,
  which only the platform's user can write (the same trust as credentials.json and the
  PostgreSQL data directory beside it); tenants never see it (their sandbox binds their own
  runtime folder, not the home).
A killed emulator (SIGKILL, out of memory) saves nothing: the next start has the state of
its last clean stop. `down --purge` removes the home, and the state with it.
"""

from __future__ import annotations

import copyreg
import json
import pickle
import threading
import time
from pathlib import Path
from typing import Any

from core.state import write_private

KEPT = ("secretsmanager", "s3", "sqs", "events", "acm")
FORMAT = 1
STATE_FILE = "state.bin"


class StateUnreadable(RuntimeError):
    """The saved state cannot be loaded: the emulator refuses to start rather than start empty."""


def _header() -> dict[str, Any]:
    import moto

    return {"format": FORMAT, "moto": moto.__version__, "services": list(KEPT)}


def _pickle_locks() -> None:
    """moto's SQS queues hold locks, which pickle refuses: a lock is saved as a new one (no
    lock is held once the emulator stops serving)."""
    copyreg.pickle(type(threading.Lock()), lambda _lock: (threading.Lock, ()))
    copyreg.pickle(type(threading.RLock()), lambda _lock: (threading.RLock, ()))


def save(path: Path, attempts: int = 3) -> int:
    """Write the KEPT services' state to `path`; its size in bytes. A request still finishing in
    another thread can change a backend mid-pickle: then it tries again."""
    from moto.backends import get_backend

    _pickle_locks()
    for attempt in range(attempts):
        try:
            body = pickle.dumps({name: dict(get_backend(name)) for name in KEPT}, protocol=pickle.HIGHEST_PROTOCOL)
            break
        except RuntimeError:  # "dictionary changed size during iteration"
            if attempt == attempts - 1:
                raise
            time.sleep(0.05)
    data = json.dumps(_header()).encode() + b"\n" + body
    write_private(path, data)
    return len(data)


def load(path: Path) -> list[str]:
    """Put the state saved at `path` back into moto's backends; the services restored (none when
    there is no file). StateUnreadable when the file is not one this moto can load."""
    if not path.exists():
        return []
    raw = path.read_bytes()
    head, _, body = raw.partition(b"\n")
    fix = (f"move {path} away to start with an empty emulator (tenants created before will need "
           "`hostplane tenant delete` and create), or `hostplane down --purge`")
    try:
        header = json.loads(head)
    except ValueError:
        raise StateUnreadable(f"{path} is not a saved emulator state: {fix}") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT or header.get("moto") != _header()["moto"]:
        raise StateUnreadable(f"{path} was saved by another emulator ({header!r}, this one is {_header()!r}): {fix}")
    from moto.backends import get_backend

    _pickle_locks()
    try:
        saved = pickle.loads(body)  # noqa: S301 (the platform's own file, see the module doc)
    except Exception as exc:  # noqa: BLE001 (truncated or damaged: say so, start nothing)
        raise StateUnreadable(f"{path} cannot be read ({type(exc).__name__}): {fix}") from None
    for name, accounts in saved.items():
        backends = get_backend(name)
        dict.clear(backends)
        dict.update(backends, accounts)
    return sorted(saved)

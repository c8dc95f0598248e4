"""Free loopback ports for servers started on this host, picked so that two pickers do not
collide: not the kernel's, and not another picker's.

A port the kernel hands out (`bind(0)`) comes from its ephemeral range, the range it also
uses for the local end of every outgoing connection: with a few platforms running side by
side (the test suite's workers), a port picked that way was taken by some connection before
its server bound it (measured: 1 of ~20 platform starts on 3 workers). So ports are drawn at
random from the band just below that range, which the kernel never hands out, and each pick
is noted in a reservation file for a while, so a picker in another process skips it until
its server has had time to bind it.
"""

from __future__ import annotations

import contextlib
import os
import random
import socket
import tempfile
import time
from pathlib import Path

BAND = 8000  # ports just below the kernel's ephemeral range
RESERVE_S = 120.0  # how long a pick stays noted: ample for a server to start and bind it
RESERVATIONS = Path(tempfile.gettempdir()) / "hostplane-ports"


class NoFreePort(RuntimeError):
    """Every port of the band is taken or reserved."""


def listen_band() -> range:
    """The ports below the kernel's ephemeral range (from /proc; Linux's default otherwise)."""
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    return range(max(1024, low - BAND), low)


def unreserve(name: str) -> None:
    """Give back a reservation made by `reserve` (best effort)."""
    with contextlib.suppress(OSError):
        (RESERVATIONS / name).unlink()


def reserve(name: str, ttl_s: float = RESERVE_S) -> bool:
    """Note `name` as taken for `ttl_s` seconds, across processes; False if someone holds it.
    Best effort: where the reservation folder cannot be written, or is not our own (another
    user made it first), every name is granted."""
    path = RESERVATIONS / name
    try:
        RESERVATIONS.mkdir(mode=0o700, exist_ok=True)
        folder = os.lstat(RESERVATIONS)
        if folder.st_uid != os.geteuid() or folder.st_mode & 0o022:
            return True  # someone else's folder (made to deny us ports): not ours to trust
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        try:
            if time.time() < path.stat().st_mtime:
                return False
            os.utime(path, (time.time() + ttl_s,) * 2)  # expired: taken over
            return True
        except OSError:
            return False
    except OSError:
        return True
    os.close(fd)
    os.utime(path, (time.time() + ttl_s,) * 2)  # the file's mtime is the reservation's expiry
    return True


def free_ports(count: int, host: str = "127.0.0.1", *, hold_s: float = RESERVE_S) -> list[int]:
    """`count` distinct ports of the band that nothing listens on now and nobody reserved;
    each stays reserved `hold_s` seconds (a server that binds at once needs only a few)."""
    band = listen_band()
    held: list[socket.socket] = []
    try:
        for port in random.sample(band, len(band)):
            sock = socket.socket()
            try:
                sock.bind((host, port))
            except OSError:
                sock.close()
                continue
            if not reserve(f"{host}:{port}", hold_s):
                sock.close()
                continue
            held.append(sock)
            if len(held) == count:
                return [s.getsockname()[1] for s in held]
        raise NoFreePort(f"fewer than {count} free ports among the {len(band)} of the band on {host} "
                         f"(below the kernel's ephemeral range; reservations in {RESERVATIONS})")
    finally:
        for sock in held:
            sock.close()


def free_port(host: str = "127.0.0.1", *, hold_s: float = RESERVE_S) -> int:
    return free_ports(1, host, hold_s=hold_s)[0]

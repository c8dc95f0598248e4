"""No TCP port for tenant code: a Landlock network rule the reloader takes on once its own
two sockets are bound.

Tenants share the host's network namespace (they must reach PostgreSQL and Valkey on
loopback), so without this a tenant could bind another tenant's registered app port
whenever that runtime is not holding it (a restart, a crash backoff, a tenant about to be
created) and the edge would send the victim's traffic to it. The reloader binds its app
port and its health port first, then restricts itself: from then on neither it nor any
process it starts (every app generation, anything they fork) can bind a TCP port.
Connecting stays allowed (apps call databases, caches and the internet). Unix sockets,
which the worker channel uses, are not affected.

Landlock (Linux ≥ 6.7, ABI ≥ 4 for network rules) needs no privilege and cannot be lifted
by the restricted process. Where the kernel lacks it, `forbid_tcp_bind` says so and
changes nothing: the caller logs it (docs/security.md).
"""

from __future__ import annotations

import ctypes
import os
import struct

_SYS_CREATE_RULESET, _SYS_RESTRICT_SELF = 444, 446  # x86_64 and aarch64 share the generic numbers
_CREATE_RULESET_VERSION = 1
_ACCESS_NET_BIND_TCP = 1 << 0
_PR_SET_NO_NEW_PRIVS = 38
_NET_ABI = 4


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def abi_version() -> int:
    """The kernel's Landlock ABI version, 0 when Landlock is absent or disabled."""
    version = _libc().syscall(_SYS_CREATE_RULESET, None, ctypes.c_size_t(0), _CREATE_RULESET_VERSION)
    return max(0, int(version))


def forbid_tcp_bind() -> str | None:
    """Forbid this thread and its future children any TCP bind. Returns None when done,
    else why not. Call it from the main thread before starting other threads: Landlock
    restricts the calling thread (and what it forks), not threads already running."""
    abi = abi_version()
    if abi < _NET_ABI:
        return f"Landlock ABI {abi} has no network rules (needs {_NET_ABI}: Linux >= 6.7)"
    libc = _libc()
    # struct landlock_ruleset_attr { __u64 handled_access_fs; __u64 handled_access_net; }
    attr = ctypes.create_string_buffer(struct.pack("=QQ", 0, _ACCESS_NET_BIND_TCP))
    fd = libc.syscall(_SYS_CREATE_RULESET, attr, ctypes.c_size_t(len(attr.raw)), 0)
    if fd < 0:
        return f"landlock_create_ruleset: {os.strerror(ctypes.get_errno())}"
    try:
        if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
            return f"prctl(NO_NEW_PRIVS): {os.strerror(ctypes.get_errno())}"
        # No rule is added: every TCP bind is denied.
        if libc.syscall(_SYS_RESTRICT_SELF, fd, 0) != 0:
            return f"landlock_restrict_self: {os.strerror(ctypes.get_errno())}"
    finally:
        os.close(fd)
    return None

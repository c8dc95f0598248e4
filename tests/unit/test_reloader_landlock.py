"""reloader.landlock: after `forbid_tcp_bind` neither the process nor its children can bind
a TCP port, while sockets bound before keep serving and connecting still works.

Runs in a child interpreter: a Landlock domain cannot be left, and pytest must keep binding."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from reloader.landlock import abi_version

pytestmark = pytest.mark.skipif(abi_version() < 4, reason="the kernel's Landlock has no network rules (Linux < 6.7)")

PROBE = textwrap.dedent("""
    import socket, subprocess, sys
    from reloader.landlock import forbid_tcp_bind

    before = socket.create_server(("127.0.0.1", 0))
    port = before.getsockname()[1]
    assert forbid_tcp_bind() is None
    for addr in (("127.0.0.1", 0), ("0.0.0.0", 0), ("127.0.0.1", port + 1)):
        try:
            socket.create_server(addr)
        except PermissionError:
            pass
        else:
            sys.exit(f"bound {addr} after forbid_tcp_bind")
    child = subprocess.run([sys.executable, "-c", "import socket; socket.create_server(('127.0.0.1', 0))"],
                           capture_output=True, text=True)
    assert child.returncode != 0 and "PermissionError" in child.stderr, child.stderr
    client = socket.create_connection(("127.0.0.1", port), timeout=5)  # connecting is allowed
    conn, _ = before.accept()  # and the socket bound before still serves
    client.sendall(b"ping")
    assert conn.recv(4) == b"ping"
    unix = socket.socket(socket.AF_UNIX)  # the worker channel: unix sockets are untouched
    unix.bind("\\0hostplane-landlock-probe")
    print("ok")
""")


def test_no_tcp_bind_after_forbid_but_connect_and_earlier_sockets_work():
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stdout + done.stderr


def test_forbid_reports_why_when_the_kernel_cannot(monkeypatch):
    import reloader.landlock as landlock

    monkeypatch.setattr(landlock, "abi_version", lambda: 3)
    assert "ABI 3" in landlock.forbid_tcp_bind()

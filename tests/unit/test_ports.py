"""Port picking (core.ports): outside the kernel's ephemeral range, and never twice while a
pick is reserved, even by another process."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import pytest

from core import ports


@pytest.fixture(autouse=True)
def reservations(tmp_path, monkeypatch):
    monkeypatch.setattr(ports, "RESERVATIONS", tmp_path / "reserved")
    return tmp_path / "reserved"


def test_ports_come_from_below_the_kernels_ephemeral_range():
    low = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
    band = ports.listen_band()
    assert band.stop == low and len(band) == ports.BAND
    picked = ports.free_ports(20)
    assert len(set(picked)) == 20 and all(p in band for p in picked)


def few_ports(monkeypatch, tmp_path, count: int) -> list[int]:
    """A band of `count` ports free now (picked from the real band under another folder)."""
    band = ports.free_ports(count)
    monkeypatch.setattr(ports, "RESERVATIONS", tmp_path / "band")
    monkeypatch.setattr(ports, "listen_band", lambda: band)
    return band


def test_a_reserved_port_is_not_picked_again_until_its_reservation_expires(monkeypatch, tmp_path):
    few_ports(monkeypatch, tmp_path, 3)
    first = ports.free_ports(3, hold_s=60)
    with pytest.raises(ports.NoFreePort, match="fewer than 1 free ports"):
        ports.free_port()
    expired = ports.RESERVATIONS / f"127.0.0.1:{first[0]}"
    os.utime(expired, (time.time() - 1,) * 2)
    assert ports.free_port() == first[0]


def test_a_listening_port_is_skipped(monkeypatch):
    """The spare comes from the band, not taken + 1: that neighbour lies in the kernel's
    ephemeral range, where any outgoing connection of a parallel worker may hold it."""
    spare = ports.free_port()
    ports.unreserve(f"127.0.0.1:{spare}")  # picked for the test, not by it
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        taken = server.getsockname()[1]
        monkeypatch.setattr(ports, "listen_band", lambda: [taken, spare])
        assert ports.free_ports(1) == [spare]


def test_another_process_sees_the_reservation(monkeypatch, tmp_path):
    band = few_ports(monkeypatch, tmp_path, 2)
    code = ("from core import ports; from pathlib import Path; "
            f"ports.RESERVATIONS = Path({str(ports.RESERVATIONS)!r}); "
            f"ports.listen_band = lambda: {band!r}; print(ports.free_port())")
    theirs = int(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
    assert ports.free_port() == (set(band) - {theirs}).pop()


def test_a_folder_others_may_write_is_not_trusted(tmp_path, monkeypatch):
    """Another user who made the folder first (or left it writable) cannot deny us ports."""
    folder = tmp_path / "open"
    folder.mkdir()
    folder.chmod(0o777)
    monkeypatch.setattr(ports, "RESERVATIONS", folder)
    assert ports.reserve("x") and ports.reserve("x")
    assert not list(folder.iterdir())


def test_an_unwritable_reservation_folder_grants_every_name(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setattr(ports, "RESERVATIONS", blocker / "sub")
    assert ports.reserve("x") and ports.reserve("x")


def test_runtime_ranges_of_different_sizes_never_overlap(monkeypatch, tmp_path):
    """A benchmark's 2,000 tenant ports and the tests' 100-port platforms on one host."""
    from hostplane.local import ephemeral

    monkeypatch.setattr(ports, "RESERVATIONS", tmp_path / "ranges")
    monkeypatch.setattr(ephemeral, "listen_band", lambda: range(20000, 30000))
    big = ephemeral.runtime_port_base(2000)
    small = [ephemeral.runtime_port_base(100) for _ in range(80)]
    taken = set(range(big, big + 2000))
    assert all(not taken & set(range(b, b + 100)) for b in small[:80])
    assert len(set(small)) == 80, "every platform a range of its own while there is room"

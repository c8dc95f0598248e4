"""core.process.stop counts an exited process as gone before anyone reaps it: the servers
`hostplane down` stops were started by an earlier `hostplane up`, so they are not its
children, and init may take seconds to collect each one."""

from __future__ import annotations

import subprocess
import sys
import time

import psutil

from core.process import _running, _wait_gone, stop


def test_a_zombie_counts_as_gone_and_a_live_process_does_not():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    proc = psutil.Process(child.pid)
    while proc.status() != psutil.STATUS_ZOMBIE:  # exited, not reaped: we have not waited for it
        time.sleep(0.01)
    assert not _running(proc) and _wait_gone([proc], timeout=5) == []
    child.wait()
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
    try:
        assert _running(psutil.Process(sleeper.pid))
        assert [p.pid for p in _wait_gone([psutil.Process(sleeper.pid)], timeout=0.1)] == [sleeper.pid]
    finally:
        stop(sleeper.pid, timeout=5)
    assert sleeper.poll() is not None

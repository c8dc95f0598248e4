"""Running `hostplane` as a user does, for the end-to-end tests."""

from __future__ import annotations

import subprocess
import sys


def hostplane(env, *args, timeout=300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hostplane", *args], env=env, capture_output=True, text=True,
                          timeout=timeout)


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result.stdout

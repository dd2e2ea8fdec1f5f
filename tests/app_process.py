"""`python app.py` as a user starts it, for the tests that drive a running app: a free local port, the
process started with its console in a file, waited for until it serves, and stopped afterwards."""

from __future__ import annotations

import socket
import subprocess
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Mapping, Sequence

import pytest

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_serving(url: str, proc: subprocess.Popen, log: Path, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"app.py exited with {proc.returncode}:\n{log.read_text()[-4000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    pytest.fail(f"app.py did not serve {url} in {timeout:.0f} s:\n{log.read_text()[-4000:]}")


@contextmanager
def serving(command: Sequence[str], url: str, *, env: Mapping[str, str], log: Path) -> Iterator[subprocess.Popen]:
    """Run `command` (from the repository's root) until it serves `url`; stop it on the way out."""
    with open(log, "w") as out:
        proc = subprocess.Popen(list(command), cwd=ROOT, env=dict(env), stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_until_serving(url, proc, log)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

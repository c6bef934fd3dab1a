"""Helpers to run `optibridge serve` / `worker` as real processes and talk to them."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def start(args: list[str], env: dict[str, str], cwd: Path, log: Path) -> subprocess.Popen[bytes]:
    fh = log.open("ab")
    return subprocess.Popen(
        [sys.executable, "-m", "optibridge", *args], env=env, cwd=cwd, stdout=fh, stderr=fh
    )


def get_json(url: str) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def wait_health(
    port: int, want: int, proc: subprocess.Popen[bytes], log: Path, timeout: float = 90
) -> dict[str, Any]:
    """Poll /healthz until it answers `want`; fail with the service log if it never does."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"service exited with {proc.returncode}:\n{log.read_text()[-4000:]}")
        try:
            code, body = get_json(f"http://127.0.0.1:{port}/healthz")
            last = (code, body)
            if code == want:
                return body
        except (OSError, ValueError) as exc:
            last = exc
        time.sleep(0.3)
    raise AssertionError(f"/healthz never answered {want}; last: {last}\n{log.read_text()[-4000:]}")


def stop(proc: subprocess.Popen[bytes], timeout: float = 60) -> int:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise AssertionError("process did not stop on SIGTERM") from None
    return proc.returncode

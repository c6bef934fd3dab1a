"""Prometheus figures add up across processes without the operator setting anything.

`serve --workers 2` starts two worker children; one scrape of serve's /metrics must see both (the
live-worker gauge sums to 2, and a child that dies stops counting). A standalone `optibridge
worker` (another machine) serves its own counters on `metrics_port`.
"""

from __future__ import annotations

import os
import signal
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import psutil
import pytest
from prometheus_client.parser import text_string_to_metric_families

sys.path.insert(0, str(Path(__file__).parents[1] / "integration"))
from servicekit import free_port, start, stop, wait_health

pytestmark = pytest.mark.slow


def scrape(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    return {
        s.name + str(sorted(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def wait_value(port: int, key: str, want: float, proc: object, log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            last = scrape(port).get(key)
            if last == want:
                return
        except (OSError, ValueError) as exc:
            last = exc
        time.sleep(0.3)
    raise AssertionError(f"{key} never {want} (last {last}):\n{log.read_text()[-3000:]}")


def test_serve_with_worker_children_sums_their_metrics(service_env: dict[str, str], tmp_path: Path) -> None:
    env = dict(service_env)
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    port = free_port()
    log = tmp_path / "serve.log"
    proc = start(["serve", "--port", str(port), "--workers", "2"], env, tmp_path, log)
    try:
        wait_health(port, 200, proc, log)
        wait_value(port, "optibridge_worker_processes[]", 2.0, proc, log)
        children = psutil.Process(proc.pid).children()
        assert len(children) == 2
        folders = {c.environ().get("PROMETHEUS_MULTIPROC_DIR") for c in children}
        assert len(folders) == 1  # one shared folder, set by serve
        assert None not in folders
        folder = Path(str(next(iter(folders))))
        assert folder.is_dir()
        # A child killed outright stops counting (its files are marked dead); the supervisor
        # starts a new one, which counts: 2 again, never 3.
        os.kill(children[0].pid, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while {c.pid for c in psutil.Process(proc.pid).children()} & {children[0].pid} or len(
            psutil.Process(proc.pid).children()
        ) < 2:
            assert time.monotonic() < deadline, "no replacement worker"
            time.sleep(0.2)
        wait_value(port, "optibridge_worker_processes[]", 2.0, proc, log, timeout=30)
        seen = set()
        for _ in range(10):
            seen.add(scrape(port)["optibridge_worker_processes[]"])
            time.sleep(0.3)
        assert seen == {2.0}
    finally:
        assert stop(proc) == 0
    assert not folder.exists()  # removed on exit: the next start begins from nothing


def test_standalone_worker_serves_its_own_metrics(service_env: dict[str, str], tmp_path: Path) -> None:
    env = dict(service_env)
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    upgrade = start(["db", "upgrade"], env, tmp_path, tmp_path / "upgrade.log")
    assert upgrade.wait(120) == 0
    ports = [free_port(), free_port()]
    logs = [tmp_path / f"w{i}.log" for i in range(2)]
    procs = [
        start(["worker"], env | {"OPTIBRIDGE_METRICS_PORT": str(p)}, tmp_path, log)
        for p, log in zip(ports, logs, strict=True)
    ]
    try:
        for p, proc, log in zip(ports, procs, logs, strict=True):
            wait_value(p, "optibridge_worker_processes[]", 1.0, proc, log)
        # A token set: the loopback exemption ends, the scrape needs it.
        token_port = free_port()
        tlog = tmp_path / "wt.log"
        env_t = env | {"OPTIBRIDGE_METRICS_PORT": str(token_port), "OPTIBRIDGE_METRICS_TOKEN": "s3cret"}
        procs.append(start(["worker"], env_t, tmp_path, tlog))
        deadline = time.monotonic() + 60
        status = 0
        while time.monotonic() < deadline:
            try:
                scrape(token_port)
                status = 200
            except urllib.error.HTTPError as err:
                status = err.code
                break
            except OSError:
                time.sleep(0.3)
                continue
            break
        assert status == 404, tlog.read_text()[-2000:]
        req = urllib.request.Request(
            f"http://127.0.0.1:{token_port}/metrics", headers={"Authorization": "Bearer s3cret"}
        )
        with urllib.request.urlopen(req, timeout=5) as resp:
            assert b"optibridge_worker_processes 1.0" in resp.read()
    finally:
        for proc in procs:
            stop(proc)

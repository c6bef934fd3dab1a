#!/usr/bin/env python3
"""Bootstrap and run optibridge from a fresh clone with nothing but Python 3.11+ and pip.

    python3 dev.py demo  [ARGS...]   the whole loop end to end on this machine (optibridge demo)
    python3 dev.py serve [ARGS...]   run the service on the embedded defaults
    python3 dev.py test  [--slow] [PYTEST ARGS...]   lint, type-check, check the import layers,
                                     run the fast tests in parallel; --slow: the slow tier too (CI)
    python3 dev.py optibridge ARGS...   any optibridge command inside the project's venv

The first call creates .venv and installs the project with its dev extra; later calls reinstall
only when pyproject.toml changes.
"""

from __future__ import annotations

import hashlib
import os
import shlex
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
STAMP = VENV / ".optibridge-installed"


def venv_bin(name: str) -> Path:
    return VENV / ("Scripts" if os.name == "nt" else "bin") / name


def ensure_venv() -> None:
    if not venv_bin("python").exists():
        print("creating .venv ...", flush=True)
        venv.EnvBuilder(with_pip=True, clear=False).create(VENV)
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if STAMP.exists() and STAMP.read_text() == digest:
        return
    print("installing optibridge and its dependencies into .venv ...", flush=True)
    pip = [str(venv_bin("python")), "-m", "pip", "--disable-pip-version-check"]
    subprocess.run([*pip, "install", "-q", "-U", "pip"], check=True)
    subprocess.run([*pip, "install", "-q", "-e", f"{ROOT}[dev]"], check=True)
    STAMP.write_text(digest)


def run(*cmd: str) -> int:
    print("$ " + shlex.join(cmd), flush=True)
    return subprocess.run(cmd, cwd=ROOT).returncode


# pytest-xdist workers for the fast tier: the tests mostly wait on PostgreSQL, sockets and
# subprocesses, so twice the cores of a 2-core machine is faster than one per core. Each worker
# starts its own embedded server. The slow tier is CPU-bound and times things: it runs serially.
FAST = ["-n", "4", "--dist", "worksteal"]
SLOW = "--slow"


def pytest_tier(name: str, marker: str, xdist: list[str], extra: list[str]) -> int:
    """One pytest run over the tests `marker` selects; "no tests collected" (5) is no failure."""
    py = str(venv_bin("python"))
    if "no:xdist" in extra or "-pno:xdist" in extra:
        xdist = []
    print(f"-- {name} tier (-m {marker!r})", flush=True)
    code = run(py, "-m", "pytest", *xdist, "-m", marker, *(extra or ["-q"]))
    return 0 if code == 5 else code


def tests(extra: list[str]) -> int:
    py = str(venv_bin("python"))
    slow = SLOW in extra
    extra = [a for a in extra if a != SLOW]
    paths = [p for p in ("src", "tests", "bench", "dev.py") if (ROOT / p).exists()]
    steps = [
        (py, "-m", "ruff", "check", *paths),
        (py, "-m", "ruff", "format", "--check", *paths),
        (py, "-m", "mypy"),
        # The layer contracts of pyproject.toml ([tool.importlinter]): no upward import.
        (str(venv_bin("lint-imports")), "--no-cache"),
    ]
    for step in steps:
        if code := run(*step):
            return code
    code = pytest_tier("fast", "not slow", FAST, extra)
    if not slow:
        return code
    slow_code = pytest_tier("slow", "slow", ["-n", "0"], extra)
    return code or slow_code


def main() -> int:
    args = sys.argv[1:]
    if not args or args[0] in ("-h", "--help"):
        print(__doc__)
        return 0 if args else 2
    ensure_venv()
    command, rest = args[0], args[1:]
    optibridge = str(venv_bin("optibridge"))
    if command == "test":
        return tests(rest)
    if command == "demo":
        return run(optibridge, "demo", *rest)
    if command == "serve":
        return run(optibridge, "serve", *rest)
    if command == "optibridge":
        return run(optibridge, *rest)
    print(f"error: unknown command {command!r}\n{__doc__}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())

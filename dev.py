#!/usr/bin/env python3
"""Bootstrap and run optibridge from a fresh clone with nothing but Python 3.11+ and pip.

    python3 dev.py demo  [ARGS...]   the whole loop end to end on this machine (optibridge demo)
    python3 dev.py serve [ARGS...]   run the service on the embedded defaults
    python3 dev.py test  [PYTEST ARGS...]   lint, type-check and run every test
    python3 dev.py optibridge ARGS...   any optibridge command inside the project's venv

The first call creates .venv and installs the project with its dev extra; later calls reinstall
only when pyproject.toml changes.
"""

from __future__ import annotations

import hashlib
import os
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
    print("$ " + " ".join(cmd), flush=True)
    return subprocess.run(cmd, cwd=ROOT).returncode


def tests(extra: list[str]) -> int:
    py = str(venv_bin("python"))
    paths = [p for p in ("src", "tests", "bench", "dev.py") if (ROOT / p).exists()]
    steps = [
        (py, "-m", "ruff", "check", *paths),
        (py, "-m", "ruff", "format", "--check", *paths),
        (py, "-m", "mypy"),
    ]
    for step in steps:
        if code := run(*step):
            return code
    return run(py, "-m", "pytest", *(extra or ["-q"]))


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

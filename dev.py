#!/usr/bin/env python3
"""Bootstrap and run optibridge from a fresh clone with nothing but Python 3.11+ and pip.

    python3 dev.py demo  [ARGS...]   the whole loop end to end on this machine (optibridge demo)
    python3 dev.py serve [ARGS...]   run the service on the embedded defaults
    python3 dev.py test  [--slow] [PYTEST ARGS...]   lint, type-check, check the import layers,
                                     run the fast tests in parallel; --slow: the slow tier too (CI)
    python3 dev.py optibridge ARGS...   any optibridge command inside the project's venv
    python3 dev.py audit             known vulnerabilities in the locked dependencies (pip-audit);
                                     skipped, exit 0, when the advisory database cannot be reached

The first call creates .venv and installs the locked dependencies (requirements/lock.txt: every
package of the runtime and the dev extra, pinned, with hashes; pip refuses anything else), then the
project itself, editable, without dependencies. Later calls reinstall only when pyproject.toml or the
lock changes. To update the lock: see docs/operations.md, "Dependencies".
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
import venv
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
STAMP = VENV / ".optibridge-installed"
LOCK = ROOT / "requirements" / "lock.txt"
# The files the venv is installed from: a change to any of them reinstalls.
INSTALL_INPUTS = (ROOT / "pyproject.toml", LOCK)


def venv_bin(name: str) -> Path:
    return VENV / ("Scripts" if os.name == "nt" else "bin") / name


def install_digest(paths: tuple[Path, ...] = INSTALL_INPUTS) -> str:
    """One digest over the install inputs, each named (a file moving between them counts)."""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.name.encode() + b"\0")
        digest.update(path.read_bytes() if path.exists() else b"(missing)")
        digest.update(b"\0")
    return digest.hexdigest()


def venv_stale(stamp: Path, digest: str) -> bool:
    """Whether the venv was installed from other inputs than these (or never completed)."""
    return not stamp.exists() or stamp.read_text().strip() != digest


def ensure_venv() -> None:
    if not venv_bin("python").exists():
        print("creating .venv ...", flush=True)
        venv.EnvBuilder(with_pip=True, clear=False).create(VENV)
    digest = install_digest()
    if not venv_stale(STAMP, digest):
        return
    print("installing the locked dependencies and optibridge into .venv ...", flush=True)
    STAMP.unlink(missing_ok=True)  # an interrupted install is retried next time
    pip = [str(venv_bin("python")), "-m", "pip", "--disable-pip-version-check"]
    # Hash-checking mode: every package, dependencies included, must be in the lock with a hash
    # that matches, or nothing is installed. The lock pins pip itself too.
    subprocess.run([*pip, "install", "-q", "--require-hashes", "-r", str(LOCK)], check=True)
    # The project itself: editable (no hash to check), and nothing beyond the lock.
    subprocess.run([*pip, "install", "-q", "--no-deps", "-e", str(ROOT)], check=True)
    STAMP.write_text(digest)


# -- dependency audit ----------------------------------------------------------------------------

_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)")
AUDIT_TIMEOUT_S = 600
PROBE_URL = "https://pypi.org/pypi/{name}/{version}/json"
SKIPPED = "dependency audit skipped: advisory database unreachable ({why})"
# What pip-audit prints when it cannot reach its vulnerability service (versus a real failure).
_NETWORK_ERRORS = (
    "ConnectionError", "ConnectTimeout", "ReadTimeout", "Max retries exceeded", "timed out",
    "Temporary failure in name resolution", "Name or service not known", "Network is unreachable",
    "ServiceError", "SSLError",
)  # fmt: skip


def parse_lock(text: str) -> dict[str, str]:
    """name (normalized, PEP 503) -> version of every pin in a requirements lock (hash and comment
    lines skipped)."""
    return {
        re.sub(r"[-_.]+", "-", m.group(1)).lower(): m.group(2)
        for line in text.splitlines()
        if (m := _PIN.match(line))
    }


def probe_advisories(name: str, version: str, timeout_s: float = 10.0) -> str | None:
    """None when PyPI's JSON API (pip-audit's default advisory source) answers with a `vulns`
    field for a locked package; otherwise why not."""
    url = PROBE_URL.format(name=name, version=version)
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as reply:  # noqa: S310  # fixed https URL
            body = json.load(reply)
    except urllib.error.HTTPError as exc:
        return f"{url} answered HTTP {exc.code}"
    except (urllib.error.URLError, OSError, ValueError) as exc:
        return f"{url}: {exc}"
    return None if isinstance(body, dict) and "vulns" in body else f"{url} has no 'vulns' field"


def audit_verdict(report: dict[str, Any]) -> tuple[int, str]:
    """Exit code and message for a pip-audit JSON report.

    Every package skipped means the service did not answer for any (pip-audit itself then says
    "No known vulnerabilities found", which would be a lie): skipped, exit 0. Any vulnerability:
    exit 1, listed with the versions that fix it.
    """
    deps = report.get("dependencies", [])
    skipped = [d for d in deps if d.get("skip_reason")]
    audited = [d for d in deps if not d.get("skip_reason")]
    if deps and not audited:
        return 0, SKIPPED.format(why=f"all {len(deps)} packages skipped: {skipped[0]['skip_reason']}")
    found = [(d["name"], d["version"], v) for d in audited for v in d.get("vulns", [])]
    if found:
        lines = [f"dependency audit: {len(found)} known vulnerabilities in the lock:"]
        for name, version, vuln in found:
            fixes = ", ".join(vuln.get("fix_versions") or []) or "no fix released"
            aliases = ", ".join(vuln.get("aliases") or [])
            lines.append(f"  {name} {version}: {vuln.get('id')} ({aliases}) fixed in: {fixes}")
        return 1, "\n".join(lines)
    message = f"dependency audit: {len(audited)} packages, no known vulnerabilities"
    if skipped:
        message += f"; not audited: {', '.join(sorted(d['name'] for d in skipped))}"
    return 0, message


def audit() -> int:
    pins = parse_lock(LOCK.read_text())
    probe = "pip" if "pip" in pins else sorted(pins)[0]
    why = probe_advisories(probe, pins[probe])
    if why is not None:
        print(SKIPPED.format(why=why), flush=True)
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "audit.json"
        cmd = [
            str(venv_bin("pip-audit")), "-r", str(LOCK), "--require-hashes", "--disable-pip",
            "--progress-spinner", "off", "--timeout", "15", "-f", "json", "-o", str(out),
        ]  # fmt: skip
        print("$ " + shlex.join(cmd), flush=True)
        try:
            done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=AUDIT_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            print(SKIPPED.format(why=f"no answer within {AUDIT_TIMEOUT_S} s"), flush=True)
            return 0
        report = json.loads(out.read_text()) if out.exists() and out.stat().st_size else None
    if report is None:
        error = (done.stderr.strip().splitlines() or ["pip-audit wrote no report"])[-1]
        if any(marker in done.stderr for marker in _NETWORK_ERRORS):
            print(SKIPPED.format(why=error), flush=True)
            return 0
        print(f"dependency audit failed: {error}", file=sys.stderr, flush=True)
        return done.returncode or 2
    code, message = audit_verdict(report)
    print(message, flush=True)
    return code


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
    if command == "audit":
        return audit()
    print(f"error: unknown command {command!r}\n{__doc__}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())

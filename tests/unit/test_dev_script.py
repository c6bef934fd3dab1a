"""dev.py's install and audit logic: the lock is read, a changed lock or pyproject reinstalls, and the
audit tells an unreachable advisory service from a clean or a vulnerable lock."""

from __future__ import annotations

import importlib.util
import sys
import tomllib
from pathlib import Path
from types import ModuleType

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def dev() -> ModuleType:
    spec = importlib.util.spec_from_file_location("optibridge_dev_script", ROOT / "dev.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_the_committed_lock_pins_every_dependency_with_hashes(dev: ModuleType) -> None:
    text = (ROOT / "requirements" / "lock.txt").read_text()
    pins = dev.parse_lock(text)
    for name in (
        "fastapi",
        "starlette",
        "jinja2",
        "python-multipart",
        "aiohttp",
        "h11",
        "pytest",
        "pip-audit",
    ):
        assert name in pins, name
    blocks = [b for b in text.split("\n") if b and not b.startswith((" ", "#"))]
    assert len(blocks) == len(pins)  # every requirement line is an exact pin
    assert text.count("--hash=sha256:") >= len(pins)


def test_the_lock_satisfies_every_requirement_of_pyproject(dev: ModuleType) -> None:
    """A floor raised in pyproject.toml without regenerating the lock fails here, not on install."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = dev.parse_lock((ROOT / "requirements" / "lock.txt").read_text())
    for text in [*project["dependencies"], *project["optional-dependencies"]["dev"]]:
        req = Requirement(text)
        name = canonicalize_name(req.name)
        assert name in pins, f"{name} is not in requirements/lock.txt: regenerate it (docs/operations.md)"
        assert req.specifier.contains(pins[name], prereleases=True), f"{name}=={pins[name]} vs {req}"


def test_lock_parsing_skips_hashes_comments_and_keeps_markers_out(dev: ModuleType) -> None:
    text = (
        "# header\n"
        "aiohttp==3.14.5 \\\n    --hash=sha256:00 \\\n    --hash=sha256:11\n    # via x\n"
        "colorama==0.4.6 ; sys_platform == 'win32' \\\n    --hash=sha256:22\n"
        "Jinja2==3.1.6\n"
        "typing_extensions==4.15.0\n"
    )
    assert dev.parse_lock(text) == {
        "aiohttp": "3.14.5", "colorama": "0.4.6", "jinja2": "3.1.6", "typing-extensions": "4.15.0",
    }  # fmt: skip


def test_a_changed_lock_or_pyproject_makes_the_venv_stale(dev: ModuleType, tmp_path: Path) -> None:
    pyproject, lock, stamp = tmp_path / "pyproject.toml", tmp_path / "lock.txt", tmp_path / "stamp"
    pyproject.write_text("[project]\n")
    lock.write_text("a==1 --hash=sha256:00\n")
    digest = dev.install_digest((pyproject, lock))
    assert dev.venv_stale(stamp, digest)  # never installed
    stamp.write_text(digest)
    assert not dev.venv_stale(stamp, dev.install_digest((pyproject, lock)))
    lock.write_text("a==2 --hash=sha256:01\n")
    assert dev.venv_stale(stamp, dev.install_digest((pyproject, lock)))
    lock.write_text("a==1 --hash=sha256:00\n")
    pyproject.write_text("[project]\nname = 'x'\n")
    assert dev.venv_stale(stamp, dev.install_digest((pyproject, lock)))


def test_audit_verdicts(dev: ModuleType) -> None:
    skip = "Dependency not found on PyPI and could not be audited: aiohttp (3.14.5)"
    unreachable = {
        "dependencies": [{"name": "aiohttp", "skip_reason": skip}, {"name": "h11", "skip_reason": skip}]
    }
    code, message = dev.audit_verdict(unreachable)
    assert code == 0
    assert message.startswith("dependency audit skipped: advisory database unreachable (")
    clean = {"dependencies": [{"name": "h11", "version": "0.16.0", "vulns": []}]}
    assert dev.audit_verdict(clean) == (0, "dependency audit: 1 packages, no known vulnerabilities")
    vulnerable = {
        "dependencies": [
            {"name": "h11", "version": "0.16.0", "vulns": []},
            {"name": "jinja2", "version": "3.1.4", "vulns": [
                {"id": "GHSA-cpwx-vrp4-4pq7", "aliases": ["CVE-2025-27516"], "fix_versions": ["3.1.6"]},
            ]},
            {"name": "local-thing", "skip_reason": "not on PyPI"},
        ]
    }  # fmt: skip
    code, message = dev.audit_verdict(vulnerable)
    assert code == 1
    assert "jinja2 3.1.4: GHSA-cpwx-vrp4-4pq7 (CVE-2025-27516) fixed in: 3.1.6" in message

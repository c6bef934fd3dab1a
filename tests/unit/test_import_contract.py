"""The layer contract is live: the tree passes it, and one upward import makes it fail.

Runs import-linter on a copy of the package, so the check sees exactly the code on disk and the
deliberate bad import never touches the real tree.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LINT = Path(sys.executable).with_name("lint-imports")


def _lint(tmp_path: Path, bad_import: tuple[str, str] | None) -> subprocess.CompletedProcess[str]:
    src = tmp_path / "src"
    shutil.copytree(
        ROOT / "src" / "optibridge", src / "optibridge", ignore=shutil.ignore_patterns("__pycache__")
    )
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    if bad_import is not None:
        module, line = bad_import
        path = src / "optibridge" / module
        path.write_text(path.read_text() + f"\n{line}\n")
    env = {**os.environ, "PYTHONPATH": str(src)}
    return subprocess.run(
        [str(LINT), "--config", "pyproject.toml", "--no-cache"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_the_tree_keeps_every_import_contract(tmp_path: Path) -> None:
    result = _lint(tmp_path, None)
    assert result.returncode == 0, result.stdout[-3000:]
    assert "0 broken" in result.stdout


def test_a_store_module_importing_the_web_layer_breaks_the_contract(tmp_path: Path) -> None:
    result = _lint(tmp_path, ("store/reports.py", "from optibridge.web import app as _upward  # noqa"))
    assert result.returncode == 1
    assert "optibridge.store is not allowed to import optibridge.web" in result.stdout


def test_a_flow_importing_fastapi_breaks_the_worker_contract(tmp_path: Path) -> None:
    result = _lint(tmp_path, ("delivery/transitions.py", "import fastapi as _web  # noqa"))
    assert result.returncode == 1
    assert "optibridge.delivery is not allowed to import fastapi" in result.stdout

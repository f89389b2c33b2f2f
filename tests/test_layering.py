"""What production runs never imports the test and development harness (devtools/)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
PRODUCTION_PACKAGES = ["schemas", "producers", "worker", "catalog_core", "catalog_cli"]


def test_no_production_module_imports_devtools_at_the_top() -> None:
    offenders = []
    for package in PRODUCTION_PACKAGES:
        for path in sorted((REPO_ROOT / package).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for node in tree.body:  # module level only: catalog dev/chaos import it inside the command
                if isinstance(node, ast.Import | ast.ImportFrom):
                    names = imported_modules_of(node)
                    if any(name == "devtools" or name.startswith("devtools.") for name in names):
                        offenders.append(f"{path.relative_to(REPO_ROOT)}:{node.lineno}")
    assert offenders == []


def imported_modules_of(node: ast.Import | ast.ImportFrom) -> set[str]:
    if isinstance(node, ast.Import):
        return {alias.name for alias in node.names}
    return {node.module} if node.module else set()


@pytest.mark.parametrize("entry", ["catalog_cli.main", "worker.celery", "producers.api"])
def test_the_cli_the_worker_and_the_producer_load_without_devtools(entry: str) -> None:
    # As in the production image, which does not ship devtools/: hide it and import.
    code = ("import sys\nclass Hide:\n    def find_spec(self, name, path=None, target=None):\n"
            "        if name == 'devtools' or name.startswith('devtools.'):\n"
            "            raise ModuleNotFoundError(name)\n"
            f"sys.meta_path.insert(0, Hide())\nimport {entry}\n"
            "print(sorted(m for m in sys.modules if m.startswith('devtools')))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=REPO_ROOT)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_catalog_dev_without_devtools_says_what_is_missing() -> None:
    code = ("import sys\nclass Hide:\n    def find_spec(self, name, path=None, target=None):\n"
            "        if name == 'devtools' or name.startswith('devtools.'):\n"
            "            raise ModuleNotFoundError(name)\n"
            "sys.meta_path.insert(0, Hide())\nsys.argv = ['catalog', 'dev']\n"
            "from catalog_cli.main import main\nmain()")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=REPO_ROOT)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "devtools" in result.stderr and "Traceback" not in result.stderr

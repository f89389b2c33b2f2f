"""README, "From Python": a service that only enqueues needs schemas/, producers/, catalog_core/ and
celery, redis, pydantic, pydantic-settings and orjson. Proved in a clean virtual environment."""

from __future__ import annotations

import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ["schemas", "producers", "catalog_core"]
DEPENDENCIES = ["celery[redis]>=5.4,<6", "redis>=5.0", "pydantic>=2.6,<3", "pydantic-settings>=2.2", "orjson>=3.9"]

pytestmark = pytest.mark.slow


@pytest.mark.timeout(600)
def test_a_producer_service_imports_with_only_the_documented_packages(tmp_path: Path) -> None:
    environment = tmp_path / "venv"
    venv.create(environment, with_pip=True)
    python = environment / "bin" / "python"
    install = subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                              *DEPENDENCIES], capture_output=True, text=True, timeout=540)
    if install.returncode != 0:
        pytest.skip(f"cannot install the dependencies here (no package index?): {install.stderr.strip()[-300:]}")
    source = tmp_path / "src"
    for package in PACKAGES:
        shutil.copytree(REPO_ROOT / package, source / package, ignore=shutil.ignore_patterns("__pycache__"))
    code = ("import sys\nfrom catalog_core.settings import load_settings\nfrom producers.api import Producer\n"
            "Producer(load_settings(redis_url='redis://127.0.0.1:1/0'))\n"
            "assert not any(m.split('.')[0] in ('worker', 'devtools', 'catalog_cli') for m in sys.modules)\n"
            "print('ok')")
    result = subprocess.run([str(python), "-c", code], cwd=source, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
    assert sys.prefix != str(environment)

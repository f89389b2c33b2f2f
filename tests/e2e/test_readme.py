"""Docs are code: every bash and python block of the README runs as written.

A block that cannot run here says why, in a `<!-- readme-test: skip: REASON -->` comment on the
line before it; those are listed as skipped with their reason. `make test` is this test suite
itself, so the quickstart block runs `make run` only.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.e2e.worker_fixtures import Stack, stack, stack_factory  # noqa: F401 - fixtures

pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parents[2]
BLOCK = re.compile(r"(?:<!-- readme-test: skip: (?P<skip>.*?) -->\n)?```(?P<lang>bash|python)\n(?P<code>.*?)```",
                   re.S)


def readme_blocks(lang: str) -> list[tuple[str, str | None]]:
    text = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    return [(m["code"], m["skip"]) for m in BLOCK.finditer(text) if m["lang"] == lang]


def block_id(block: tuple[str, str | None]) -> str:
    return block[0].strip().splitlines()[0][:40]


@pytest.mark.parametrize("block", readme_blocks("python"), ids=block_id)
def test_every_python_block_runs_against_a_real_worker(block: tuple[str, str | None], stack: Stack,
                                                       tmp_path: Path) -> None:
    code, skip = block
    if skip:
        pytest.skip(skip)
    stack.start_worker(1)
    # The catalog `make run` leaves: the demo batch applied.
    demo = stack.cli("apply", str(REPO_ROOT / "examples" / "uae_attractions.jsonl"))
    assert demo.returncode == 0, demo.stderr
    script = tmp_path / "readme_block.py"
    script.write_text(code, encoding="utf-8")
    result = subprocess.run([sys.executable, str(script)], env=stack.env, capture_output=True, text=True,
                            timeout=120, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("applied"), result.stdout


@pytest.mark.parametrize("block", readme_blocks("bash"), ids=block_id)
def test_every_bash_block_runs_or_says_why_not(block: tuple[str, str | None]) -> None:
    code, skip = block
    if skip:
        pytest.skip(skip)
    commands = [line.split("#", 1)[0].strip() for line in code.strip().splitlines()]
    assert commands == ["make run", "make test"], f"a new bash block: run it here, or mark it with a reason:\n{code}"
    run_make_run_and_press_ctrl_c()


def run_make_run_and_press_ctrl_c() -> None:
    """`make run` as a person runs it: the story, then Ctrl-C (SIGINT to the foreground group)."""
    if shutil.which("make") is None:
        pytest.skip("no make on this machine (.ci/run then runs the same steps by hand)")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CATALOG_")}
    process = subprocess.Popen(["make", "run"], cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, start_new_session=True)
    seen = ""
    try:
        deadline = time.monotonic() + 240
        while "Ctrl-C stops everything" not in seen and time.monotonic() < deadline and process.poll() is None:
            seen += process.stdout.readline()  # type: ignore[union-attr]
        assert "Ctrl-C stops everything" in seen, seen + (process.stderr.read() if process.poll() is not None
                                                          else "")  # type: ignore[union-attr]
        os.killpg(process.pid, signal.SIGINT)
        _, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)
    assert "uae_attractions.jsonl: applied" in seen or "uae_attractions.jsonl: unchanged" in seen, seen
    assert "stopped." in err and "Error" not in err and "Traceback" not in err, err
    assert process.returncode in (0, -signal.SIGINT), (process.returncode, err)

"""The Dockerfile and .dockerignore of the production image, checked by parsing them (no Docker engine)."""

from __future__ import annotations

import fnmatch
import re
import shlex
import tomllib
from pathlib import Path

from packaging.specifiers import SpecifierSet

REPO_ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = REPO_ROOT / "Dockerfile"
DOCKERIGNORE = REPO_ROOT / ".dockerignore"
PYPROJECT = REPO_ROOT / "pyproject.toml"
DEV_ONLY = {"devtools"}


def dockerfile_instructions() -> list[tuple[str, str]]:
    """The Dockerfile as (INSTRUCTION, arguments), with comments dropped and continuations joined."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        keyword, _, arguments = line.partition(" ")
        instructions.append((keyword.upper(), arguments.strip()))
    assert not pending, "the Dockerfile ends inside a line continuation"
    return instructions


def copy_sources() -> set[str]:
    """Every source path of the Dockerfile's COPY lines, normalised (no ./, no trailing /)."""
    sources: set[str] = set()
    for keyword, arguments in dockerfile_instructions():
        if keyword != "COPY":
            continue
        parts = [part for part in shlex.split(arguments) if not part.startswith("--")]
        for source in parts[:-1]:
            sources.add(source.removeprefix("./").rstrip("/"))
    return sources



def test_the_dockerfile_exists_uses_python_3_11_and_does_not_run_as_root() -> None:
    assert DOCKERFILE.is_file()
    instructions = dockerfile_instructions()

    bases = [arguments.split()[0] for keyword, arguments in instructions if keyword == "FROM"]
    assert bases and bases[-1].startswith("python:3.11")

    users = [arguments for keyword, arguments in instructions if keyword == "USER"]
    assert users, "no USER instruction: the container would run as root"
    user = users[-1].split(":")[0]
    assert user not in {"root", "0"}

    assert any(keyword == "RUN" and "pip install --no-cache-dir ." in arguments for keyword, arguments in instructions)
    workdirs = [arguments for keyword, arguments in instructions if keyword == "WORKDIR"]
    assert workdirs[-1] == "/app"


def test_the_dockerfile_copies_every_package_listed_in_pyproject() -> None:
    pyproject = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))
    patterns = pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    packages = {pattern.split(".")[0].rstrip("*") for pattern in patterns}
    assert packages, "pyproject lists no packages"

    sources = copy_sources()
    # devtools/ (catalog dev, the chaos suite, the test supervisor) stays out of production:
    # catalog_cli imports it only inside those two commands, which then say it is missing.
    assert DEV_ONLY <= packages and not DEV_ONLY & sources, "the dev harness must not reach the image"
    missing = packages - DEV_ONLY - sources
    assert not missing, f"the Dockerfile does not COPY {sorted(missing)}"
    # pip install . also needs the metadata, including the readme pyproject names.
    assert {"pyproject.toml", pyproject["project"]["readme"]} <= sources


def test_the_dockerignore_keeps_what_the_dockerfile_copies_and_drops_local_state() -> None:
    patterns = [
        line.strip().rstrip("/")
        for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for source in copy_sources():
        assert not any(fnmatch.fnmatch(source, pattern) for pattern in patterns), f"{source} is in .dockerignore"
    for local_state in (".venv", ".git", "data", ".pytest_cache", "secrets"):
        assert local_state in patterns


def test_the_python_base_image_is_pinned_to_a_patch_release_of_the_python_pyproject_supports() -> None:
    bases = [arguments.split()[0] for keyword, arguments in dockerfile_instructions() if keyword == "FROM"]
    match = re.fullmatch(r"python:(\d+)\.(\d+)\.(\d+)-slim(-[a-z]+)?(@sha256:[0-9a-f]{64})?", bases[-1])
    assert match, f"{bases[-1]} is not pinned to major.minor.patch"
    required = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"]["requires-python"]
    assert SpecifierSet(required).contains(".".join(match.groups()[:3]))

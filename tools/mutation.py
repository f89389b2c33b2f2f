"""Mutation testing of worker/ and schemas/ with mutmut: kill rate per module and the survivors.

Not run in CI. Usage (from the repository root, in the dev venv with mutmut installed):

    .venv/bin/python tools/mutation.py                       # commit, state, merge, store
    .venv/bin/python tools/mutation.py worker.tasks schemas.product --max-children 1
    .venv/bin/python tools/mutation.py --report-only         # re-print the last run's report

mutmut mutates a copy of the code under ``mutants/``, so the run happens in a scratch copy of
this work tree (``--workdir``); each run starts afresh unless ``--keep``.
Which tests run is set in ``[tool.mutmut]`` of pyproject.toml: fast unit tests only, no e2e,
no chaos; for each mutant mutmut runs only the tests that reached the mutated function.
"""

from __future__ import annotations

import argparse
import ast
import json
import re
import os
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_MODULES = ["worker.commit", "worker.recovery", "worker.state", "worker.merge", "worker.store"]
# Killed: a test failed, pytest failed, the type check caught it, or it hung (a timeout: the
# tests did notice, the mutant never finished).
KILLED = {1, 3, 37, 36, 24, -24, 152, 255}
STATUS = {0: "survived", 5: "no tests", 33: "no tests", 34: "skipped", None: "not checked"}


def copy_tree(workdir: Path) -> None:
    """The work tree as it is now (tracked and new files), without mutmut's previous results."""
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
                            cwd=REPO, capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        source, target = REPO / name, workdir / name
        if not source.is_file() or name.startswith("mutants/"):
            continue
        if target.exists() and target.read_bytes() == source.read_bytes():
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)


def module_path(module: str) -> Path:
    return Path(*module.split(".")).with_suffix(".py")


def function_lines(source: str) -> dict[str, int]:
    """First line of each function, keyed as mutmut names them (``x_f``, ``xǁClassǁmethod``)."""
    lines: dict[str, int] = {}
    tree = ast.parse(source)
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            lines[f"x_{node.name}"] = node.lineno
        elif isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    lines[f"xǁ{node.name}ǁ{item.name}"] = item.lineno
    return lines


def locate(diff: str, start: int) -> tuple[int, str]:
    """The changed line in the original file, from the diff of the mutated function, and the
    mutation as ``old -> new``."""
    line_number, removed, added = start, [], []
    position = None
    for line in diff.splitlines():
        hunk = re.match(r"@@ -(\d+)", line)
        if hunk:
            position = int(hunk.group(1))
        elif position is not None and not line.startswith(("---", "+++")):
            if line.startswith("-"):
                if not removed:
                    line_number = start + position - 1
                removed.append(line[1:].strip())
                position += 1
            elif line.startswith("+"):
                added.append(line[1:].strip())
            else:
                position += 1
    return line_number, f"{' / '.join(removed)}  ->  {' / '.join(added)}"


def report(workdir: Path, modules: list[str]) -> int:
    sys.path.insert(0, str(workdir))
    os.chdir(workdir)
    from mutmut.mutation.diff_apply import get_diff_for_mutant  # noqa: PLC0415 - only with mutmut installed

    worst = 100.0
    for module in modules:
        path = module_path(module)
        meta = workdir / "mutants" / f"{path}.meta"
        if not meta.exists():
            print(f"{module}: no results (was it mutated?)")
            continue
        codes: dict[str, int | None] = json.loads(meta.read_text())["exit_code_by_key"]
        counts = Counter("killed" if code in KILLED else STATUS.get(code, "suspicious") for code in codes.values())
        checked = sum(counts.values()) - counts["not checked"]
        rate = 100.0 * counts["killed"] / checked if checked else 0.0
        worst = min(worst, rate)
        print(f"\n{module}: {counts['killed']}/{checked} killed ({rate:.1f}%)  "
              + ", ".join(f"{n} {s}" for s, n in sorted(counts.items()) if s != "killed"))
        original = (REPO / path).read_text().splitlines()
        starts = function_lines("\n".join(original))
        survivors = []
        for name, code in codes.items():
            if code in KILLED or code is None:
                continue
            function = name.split(".")[-1].rsplit("__mutmut_", 1)[0]
            diff = get_diff_for_mutant(name, path=path)
            line, change = locate(diff, starts.get(function, 1))
            survivors.append((line, STATUS.get(code, "suspicious"), change, name))
        for line, status, change, name in sorted(survivors):
            print(f"  {path}:{line}  [{status}]  {change}    ({name.split('.')[-1]})")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("modules", nargs="*", default=DEFAULT_MODULES, help="dotted module names")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp") / f"catalog-mutation-{REPO.name}")
    parser.add_argument("--max-children", type=int, default=2, help="mutants tested at once (CPU cores)")
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument("--keep", action="store_true",
                        help="keep earlier verdicts (mutmut re-tests only changed functions, not changed tests)")
    args = parser.parse_args()
    mutmut = Path(sys.executable).with_name("mutmut")
    if not mutmut.exists():
        print(f"{mutmut} not found: install it with `{Path(sys.executable).with_name('pip')} install -e "
              "'.[dev,mutation]'`", file=sys.stderr)
        return 2
    if not args.report_only:
        args.workdir.mkdir(parents=True, exist_ok=True)
        copy_tree(args.workdir)
        if not args.keep:
            shutil.rmtree(args.workdir / "mutants", ignore_errors=True)
        patterns = [f"{module}.*" for module in args.modules]
        log = args.workdir / "mutmut.log"
        with log.open("wb") as output:
            done = subprocess.run([str(mutmut), "run", "--max-children", str(args.max_children), *patterns],
                                  cwd=args.workdir, stdout=output, stderr=subprocess.STDOUT)
        if done.returncode != 0:  # e.g. a test fails without any mutant: mutmut needs a green suite
            tail = log.read_bytes()[-3000:].decode(errors="replace").replace("\r", "\n")
            print(f"mutmut run exited {done.returncode}; the end of {log}:\n{tail}", file=sys.stderr)
            return done.returncode
    return report(args.workdir, args.modules)


if __name__ == "__main__":
    raise SystemExit(main())

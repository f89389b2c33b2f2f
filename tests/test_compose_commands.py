"""The commands the production section runs besides the services: the export job, the backup
archive and the rejected-batch alert, run here with local paths instead of the containers'.

No Docker engine: each command is taken from docker-compose.yml or README.md as written, its
container paths are replaced by temp folders, and it is run with the same tools (sh, cp, mv,
tar, jq) the image and the host have.
"""

from __future__ import annotations

import io
import json
import re
import shlex
import shutil
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from celery.utils.saferepr import saferepr

from schemas.result import BatchResult, BatchStatus, RecordError
from tests.test_compose import COMPOSE_FILE, README, command_of
from worker.celery import app as worker_app

CATALOG_DIR = "/data/catalog"


@pytest.fixture(scope="module")
def services() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))["services"]


def production_section() -> str:
    return README.read_text(encoding="utf-8").split("## Production: docker-compose", 1)[1].split("\n## ", 1)[0]


def readme_lines(starting: str) -> list[str]:
    """Shell lines of the production section's code blocks that start with ``starting``."""
    blocks = re.findall(r"```bash\n(.*?)```", production_section(), re.DOTALL)
    lines, pending = [], ""
    for line in "\n".join(blocks).splitlines():
        pending += line.rstrip("\\").rstrip() + " " if line.endswith("\\") else line
        if not line.endswith("\\"):
            if pending.startswith(starting):
                lines.append(pending.split("  #")[0].strip())
            pending = ""
    return lines


def catalog_folder(root: Path) -> Path:
    """A catalog folder as the workers leave it: catalog, state, id and two backups."""
    folder = root / "data" / "catalog"
    (folder / "backups").mkdir(parents=True)
    (folder / "products.json").write_bytes(b'[{"product_id":"P-2"}]\n')
    (folder / "products.json.state").write_bytes(b"{}")
    (folder / "backups" / "products.20261128T000000000000Z.json").write_bytes(b"[]\n")
    (folder / "backups" / "products.20261129T000000000000Z.json").write_bytes(b'[{"product_id":"P-1"}]\n')
    return folder


def test_the_export_job_copies_the_catalog_whole_into_the_export_folder(services: dict[str, Any],
                                                                       tmp_path: Path) -> None:
    folder = catalog_folder(tmp_path)
    export = tmp_path / "export"
    export.mkdir()
    (export / "products.json").write_bytes(b"an older export")
    shell, flag, script = command_of(services["export"])
    assert (shell, flag) == ("sh", "-c")
    local = script.replace("/data", str(tmp_path / "data")).replace("/export", str(export))
    done = subprocess.run(["sh", "-c", local], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done
    assert (export / "products.json").read_bytes() == (folder / "products.json").read_bytes()
    assert [p.name for p in export.iterdir()] == ["products.json"], "no temp file is left behind"


def test_the_export_job_fails_and_keeps_the_last_export_when_there_is_no_catalog_yet(
    services: dict[str, Any], tmp_path: Path,
) -> None:
    (tmp_path / "data" / "catalog").mkdir(parents=True)
    export = tmp_path / "export"
    export.mkdir()
    (export / "products.json").write_bytes(b"the last export")
    script = command_of(services["export"])[2]
    local = script.replace("/data", str(tmp_path / "data")).replace("/export", str(export))
    assert subprocess.run(["sh", "-c", local], capture_output=True, timeout=30).returncode != 0
    assert (export / "products.json").read_bytes() == b"the last export"


def test_the_readme_backup_command_archives_the_catalog_and_every_backup_to_stdout(tmp_path: Path) -> None:
    (line,) = readme_lines("docker compose run --rm --no-deps -T worker tar ")
    words = shlex.split(line.split(" > ")[0])
    tar = words[words.index("worker") + 1:]
    assert tar[0] == "tar" and "-" in tar, "the archive goes to stdout, then to the host"
    folder = catalog_folder(tmp_path)
    local = [word.replace(CATALOG_DIR, str(folder)) for word in tar]
    archive = subprocess.run(local, capture_output=True, timeout=60, check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as opened:
        members = {m.name: opened.extractfile(m).read() for m in opened.getmembers() if m.isfile()}  # type: ignore[union-attr]
    expected = {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    assert members == expected
    # The state is read before the catalog: a commit in between gives an older state with a
    # newer catalog (adopted on restore), never versions the catalog does not have.
    order = list(members)
    assert order.index("products.json.state") < order.index("products.json")
    assert readme_lines("rsync "), "the README says how the archive leaves the host"


@pytest.mark.skipif(shutil.which("jq") is None, reason="jq is not installed")
def test_the_readme_alert_counts_rejected_batches_among_flower_successes() -> None:
    (line,) = [line for line in readme_lines("curl -s 'http://127.0.0.1:5555/api/tasks")]
    jq_program = shlex.split(line.split("| jq", 1)[1])[0]
    maxsize = worker_app.tasks["catalog.ingest_batch"].resultrepr_maxsize

    def flower_task(status: BatchStatus, errors: int) -> dict[str, Any]:
        # What Flower keeps from a task-succeeded event: the worker's saferepr of the result.
        result = BatchResult(batch_id="b", status=status, errors=[
            RecordError(index=i, loc="pricing", msg="field required " * 10) for i in range(errors)])
        return {"state": "SUCCESS", "name": "catalog.ingest_batch",
                "result": saferepr(result.model_dump(mode="json"), maxsize)}

    tasks = {"a": flower_task(BatchStatus.APPLIED, 0), "r1": flower_task(BatchStatus.REJECTED, 1),
             "r2": flower_task(BatchStatus.REJECTED, 500), "d": flower_task(BatchStatus.DUPLICATE, 0),
             "x": {"state": "SUCCESS", "result": None}}
    counted = subprocess.run(["jq", jq_program], input=json.dumps(tasks), capture_output=True, text=True,
                             timeout=30, check=True)
    assert json.loads(counted.stdout) == 2

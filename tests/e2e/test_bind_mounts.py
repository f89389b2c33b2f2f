"""Two hosts that mount one catalog folder at different paths still share one lock.

The two "hosts" are two bind mounts of one folder, made in a private mount namespace
(``unshare --mount --propagation private``) so nothing leaks to the machine. Ten real
`python -m catalog_cli apply` processes write through each mount at once; every one of the
twenty new products must survive. With a lock named after the resolved path, the two sides
took two different locks and overwrote each other.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from catalog_core.settings import Settings
from tests.helpers import cli_env, product, write_jsonl
from worker.catalog_file import parse_catalog, serialize_catalog

pytestmark = pytest.mark.slow

PER_SIDE = 10
FILLER_PRODUCTS = 1_000  # a write takes long enough for writers on the two sides to overlap
WAIT_S = 240.0

# Runs inside the private mount namespace: mount the shared folder twice, start every writer
# at once, wait for all of them (bounded), print their outcomes as JSON.
DRIVER = r"""
import json, os, subprocess, sys, time
job = json.loads(sys.stdin.read())
for mount in job["mounts"]:
    subprocess.run(["mount", "--bind", job["shared"], mount], check=True)
processes = [subprocess.Popen(w["argv"], env=w["env"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for w in job["writers"]]
deadline = time.monotonic() + job["wait"]
outcomes = []
for proc in processes:
    try:
        out, err = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
    outcomes.append({"code": proc.returncode, "stdout": out, "stderr": err})
print(json.dumps(outcomes))
"""


def unshare_refusal() -> str | None:
    """Why this machine cannot make private bind mounts (not root, no unshare), or None when it can."""
    if shutil.which("unshare") is None:
        return "the unshare command is not installed"
    probe = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", "mount --bind / /mnt && echo ok"],
        capture_output=True, text=True, timeout=30,
    )
    if probe.returncode != 0 or "ok" not in probe.stdout:
        return f"private bind mounts are not permitted here: {probe.stderr.strip() or probe.returncode}"
    return None


def test_twenty_applies_through_two_bind_mounts_of_one_folder_lose_no_product(
    settings: Settings, tmp_path: Path
) -> None:
    refusal = unshare_refusal()
    if refusal:
        pytest.skip(refusal)
    shared = tmp_path / "shared"
    shared.mkdir()
    filler = [product(f"FILL-{k:05d}") for k in range(FILLER_PRODUCTS)]
    (shared / "products.json").write_bytes(serialize_catalog(filler))
    mounts = [tmp_path / "host-a", tmp_path / "host-b"]
    for mount in mounts:
        mount.mkdir()
    batches = tmp_path / "batches"
    batches.mkdir()

    writers = []
    new_ids = []
    for side, mount in zip("ab", mounts, strict=True):
        for n in range(PER_SIDE):
            new_id = f"NEW-{side}-{n}"
            new_ids.append(new_id)
            batch = write_jsonl(batches / f"{new_id}.jsonl", [product(new_id)])
            env = cli_env(settings, CATALOG_PATH=str(mount / "products.json"), CATALOG_LOCK_TIMEOUT="200")
            writers.append({"argv": [sys.executable, "-m", "catalog_cli", "apply", str(batch), "--json"], "env": env})

    job = {"shared": str(shared), "mounts": [str(m) for m in mounts], "writers": writers, "wait": WAIT_S}
    driver = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", sys.executable, "-c", DRIVER],
        input=json.dumps(job), capture_output=True, text=True, timeout=WAIT_S + 60,
    )
    assert driver.returncode == 0, driver.stderr
    outcomes = json.loads(driver.stdout)

    failed = [
        f"{writer['env']['CATALOG_PATH']}: exit {outcome['code']}\n{outcome['stdout']}\n{outcome['stderr']}"
        for writer, outcome in zip(writers, outcomes, strict=True)
        if outcome["code"] != 0 or orjson.loads(outcome["stdout"])["status"] != "applied"
    ]
    final = parse_catalog((shared / "products.json").read_bytes(), shared / "products.json")
    present = {p["product_id"] for p in final}
    lost = [new_id for new_id in new_ids if new_id not in present]
    assert not lost, f"{len(lost)} of {len(new_ids)} new products were lost: {lost}; failed writers: {failed}"
    assert not failed, "\n".join(failed)
    assert len(final) == FILLER_PRODUCTS + len(new_ids)

#!/usr/bin/env python
"""How big the backup folder grows: the thinning policy against today's "keep every backup 7 days".

Simulates N commits on a catalog of C synthetic products with a clock of its own: a burst of B
commits within S seconds, then the rest at a steady rate until D days have passed. Each commit
changes R products, takes its backup with the real ``take_backup`` (a hard link of the catalog
being replaced) and replaces the catalog. Every ``--rotate-every`` seconds of simulated time
the real ``rotate_backups`` runs with the default settings (thinning, gzip, the byte cap);
with ``--cap-at-commit``, ``hold_cap`` also runs after every commit.

Today's policy keeps every backup for 7 days, uncompressed: its folder is the sum of the
sizes of the backups of the last 7 days, computed from the sizes the new run saw rather than
kept on disk (it would be C x N bytes: 13 GB for 10k products and 1,000 commits).

Prints one JSON object. Needs no Redis.

    .venv/bin/python bench/backup_growth.py --products 10000 --commits 1000
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import tempfile
import time
from pathlib import Path

from synthetic import make_product  # type: ignore[import-not-found]  # bench/synthetic.py: run from bench/

from catalog_core.settings import load_settings
from worker.backup_policy import BackupPolicy
from worker.backups import hold_cap, list_backups, rotate_backups, take_backup
from worker.catalog_file import serialize_catalog

START = dt.datetime(2026, 1, 5, 9, 0, tzinfo=dt.UTC)
MB = 1_000_000


def commit_times(commits: int, burst: int, burst_seconds: float, days: float) -> list[dt.datetime]:
    """The burst first, then the remaining commits evenly until ``days`` after the start."""
    burst = min(burst, commits)
    times = [START + dt.timedelta(seconds=burst_seconds * n / max(burst, 1)) for n in range(burst)]
    steady = commits - burst
    span = dt.timedelta(days=days) - dt.timedelta(seconds=burst_seconds)
    times += [START + dt.timedelta(seconds=burst_seconds) + span * (n + 1) / steady for n in range(steady)]
    return times


def folder_bytes(catalog: Path, backup_dir: Path) -> int:
    return sum(backup.size_bytes for backup in list_backups(catalog, backup_dir))


def run(args: argparse.Namespace, folder: Path) -> dict[str, object]:
    catalog, backup_dir = folder / "products.json", folder / "backups"
    rng = random.Random(1)
    products = [make_product(f"P{i:06d}", rng) for i in range(args.products)]
    catalog.write_bytes(serialize_catalog(products))
    overrides = {} if args.max_bytes is None else {"backup_max_bytes": args.max_bytes}
    policy = BackupPolicy.from_settings(load_settings(path=catalog, **overrides))
    every = dt.timedelta(seconds=args.rotate_every)
    taken: list[tuple[dt.datetime, int]] = []
    peak_new = peak_old = 0
    passes = compressed = deleted_by_cap = 0
    rotation_s = 0.0
    next_rotation = START + every

    def rotate(now: dt.datetime) -> None:
        nonlocal peak_new, passes, compressed, deleted_by_cap, rotation_s
        peak_new = max(peak_new, folder_bytes(catalog, backup_dir))  # the worst moment: just before a pass
        started = time.perf_counter()
        report = rotate_backups(catalog, backup_dir, policy, now=now)
        rotation_s += time.perf_counter() - started
        passes += 1
        compressed += len(report.compressed)
        deleted_by_cap += sum(1 for _, reason in report.deleted if reason == "over the byte cap")

    def old_policy_bytes(now: dt.datetime) -> int:
        return sum(size for when, size in taken if now - when <= dt.timedelta(days=7))

    times = commit_times(args.commits, args.burst, args.burst_seconds, args.days)
    for when in times:
        while next_rotation <= when:
            peak_old = max(peak_old, old_policy_bytes(next_rotation))
            rotate(next_rotation)
            next_rotation += every
        for product in rng.sample(products, args.records):
            product["pricing"][0]["price_aed"] = float(rng.randint(50, 1500))
        staged = catalog.with_name("products.json.next")
        staged.write_bytes(serialize_catalog(products))
        backup = take_backup(catalog, backup_dir, now=when)
        os.replace(staged, catalog)
        assert backup is not None
        if args.cap_at_commit:
            deleted_by_cap += len(hold_cap(catalog, backup_dir, policy))
            peak_new = max(peak_new, folder_bytes(catalog, backup_dir))
        taken.append((when, backup.stat().st_size))
    end = times[-1]
    peak_old = max(peak_old, old_policy_bytes(end))
    rotate(end)  # the folder as beat leaves it after the last commit
    kept = list_backups(catalog, backup_dir)
    new_bytes = sum(backup.size_bytes for backup in kept)
    old_bytes = old_policy_bytes(end)
    return {
        "products": args.products, "commits": args.commits, "catalog_bytes": catalog.stat().st_size,
        "timeline": f"{args.burst} commits in {args.burst_seconds:g} s, then {args.commits - args.burst} evenly "
                    f"over {args.days:g} days; rotation every {args.rotate_every:g} s"
                    + ("; cap held after every commit" if args.cap_at_commit else ""),
        "settings": {"keep_all": str(policy.keep_all), "hourly_until": str(policy.hourly_until),
                     "retention": str(policy.retention), "compress_after": str(policy.compress_after),
                     "max_bytes": policy.max_bytes},
        "today": {"backups": sum(1 for when, _ in taken if end - when <= dt.timedelta(days=7)),
                  "bytes_at_end": old_bytes, "peak_bytes": peak_old},
        "thinned": {"backups": len(kept), "compressed": sum(1 for b in kept if b.compressed),
                    "bytes_at_end": new_bytes, "peak_bytes": peak_new, "deleted_by_cap": deleted_by_cap,
                    "rotation_passes": passes, "compressions": compressed,
                    "rotation_seconds_total": round(rotation_s, 1)},
        "ratio_at_end": round(old_bytes / max(new_bytes, 1), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--products", type=int, default=10_000)
    parser.add_argument("--commits", type=int, default=1_000)
    parser.add_argument("--burst", type=int, default=270, help="commits in the burst at the start")
    parser.add_argument("--burst-seconds", type=float, default=120)
    parser.add_argument("--days", type=float, default=7, help="simulated time the commits span")
    parser.add_argument("--records", type=int, default=100, help="products each commit changes")
    parser.add_argument("--rotate-every", type=float, default=3600, help="simulated seconds between rotations")
    parser.add_argument("--cap-at-commit", action="store_true",
                        help="also hold the cap after every commit (worker.backups.hold_cap), not only at rotations")
    parser.add_argument("--max-bytes", type=int, default=None, help="CATALOG_BACKUP_MAX_BYTES (default: its default)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="backup-growth-") as folder:
        print(json.dumps(run(args, Path(folder)), indent=2))


if __name__ == "__main__":
    main()

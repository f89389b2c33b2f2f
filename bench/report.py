"""The goals table (markdown) and the plots (PNG, matplotlib's Agg backend) from one run's figures.

    .venv/bin/python -m bench.report bench/results/latest.json   # redraw from saved figures

Every goal is judged against a reference measured in the same run: 2x the floor (G1, G4), a share
of the raw Celery rate (G2), 3x the catalog's bytes + 150 MB (G3).
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MB = 2**20
G2_WORKERS = 2
G2_SHARE = {1: 0.50, "large": 0.25}  # 1-record batches, and the large (100-record) ones
G3_ALLOWANCE = 150 * MB


@dataclass(frozen=True)
class Row:
    goal: str
    figure: str
    target: str
    passed: bool | None  # None: not measured in this run


def rate(figures: dict[str, Any], kind: str, workers: int, records: int) -> float | None:
    for burst in figures["bursts"]:
        if (burst["kind"], burst["workers"], burst["records"]) == (kind, workers, records):
            return float(burst["batches_per_s"])
    return None


def large_records(figures: dict[str, Any]) -> int:
    return int(figures["meta"]["options"]["records"])


def memory_limit(catalog_bytes: int) -> int:
    return 3 * catalog_bytes + G3_ALLOWANCE


def peak_memory_by_size(figures: dict[str, Any]) -> list[dict[str, Any]]:
    """Per size, the highest per-worker peak of any run and the largest catalog it held."""
    by_size: dict[int, dict[str, Any]] = {}
    for entry in figures["memory"]:
        known = by_size.setdefault(entry["products"], {"products": entry["products"], "peak": 0, "catalog_bytes": 0})
        known["peak"] = max(known["peak"], entry["peak_pss_bytes"])
        known["catalog_bytes"] = max(known["catalog_bytes"], entry["catalog_bytes"])
    return [by_size[size] for size in sorted(by_size)]


def goal_rows(figures: dict[str, Any]) -> list[Row]:
    rows: list[Row] = []
    costs = {cost["products"]: cost for cost in figures["commit"]}
    latency = figures["latency"]
    if latency is not None:
        # The floor sampled between the latency samples; runs before it had only G4's.
        floor = latency.get("floor_median_ms") or costs[latency["products"]]["floor"]["median"]
        rows.append(Row(f"G1 latency: one {latency['records']}-record batch, idle worker, {latency['products']:,} "
                        "products, submit to result", f"{latency['median_ms']:.0f} ms (floor {floor:.0f} ms)",
                        f"≤ 2× floor = {2 * floor:.0f} ms", latency["median_ms"] <= 2 * floor))
    large = large_records(figures)
    workers = sorted({burst["workers"] for burst in figures["bursts"]})
    g2_workers = min(workers, key=lambda count: abs(count - G2_WORKERS)) if workers else G2_WORKERS
    for records, share in ((1, G2_SHARE[1]), (large, G2_SHARE["large"])):
        project, raw = rate(figures, "project", g2_workers, records), rate(figures, "celery", g2_workers, records)
        if project is None or raw is None:
            continue
        rows.append(Row(f"G2 throughput: {records}-record batches, {g2_workers} workers",
                        f"{project:.1f}/s = {project / raw:.1%} of raw Celery {raw:.0f}/s",
                        f"≥ {share:.0%} of raw", project >= share * raw))
    for records in (1, large):
        found = [rate(figures, "project", count, records) for count in workers]
        rates = [value for value in found if value is not None]
        if len(rates) > 1 and len(rates) == len(found):
            steps = " → ".join(f"{value:.1f}" for value in rates)
            never_lower = all(b >= a for a, b in zip(rates, rates[1:]))
            rows.append(Row(f"G2 scaling: {records}-record batches/s with {', '.join(map(str, workers))} workers",
                            steps, "never lower with more workers", never_lower))
    for entry in peak_memory_by_size(figures):
        limit = memory_limit(entry["catalog_bytes"])
        rows.append(Row(f"G3 memory: peak PSS of a worker's process tree, {entry['products']:,} products "
                        f"({entry['catalog_bytes'] / MB:.1f} MB catalog)", f"{entry['peak'] / MB:.0f} MB",
                        f"≤ 3× catalog + 150 MB = {limit / MB:.0f} MB", entry["peak"] <= limit))
    for size, cost in sorted(costs.items()):
        project, floor = cost["project"]["median"], cost["floor"]["median"]
        rows.append(Row(f"G4 commit time: {large}-record batch, warm store, {size:,} products",
                        f"{project:.0f} ms = {project / floor:.1f}× floor ({floor:.0f} ms)",
                        f"≤ 2× floor = {2 * floor:.0f} ms", project <= 2 * floor))
    return rows


def verdict(passed: bool | None) -> str:
    return "n/a" if passed is None else ("PASS" if passed else "**FAIL**")


def markdown(figures: dict[str, Any]) -> str:
    meta = figures["meta"]
    large = large_records(figures)
    lines = [
        "# Benchmark: the write path's goals (issue 8)",
        "",
        f"{meta['date']}, checkout {meta['checkout']}, Python {meta['python']}, {meta['cpus']} CPUs, "
        f"{meta['duration_s']:.0f} s. Worker command: `{meta['worker_command']}`. Medians of "
        f"{meta['options']['repeats']} repeats; every reference measured in this run (bench/README.md).",
        "",
        "| goal | figure | target | verdict |",
        "|---|---|---|---|",
        *(f"| {row.goal} | {row.figure} | {row.target} | {verdict(row.passed)} |" for row in goal_rows(figures)),
        "",
        f"## Commit time of one {large}-record batch (ms, median, min–max)",
        "",
        "| products | catalog | floor | seed style | this project | project / floor |",
        "|---|---|---|---|---|---|",
    ]
    for cost in figures["commit"]:
        cells = [f"{cost[kind]['median']:.1f} ({cost[kind]['low']:.0f}–{cost[kind]['high']:.0f})"
                 for kind in ("floor", "seed", "project")]
        lines.append(f"| {cost['products']:,} | {cost['catalog_bytes'] / MB:.1f} MB | {' | '.join(cells)} | "
                     f"{cost['project']['median'] / cost['floor']['median']:.1f}× |")
    workers = sorted({burst["workers"] for burst in figures["bursts"]})
    if workers:
        size = figures["queue_products"]
        peaks = {entry["workers"]: entry["peak_pss_bytes"] for entry in figures["memory"] if entry["products"] == size}
        lines += ["", f"## Throughput, {size:,} products (batches/s: a burst queued while the workers are paused, from their resume to the last result; raw Celery: median of 3 bursts)", "",
                  f"| workers | 1-record | raw Celery | share | {large}-record | raw Celery | share "
                  "| peak worker PSS |",
                  "|---|---|---|---|---|---|---|---|"]
        for count in workers:
            cells = []
            for records in (1, large):
                project, raw = rate(figures, "project", count, records), rate(figures, "celery", count, records)
                share = f"{project / raw:.1%}" if project and raw else "–"
                cells += [f"{project:.2f}" if project else "–", f"{raw:.1f}" if raw else "–", share]
            peak = peaks.get(count)
            lines.append(f"| {count} | {' | '.join(cells)} | {peak / MB:.0f} MB |" if peak else
                         f"| {count} | {' | '.join(cells)} | – |")
    bursts = [b for b in figures["bursts"] if b["kind"] == "project" and set(b["statuses"]) != {"applied"}]
    if bursts:
        lines += ["", "Not every batch was applied: " + "; ".join(
            f"{b['workers']} worker(s), {b['records']}-record: {b['statuses']}" for b in bursts)]
    return "\n".join(lines) + "\n"


def write_report(figures: dict[str, Any], out: Path, plots: bool) -> str:
    table = markdown(figures)
    (out / "latest.md").write_text(table, encoding="utf-8")
    if plots:
        from bench.plots import draw_all  # noqa: PLC0415 - matplotlib only when plotting

        draw_all(figures, out)
    return table


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m bench.report LATEST_JSON", file=sys.stderr)
        return 2
    source = Path(argv[0])
    print(write_report(json.loads(source.read_text(encoding="utf-8")), source.parent, plots=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

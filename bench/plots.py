"""The three plots of a run, as PNGs (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 - after choosing the backend

from bench.report import MB, large_records, memory_limit, peak_memory_by_size, rate  # noqa: E402

COMMIT_PNG = "commit-time.png"
THROUGHPUT_PNG = "throughput.png"
MEMORY_PNG = "memory.png"


def subtitle(figures: dict[str, Any]) -> str:
    meta = figures["meta"]
    return f"{meta['date'][:10]}, checkout {meta['checkout'].split()[0]}, {meta['cpus']} shared CPUs"


def commit_time(figures: dict[str, Any], path: Path) -> None:
    costs = sorted(figures["commit"], key=lambda cost: cost["products"])
    sizes = [cost["products"] for cost in costs]
    figure, axes = plt.subplots(figsize=(7, 4.5))
    for kind, label, style in (("seed", "seed style (stdlib json, copy backup)", "s-"),
                               ("project", "this project (CatalogStore.apply, warm)", "o-"),
                               ("floor", "floor (orjson + one durable write)", "^-")):
        axes.plot(sizes, [cost[kind]["median"] for cost in costs], style, label=label)
    axes.plot(sizes, [2 * cost["floor"]["median"] for cost in costs], "kx--", linewidth=1, label="G4 limit: 2× floor")
    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.set_xlabel("catalog size (products)")
    axes.set_ylabel(f"commit of one {large_records(figures)}-record batch (ms, median)")
    axes.set_title(f"Commit time against catalog size\n{subtitle(figures)}", fontsize=10)
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize=8)
    save(figure, path)


def throughput(figures: dict[str, Any], path: Path) -> None:
    workers = sorted({burst["workers"] for burst in figures["bursts"]})
    figure, axes = plt.subplots(figsize=(7, 4.5))
    for records, color in ((1, "tab:blue"), (large_records(figures), "tab:orange")):
        for kind, label, style in (("project", "this project", "o-"), ("celery", "raw Celery (no-op task)", "s--")):
            values = [rate(figures, kind, count, records) for count in workers]
            points = [(count, value) for count, value in zip(workers, values) if value is not None]
            if points:
                axes.plot(*zip(*points), style, color=color, label=f"{label}, {records}-record batches")
    axes.set_yscale("log")
    axes.set_xticks(workers)
    axes.set_xlabel("worker processes")
    axes.set_ylabel("batches per second (queued burst, resume to last result)")
    axes.set_title(f"Throughput against workers, {figures['queue_products']:,} products\n{subtitle(figures)}",
                   fontsize=10)
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize=8)
    save(figure, path)


def memory(figures: dict[str, Any], path: Path) -> None:
    entries = peak_memory_by_size(figures)
    sizes = [entry["products"] for entry in entries]
    figure, axes = plt.subplots(figsize=(7, 4.5))
    axes.plot(sizes, [entry["peak"] / MB for entry in entries], "o-", label="peak PSS of a worker's process tree")
    axes.plot(sizes, [memory_limit(entry["catalog_bytes"]) / MB for entry in entries], "kx--", linewidth=1,
              label="G3 limit: 3× catalog bytes + 150 MB")
    axes.plot(sizes, [entry["catalog_bytes"] / MB for entry in entries], ":", color="gray", label="catalog file")
    bare = max((entry["peak_pss_bytes"] for entry in figures["noop_memory"]), default=0)
    if bare:
        axes.axhline(bare / MB, color="tab:green", linewidth=1, label="a worker running only the no-op task")
    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.set_xlabel("catalog size (products)")
    axes.set_ylabel("MB")
    axes.set_title(f"Worker memory against catalog size\n{subtitle(figures)}", fontsize=10)
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize=8)
    save(figure, path)


def save(figure: Any, path: Path) -> None:
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def draw_all(figures: dict[str, Any], out: Path) -> list[Path]:
    paths = [out / COMMIT_PNG, out / THROUGHPUT_PNG, out / MEMORY_PNG]
    commit_time(figures, paths[0])
    if figures["bursts"]:
        throughput(figures, paths[1])
    if figures["memory"]:
        memory(figures, paths[2])
    return paths

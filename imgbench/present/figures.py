"""Reading the results document of ``imgbench compare`` (results.json) and formatting its figures:
what the terminal tables, the plots, the recommendation and the HTML report all share."""

from __future__ import annotations

from typing import Any


def ok_runs(results: dict[str, Any], dataset: str | None = None) -> list[dict[str, Any]]:
    return [
        r for r in results["runs"]
        if r["status"] == "ok" and (dataset is None or r["dataset"] == dataset)
    ]


def setting(run: dict[str, Any]) -> str:
    return f"{run['backend']}/{run['compression']}"


def largest(results: dict[str, Any], dataset: str) -> list[dict[str, Any]]:
    """Runs of ``dataset`` at its largest image count (what the summary speaks about)."""
    runs = ok_runs(results, dataset)
    if not runs:
        return []
    top = max(r["count"] for r in runs)
    return [r for r in runs if r["count"] == top]


def fmt_time(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 1e-3:
        return f"{seconds * 1e6:.0f} µs"
    if seconds < 1:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds:.2f} s"


def fmt_bytes(n: float | None) -> str:
    if n is None:
        return "-"
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n:.0f} B"


def _spread(stats: dict[str, float] | None) -> str:
    return "" if not stats or stats["n"] < 2 else f" ±{stats['spread'] * 50:.0f}%"


def median(run: dict[str, Any], key: str) -> float:
    return run["stats"][key]["median"]


def dataset_names(results: dict[str, Any]) -> list[str]:
    return [d["name"] for d in results["datasets"]]


def parallel_runs(results: dict[str, Any], dataset: str) -> list[dict[str, Any]]:
    """Measured parallel-read runs of ``dataset`` (none in results made without ``--parallel-workers``)."""
    section = results.get("parallel_read") or {"runs": []}
    return [r for r in section["runs"] if r["status"] == "ok" and r["dataset"] == dataset]


def fmt_rate(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value / 1e6:.2f} M" if value >= 1e6 else (f"{value / 1e3:.1f} k" if value >= 1e3 else f"{value:.0f}")


def _parallel_cells(row: dict[str, Any]) -> list[str]:
    """images/s (± half the spread), speed-up, efficiency and CPU cores per worker of one worker count."""
    return [
        fmt_rate(row["images_per_s"]) + _spread(row["stats"]),
        "-" if row["speedup"] is None else f"{row['speedup']:.2f}x",
        "-" if row["efficiency"] is None else f"{row['efficiency']:.0%}",
        "-" if row["cpu_cores"] is None else f"{row['cpu_cores']:.2f}",
    ]

"""The report's plots, drawn by matplotlib (Agg) as inline SVG."""

from __future__ import annotations

import io
from typing import Any

from imgbench.present.figures import largest, ok_runs, parallel_runs, setting


def _colours(settings: list[str]) -> dict[str, tuple[str, str, str]]:
    """One colour per backend, a line style per compression (solid = backend default)."""
    palette = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"]
    styles = ["-", "--", ":", "-."]
    markers = ["o", "s", "^", "D"]
    backends = list(dict.fromkeys(s.split("/")[0] for s in settings))
    seen: dict[str, int] = {}
    out = {}
    for s in settings:
        b = s.split("/")[0]
        k = seen.get(b, 0)
        seen[b] = k + 1
        out[s] = (palette[backends.index(b) % len(palette)], styles[k % len(styles)], markers[k % len(markers)])
    return out


def _svg(fig) -> str:
    """Inline SVG text; fonts left to the browser (svg.fonttype none) keeps the file small."""
    import matplotlib

    matplotlib.rcParams["svg.fonttype"] = "none"
    buf = io.StringIO()
    fig.tight_layout()
    fig.savefig(buf, format="svg")
    import matplotlib.pyplot as plt

    plt.close(fig)
    text = buf.getvalue()
    return text[text.index("<svg"):]


def _series(runs: list[dict[str, Any]], key: str) -> dict[str, list[tuple[int, float, float, float]]]:
    out: dict[str, list[tuple[int, float, float, float]]] = {}
    for r in sorted(runs, key=lambda r: r["count"]):
        if key == "bytes":
            v = float(r["disk"]["allocated"])
            point = (r["count"], v, v, v)
        elif key == "random_per_image":
            st, k = r["stats"]["random_s"], r["random_reads"]
            point = (r["count"], st["median"] / k, st["min"] / k, st["max"] / k)
        else:
            st = r["stats"][key]
            point = (r["count"], st["median"], st["min"], st["max"])
        out.setdefault(setting(r), []).append(point)
    return out


def plot_vs_count(results: dict[str, Any], dataset: str, key: str, ylabel: str, title: str) -> str:
    """Log-log plot of a figure against image count, one line per setting, min..max band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = ok_runs(results, dataset)
    series = _series(runs, key)
    style = _colours(list(series))
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for name, points in series.items():
        colour, line, marker = style[name]
        xs = [p[0] for p in points]
        ax.plot(xs, [p[1] for p in points], line, marker=marker, color=colour, label=name, lw=1.6, ms=4)
        if key != "bytes" and len(points) > 0:
            ax.fill_between(xs, [p[2] for p in points], [p[3] for p in points], color=colour, alpha=0.15, lw=0)
    if key == "bytes":
        raw = sorted({(r["count"], r["raw_bytes"]) for r in runs})
        ax.plot([c for c, _ in raw], [b for _, b in raw], color="black", lw=1, ls=(0, (1, 2)), label="raw pixels")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("number of images")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=11)
    ax.grid(True, which="both", alpha=0.25)
    ax.legend(fontsize=8, frameon=False)
    return _svg(fig)


def plot_throughput(results: dict[str, Any], dataset: str) -> str:
    """Bars of write / read-all throughput (MB/s of raw pixels) at the largest count."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    runs = sorted(largest(results, dataset), key=setting)
    names = [setting(r) for r in runs]
    write = [r["derived"]["write_MB_per_s"] or 0 for r in runs]
    read = [r["derived"]["read_MB_per_s"] or 0 for r in runs]
    y = np.arange(len(runs))
    fig, ax = plt.subplots(figsize=(6.4, 0.5 * len(runs) + 1.4))
    ax.barh(y - 0.2, write, height=0.38, color="#ff7f0e", label="write")
    ax.barh(y + 0.2, read, height=0.38, color="#1f77b4", label="read all")
    ax.set_yticks(y, names)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel("MB/s of raw pixels (log scale)")
    n = runs[0]["count"] if runs else 0
    ax.set_title(f"Throughput at {n} images", fontsize=11)
    ax.grid(True, axis="x", which="both", alpha=0.25)
    ax.legend(fontsize=8, frameon=False)
    return _svg(fig)


def plot_parallel(results: dict[str, Any], dataset: str) -> str:
    """Aggregate images/s against worker processes, one line per setting, each with its ideal (linear) line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = sorted(parallel_runs(results, dataset), key=setting)
    style = _colours([setting(r) for r in runs])
    workers = results["parallel_read"]["workers"]
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    plotted = False
    for r in runs:
        colour, line, marker = style[setting(r)]
        rows = [w for w in r["by_workers"] if w["images_per_s"]]
        if not rows:
            continue
        plotted = True
        xs = [w["workers"] for w in rows]
        ax.plot(xs, [w["images_per_s"] for w in rows], line, marker=marker, color=colour, label=setting(r),
                lw=1.6, ms=4)
        ax.fill_between(xs, [r["count"] / w["stats"]["max"] for w in rows],
                        [r["count"] / w["stats"]["min"] for w in rows], color=colour, alpha=0.15, lw=0)
        base = rows[0]
        ax.plot(xs, [base["images_per_s"] * x / base["workers"] for x in xs], color=colour, lw=0.9,
                ls=(0, (1, 2)))
    ax.plot([], [], color="black", lw=0.9, ls=(0, (1, 2)), label="ideal (linear)")
    ax.set_xticks(workers)
    if plotted:
        ax.set_yscale("log")
    else:
        ax.text(0.5, 0.5, "no exact read to plot", transform=ax.transAxes, ha="center", color="#b00")
    ax.set_xlabel("worker processes")
    ax.set_ylabel("images per second, all workers (log)")
    ax.set_title("Parallel read: aggregate images/s vs workers", fontsize=11)
    ax.grid(True, which="both", alpha=0.25)
    ax.legend(fontsize=8, frameon=False)
    return _svg(fig)

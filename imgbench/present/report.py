"""Presenting a comparison: terminal tables, plots, recommendation, report.html.

Everything here reads the results document made by :func:`imgbench.measure.compare.run`
(the same one saved as results.json), so a report can be rebuilt from a saved
file. The HTML report is one self-contained file: plots are inline SVG drawn by
matplotlib's Agg/SVG backend, styles inline, no scripts and no network.
"""

from __future__ import annotations

import html
import io
import json
import math
import os
from pathlib import Path
from typing import Any

#: Figures closer than this (relative) are called a tie: this is a noisy machine.
TIE = 0.10


# ------------------------------------------------------------------ helpers
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


def _median(run: dict[str, Any], key: str) -> float:
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


# ------------------------------------------------------------ recommendation
def _ratio_text(a: float, b: float) -> str:
    return f"{b / a:.1f}x" if a > 0 else "many times"


def recommend(results: dict[str, Any]) -> dict[str, list[str]]:
    """Plain-language findings per dataset, derived from the medians at the largest count."""
    out: dict[str, list[str]] = {}
    for name in dataset_names(results):
        runs = largest(results, name)
        if not runs:
            out[name] = ["no setting could store these images (see the notes)"]
            continue
        n = runs[0]["count"]
        lines = []

        def best(key: str, what: str, per_image: bool = False) -> dict[str, Any]:
            ranked = sorted(runs, key=lambda r: _median(r, key))
            first = ranked[0]
            ties = [r for r in ranked[1:] if _median(r, key) <= _median(first, key) * (1 + TIE)]
            value = _median(first, key)
            shown = fmt_time(value / first["random_reads"]) + " per image" if per_image else fmt_time(value)
            text = f"{what}: {setting(first)} ({shown} for {n} images"
            if per_image:
                text = f"{what}: {setting(first)} ({shown}"
            if len(ranked) > 1 and not ties:
                second = ranked[1]
                text += f", {_ratio_text(value, _median(second, key))} faster than the runner-up {setting(second)})"
            elif ties:
                text += f"; within {TIE:.0%} of it, i.e. a tie on this noisy machine: "
                text += ", ".join(setting(r) for r in ties) + ")"
            else:
                text += ")"
            lines.append(text)
            return first

        fast_read = best("read_s", "Fastest to read all")
        fast_write = best("write_s", "Fastest to write")
        best("random_s", "Fastest random access", per_image=True)
        by_size = sorted(runs, key=lambda r: r["disk"]["allocated"])
        small = by_size[0]
        raw = small["raw_bytes"]
        size_ties = [r for r in by_size[1:] if r["disk"]["allocated"] <= small["disk"]["allocated"] * (1 + TIE / 2)]
        text = (f"Smallest on disk: {setting(small)} ({fmt_bytes(small['disk']['allocated'])}, "
                f"{small['disk']['allocated'] / raw:.0%} of the {fmt_bytes(raw)} of raw pixels")
        if size_ties:
            text += "; about as small: " + ", ".join(setting(r) for r in size_ties)
        lines.append(text + ")")
        # Trade-offs: the fastest reader among the (nearly) smallest, against the fastest overall.
        compact = min([small, *size_ties], key=lambda r: _median(r, "read_s"))
        if setting(compact) == setting(fast_read):
            lines.append(f"No trade-off here: {setting(compact)} is both among the smallest and the fastest to read.")
        else:
            slower = _median(compact, "read_s") / _median(fast_read, "read_s")
            saved = 1 - compact["disk"]["allocated"] / fast_read["disk"]["allocated"]
            if slower <= 1 + TIE:
                lines.append(f"Best of both: {setting(compact)} is among the smallest and reads about as fast as "
                             f"{setting(fast_read)}.")
            elif saved > 0:
                lines.append(f"Trade-off: {setting(compact)} is the fastest of the smallest; it saves {saved:.0%} "
                             f"of the space of {setting(fast_read)} but reads {slower:.1f}x slower.")
        many = [r for r in runs if r["disk"]["files"] >= n]
        if many:
            names = ", ".join(sorted({setting(r) for r in many}))
            lines.append(
                f"Files: {names} {'keeps' if len(many) == 1 else 'keep'} one file per image ({many[0]['disk']['files']} files here); at millions "
                "of images that means inodes, slow listings and slow copies. The others keep a handful of files."
            )
        if fast_read["backend"] == fast_write["backend"]:
            lines.append(f"Overall for these images: {fast_read['backend']} (fastest both to write and to read).")
        bad = [r for r in ok_runs(results, name) if not r["exact"]]
        if bad:
            lines.append("WARNING: read-back differed from what was written for " +
                         ", ".join(sorted({setting(r) + " x" + str(r["count"]) for r in bad})))
        out[name] = lines
    return out


# ------------------------------------------------------------------ terminal
#: Printed once above the tables: what the short headers and the units mean.
LEGEND = ("Legend: write / read all = time to store / read back all images; random/img = time per image of "
          "random reads; on disk = bytes allocated; vs raw = on disk / raw pixel bytes; files = files in the "
          "store; peak mem w / r = peak memory writing / reading; exact = what was read equals what was "
          "written; ± = half the min-max spread of the repeats; setting = backend/compression.")

_SPEED = ("write", "read all", "random/img")
_SIZE = ("on disk", "vs raw", "files", "peak mem w / r")


def _fits(console, table) -> bool:
    """Whether ``table`` shows at its natural width (nothing wrapped or cut) on ``console``."""
    from rich.measure import Measurement

    unbounded = console.options.update(width=10_000, max_width=10_000)
    return Measurement.get(console, unbounded, table).maximum <= console.width


def _summary_cells(r: dict[str, Any]) -> dict[str, str]:
    st, d = r["stats"], r["derived"]
    mem = r.get("peak_memory") or {}
    return {
        "setting": setting(r),
        "write": fmt_time(st["write_s"]["median"]) + _spread(st["write_s"]),
        "read all": fmt_time(st["read_s"]["median"]) + _spread(st["read_s"]),
        "random/img": fmt_time(d["random_latency_us"] / 1e6),
        "on disk": fmt_bytes(r["disk"]["allocated"]),
        "vs raw": f"{d['size_ratio']:.0%}",
        "files": str(r["disk"]["files"]),
        "peak mem w / r": f"{fmt_bytes(mem.get('write'))} / {fmt_bytes(mem.get('read'))}",
        "exact": "yes" if r["exact"] else "[bold red]NO[/]",
    }


def _table(title: str, columns: tuple[str, ...], rows: list[dict[str, str]], width_of_setting: int,
           caption: str | None = None):
    """A table led by the setting and ended by the exact verdict; neither of them is ever cut or wrapped.

    The figures between may wrap (at a space) should the terminal be narrower than even the narrow layout.
    """
    from rich.table import Table

    table = Table(title=title, title_justify="left", caption=caption, caption_justify="left")
    table.add_column("setting", no_wrap=True, min_width=width_of_setting)
    for col in columns:
        table.add_column(col, justify="right")
    table.add_column("exact", justify="right", no_wrap=True, min_width=5)
    for cells in rows:
        table.add_row(cells["setting"], *(cells[c] for c in columns), cells["exact"])
    return table


def summary_tables(results: dict[str, Any], dataset: str, console=None) -> list:
    """Rich Tables of one dataset at its largest count, fastest read first.

    One table with every figure when it fits the console (about 118 columns); else two narrower ones with
    the same rows: times (write, read all, random/img) and space (on disk, vs raw, files, peak memory).
    """
    runs = sorted(largest(results, dataset), key=lambda r: _median(r, "read_s"))
    n = runs[0]["count"] if runs else 0
    title = (f"{dataset}: {n} images, medians of {results['config']['repeats']} "
             f"({results['config']['cache']} cache; ± half the spread)")
    rows = [_summary_cells(r) for r in runs]
    width = max([len("setting"), *(len(c["setting"]) for c in rows)])
    wide = _table(title, _SPEED + _SIZE, rows, width)
    if console is None or _fits(console, wide):
        return [wide]
    return [_table(f"{dataset}: {n} images, times (medians of {results['config']['repeats']}, "
                   f"{results['config']['cache']} cache)", _SPEED, rows, width),
            _table(f"{dataset}: {n} images, space and memory", _SIZE, rows, width)]


def summary_table(results: dict[str, Any], dataset: str):
    """A rich Table of one dataset at its largest count, fastest read first (every figure, wide)."""
    return summary_tables(results, dataset)[0]


def parallel_tables(results: dict[str, Any], dataset: str, console=None) -> list:
    """Rich Tables of the parallel reads of one dataset: images/s per worker count, best first.

    When all worker counts do not fit the console, they are split over several tables (each with the
    setting and the verdict); the speed-up goes with the last one.
    """
    runs = parallel_runs(results, dataset)
    section = results["parallel_read"]
    workers = section["workers"]
    title = (f"{dataset}: parallel read of {runs[0]['count']} images in {section['shards']} shards, "
             f"images/s (medians of {section['repeats']})")
    caption = (f"speed-up: {workers[-1]} vs {workers[0]} worker{'s' if workers[0] > 1 else ''}; "
               f"starting the processes took {section['startup_s']:.1f} s (not timed)")
    best = {id(r): max((w["images_per_s"] or 0 for w in r["by_workers"]), default=0) for r in runs}
    heads = {k: f"{k} worker{'s' if k > 1 else ''}" for k in workers}
    rows = []
    for r in sorted(runs, key=lambda r: -best[id(r)]):
        by = {w["workers"]: w for w in r["by_workers"]}
        cells = {heads[k]: fmt_rate(by[k]["images_per_s"]) + _spread(by[k]["stats"]) for k in workers}
        cells.update({"setting": setting(r), "speed-up": _parallel_cells(by[workers[-1]])[1],
                      "exact": "yes" if r["exact"] else "[bold red]NO[/]"})
        rows.append(cells)
    width = max([len("setting"), *(len(c["setting"]) for c in rows)])
    groups: list[list[str]] = [[]]
    for k in workers:
        trial = [*groups[-1], heads[k]]
        last = k == workers[-1]
        fits = console is None or _fits(console, _table(title, (*trial, "speed-up") if last else tuple(trial),
                                                        rows, width, caption))
        if fits or not groups[-1]:
            groups[-1] = trial
        else:
            groups.append([heads[k]])
    if console is not None and not _fits(console, _table(title, (*groups[-1], "speed-up"), rows, width, caption)) \
            and len(groups[-1]) > 1:
        groups.append([groups[-1].pop()])
    groups[-1].append("speed-up")
    if len(groups) == 1:
        return [_table(title, tuple(groups[0]), rows, width, caption)]
    return [_table(f"{title}, part {i} of {len(groups)}", tuple(g), rows, width,
                   caption if i == len(groups) else None) for i, g in enumerate(groups, 1)]


def parallel_table(results: dict[str, Any], dataset: str):
    """A rich Table of the parallel reads of one dataset: images/s per worker count, best first."""
    return parallel_tables(results, dataset)[0]


def _bullets(lines: list[str]):
    """Findings as a list with a hanging indent, so a wrapped line stays under its bullet."""
    from rich.table import Table
    from rich.text import Text

    grid = Table.grid(padding=(0, 1))
    grid.add_column(no_wrap=True)
    grid.add_column(overflow="fold")
    for line in lines:
        grid.add_row("  •", Text(line))  # plain text: no markup, no number highlighting (as before)
    return grid


def print_summary(results: dict[str, Any], console=None, out_dir: str | os.PathLike | None = None) -> None:
    """Tables and findings for the terminal, laid out for the console's width (readable from 80 columns)."""
    from rich.console import Console
    from rich.text import Text

    if console is None:
        console = Console()
        if not console.is_terminal:
            console = Console(width=max(console.width, 120))
    advice = recommend(results)
    console.print(Text(LEGEND, style="dim"))
    console.print()
    for name in dataset_names(results):
        for table in summary_tables(results, name, console):
            console.print(table)
        console.print(_bullets(advice.get(name, [])))
        console.print()
    skipped = [r for r in results["runs"] if r["status"] != "ok"]
    for name in dataset_names(results):
        if parallel_runs(results, name):
            for table in parallel_tables(results, name, console):
                console.print(table)
            console.print()
    for r in {(r["backend"], r["compression"], r["dataset"]): r for r in skipped}.values():
        console.print(f"[yellow]n/a[/] {r['dataset']} {setting(r)}: {r['reason']}", highlight=False)
    for note in results.get("notes", []):
        console.print(f"[yellow]note[/] {note}", highlight=False)
    if out_dir is not None:
        console.print(f"Report: {Path(out_dir) / 'report.html'}   raw figures: {Path(out_dir) / 'results.json'}",
                      highlight=False)


# --------------------------------------------------------------------- plots
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


def _parallel_table_html(runs: list[dict[str, Any]]) -> str:
    head = ("backend", "compression", "images", "shards", "workers", "images/s", "speed-up", "efficiency",
            "CPU cores per worker", "MB/s", "read time", "exact")
    rows = []
    for r in sorted(runs, key=setting):
        for w in r["by_workers"]:
            rate, speedup, efficiency, cores = _parallel_cells(w)
            rows.append(([r["backend"], r["compression"], str(r["count"]), str(r["shards"]), str(w["workers"]), rate,
                          speedup, efficiency, cores, "-" if w["MB_per_s"] is None else f"{w['MB_per_s']:.1f}",
                          fmt_time(w["stats"]["median"] if w["stats"] else None)], r["exact"]))
    return _html_table(head, rows, left=2)


def _parallel_html(results: dict[str, Any], dataset: str) -> str:
    """The parallel-read part of a dataset's section: what was done, the table, the problems."""
    runs = parallel_runs(results, dataset)
    section = results["parallel_read"]
    intro = (f"A sharded copy of the first {runs[0]['count']} images ({section['shards']} shards) read at once by "
             f"{', '.join(map(str, section['workers']))} worker processes, each opening the dataset itself and "
             f"reading a block of whole shards with read_many; time from a common start (barrier) to the last "
             f"worker done, medians of {section['repeats']}. Starting the {section['processes']} processes took "
             f"{section['startup_s']:.2f} s ({section['start_method']}), not included. Speed-up is against "
             f"{section['workers'][0]} worker{'s' if section['workers'][0] > 1 else ''}; CPU cores per worker "
             "above 1 means its codec already decodes on several threads.")
    problems = [m for r in runs for m in r["mismatches"]]
    bad = "".join(f"<li class=bad>{html.escape(m)}</li>" for m in problems[:20])
    bad = f"<ul>{bad}</ul>" if bad else ""
    return (f"<h3>Reading in parallel</h3><p class=muted>{html.escape(intro)}</p>{bad}"
            f"<div class=wide>{_parallel_table_html(runs)}</div>")


# ---------------------------------------------------------------------- HTML
_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1100px;color:#222;padding:0 1rem}
h1{font-size:1.6rem}h2{border-bottom:1px solid #ddd;padding-bottom:.2rem;margin-top:2.2rem}
table{border-collapse:collapse;margin:.8rem 0;font-size:.88rem}
th,td{border:1px solid #ddd;padding:.25rem .5rem;text-align:right;white-space:nowrap}th{background:#f4f4f4}
td.l,th.l{text-align:left}.bad{color:#b00;font-weight:bold}.muted{color:#666;font-size:.85rem}
.plots{display:flex;flex-wrap:wrap;gap:1rem}.plot{flex:1 1 480px;min-width:320px;max-width:540px}.wide{overflow-x:auto}.plot svg{width:100%;height:auto}
ul.advice li{margin:.3rem 0}code{background:#f4f4f4;padding:0 .2rem}
"""


def _table_html(runs: list[dict[str, Any]]) -> str:
    head = ("dataset", "images", "backend", "compression", "write", "read all", "random read", "write MB/s",
            "read MB/s", "on disk (allocated)", "apparent", "vs raw", "files", "peak mem write", "peak mem read",
            "exact")
    rows = []
    for r in sorted(runs, key=lambda r: (r["dataset"], r["count"], setting(r))):
        st, d, mem = r["stats"], r["derived"], r.get("peak_memory") or {}
        cells = [
            r["dataset"], str(r["count"]), r["backend"], r["compression"],
            fmt_time(st["write_s"]["median"]) + _spread(st["write_s"]),
            fmt_time(st["read_s"]["median"]) + _spread(st["read_s"]),
            f"{d['random_latency_us']:.0f} µs/img",
            f"{d['write_MB_per_s']:.1f}", f"{d['read_MB_per_s']:.1f}",
            fmt_bytes(r["disk"]["allocated"]), fmt_bytes(r["disk"]["apparent"]), f"{d['size_ratio']:.0%}",
            str(r["disk"]["files"]), fmt_bytes(mem.get("write")), fmt_bytes(mem.get("read")),
        ]
        rows.append((cells, r["exact"]))
    return _html_table(head, rows, left=4)


def _html_table(head: tuple[str, ...], rows: list[tuple[list[str], bool]], left: int) -> str:
    """A table whose first ``left`` columns are left-aligned text; each row ends with its exact yes / NO cell."""
    out = ["<tr>" + "".join(f"<th{' class=l' if i < left else ''}>{h}</th>" for i, h in enumerate(head)) + "</tr>"]
    for cells, exact in rows:
        tds = "".join(f"<td{' class=l' if i < left else ''}>{html.escape(c)}</td>" for i, c in enumerate(cells))
        tds += "<td>yes</td>" if exact else "<td class=bad>NO</td>"
        out.append(f"<tr>{tds}</tr>")
    return "<table>" + "".join(out) + "</table>"


def _kv_table(mapping: dict[str, Any]) -> str:
    rows = "".join(
        f"<tr><th class=l>{html.escape(str(k))}</th><td class=l>{html.escape(str(v))}</td></tr>"
        for k, v in mapping.items() if v is not None
    )
    return f"<table>{rows}</table>"


def render_html(results: dict[str, Any]) -> str:
    """The whole report as one self-contained HTML string."""
    esc = html.escape
    cfg = results["config"]
    parts = [
        "<!DOCTYPE html><html lang=en><head><meta charset=utf-8>",
        "<meta name=viewport content='width=device-width, initial-scale=1'>",
        "<title>imgbench compare report</title>",
        f"<style>{_CSS}</style></head><body>",
        "<h1>Which way of storing images is fastest and smallest on this machine?</h1>",
        f"<p class=muted>imgbench {esc(results['versions'].get('imgbench') or '')}, measured "
        f"{esc(results['created'])} on {esc(str(results['machine'].get('cpu')))} "
        f"({results['machine'].get('cores')} cores), {esc(cfg['cache'])} page cache, "
        f"medians of {cfg['repeats']} interleaved repeats; ± is half the min–max spread. "
        f"The run took {results['elapsed_s']:.0f} s.</p>",
        "<h2>Recommendation</h2>",
    ]
    advice = recommend(results)
    for ds in results["datasets"]:
        parts.append(f"<h3>{esc(ds['name'])} <span class=muted>— {esc(ds['about'])}</span></h3>")
        parts.append("<ul class=advice>" + "".join(f"<li>{esc(line)}</li>" for line in advice.get(ds["name"], []))
                     + "</ul>")
    for ds in results["datasets"]:
        name = ds["name"]
        if not ok_runs(results, name):
            continue
        parts.append(f"<h2>{esc(name)}: figures</h2>")
        parts.append(f"<p class=muted>{esc(ds['about'])}; counts {', '.join(map(str, ds['counts']))}; shapes: "
                     + esc(", ".join(f"{k} ({v})" for k, v in ds["shapes"].items())) + "</p>")
        plots = [
            plot_vs_count(results, name, "write_s", "seconds (log)", "Write time vs number of images"),
            plot_vs_count(results, name, "read_s", "seconds (log)", "Read-all time vs number of images"),
            plot_vs_count(results, name, "random_per_image", "seconds per image (log)",
                          "Random-read latency vs number of images"),
            plot_vs_count(results, name, "bytes", "bytes allocated on disk (log)", "Bytes on disk vs number of images"),
            plot_throughput(results, name),
        ]
        if parallel_runs(results, name):
            plots.append(plot_parallel(results, name))
        parts.append("<div class=plots>" + "".join(f"<div class=plot>{svg}</div>" for svg in plots) + "</div>")
        parts.append("<div class=wide>" + _table_html(ok_runs(results, name)) + "</div>")
        if parallel_runs(results, name):
            parts.append(_parallel_html(results, name))
    skipped = [r for r in results["runs"] if r["status"] != "ok"]
    notes = list(results.get("notes", []))
    notes += sorted({f"{r['dataset']} {setting(r)} not measured: {r['reason']}" for r in skipped})
    if notes:
        parts.append("<h2>Notes</h2><ul>" + "".join(f"<li>{esc(n)}</li>" for n in notes) + "</ul>")
    parts.append("<h2>How this was measured</h2>")
    parts.append(_kv_table({k: (v if not isinstance(v, dict) else v.get("detail")) for k, v in results["method"].items()}))
    parts.append("<h2>Machine and versions</h2>")
    parts.append("<div class=plots><div>" + _kv_table(results["machine"]) + "</div><div>"
                 + _kv_table(results["versions"]) + "</div></div>")
    parts.append("<p class=muted>All raw figures (every repeat) are in <code>results.json</code> next to this file."
                 "</p></body></html>")
    return "\n".join(parts)


def write(results: dict[str, Any], out_dir: str | os.PathLike) -> dict[str, Path]:
    """Write results.json and report.html into ``out_dir``; return their paths."""
    out = Path(os.fspath(out_dir)).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    json_path = out / "results.json"
    html_path = out / "report.html"
    json_path.write_text(json.dumps(results, indent=1, default=_jsonable, allow_nan=False) + "\n", encoding="utf-8")
    html_path.write_text(render_html(results), encoding="utf-8")
    return {"json": json_path, "html": html_path}


def _jsonable(value: Any) -> Any:
    import numpy as np

    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return None if math.isnan(value) else float(value)
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot store {type(value).__name__} in results.json")


def load(path: str | os.PathLike) -> dict[str, Any]:
    """Read a results.json back (to re-render a report)."""
    with open(path, encoding="utf-8") as f:
        return json.load(f)

"""The report's plots, drawn by matplotlib (Agg) as inline SVG.

Readable with 6+ backends x 2+ compressions: small multiples, one panel per backend, each showing
that backend's settings in its own colour (line style and marker by compression; solid = the
backend's default) over the other backends in faint grey for context. Spread is a thin whisker
(min..max of the repeats), never a filled band; the legend sits below the panels, outside the data;
axis ticks read 10, 100, 1k, 10k and 1 ms, 10 ms, 1 MB.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from typing import Any

from imgbench.present.figures import largest, ok_runs, parallel_runs, setting

#: one colour per backend (colour-blind-safe Okabe-Ito first, then Tableau), in order of appearance
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#8c564b", "#7f7f7f", "#bcbd22",
           "#17becf")
LINE_STYLES = ("-", "--", ":", "-.")
MARKERS = ("o", "s", "^", "D")
CONTEXT_GREY = "#d0d0d0"


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    matplotlib.rcParams["svg.fonttype"] = "none"  # fonts left to the browser: small files
    import matplotlib.pyplot as plt

    return plt


def _svg(fig) -> str:
    """Inline SVG text of ``fig`` (closed afterwards)."""
    plt = _plt()
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight")
    plt.close(fig)
    text = buf.getvalue()
    return text[text.index("<svg"):]


def styles(settings: list[str]) -> dict[str, tuple[str, str, str]]:
    """(colour, line style, marker) per setting: colour by backend, style and marker by compression, in
    the order each backend's settings appear (its default first)."""
    backends = list(dict.fromkeys(s.split("/")[0] for s in settings))
    seen: dict[str, int] = {}
    out = {}
    for s in settings:
        b = s.split("/")[0]
        k = seen.get(b, 0)
        seen[b] = k + 1
        out[s] = (PALETTE[backends.index(b) % len(PALETTE)], LINE_STYLES[k % len(LINE_STYLES)],
                  MARKERS[k % len(MARKERS)])
    return out


def human_count(value: float, _pos: Any = None) -> str:
    """10, 100, 1k, 10k, 1M: counts as people say them."""
    if value <= 0:
        return ""
    for unit, size in (("M", 1e6), ("k", 1e3)):
        if value >= size:
            return f"{value / size:g}{unit}"
    return f"{value:g}"


def human_seconds(value: float, _pos: Any = None) -> str:
    """1 µs, 10 ms, 1 s."""
    if value <= 0:
        return ""
    for unit, size in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)):
        if value >= size * 0.999:
            return f"{value / size:.3g} {unit}"
    return f"{value * 1e9:.3g} ns"


def human_bytes(value: float, _pos: Any = None) -> str:
    """1 kB, 10 MB, 1 GB."""
    if value <= 0:
        return ""
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if value >= size * 0.999:
            return f"{value / size:.3g} {unit}"
    return f"{value:.3g} B"


def human_rate(value: float, _pos: Any = None) -> str:
    """Images per second: 100, 10k, 1M."""
    return human_count(value)


def _log_axis(axis, formatter: Callable[[float, Any], str], ticks: list[float] | None = None) -> None:
    """A log axis with labels at the decades (or at ``ticks``) in human units, no minor labels."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    if ticks is not None:
        axis.set_ticks(ticks)
    else:
        axis.set_major_locator(LogLocator(base=10))
    axis.set_major_formatter(FuncFormatter(formatter))
    axis.set_minor_formatter(NullFormatter())


def _count_ticks(counts: list[int]) -> list[float]:
    """The measured counts when few (10 and 13 read as such), else the decades they span."""
    counts = sorted(set(counts))
    if len(counts) <= 6:
        return [float(c) for c in counts]
    lo, hi = math.floor(math.log10(counts[0])), math.ceil(math.log10(counts[-1]))
    return [10.0 ** k for k in range(lo, hi + 1)]


def series(runs: list[dict[str, Any]], key: str) -> dict[str, list[tuple[int, float, float, float]]]:
    """Per setting: (count, median, min, max) of one figure, by count."""
    out: dict[str, list[tuple[int, float, float, float]]] = {}
    for r in sorted(runs, key=lambda r: r["count"]):
        if key == "bytes":
            v = float(r["disk"]["allocated"])
            point = (r["count"], v, v, v)
        elif key == "random_per_image":
            st, k = r["stats"]["random_s"], r["random_reads"]
            if st is None:  # a peer without random access (n/a): no point
                continue
            point = (r["count"], st["median"] / k, st["min"] / k, st["max"] / k)
        else:
            st = r["stats"][key]
            point = (r["count"], st["median"], st["min"], st["max"])
        out.setdefault(setting(r), []).append(point)
    return out


def _panels(n: int, width: float = 10.5, panel_height: float = 2.3):
    """A grid of small panels sharing both axes: up to 3 per row."""
    plt = _plt()
    cols = min(3, max(n, 1))
    rows = math.ceil(max(n, 1) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(width, panel_height * rows + 1.2), sharex=True, sharey=True,
                             squeeze=False)
    flat = [ax for row in axes for ax in row]
    for ax in flat[n:]:
        ax.set_visible(False)
    return fig, flat[:n]


def _compression_legend(fig, settings: list[str], style: dict[str, tuple[str, str, str]], extra: list = ()) -> None:
    """One legend below the panels, outside the data: every setting, then the context lines."""
    from matplotlib.lines import Line2D

    handles, labels = [], []
    for s in settings:
        colour, line, marker = style[s]
        handles.append(Line2D([], [], color=colour, ls=line, marker=marker, lw=1.6, ms=4))
        labels.append(s)
    handles += [h for h, _ in extra]
    labels += [lab for _, lab in extra]
    fig.legend(handles, labels, loc="outside lower center", ncol=min(6, len(labels)), fontsize=8, frameon=False)


def small_multiples(by_setting: dict[str, list[tuple[float, float, float, float]]], title: str, ylabel: str,
                    xlabel: str, yformat: Callable[[float, Any], str], xticks: list[float] | None,
                    xformat: Callable[[float, Any], str] = human_count, logx: bool = True,
                    reference: tuple[str, list[tuple[float, float]]] | None = None, ideal: bool = False) -> str:
    """One panel per backend over (x, median, min, max) points per setting; whiskers for min..max.
    ``ideal``: also a dotted line per setting growing linearly in x from its first point (perfect scaling)."""
    settings = list(by_setting)
    style = styles(settings)
    backends = list(dict.fromkeys(s.split("/")[0] for s in settings))
    fig, axes = _panels(len(backends))
    fig.set_layout_engine("constrained")
    for ax, backend in zip(axes, backends, strict=True):
        for s, points in by_setting.items():  # context: every other setting in faint grey, drawn first
            if s.split("/")[0] != backend:
                ax.plot([p[0] for p in points], [p[1] for p in points], color=CONTEXT_GREY, lw=0.9, zorder=1)
        for s, points in by_setting.items():
            if s.split("/")[0] != backend:
                continue
            colour, line, marker = style[s]
            xs, ys = [p[0] for p in points], [p[1] for p in points]
            lower = [max(p[1] - p[2], 0) for p in points]
            upper = [max(p[3] - p[1], 0) for p in points]
            ax.errorbar(xs, ys, yerr=[lower, upper], color=colour, ls=line, marker=marker, lw=1.6, ms=4,
                        elinewidth=0.8, capsize=2, zorder=3)
            if ideal:
                ax.plot(xs, [ys[0] * x / xs[0] for x in xs], color=colour, lw=0.9, ls=(0, (1, 2)), zorder=2)
        if reference is not None:
            ax.plot([x for x, _ in reference[1]], [y for _, y in reference[1]], color="black", lw=0.9,
                    ls=(0, (1, 2)), zorder=2)
        ax.set_title(backend, fontsize=10, color=style[next(s for s in settings if s.startswith(backend + "/"))][0])
        if logx:
            ax.set_xscale("log")
        ax.set_yscale("log")
        ax.grid(True, which="major", alpha=0.3)
        ax.tick_params(labelsize=8)
    if axes:
        if logx:
            _log_axis(axes[0].xaxis, xformat, xticks)
        elif xticks is not None:
            axes[0].set_xticks(xticks)
        _log_axis(axes[0].yaxis, yformat)
    for ax in axes[-min(3, len(axes)):]:  # the bottom row (legend below it, outside the data)
        ax.set_xlabel(xlabel, fontsize=8)
    fig.supylabel(ylabel, fontsize=9)
    fig.suptitle(title, fontsize=11)
    from matplotlib.lines import Line2D

    extra = [(Line2D([], [], color=CONTEXT_GREY, lw=0.9), "other backends")]
    if reference is not None or ideal:
        extra.append((Line2D([], [], color="black", lw=0.9, ls=(0, (1, 2))),
                      reference[0] if reference is not None else "ideal (linear)"))
    _compression_legend(fig, settings, style, extra)
    return _svg(fig)


def plot_vs_count(results: dict[str, Any], dataset: str, key: str, ylabel: str, title: str) -> str:
    """A figure against image count: one panel per backend, whiskers for the repeats' min..max."""
    runs = ok_runs(results, dataset)
    by = series(runs, key)
    yformat = human_bytes if key == "bytes" else human_seconds
    reference = None
    if key == "bytes":
        reference = ("raw pixels", sorted({(r["count"], float(r["raw_bytes"])) for r in runs}))
    return small_multiples(by, title, ylabel, "number of images", yformat, _count_ticks([r["count"] for r in runs]),
                           reference=reference)


def plot_throughput(results: dict[str, Any], dataset: str) -> str:
    """Bars of write and read-all throughput (MB/s of raw pixels) at the largest count, colour by backend."""
    plt = _plt()
    import numpy as np

    runs = sorted(largest(results, dataset), key=setting)
    names = [setting(r) for r in runs]
    style = styles(names)
    y = np.arange(len(runs))
    fig, axes = plt.subplots(1, 2, figsize=(10.5, 0.32 * len(runs) + 1.6), sharey=True, layout="constrained")
    for ax, key, label in ((axes[0], "write_MB_per_s", "write"), (axes[1], "read_MB_per_s", "read all")):
        values = [r["derived"][key] or 0 for r in runs]
        colours = [style[n][0] for n in names]
        hatches = ["" if style[n][1] == "-" else "///" for n in names]
        for i, (v, c, h) in enumerate(zip(values, colours, hatches, strict=True)):
            ax.barh(y[i], v, height=0.7, color=c if not h else "white", edgecolor=c, hatch=h, lw=1)
        ax.set_xscale("log")
        _log_axis(ax.xaxis, lambda v, _p=None: f"{v:g}")
        ax.set_title(f"{label}, MB/s of raw pixels (log)", fontsize=10)
        ax.grid(True, axis="x", which="major", alpha=0.3)
        ax.tick_params(labelsize=8)
    axes[0].set_yticks(y, names)
    axes[0].invert_yaxis()
    n = runs[0]["count"] if runs else 0
    fig.suptitle(f"Throughput at {human_count(n)} images (hatched = compressed setting)", fontsize=11)
    return _svg(fig)


def plot_parallel(results: dict[str, Any], dataset: str) -> str:
    """Aggregate images/s against worker processes: one panel per backend, whiskers for the repeats."""
    runs = sorted(parallel_runs(results, dataset), key=setting)
    workers = results["parallel_read"]["workers"]
    by: dict[str, list[tuple[float, float, float, float]]] = {}
    for r in runs:
        rows = [w for w in r["by_workers"] if w["images_per_s"]]
        if rows:
            by[setting(r)] = [(w["workers"], w["images_per_s"], r["count"] / w["stats"]["max"],
                               r["count"] / w["stats"]["min"]) for w in rows]
    if not by:
        plt = _plt()
        fig, ax = plt.subplots(figsize=(6.4, 2.5))
        ax.text(0.5, 0.5, "no exact read to plot", transform=ax.transAxes, ha="center", color="#b00")
        ax.set_axis_off()
        return _svg(fig)
    return small_multiples(by, "Parallel read: aggregate images/s vs workers", "images per second, all "
                           "workers (log)", "worker processes", human_rate, [float(w) for w in workers],
                           xformat=lambda v, _p=None: f"{v:g}", logx=False, ideal=True)

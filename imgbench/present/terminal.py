"""compare's terminal output: tables laid out for the console's width (readable from 80 columns)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from imgbench.present.figures import (
    _parallel_cells,
    _spread,
    dataset_names,
    fmt_bytes,
    fmt_rate,
    fmt_time,
    largest,
    median,
    parallel_runs,
    setting,
)
from imgbench.present.recommend import TIE, recommend

#: Printed once above the tables: what the short headers and the units mean.
LEGEND = ("Legend: write / read all = time to store / read back all images; random/img = time per image of "
          "random reads; on disk = bytes allocated; vs raw = on disk / raw pixel bytes; files = files in the "
          "store; peak mem w / r = peak memory writing / reading; exact = what was read equals what was "
          "written; ± = half the min-max spread of the repeats; setting = backend/compression; a tie = repeats "
          f"that overlap, or medians within {TIE:.0%}.")

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
        "random/img": "n/a" if d["random_latency_us"] is None else fmt_time(d["random_latency_us"] / 1e6),
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
    runs = sorted(largest(results, dataset), key=lambda r: median(r, "read_s"))
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


def stdout_console():
    """The console compare prints its result to: the terminal's width, or 120 columns into a file."""
    from rich.console import Console

    console = Console()
    return console if console.is_terminal else Console(width=max(console.width, 120))


def print_dataset(results: dict[str, Any], name: str, console, legend: bool = False,
                  advice: dict[str, list[str]] | None = None) -> None:
    """One dataset's tables and findings (with the legend above them when ``legend``); ``advice`` is
    :func:`recommend` of ``results`` when the caller has it already."""
    from rich.text import Text

    if legend:
        console.print(Text(LEGEND, style="dim"))
        console.print()
    for table in summary_tables(results, name, console):
        console.print(table)
    console.print(_bullets((recommend(results) if advice is None else advice).get(name, [])))
    console.print()


class DatasetPrinter:
    """compare's ``on_dataset`` callback: prints each dataset's tables as soon as it is measured (the
    first within seconds of the start, not after the whole run), pausing the progress bar meanwhile."""

    def __init__(self, console=None, pause=None):
        self.console = console or stdout_console()
        self.pause = pause
        self.shown: list[str] = []

    def __call__(self, results: dict[str, Any], name: str) -> None:
        from contextlib import nullcontext

        with (self.pause() if self.pause else nullcontext()):
            print_dataset(results, name, self.console, legend=not self.shown)
            self.console.file.flush()
        self.shown.append(name)


def print_summary(results: dict[str, Any], console=None, out_dir: str | os.PathLike | None = None,
                  shown: list[str] | tuple[str, ...] = ()) -> None:
    """Tables and findings for the terminal, laid out for the console's width (readable from 80 columns);
    datasets in ``shown`` were printed already (:class:`DatasetPrinter`) and are not repeated."""
    console = console or stdout_console()
    advice = recommend(results)
    for k, name in enumerate(n for n in dataset_names(results) if n not in shown):
        print_dataset(results, name, console, legend=k == 0 and not shown, advice=advice)
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

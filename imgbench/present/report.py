"""The HTML report of a comparison (report.html) and results.json; re-exports the terminal summary,
the recommendation and the plots (:mod:`~imgbench.present.terminal`, :mod:`~imgbench.present.recommend`,
:mod:`~imgbench.present.plots`) under their old names here.

Everything here reads the results document made by :func:`imgbench.measure.compare.run`
(the same one saved as results.json), so a report can be rebuilt from a saved
file. The HTML report is one self-contained file: plots are inline SVG drawn by
matplotlib's Agg/SVG backend, styles inline, no scripts and no network.
"""

from __future__ import annotations

import html
import json
import math
import os
from pathlib import Path
from typing import Any

from imgbench.present.figures import (  # noqa: F401 - the names report.* had
    _parallel_cells,
    _spread,
    dataset_names,
    fmt_bytes,
    fmt_rate,
    fmt_time,
    largest,
    median,
    ok_runs,
    parallel_runs,
    setting,
)
from imgbench.present.plots import plot_parallel, plot_throughput, plot_vs_count
from imgbench.present.recommend import TIE, recommend  # noqa: F401
from imgbench.present.terminal import (  # noqa: F401
    LEGEND,
    _summary_cells,
    parallel_table,
    parallel_tables,
    print_summary,
    summary_table,
    summary_tables,
)


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
table{border-collapse:collapse;margin:.8rem 0;font-size:.85rem}
th,td{border:1px solid #ddd;padding:.25rem .45rem;text-align:right;white-space:nowrap}
th{background:#f4f4f4;white-space:normal;vertical-align:bottom}
td.l,th.l{text-align:left}.bad{color:#b00;font-weight:bold}.muted{color:#666;font-size:.85rem}
table.kv td{white-space:normal;overflow-wrap:anywhere;text-align:left}table.kv{max-width:100%}
.plot{margin:1rem 0}.plot svg{width:100%;height:auto;max-width:100%}
.side{display:flex;flex-wrap:wrap;gap:1rem}.side>div{flex:1 1 420px;min-width:0}
.wide{overflow-x:auto}
ul.advice li{margin:.3rem 0}code{background:#f4f4f4;padding:0 .2rem}
"""


def _tables_html(runs: list[dict[str, Any]]) -> str:
    """Every figure of every run, in two tables that fit 1280 px: times, then space and memory."""
    ordered = sorted(runs, key=lambda r: (r["count"], setting(r)))
    times, space = [], []
    for r in ordered:
        st, d, mem = r["stats"], r["derived"], r.get("peak_memory") or {}
        lead = [str(r["count"]), r["backend"], r["compression"]]
        times.append((lead + [
            fmt_time(st["write_s"]["median"]) + _spread(st["write_s"]),
            fmt_time(st["read_s"]["median"]) + _spread(st["read_s"]),
            "n/a" if d["random_latency_us"] is None else f"{d['random_latency_us']:.0f} µs",
            f"{d['write_MB_per_s']:.1f}", f"{d['read_MB_per_s']:.1f}",
        ], r["exact"]))
        space.append((lead + [
            fmt_bytes(r["disk"]["allocated"]), fmt_bytes(r["disk"]["apparent"]), f"{d['size_ratio']:.0%}",
            str(r["disk"]["files"]), fmt_bytes(mem.get("write")), fmt_bytes(mem.get("read")),
        ], r["exact"]))
    lead = ("images", "backend", "compression")
    return ("<h3>Times</h3>" + _html_table((*lead, "write", "read all", "random read per image", "write MB/s",
                                             "read MB/s", "exact"), times, left=3)
            + "<h3>Space and memory</h3>" + _html_table((*lead, "on disk (allocated)", "apparent size", "vs raw",
                                                          "files", "peak memory writing", "peak memory reading",
                                                          "exact"), space, left=3))


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
    return f"<table class=kv>{rows}</table>"


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
        parts.append("".join(f"<div class=plot>{svg}</div>" for svg in plots))
        parts.append("<div class=wide>" + _tables_html(ok_runs(results, name)) + "</div>")
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
    parts.append("<div class=side><div>" + _kv_table(results["machine"]) + "</div><div>"
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

"""Backend-vs-backend page from committed asv results (the view the stock asv dashboard lacks).

The stock dashboard plots one benchmark across commits. This page takes, for each
machine under ``results/``, the newest commit with results and puts the backends
side by side for each operation (asv benchmark), image shape and count: one table
per operation and shape (rows = image count, columns = backend / compression) and
an inline SVG plot (value against image count, log-log, one line per backend and
compression). The page is one self-contained HTML file: no scripts, no network.

It reads asv's JSON result files directly (``results/benchmarks.json`` and
``results/<machine>/<commit>-<env>.json``, format version 2), so it needs neither
asv nor the repository.
"""

from __future__ import annotations

import ast
import html
import itertools
import json
import math
import os
from collections import defaultdict
from pathlib import Path
from typing import Any

__all__ = ["load", "render", "write"]

#: colours per backend (cycled for backends added later)
_PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"]
_DASHES = ["", "6,3", "2,2", "8,3,2,3"]


def _literal(text: str) -> Any:
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def _latest_results(machine_dir: Path) -> list[dict]:
    """Result files of the newest commit (by commit date) on one machine, one per environment."""
    files = []
    for path in sorted(machine_dir.glob("*.json")):
        if path.name == "machine.json":
            continue
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if "results" in data and "commit_hash" in data:
            files.append(data)
    if not files:
        return []
    newest = max(files, key=lambda d: (d.get("date") or 0))
    return [d for d in files if d["commit_hash"] == newest["commit_hash"]]


def load(results: str | os.PathLike) -> dict:
    """Collect, per machine, the newest commit's values keyed by benchmark and parameters.

    Returns ``{"benchmarks": {name: meta}, "machines": {machine: {"commit", "date",
    "values": {name: [(params_dict, value), ...]}}}}``. Only benchmarks whose first
    parameter is ``backend`` are kept.
    """
    root = Path(results)
    meta_path = root / "benchmarks.json"
    if not meta_path.exists():
        raise FileNotFoundError(f"no asv benchmarks.json in {root}: run `asv run` first")
    meta = json.loads(meta_path.read_text())
    benchmarks = {
        name: m
        for name, m in meta.items()
        if isinstance(m, dict) and m.get("param_names") and m["param_names"][0] == "backend"
    }
    machines: dict[str, dict] = {}
    for machine_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        latest = _latest_results(machine_dir)
        if not latest:
            continue
        values: dict[str, list] = defaultdict(list)
        for data in latest:
            columns = data.get("result_columns") or ["result", "params"]
            for name, row in data["results"].items():
                if name not in benchmarks:
                    continue
                entry = dict(zip(columns, row))
                result, params = entry.get("result"), entry.get("params")
                if not params or result is None:
                    continue
                names = benchmarks[name]["param_names"]
                combos = list(itertools.product(*[[_literal(v) for v in p] for p in params]))
                for combo, value in zip(combos, result):
                    if value is None or (isinstance(value, float) and math.isnan(value)):
                        continue
                    values[name].append((dict(zip(names, combo)), float(value)))
        machines[machine_dir.name] = {
            "commit": latest[0]["commit_hash"],
            "date": latest[0].get("date"),
            "env": [d.get("env_name", "") for d in latest],
            "values": dict(values),
        }
    return {"benchmarks": benchmarks, "machines": machines}


# --------------------------------------------------------------------------- formatting


def _fmt(value: float, unit: str) -> str:
    if unit == "seconds":
        for scale, suffix in ((1, "s"), (1e-3, "ms"), (1e-6, "µs"), (1e-9, "ns")):
            if abs(value) >= scale or scale == 1e-9:
                return f"{value / scale:.3g} {suffix}"
    if unit == "bytes":
        for scale, suffix in ((2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB")):
            if abs(value) >= scale:
                return f"{value / scale:.3g} {suffix}"
        return f"{value:.0f} B"
    if unit == "files":
        return f"{value:,.0f}"
    return f"{value:.3g}"


def _svg(title: str, series: dict[tuple[str, str], dict[int, float]], unit: str, colours: dict[str, str]) -> str:
    """Log-log line plot of value against count, one polyline per (backend, compression)."""
    w, h, left, right, top, bottom = 560, 300, 70, 150, 24, 40
    points = [(c, v) for s in series.values() for c, v in s.items() if v > 0 and c > 0]
    if not points:
        return ""
    xs = sorted({c for c, _ in points})
    vmin, vmax = min(v for _, v in points), max(v for _, v in points)
    ylo, yhi = math.log10(vmin), math.log10(vmax)
    xlo, xhi = math.log10(xs[0]), math.log10(xs[-1])
    if xhi == xlo:
        xlo, xhi = xlo - 0.5, xhi + 0.5
    pw, ph = w - left - right, h - top - bottom

    def px(c: float) -> float:
        return left + (math.log10(c) - xlo) / (xhi - xlo) * pw

    def py(v: float) -> float:
        return top + (yhi - math.log10(v)) / (yhi - ylo) * ph

    out = [
        f'<svg class="plot" xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" '
        f'viewBox="0 0 {w} {h}" role="img" aria-label="{html.escape(title)}">',
        f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="#fff" stroke="#999"/>',
    ]
    # tight log range; ticks at 1-2-5 steps when it spans few decades
    ylo, yhi = math.log10(vmin) - 0.05, math.log10(vmax) + 0.05
    if yhi - ylo < 0.5:
        mid = (yhi + ylo) / 2
        ylo, yhi = mid - 0.25, mid + 0.25
    steps = (1, 2, 5) if yhi - ylo <= 3 else (1,)
    ticks = [m * 10.0**e for e in range(math.floor(ylo), math.ceil(yhi) + 1) for m in steps]
    for t in ticks:
        if not ylo <= math.log10(t) <= yhi:
            continue
        y = py(t)
        out.append(f'<line x1="{left}" x2="{left + pw}" y1="{y:.1f}" y2="{y:.1f}" stroke="#eee"/>')
        out.append(
            f'<text x="{left - 4}" y="{y + 4:.1f}" font-size="10" text-anchor="end">{html.escape(_fmt(t, unit))}</text>'
        )
    for c in xs:
        x = px(c)
        out.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top}" y2="{top + ph}" stroke="#eee"/>')
        out.append(f'<text x="{x:.1f}" y="{top + ph + 14}" font-size="10" text-anchor="middle">{c:,}</text>')
    out.append(f'<text x="{left + pw / 2}" y="{h - 6}" font-size="11" text-anchor="middle">images</text>')
    legend_y = top + 6
    comp_index: dict[str, dict[str, int]] = defaultdict(dict)
    for (backend, comp), data in sorted(series.items()):
        colour = colours[backend]
        dash = _DASHES[comp_index[backend].setdefault(comp, len(comp_index[backend])) % len(_DASHES)]
        pts = [(px(c), py(v)) for c, v in sorted(data.items()) if v > 0 and c > 0]
        if not pts:
            continue
        dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
        if len(pts) > 1:
            path = " ".join(f"{x:.1f},{y:.1f}" for x, y in pts)
            out.append(f'<polyline class="series" points="{path}" fill="none" stroke="{colour}" stroke-width="2"{dash_attr}/>')
        for x, y in pts:
            out.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{colour}"/>')
        lx = left + pw + 10
        out.append(f'<line x1="{lx}" x2="{lx + 24}" y1="{legend_y}" y2="{legend_y}" stroke="{colour}" stroke-width="2"{dash_attr}/>')
        out.append(f'<text x="{lx + 28}" y="{legend_y + 4}" font-size="11">{html.escape(backend)} {html.escape(comp)}</text>')
        legend_y += 16
    out.append("</svg>")
    return "\n".join(out)


_CSS = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }
h1 { font-size: 1.5em; } h2 { margin-top: 2em; border-bottom: 1px solid #ccc; } h3 { margin-top: 1.5em; }
table { border-collapse: collapse; margin: 0.5em 0 1em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: right; }
th { background: #f3f3f3; } td.best { font-weight: bold; background: #eef7ee; }
.doc { color: #555; max-width: 60em; white-space: pre-wrap; font-size: 0.9em; }
.note { color: #555; }
"""


def _operation_sections(name: str, meta: dict, values: list, colours: dict[str, str]) -> list[str]:
    names = meta["param_names"]
    unit = meta.get("unit", "")
    lower_is_better = not name.rsplit(".", 1)[-1].startswith("track_compression_ratio")
    group_keys = [n for n in names if n not in ("backend", "count", "compression")]
    groups: dict[tuple, list] = defaultdict(list)
    for params, value in values:
        groups[tuple(params.get(k) for k in group_keys)].append((params, value))
    parts = []
    for key, rows in sorted(groups.items(), key=lambda kv: str(kv[0])):
        label = ", ".join(f"{k} {v}" for k, v in zip(group_keys, key))
        columns = sorted({(p["backend"], p.get("compression", "")) for p, _ in rows})
        counts = sorted({p.get("count", 0) for p, _ in rows})
        table: dict[tuple, dict[int, float]] = defaultdict(dict)
        for p, v in rows:
            table[(p["backend"], p.get("compression", ""))][p.get("count", 0)] = v
        head1 = "".join(
            f'<th colspan="{sum(1 for c in columns if c[0] == b)}">{html.escape(b)}</th>'
            for b in sorted({c[0] for c in columns})
        )
        head2 = "".join(f"<th>{html.escape(c[1] or '-')}</th>" for c in columns)
        body = []
        for count in counts:
            cells = [table[c].get(count) for c in columns]
            present = [v for v in cells if v is not None]
            best = (min(present) if lower_is_better else max(present)) if present else None
            tds = "".join(
                "<td>-</td>"
                if v is None
                else f'<td{" class=best" if v == best and len(present) > 1 else ""}>{html.escape(_fmt(v, unit))}</td>'
                for v in cells
            )
            body.append(f"<tr><th>{count:,}</th>{tds}</tr>")
        parts.append(f"<h3>{html.escape(label or 'all')}</h3>")
        parts.append(
            f'<table class="side-by-side"><tr><th rowspan="2">images</th>{head1}</tr><tr>{head2}</tr>{"".join(body)}</table>'
        )
        if len(counts) > 1:
            parts.append(_svg(f"{name} {label}", table, unit, colours))
    return parts


_MODULE_ORDER = ("bench_write", "bench_read", "bench_read_cold", "bench_size", "bench_sweep")


def _operation_order(name: str) -> tuple:
    module = name.split(".", 1)[0]
    rank = _MODULE_ORDER.index(module) if module in _MODULE_ORDER else len(_MODULE_ORDER)
    return (rank, name)


def render(data: dict, title: str = "imgbench: backends side by side") -> str:
    """The HTML page for :func:`load`'s data."""
    benchmarks, machines = data["benchmarks"], data["machines"]
    all_backends = sorted({p["backend"] for m in machines.values() for vs in m["values"].values() for p, _ in vs})
    colours = {b: _PALETTE[i % len(_PALETTE)] for i, b in enumerate(all_backends)}
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        '<p class="note"><a href="index.html">&larr; asv dashboard</a>. For each machine, the newest '
        "commit with results; lower is better except the compression ratio. The best value of each "
        "row is in bold. Times are asv's median per call. Compare backends within one machine only.</p>",
    ]
    if not machines:
        parts.append("<p>No results yet: run <code>asv run</code>.</p>")
    for machine, info in sorted(machines.items()):
        parts.append(f'<h2 id="machine-{html.escape(machine)}">Machine {html.escape(machine)}</h2>')
        parts.append(
            f'<p class="note">commit {html.escape(info["commit"][:10])}; environment '
            f'{html.escape(", ".join(info["env"]))}</p>'
        )
        toc = []
        body = []
        for name in sorted(info["values"], key=_operation_order):
            meta = benchmarks[name]
            anchor = f"{machine}-{name}"
            toc.append(f'<li><a href="#{html.escape(anchor)}">{html.escape(name)}</a></li>')
            body.append(f'<h2 id="{html.escape(anchor)}" class="operation">{html.escape(name)} ({html.escape(meta.get("unit", ""))})</h2>')
            doc = (meta.get("docstring") or meta.get("pretty_source") or "").strip()
            if meta.get("docstring"):
                body.append(f'<div class="doc">{html.escape(doc)}</div>')
            body.extend(_operation_sections(name, meta, info["values"][name], colours))
        parts.append(f"<ul>{''.join(toc)}</ul>")
        parts.extend(body)
    parts.append("</body></html>")
    return "\n".join(parts)


def write(results: str | os.PathLike, out: str | os.PathLike) -> Path:
    """Write the page to ``out`` (a file path); returns it."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render(load(results)), encoding="utf-8")
    return out

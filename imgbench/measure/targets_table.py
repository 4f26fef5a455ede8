"""The targets results as a table: plain text for the terminal, GitHub markdown for the README.

Everything is computed from the results document (:func:`imgbench.measure.targets.run`),
so a saved JSON file prints the same table.
"""

from __future__ import annotations

import os
from typing import Any

from imgbench.measure import sections
from imgbench.measure.targets_rows import PILLOW_LOOP, Row, row_from_dict, target_text


def _seconds(s: float) -> str:
    if s >= 1:
        return f"{s:.2f} s"
    if s >= 1e-3:
        return f"{s * 1e3:.3g} ms"
    return f"{s * 1e6:.3g} µs"


def _figure(row: Row) -> str:
    if row.kind == "speedup":
        return f"{row.figure:.2f}x faster"
    if row.kind == "us":
        return f"{row.figure:.1f} µs/image ({row.ratio:.1f}x raw)"
    return f"{row.ratio:.2f}x"


_OPS = {"read_all": "read all", "write": "write", "random_loop": "random s[i] loop",
        "random_many": "random read_many"}


def _operation(row: Row) -> str:
    text = f"{row.backend} {row.compression} {_OPS.get(row.operation, row.operation)}"
    return text + (" (cold)" if row.cache == "cold" else "")


def _reference_name(row: Row) -> str:
    return "Pillow loop" if row.reference == PILLOW_LOOP else "raw .npy"


COLUMNS = ("operation", "images", "imgbench median", "reference median", "ratio / latency", "target", "result")


def table_rows(doc: dict[str, Any]) -> list[tuple[str, ...]]:
    """The table's cells, one tuple per row (derived figures recomputed from the samples)."""
    cells = []
    for data in doc["rows"]:
        row = row_from_dict(data)
        cells.append((
            _operation(row),
            (f"{row.images:,} of {row.store_images:,}" if row.store_images else f"{row.images:,}") + f" x {row.shape}",
            _seconds(row.imgbench_median),
            f"{_seconds(row.reference_median)} ({_reference_name(row)})",
            _figure(row),
            target_text(row.kind, row.threshold),
            row.verdict,
        ))
    return cells


def header_lines(doc: dict[str, Any]) -> list[str]:
    m, cfg = doc["machine"], doc["config"]
    lines = [
        f"imgbench targets -- {doc['created']}, {doc['elapsed_s']:.0f} s; {m.get('cpu')}, {m.get('cores')} cores, "
        f"{m.get('memory_GiB')} GiB",
        f"stores written in {doc['workdir']} ({doc.get('filesystem') or 'filesystem unknown'})",
        f"images: {cfg['cifar']:,}{' and ' + format(cfg['cifar_large'], ',') if cfg.get('cifar_large') else ''} "
        f"CIFAR-like {'x'.join(map(str, cfg['cifar_shape']))} uint8, {cfg['ct']:,} CT-like "
        f"{'x'.join(map(str, cfg['ct_shape']))} uint16; random: {cfg['random_reads']:,} of a "
        f"{cfg['random_store']:,}-image store; medians of {cfg['repeat']} interleaved repeats",
        "reference = raw .npy (np.save + fsync to write; np.load + copy into a preallocated array to read; "
        "memory-mapped for random), or for disk png a 1-thread Pillow loop over the same PNG files",
        doc["method"]["sync"],
        "versions: " + ", ".join(f"{k} {v}" for k, v in doc["versions"].items()
                                  if k in ("imgbench", "numpy", "h5py", "libhdf5", "lmdb", "liblmdb", "Pillow") and v),
    ]
    if doc["method"].get("allocator"):
        lines.append(f"allocator: {doc['method']['allocator']['detail']}")
    lines.extend(f"note: {n}" for n in doc.get("notes", []))
    return lines


def summary_line(doc: dict[str, Any]) -> str:
    """``"9 of 12 targets pass; failing: ..."`` (a row that read back wrong counts as failing)."""
    rows = [row_from_dict(d) for d in doc["rows"]]
    gated = [r for r in rows if r.threshold is not None or not r.exact]
    passed = sum(r.verdict == "PASS" for r in gated)
    failing = [f"{_operation(r)} ({r.dataset}{', wrong data' if not r.exact else ''})"
               for r in gated if r.verdict != "PASS"]
    return f"{passed} of {len(gated)} targets pass" + (f"; failing: {', '.join(failing)}" if failing else "")


def format_table(doc: dict[str, Any], markdown: bool = False) -> str:
    """The results as a plain-text table (or GitHub markdown), with a header saying where and how."""
    cells = table_rows(doc)
    head = header_lines(doc)
    summary = summary_line(doc)
    if markdown:
        out = [f"- {line}" for line in head] + [""]
        out.append("| " + " | ".join(COLUMNS) + " |")
        out.append("| " + " | ".join("---" if i < 2 else "---:" for i in range(len(COLUMNS) - 2)) + " | --- | --- |")
        for c in cells:
            verdict = f"**{c[-1]}**" if c[-1] in ("FAIL", "WRONG") else c[-1]
            out.append("| " + " | ".join((*c[:-1], verdict)) + " |")
        out += ["", f"{summary}."]
        return "\n".join(out)
    widths = [max(len(COLUMNS[i]), *(len(c[i]) for c in cells)) if cells else len(COLUMNS[i])
              for i in range(len(COLUMNS))]
    fmt = "  ".join(f"{{:{'<' if i in (0, 1, 5, 6) else '>'}{w}}}" for i, w in enumerate(widths))
    out = head + ["", fmt.format(*COLUMNS), fmt.format(*("-" * w for w in widths))]
    out += [fmt.format(*c) for c in cells]
    out += ["", summary]
    return "\n".join(out)


README_SECTION = "targets table"
README_BEGIN, README_END = sections.markers(README_SECTION, "imgbench targets")


def readme_parts(path: str | os.PathLike) -> tuple[str, str]:
    """The README text around the targets table (ReadmeError when its markers are missing)."""
    return sections.parts(path, README_SECTION, "imgbench targets")


def update_readme(path: str | os.PathLike, doc: dict[str, Any]) -> None:
    """Write this run's markdown table into ``path``'s targets section, under the command that ran."""
    ran = " ".join(doc.get("command") or ["imgbench", "targets"])
    sections.write_section(path, README_SECTION, "imgbench targets", ran, format_table(doc, markdown=True))

"""PNG level and thread count versus bytes and time: the measurement behind the defaults.

``imgbench png-levels`` runs this on the built-in data and prints (and plots)
the curve that chose PNG level 1 and "all cores" for the ``disk`` backend, so
anyone can re-check the choice on their machine and images.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from imgbench.adapters import datasets
from imgbench.core import codecs, parallel
from imgbench.measure import sections
from imgbench.measure.harness import summarize

#: built-in dataset -> images measured (enough for stable medians in seconds)
DEFAULT_COUNTS = {"cifar": 2000, "ct": 16}


@dataclass
class LevelRow:
    dataset: str
    level: int
    ratio: float  # encoded bytes / raw bytes
    encode_us: float  # per image, one thread, median of repeats
    decode_us: float


@dataclass
class ThreadRow:
    dataset: str
    threads: int
    encode_us: float  # wall time per image with this many threads
    decode_us: float
    speedup_encode: float  # vs one thread
    speedup_decode: float


def _median_time(fn: Callable[[], Any], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return summarize(times)["median"]


def _codec_timers(images: np.ndarray, level: int, threads: int) -> tuple[Callable[[], Any], Callable[[], Any]]:
    png = codecs.CODECS["png"]
    shape, dtype = images.shape[1:], images.dtype
    encoded = [png.encode(im, level) for im in images]

    def encode() -> Any:
        return parallel.map_items(lambda im: png.encode(im, level), images, threads)

    def decode() -> Any:
        return parallel.map_items(lambda data: png.decode(data, dtype, shape), encoded, threads)

    return encode, decode


def measure(
    names: Sequence[str] = ("cifar", "ct"),
    levels: Sequence[int] = tuple(range(10)),
    threads: Sequence[int] | None = None,
    counts: dict[str, int] | None = None,
    repeat: int = 3,
    progress: Callable[[str], None] | None = None,
) -> tuple[list[LevelRow], list[ThreadRow]]:
    """Bytes and codec time per PNG level (one thread), and speed-up per thread count (level 1)."""
    counts = {**DEFAULT_COUNTS, **(counts or {})}
    threads = list(threads) if threads else sorted({1, parallel.default_threads()})
    png = codecs.CODECS["png"]
    level_rows: list[LevelRow] = []
    thread_rows: list[ThreadRow] = []
    for name in names:
        images = datasets.generate(name, counts[name])
        raw = images.nbytes
        for level in levels:
            if progress:
                progress(f"{name} level {level}")
            encode, decode = _codec_timers(images, level, 1)
            size = sum(len(png.encode(im, level)) for im in images)
            level_rows.append(LevelRow(
                name, level, size / raw,
                _median_time(encode, repeat) / len(images) * 1e6,
                _median_time(decode, repeat) / len(images) * 1e6,
            ))
        base: tuple[float, float] | None = None
        for t in threads:
            if progress:
                progress(f"{name} {t} thread(s)")
            encode, decode = _codec_timers(images, png.default_level, t)
            enc = _median_time(encode, repeat) / len(images) * 1e6
            dec = _median_time(decode, repeat) / len(images) * 1e6
            base = base or (enc, dec)
            thread_rows.append(ThreadRow(name, t, enc, dec, base[0] / enc, base[1] / dec))
    return level_rows, thread_rows


def markdown(level_rows: list[LevelRow], thread_rows: list[ThreadRow]) -> str:
    lines = [
        "| data | PNG level | bytes / raw | encode µs/img | decode µs/img |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    lines += [
        f"| {r.dataset} | {r.level} | {r.ratio:.3f} | {r.encode_us:,.0f} | {r.decode_us:,.0f} |" for r in level_rows
    ]
    lines += [
        "",
        "| data | threads | encode µs/img | decode µs/img | encode speed-up | decode speed-up |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    lines += [
        f"| {r.dataset} | {r.threads} | {r.encode_us:,.0f} | {r.decode_us:,.0f} | "
        f"{r.speedup_encode:.2f}x | {r.speedup_decode:.2f}x |"
        for r in thread_rows
    ]
    return "\n".join(lines)


README_SECTION = "png levels table"


def update_readme(path: str | os.PathLike, ran: str, level_rows: list[LevelRow], thread_rows: list[ThreadRow]) -> None:
    """Write the two tables into ``path``'s png-levels section (see :mod:`imgbench.measure.sections`)."""
    sections.write_section(path, README_SECTION, "imgbench png-levels", ran, markdown(level_rows, thread_rows))


def plot(level_rows: list[LevelRow], path: Path) -> Path:
    """Bytes versus encode time, one line per dataset, each point labelled with its level."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for name in dict.fromkeys(r.dataset for r in level_rows):
        rows = [r for r in level_rows if r.dataset == name]
        ax.plot([r.encode_us for r in rows], [r.ratio for r in rows], marker="o", label=name)
        for r in rows:
            ax.annotate(str(r.level), (r.encode_us, r.ratio), textcoords="offset points", xytext=(4, 3), fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel("encode time per image, µs (one thread, log scale)")
    ax.set_ylabel("PNG bytes / raw bytes")
    ax.set_title("PNG level: size versus time (labels = zlib level)")
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def as_json(level_rows: list[LevelRow], thread_rows: list[ThreadRow]) -> dict[str, Any]:
    return {"levels": [asdict(r) for r in level_rows], "threads": [asdict(r) for r in thread_rows]}

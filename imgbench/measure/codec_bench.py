"""Every lossless codec and useful level on one set of images: bytes, encode and decode time, exactness.

``imgbench codecs`` runs this on the user's images (``--source``) or the built-in
CIFAR-like and CT-like images, so a radiology archive can see what JPEG-LS, HTJ2K,
JPEG XL and LERC save against PNG on *its* images before converting anything. It
times the codecs alone (no container): the container's cost is what ``compare`` measures.

The Pareto front (no other setting is both smaller and faster to decode on one
thread) is computed on exact settings only; the smallest setting is always on it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from imgbench.core import codecs, parallel
from imgbench.measure import sections
from imgbench.measure.harness import interleaved, summarize
from imgbench.measure.matrix import Dataset

#: (codec, level) pairs measured: every lossless codec, and the levels worth choosing between
SETTINGS: tuple[tuple[str, int | None], ...] = (
    ("png", 1), ("png", 6), ("png", 9),
    ("zstd", 3), ("zstd", 19),
    ("jpegls", None),
    ("htj2k", None),
    ("jpegxl", 1), ("jpegxl", 3), ("jpegxl", 5), ("jpegxl", 7),
    ("lerc", None),
)
#: built-in images measured when neither --source nor --datasets is given
DEFAULT_DATASETS = ("cifar", "ct")
#: images per built-in dataset: stable medians in a minute or two on two cores
DEFAULT_COUNTS = {"cifar": 500, "ct": 8}
SECTION = "codecs table"
COMMAND = "imgbench codecs"


@dataclass
class Row:
    """One codec setting on one dataset. Times are µs per image: median and spread of the repeats."""

    dataset: str
    codec: str
    level: int | None
    images: int
    raw_bytes: int
    encoded_bytes: int
    ratio: float  # encoded / raw
    encode_us_1: dict[str, float]
    decode_us_1: dict[str, float]
    encode_us_all: dict[str, float]
    decode_us_all: dict[str, float]
    threads: int  # "all threads": this many
    exact: bool  # every image decoded to the same dtype, shape and bytes
    pareto: bool = False

    @property
    def setting(self) -> str:
        return self.codec if self.level is None else f"{self.codec} {self.level}"


@dataclass
class Result:
    rows: list[Row]
    skipped: list[dict[str, Any]] = field(default_factory=list)  # settings a dataset's dtype rules out
    threads: int = 1
    repeats: int = 1


def _supports(codec: codecs.Codec, images: Sequence[np.ndarray]) -> str | None:
    """Why ``codec`` cannot store these images exactly, or None."""
    for im in images:
        if im.dtype not in codec.dtypes:
            return f"cannot store {im.dtype}"
        channels = im.shape[2] if im.ndim == 3 else 1
        if channels not in codec.channels:
            return f"cannot store {channels}-channel images"
    return None


def _timed(fn: Callable[[], Any]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def pareto(rows: Sequence[Row]) -> set[int]:
    """Indices of the exact rows no other exact row beats on both bytes and 1-thread decode time.

    Ties on bytes go to the faster decoder, so the smallest setting is on the front whatever the timings."""
    exact = [i for i, r in enumerate(rows) if r.exact]
    exact.sort(key=lambda i: (rows[i].encoded_bytes, rows[i].decode_us_1["median"]))
    front, best = set(), float("inf")
    for i in exact:
        if rows[i].decode_us_1["median"] < best:
            front.add(i)
            best = rows[i].decode_us_1["median"]
    return front


def measure_dataset(
    ds: Dataset,
    settings: Sequence[tuple[str, int | None]] = SETTINGS,
    repeats: int = 3,
    threads: int | None = None,
    progress: Callable[[str], None] | None = None,
) -> Result:
    """Bytes, codec time on one thread and on ``threads`` (default all cores), and exactness per setting."""
    images = list(ds.images)
    threads = threads or parallel.default_threads()
    raw = sum(im.nbytes for im in images)
    n = len(images)
    result = Result([], threads=threads, repeats=repeats)
    usable = []
    for name, level in settings:
        codec = codecs.CODECS[name]
        why = _supports(codec, images)
        if why:
            result.skipped.append({"dataset": ds.name, "codec": name, "level": level, "reason": why})
        else:
            usable.append((name, level, codec))
    encoded: dict[int, list[bytes]] = {}
    exact: dict[int, bool] = {}
    for k, (name, level, codec) in enumerate(usable):
        if progress:
            progress(f"{ds.name}: {name} {'' if level is None else level}".rstrip())
        encoded[k] = [codec.encode(im, level) for im in images]
        back = [codec.decode(b, im.dtype, im.shape) for b, im in zip(encoded[k], images)]
        exact[k] = all(b.dtype == im.dtype and b.shape == im.shape and b.tobytes() == im.tobytes()
                       for b, im in zip(back, images))
    times: dict[tuple[int, str], list[float]] = {}
    for _r, order in interleaved(range(len(usable)), repeats, alternate=True):
        for k in order:
            name, level, codec = usable[k]
            for t, tag in ((1, "1"), (threads, "all")):
                chunk = max(1, min(32, n // (4 * t)))  # a few CT slices still spread over every thread
                enc = _timed(lambda: parallel.map_items(lambda im: codec.encode(im, level), images, t, chunk))
                dec = _timed(lambda: parallel.map_items(
                    lambda j: codec.decode(encoded[k][j], images[j].dtype, images[j].shape), range(n), t, chunk))
                times.setdefault((k, "enc" + tag), []).append(enc / n * 1e6)
                times.setdefault((k, "dec" + tag), []).append(dec / n * 1e6)
    for k, (name, level, _codec) in enumerate(usable):
        size = sum(len(b) for b in encoded[k])
        result.rows.append(Row(
            ds.name, name, level, n, raw, size, size / raw,
            summarize(times[k, "enc1"]), summarize(times[k, "dec1"]),
            summarize(times[k, "encall"]), summarize(times[k, "decall"]), threads, exact[k],
        ))
    for i in pareto(result.rows):
        result.rows[i].pareto = True
    return result


def measure(datasets_: Sequence[Dataset], **kw: Any) -> Result:
    """:func:`measure_dataset` on each dataset, rows in order."""
    parts = [measure_dataset(ds, **kw) for ds in datasets_]
    first = parts[0] if parts else Result([])
    return Result([r for p in parts for r in p.rows], [s for p in parts for s in p.skipped],
                  first.threads, first.repeats)


def as_json(result: Result) -> dict[str, Any]:
    return {
        "threads": result.threads,
        "repeats": result.repeats,
        "rows": [{**asdict(r), "setting": r.setting} for r in result.rows],
        "skipped": result.skipped,
        "all_exact": all(r.exact for r in result.rows),
    }


def _us(value: float) -> str:
    return f"{value:,.0f}" if value >= 10 else f"{value:.1f}"


def _vs_png1(rows: Sequence[Row], r: Row) -> str:
    png = next((p for p in rows if p.dataset == r.dataset and p.codec == "png" and p.level == 1), None)
    return f"{r.ratio / png.ratio:.2f}" if png else "–"


def markdown(result: Result) -> str:
    """The docs table: one row per dataset and setting; ★ marks the Pareto front."""
    lines = [
        f"| data | codec | bytes / raw | vs PNG 1 | encode µs (1 / {result.threads} thr) "
        f"| decode µs (1 / {result.threads} thr) | exact |",
        "| --- | --- | ---: | ---: | ---: | ---: | :---: |",
    ]
    for r in result.rows:
        star = " ★" if r.pareto else ""
        lines.append(
            f"| {r.dataset} | {r.setting}{star} | {r.ratio:.3f} | {_vs_png1(result.rows, r)} | "
            f"{_us(r.encode_us_1['median'])} / {_us(r.encode_us_all['median'])} | "
            f"{_us(r.decode_us_1['median'])} / {_us(r.decode_us_all['median'])} | {'yes' if r.exact else 'NO'} |"
        )
    return "\n".join(lines)


def update_docs(path: str | os.PathLike, ran: str, result: Result) -> None:
    """Write the table into ``path``'s codecs section (see :mod:`imgbench.measure.sections`)."""
    sections.write_section(path, SECTION, COMMAND, ran, markdown(result))


def load(source: str | os.PathLike | None = None, specs: Sequence[str] | None = None, count: int | None = None,
         quick: bool = False) -> list[Dataset]:
    """The images to measure: the user's folder, or built-in datasets (``NAME[:HxW[xC]]``, as ``compare`` takes)."""
    from imgbench.measure.compare_plan import builtin_dataset, source_dataset

    if source is not None:
        return [source_dataset(source, [count] if count else None, quick=quick)]
    out = []
    for spec in specs or DEFAULT_DATASETS:
        n = count or (max(1, DEFAULT_COUNTS.get(spec.partition(":")[0], 8) // (10 if quick else 1)))
        out.append(builtin_dataset(spec, [n]))
    return out

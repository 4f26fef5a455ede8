"""``imgbench convert``: a folder of images, or another store, into any backend.

Streams: images are read one file (or one batch of a store) at a time and
appended, so a folder larger than memory converts fine. The destination is
written with mode ``w``/``x`` and so appears only when the conversion finished
without error (an interrupted conversion leaves no half-written store).
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from imgbench import api, sharded
from imgbench.adapters import cluster, sources
from imgbench.api import open as open_store
from imgbench.core import atomic, transport
from imgbench.core.errors import ImgbenchError, StoreNotFoundError, UnsupportedError
from imgbench.storage import registry

#: images per batch when copying from a store
BATCH = 256


@dataclass
class ConvertReport:
    dst: Path
    images: int = 0
    backend: str = ""
    compression: str = ""
    classes: list[str] | None = None
    ignored: int = 0
    skipped: Counter = field(default_factory=Counter)
    #: number of shards of a sharded dataset; None for a plain store
    shards: int | None = None
    #: how the images were ordered (DICOM series in slice order)
    notes: list[str] = field(default_factory=list)

    @property
    def warnings(self) -> list[str]:
        return [f"skipped {n} file(s): {reason}" for reason, n in self.skipped.items()]


def _read_files(
    files: Iterable[sources.SourceFile], skipped: Counter, tick: Callable[[int], None],
    max_image_pixels: int | None = None,
) -> Iterator[tuple[Any, int | None]]:
    """(image, label) of every usable image in ``files``, in order, one page at a time; unusable files
    are counted in ``skipped`` by reason. ``tick(1)`` after each file. Shared by plain and sharded conversion."""
    for source in files:
        try:
            for page in sources.iter_pages(source, max_image_pixels=max_image_pixels):
                yield page.decode(), source.label
        except sources.SkipFile as why:
            skipped[str(why)] += 1
        tick(1)


def _no_usable_images(src: Path, skipped: Counter) -> sources.SourceError:
    reasons = "; ".join(f"{n} x {why}" for why, n in skipped.items())
    return sources.SourceError(f"no usable images in {src}: {reasons}")


def convert(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    *,
    backend: str | None = None,
    compression: str | None = None,
    level: int | None = None,
    overwrite: bool = False,
    progress: Callable[[int], None] | None = None,
    total: Callable[[int], None] | None = None,
    images_per_shard: int | None = None,
    bytes_per_shard: int | None = None,
    shards: int | None = None,
    workers: int | None = None,
    scheduler: str | None = None,
    max_image_pixels: int | None = None,
) -> ConvertReport:
    """Copy every image (and label) of ``src`` into a new store at ``dst``.

    ``src`` is a folder of PNG/JPEG/TIFF/DICOM files (labels from sub-folder
    names, recorded in ``attrs["classes"]``) or an existing store of any
    backend. ``progress(k)`` is called after each ``k`` images; ``total(n)``
    once the number of files (folder) or images (store) is known.

    A shard limit (``images_per_shard``, ``bytes_per_shard`` or ``shards``),
    ``workers`` or ``scheduler`` makes ``dst`` a sharded dataset (see
    :func:`convert_sharded`); ``workers``/``scheduler`` write its shards in
    parallel on Dask.

    A folder's files are read only if they are regular files, and an image
    declaring more than ``max_image_pixels`` pixels (default Pillow's
    ``PIL.Image.MAX_IMAGE_PIXELS``) is skipped before it is decoded; both are
    counted in the report's ``skipped``.
    """
    src_path = Path(os.fspath(src)).expanduser()
    dst_path = transport.local_destination(dst, "destination")
    if not os.path.lexists(src_path):
        raise StoreNotFoundError(f"no such folder or store: {src_path}")
    if src_path.resolve() == dst_path.resolve():
        raise ImgbenchError(f"source and destination are the same path ({src_path}); choose another DST")
    # Bad options fail before any image is read.
    sources.pixel_limit(max_image_pixels)
    target = registry.get(backend) if backend is not None else registry.from_suffix(dst_path)
    if compression is not None and compression not in target.compressions:
        raise UnsupportedError(
            f"compression {compression!r} is not supported by backend {target.name!r}; "
            f"choose one of: {', '.join(target.compressions)}"
        )
    if any(v is not None for v in (images_per_shard, bytes_per_shard, shards, workers, scheduler)):
        return convert_sharded(
            src_path, dst_path, backend=target.name, compression=compression, level=level, overwrite=overwrite,
            progress=progress, total=total, images_per_shard=images_per_shard, bytes_per_shard=bytes_per_shard,
            shards=shards, workers=workers, scheduler=scheduler, max_image_pixels=max_image_pixels,
        )
    tick = progress or (lambda k: None)
    mode = "w" if overwrite else "x"
    report = ConvertReport(dst=dst_path)
    if api.is_store(src_path):
        with open_store(src_path) as source:
            n = len(source)
            if total:
                total(n)
            labels = source.labels
            with open_store(dst_path, mode, backend=backend, compression=compression, level=level) as out:
                for key, value in source.attrs.items():
                    out.attrs[key] = value
                out.attrs["converted_from"] = f"{source.backend}/{source.compression} store {src_path.name}"
                for start in range(0, n, BATCH):
                    stop = min(n, start + BATCH)
                    batch = source.read_many(range(start, stop))
                    out.extend(batch, labels=None if labels is None else labels[start:stop])
                    tick(stop - start)
                report.backend, report.compression = out.backend, out.compression
            report.images = n
            classes = source.attrs.get("classes")
            report.classes = classes if isinstance(classes, list) else None
        return report

    found = sources.scan(src_path)
    report.classes, report.ignored, report.notes = found.classes, found.ignored, found.notes
    report.skipped.update(found.skipped)
    if total:
        total(len(found.files))
    with open_store(dst_path, mode, backend=backend, compression=compression, level=level) as out:
        count = 0
        for image, label in _read_files(found.files, report.skipped, tick, max_image_pixels):
            out.append(image, label=label)
            count += 1
        if count == 0:
            raise _no_usable_images(src_path, report.skipped)
        if found.classes is not None:
            out.attrs["classes"] = found.classes
        out.attrs["source"] = str(src_path.resolve())
        report.backend, report.compression = out.backend, out.compression
    report.images = count
    return report


def describe(report: ConvertReport) -> dict[str, Any]:
    """A JSON-friendly summary (for ``--json`` output and tests)."""
    return {
        "dst": str(report.dst),
        "images": report.images,
        "backend": report.backend,
        "compression": report.compression,
        "classes": report.classes,
        "ignored": report.ignored,
        "skipped": dict(report.skipped),
        "shards": report.shards,
        "notes": report.notes,
    }


# ------------------------------------------------------------ sharded (and parallel) conversion
#: shard size when --workers/--scheduler is given without a limit: source bytes per shard, as the tar backend's shards
DEFAULT_SHARD_BYTES = 256 << 20
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_size(text: str) -> int:
    """``"256M"`` -> 268435456: a byte count with an optional K/M/G/T suffix (binary units, ``B``/``iB`` allowed)."""
    import re

    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*", str(text), re.IGNORECASE)
    if not m:
        raise UnsupportedError(f"{text!r} is not a size: use a number of bytes with an optional K, M, G or T suffix")
    value = int(float(m.group(1)) * _UNITS[m.group(2).lower()])
    if value < 1:
        raise UnsupportedError(f"{text!r} is not a positive size")
    return value


def convert_shard(task: dict[str, Any], tick: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Convert one slice of the source into one shard: the unit of work of a (parallel) sharded conversion.

    ``task`` carries only its own slice (file names and labels, or an index
    range of a source store), never the whole source list, so a worker's
    memory does not grow with the dataset. The shard is written atomically
    (:func:`imgbench.sharded.write_shard`): running a task twice (a Dask retry)
    leaves the same single shard. Returns ``{"name", "images", "skipped"}``.
    """
    skipped: Counter = Counter()
    step = tick or (lambda k: None)

    def from_files():
        root = Path(task["root"])
        files = (sources.SourceFile(root / rel, kind, label) for rel, kind, label in task["files"])
        return _read_files(files, skipped, step, task.get("max_image_pixels"))

    def from_store():
        labels = task["labels"]
        start, stop = task["start"], task["stop"]
        with open_store(task["src"]) as source:
            if len(source) < stop:
                raise ImgbenchError(f"{task['src']} shrank while it was being converted; convert it again")
            for a in range(start, stop, BATCH):
                b = min(stop, a + BATCH)
                for k, image in enumerate(source.read_many(range(a, b))):
                    yield image, None if labels is None else int(labels[a - start + k])
                step(b - a)

    items = from_files() if "files" in task else from_store()
    count = sharded.write_shard(task["dst"], task["name"], items, backend=task["backend"],
                                compression=task["compression"], level=task["level"])
    return {"name": task["name"], "images": count, "skipped": dict(skipped)}


def convert_sharded(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    *,
    backend: str,
    compression: str | None = None,
    level: int | None = None,
    overwrite: bool = False,
    progress: Callable[[int], None] | None = None,
    total: Callable[[int], None] | None = None,
    images_per_shard: int | None = None,
    bytes_per_shard: int | None = None,
    shards: int | None = None,
    workers: int | None = None,
    scheduler: str | None = None,
    max_image_pixels: int | None = None,
) -> ConvertReport:
    """Convert ``src`` into a sharded dataset at ``dst``: one shard per slice of the sorted source.

    Slices come from :func:`imgbench.sharded.plan` over the sorted file list
    (folder) or the image indices (store): ``images_per_shard`` counts files
    (images, for single-image files), ``bytes_per_shard`` source file bytes,
    ``shards`` a number of near-equal slices. Boundaries never depend on the
    worker count, so the result is the same dataset whoever writes it.
    Without ``workers``/``scheduler`` the shards are written one after the
    other in this process; with them, one Dask task per shard
    (:mod:`imgbench.cluster`). Everything is written in a hidden temporary
    directory and renamed to ``dst`` after the manifest: an interrupted
    conversion leaves no dataset.
    """
    src_path = Path(os.fspath(src)).expanduser().resolve()
    dst_path = Path(os.fspath(dst)).expanduser()
    parallel = workers is not None or scheduler is not None
    if parallel:
        cluster.check_workers(workers, scheduler)
        cluster.require()
    limit = sharded.check_limit(images_per_shard, bytes_per_shard, shards) or {"bytes": DEFAULT_SHARD_BYTES}
    tick = progress or (lambda k: None)
    report = ConvertReport(dst=dst_path)
    common = {"backend": backend, "compression": compression, "level": level}

    from_store = api.is_store(src_path)
    if from_store and "bytes" in limit:
        raise UnsupportedError(
            "bytes per shard is measured on source files; for a store source give --images-per-shard or --shards"
        )
    if overwrite:
        api.check_replaceable(dst_path)
    tmp = sharded.prepare(dst_path, "w" if overwrite else "x")
    lock = None
    try:
        if overwrite:  # the store replaced is locked as its appenders lock it (StoreLockedError while one is)
            lock = atomic.lock_replaced(dst_path, "store")
        if from_store:
            with open_store(src_path) as source:
                n = len(source)
                labels = source.labels
                attrs = source.attrs.to_dict()
                attrs["converted_from"] = f"{source.backend}/{source.compression} store {src_path.name}"
            classes = attrs.get("classes")
            report.classes = classes if isinstance(classes, list) else None
            slices = sharded.plan(n, **{_KW[k]: v for k, v in limit.items()})

            def make_tasks():
                for k, (a, b) in enumerate(slices):
                    yield {"src": str(src_path), "start": a, "stop": b, "name": sharded.shard_name(k, backend),
                           "labels": None if labels is None else labels[a:b].tolist(), "dst": str(tmp), **common}
        else:
            found = sources.scan(src_path)
            report.classes, report.ignored, report.notes = found.classes, found.ignored, found.notes
            report.skipped.update(found.skipped)
            n = len(found.files)
            sizes = [_file_size(f.path) for f in found.files] if "bytes" in limit else None
            slices = sharded.plan(n, sizes, **{_KW[k]: v for k, v in limit.items()})
            attrs = {"classes": found.classes} if found.classes is not None else {}
            attrs["source"] = str(src_path)
            root = found.root

            def make_tasks():
                for k, (a, b) in enumerate(slices):
                    files = [(f.path.relative_to(root).as_posix(), f.kind, f.label) for f in found.files[a:b]]
                    yield {"root": str(root), "files": files, "name": sharded.shard_name(k, backend), "dst": str(tmp),
                           "max_image_pixels": max_image_pixels, **common}
        if total:
            total(n)

        if parallel:
            sizes_done = [b - a for a, b in slices]
            results = cluster.run(convert_shard, make_tasks(), len(slices), workers=workers, scheduler=scheduler,
                                  done=lambda i, _: tick(sizes_done[i]), name="imgbench-convert")
        else:
            results = [convert_shard(task, tick) for task in make_tasks()]
        for result in results:
            report.skipped.update(result["skipped"])
        names = [r["name"] for r in results if r["images"]]
        report.images = sum(r["images"] for r in results)
        if report.images == 0:
            raise _no_usable_images(src_path, report.skipped)
        manifest = sharded.finish(tmp, names, backend=backend, attrs=attrs, limit=limit)
        if overwrite:
            lock = atomic.lock_for_publish(dst_path, lock, "store")
        atomic.publish(tmp, dst_path, replace=overwrite)
    except BaseException:
        atomic.remove(tmp)
        raise
    finally:
        if lock is not None:
            lock.close()
    report.backend, report.compression, report.shards = backend, manifest["compression"], len(names)
    return report


def _file_size(path: Path) -> int:
    """Bytes of a source file for shard planning; 0 for what will be skipped (a broken link, say)."""
    try:
        return os.stat(path).st_size
    except OSError:
        return 0


_KW = {"images": "images_per_shard", "bytes": "bytes_per_shard", "shards": "shards"}

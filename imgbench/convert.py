"""``imgbench convert``: a folder of images, or another store, into any backend.

Streams: images are read one file (or one batch of a store) at a time and
appended, so a folder larger than memory converts fine. The destination is
written with mode ``w``/``x`` and so appears only when the conversion finished
without error (an interrupted conversion leaves no half-written store).
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import sources
from .errors import ImgbenchError, StoreNotFoundError, UnsupportedError
from .storage import registry
from .store import open as open_store

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

    @property
    def warnings(self) -> list[str]:
        return [f"skipped {n} file(s): {reason}" for reason, n in self.skipped.items()]


def _is_store(path: Path) -> bool:
    try:
        registry.detect(path)
        return True
    except ImgbenchError:
        return False


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
) -> ConvertReport:
    """Copy every image (and label) of ``src`` into a new store at ``dst``.

    ``src`` is a folder of PNG/JPEG/TIFF/DICOM files (labels from sub-folder
    names, recorded in ``attrs["classes"]``) or an existing store of any
    backend. ``progress(k)`` is called after each ``k`` images; ``total(n)``
    once the number of files (folder) or images (store) is known.
    """
    src_path = Path(os.fspath(src)).expanduser()
    dst_path = Path(os.fspath(dst)).expanduser()
    if not os.path.lexists(src_path):
        raise StoreNotFoundError(f"no such folder or store: {src_path}")
    if src_path.resolve() == dst_path.resolve():
        raise ImgbenchError(f"source and destination are the same path ({src_path}); choose another DST")
    # Bad options fail before any image is read.
    target = registry.get(backend) if backend is not None else registry.from_suffix(dst_path)
    if compression is not None and compression not in target.compressions:
        raise UnsupportedError(
            f"compression {compression!r} is not supported by backend {target.name!r}; "
            f"choose one of: {', '.join(target.compressions)}"
        )
    tick = progress or (lambda k: None)
    mode = "w" if overwrite else "x"
    report = ConvertReport(dst=dst_path)
    if _is_store(src_path):
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
    report.classes, report.ignored = found.classes, found.ignored
    if total:
        total(len(found.files))
    with open_store(dst_path, mode, backend=backend, compression=compression, level=level) as out:
        count = 0
        for source in found.files:
            try:
                images = sources.read_file(source)
            except sources.SkipFile as why:
                report.skipped[str(why)] += 1
                tick(1)
                continue
            for image in images:
                out.append(image, label=source.label)
            count += len(images)
            tick(1)
        if count == 0:
            reasons = "; ".join(f"{n} x {why}" for why, n in report.skipped.items())
            raise sources.SourceError(f"no usable images in {src_path}: {reasons}")
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
    }

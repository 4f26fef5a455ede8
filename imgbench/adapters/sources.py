"""Reading a user's own images: PNG, JPEG, TIFF and (with the ``dicom`` extra) DICOM.

``imgbench compare --source`` and ``imgbench convert`` both start here. Each file
becomes one or more images (multi-page TIFF and multi-frame DICOM give one per
page/frame) with exactly the pixels the file holds: PNG through libpng
(imagecodecs; Pillow cannot read 16-bit RGB PNG exactly), TIFF through
tifffile, JPEG through Pillow, DICOM through pydicom (stored values, no
rescale). Lossless files therefore round-trip bit-exactly through any store.

Labels come from first-level sub-folder names when every image sits in one
(``cats/1.png``, ``dogs/2.png``), the ImageFolder convention.

What is not an image (``notes.txt``) is ignored and counted; a damaged image
is an error naming the file; a DICOM file whose compressed transfer syntax
needs a decoder that is not installed is skipped with a counted warning.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from imgbench.core.errors import ImgbenchError, StoreNotFoundError

#: file suffix (lower case) -> kind
SUFFIXES: dict[str, str] = {
    ".png": "png",
    ".jpg": "jpeg",
    ".jpeg": "jpeg",
    ".jpe": "jpeg",
    ".tif": "tiff",
    ".tiff": "tiff",
    ".dcm": "dicom",
    ".dicom": "dicom",
}
#: dtypes every backend stores exactly
STORABLE = frozenset(np.dtype(d) for d in ("uint8", "uint16", "int16", "float32"))


class SourceError(ImgbenchError):
    """A source folder or file that cannot be used (missing, empty, unreadable)."""


class SkipFile(Exception):
    """Internal: this file is skipped with a counted warning, not an error."""


@dataclass
class SourceFile:
    path: Path
    kind: str
    label: int | None = None


@dataclass
class Scan:
    """What :func:`scan` found in a folder."""

    root: Path
    files: list[SourceFile]
    classes: list[str] | None
    ignored: int = 0
    #: what the order of the files took into account (DICOM series put in slice order)
    notes: list[str] = field(default_factory=list)

    @property
    def labelled(self) -> bool:
        return self.classes is not None


@dataclass
class Loaded:
    """Images read from a folder, plus what was skipped and why."""

    images: list[np.ndarray]
    labels: np.ndarray | None
    classes: list[str] | None
    files_read: int = 0
    skipped: Counter = field(default_factory=Counter)
    truncated: bool = False
    #: how the files were ordered (DICOM series in slice order)
    notes: list[str] = field(default_factory=list)

    @property
    def warnings(self) -> list[str]:
        return [f"skipped {n} file(s): {reason}" for reason, n in self.skipped.items()]


def _is_dicom(path: Path) -> bool:
    """DICOM files often have no suffix; the Part 10 preamble says what they are."""
    try:
        with open(path, "rb") as f:
            head = f.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:] == b"DICM"


def _kind(path: Path) -> str | None:
    kind = SUFFIXES.get(path.suffix.lower())
    if kind is None and path.suffix == "" and _is_dicom(path):
        kind = "dicom"
    return kind


def scan(folder: str | os.PathLike) -> Scan:
    """List the image files under ``folder`` in a stable order, with labels when sub-folders name classes."""
    root = Path(os.fspath(folder)).expanduser()
    if not root.exists():
        raise StoreNotFoundError(f"no such folder: {root}")
    if not root.is_dir():
        raise SourceError(f"{root} is a file; give a folder of images (PNG, JPEG, TIFF, DICOM)")
    found: list[tuple[str, Path, str]] = []
    ignored = 0
    for dirpath, dirs, names in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(names):
            if name.startswith("."):
                continue
            path = Path(dirpath) / name
            kind = _kind(path)
            if kind is None:
                ignored += 1
                continue
            found.append((path.relative_to(root).as_posix(), path, kind))
    if not found:
        what = f" ({ignored} other file(s) ignored)" if ignored else ""
        raise SourceError(
            f"{root} holds no images{what}; imgbench reads {', '.join(sorted(set(SUFFIXES)))} and DICOM files"
        )
    found.sort(key=lambda item: item[0])
    notes = _slice_order(found)
    in_subfolders = all("/" in rel for rel, _, _ in found)
    classes = sorted({rel.split("/", 1)[0] for rel, _, _ in found}) if in_subfolders else None
    index = {name: i for i, name in enumerate(classes or [])}
    files = [
        SourceFile(path, kind, index[rel.split("/", 1)[0]] if classes is not None else None)
        for rel, path, kind in found
    ]
    return Scan(root, files, classes, ignored, notes)


def _slice_order(found: list[tuple[str, Path, str]]) -> list[str]:
    """Put the DICOM files of ``found`` (sorted by name) in slice order, series by series, in place; the
    notes say which series moved and by what. Without pydicom the DICOM files are skipped later anyway."""
    slots = [k for k, (_, _, kind) in enumerate(found) if kind == "dicom"]
    if len(slots) < 2:
        return []
    try:
        import pydicom  # noqa: F401
    except ImportError:
        return []
    from imgbench.adapters import dicom_series

    new, notes = dicom_series.order([found[k][0] for k in slots], [found[k][1] for k in slots])
    moved = [found[slots[i]] for i in new]
    for slot, item in zip(slots, moved, strict=True):
        found[slot] = item
    return notes


# ----------------------------------------------------------------- readers
def _read_png(path: Path) -> list[np.ndarray]:
    import imagecodecs

    data = path.read_bytes()
    try:
        return [imagecodecs.png_decode(data)]
    except Exception as exc:
        raise SourceError(f"cannot read PNG {path}: {exc}") from None


def _read_jpeg(path: Path) -> list[np.ndarray]:
    from PIL import Image

    try:
        with Image.open(path) as im:
            im.load()
            if im.mode not in ("L", "RGB", "CMYK", "I;16"):
                im = im.convert("RGB")
            return [np.asarray(im)]
    except Exception as exc:
        raise SourceError(f"cannot read JPEG {path}: {exc}") from None


def _read_tiff(path: Path) -> list[np.ndarray]:
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            pages = []
            for page in tif.pages:
                image = page.asarray()
                if page.planarconfig == tifffile.PLANARCONFIG.SEPARATE and image.ndim == 3:
                    image = np.moveaxis(image, 0, -1)  # (S, H, W) -> (H, W, S)
                pages.append(np.ascontiguousarray(image))
            return pages
    except Exception as exc:
        raise SourceError(f"cannot read TIFF {path}: {exc}") from None


def _read_dicom(path: Path) -> list[np.ndarray]:
    try:
        import pydicom
    except ImportError:
        raise SkipFile("DICOM needs pydicom: pip install 'imgbench[dicom]'") from None
    try:
        ds = pydicom.dcmread(path)
    except Exception as exc:
        raise SourceError(f"cannot read DICOM {path}: {exc}") from None
    if "PixelData" not in ds:
        raise SkipFile("DICOM without pixel data")
    syntax = ds.file_meta.get("TransferSyntaxUID") if hasattr(ds, "file_meta") else None
    if syntax is not None and syntax.is_compressed:
        from pydicom.pixels import get_decoder

        try:
            available = get_decoder(syntax).is_available
        except Exception:
            available = False
        if not available:
            raise SkipFile(
                f"DICOM compressed as {syntax.name} and no decoder for it is installed "
                "(pip install pylibjpeg pylibjpeg-libjpeg pylibjpeg-openjpeg pyjpegls)"
            )
    try:
        pixels = ds.pixel_array
    except Exception as exc:
        raise SourceError(f"cannot decode DICOM pixels in {path}: {exc}") from None
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if frames > 1:
        return [np.ascontiguousarray(frame) for frame in pixels]
    return [np.ascontiguousarray(pixels)]


_READERS = {"png": _read_png, "jpeg": _read_jpeg, "tiff": _read_tiff, "dicom": _read_dicom}


def _check(image: np.ndarray) -> None:
    if np.dtype(image.dtype.name) not in STORABLE:
        raise SkipFile(f"pixel type {image.dtype} (stores take uint8, uint16, int16, float32)")
    if image.ndim not in (2, 3) or (image.ndim == 3 and not 1 <= image.shape[2] <= 4) or image.size == 0:
        raise SkipFile(f"image shape {image.shape} (stores take HxW or HxWxC with C of 1 to 4)")


def read_file(source: SourceFile | str | os.PathLike) -> list[np.ndarray]:
    """The images in one file (several for multi-page TIFF or multi-frame DICOM).

    Raises :class:`SourceError` for a damaged file and ``SkipFile`` for one that
    is readable in principle but not here (missing DICOM decoder, exotic pixel type).
    """
    if not isinstance(source, SourceFile):
        path = Path(os.fspath(source))
        kind = _kind(path)
        if kind is None:
            raise SourceError(f"{path} is not an image imgbench reads (PNG, JPEG, TIFF, DICOM)")
        source = SourceFile(path, kind)
    images = _READERS[source.kind](source.path)
    out = []
    for image in images:
        image = np.asarray(image)
        if image.dtype.byteorder == (">" if np.little_endian else "<"):
            image = image.astype(image.dtype.newbyteorder("="))
        _check(image)
        out.append(image)
    return out


def iter_images(found: Scan, skipped: Counter | None = None) -> Iterator[tuple[np.ndarray, int | None]]:
    """Yield ``(image, label)`` for every image in the scanned files, counting skipped files."""
    for source in found.files:
        try:
            images = read_file(source)
        except SkipFile as why:
            if skipped is not None:
                skipped[str(why)] += 1
            continue
        for image in images:
            yield image, source.label


def load(
    folder: str | os.PathLike, max_images: int | None = None, max_bytes: int | None = None
) -> Loaded:
    """Read images from ``folder`` into memory, stopping at ``max_images`` or ``max_bytes`` of pixels."""
    found = scan(folder)
    skipped: Counter = Counter()
    images: list[np.ndarray] = []
    labels: list[int] = []
    total = 0
    truncated = False
    files_read = 0
    for source in found.files:
        if (max_images is not None and len(images) >= max_images) or (max_bytes is not None and total >= max_bytes):
            truncated = True
            break
        try:
            got = read_file(source)
        except SkipFile as why:
            skipped[str(why)] += 1
            continue
        files_read += 1
        for image in got:
            if max_images is not None and len(images) >= max_images:
                truncated = True
                break
            images.append(image)
            labels.append(source.label if source.label is not None else -1)
            total += image.nbytes
    if not images:
        reasons = "; ".join(f"{n} x {why}" for why, n in skipped.items())
        raise SourceError(f"no usable images in {found.root}: {reasons}")
    return Loaded(
        images=images,
        labels=np.asarray(labels, dtype=np.int64) if found.labelled else None,
        classes=found.classes,
        files_read=files_read,
        skipped=skipped,
        truncated=truncated,
        notes=found.notes,
    )

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

What reading may cost is bounded (:mod:`imgbench.adapters.source_limits`): only
regular files are opened (a FIFO, a device, a socket or a broken link is
skipped and counted), every image's declared size is checked against
``max_image_pixels`` before it is decoded, and files are decoded one page or
frame at a time (:func:`iter_pages`), so memory holds one image, not a file.
"""

from __future__ import annotations

import contextlib
import functools
import os
import struct
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from imgbench.adapters.source_limits import (
    SkipFile,
    SourceError,
    check_pixels,
    library_notes,
    max_file_bytes,
    open_regular,
    pixel_limit,
    read_bounded,
)
from imgbench.core.errors import StoreNotFoundError

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
    #: files skipped while scanning (a FIFO with no suffix, which could have been DICOM), by reason
    skipped: Counter = field(default_factory=Counter)
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
    """DICOM files often have no suffix; the Part 10 preamble says what they are.

    Only a regular file is opened (SkipFile otherwise): a FIFO named ``README`` must not block.
    """
    try:
        with open_regular(path) as f:
            head = f.read(132)
    except (SourceError, OSError):
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
    skipped: Counter = Counter()
    for dirpath, dirs, names in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(names):
            if name.startswith("."):
                continue
            path = Path(dirpath) / name
            try:
                kind = _kind(path)
            except SkipFile as why:
                skipped[str(why)] += 1
                continue
            if kind is None:
                ignored += 1
                continue
            found.append((path.relative_to(root).as_posix(), path, kind))
    if not found:
        what = f" ({ignored} other file(s) ignored)" if ignored else ""
        what += "".join(f" (skipped {n} file(s): {why})" for why, n in skipped.items())
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
    return Scan(root, files, classes, ignored, skipped, notes)


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
@dataclass(frozen=True)
class Page:
    """One image of a source file, known by the shape and dtype its file declares, before it is decoded.

    ``decode()`` reads its pixels; call it (at most once) before asking the file for its next page,
    since pages are read from the open file in order.
    """

    shape: tuple[int, ...]
    dtype: np.dtype
    decode: Callable[[], np.ndarray]

    @property
    def nbytes(self) -> int:
        """Bytes the decoded image takes (as declared)."""
        return int(np.prod(self.shape, dtype=np.int64)) * np.dtype(self.dtype).itemsize


@contextlib.contextmanager
def _reading(what: str, path: Path, seen: list[str]) -> Iterator[None]:
    """Any failure inside is SourceError naming the file, with what the libraries logged about it
    (in ``seen``, kept across the header and the pages), in one line and never on stderr."""
    with library_notes() as notes:
        try:
            yield
        except (SkipFile, SourceError):
            raise
        except Exception as exc:
            logged = seen + notes
            said = f" ({logged[0]}{f' and {len(logged) - 1} more' if len(logged) > 1 else ''})" if logged else ""
            raise SourceError(" ".join(f"cannot read {what} {path}: {exc}{said}".split())) from None
        finally:
            seen.extend(notes)


def _check_declared(shape: tuple[int, ...], dtype: np.dtype | None) -> None:
    if dtype is None or np.dtype(np.dtype(dtype).name) not in STORABLE:
        raise SkipFile(f"pixel type {dtype} (stores take uint8, uint16, int16, float32)")
    if len(shape) not in (2, 3) or (len(shape) == 3 and not 1 <= shape[2] <= 4) or 0 in shape:
        raise SkipFile(f"image shape {tuple(shape)} (stores take HxW or HxWxC with C of 1 to 4)")


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: PNG colour type -> samples per decoded pixel (a palette decodes to RGB)
_PNG_SAMPLES = {0: 1, 2: 3, 3: 3, 4: 2, 6: 4}


def _png_header(head: bytes) -> tuple[tuple[int, ...], np.dtype] | None:
    """(shape, dtype) the IHDR chunk (always first) declares; None when there is none."""
    if len(head) < 26 or head[:8] != _PNG_SIGNATURE or head[12:16] != b"IHDR":
        return None
    width, height, depth, colour = struct.unpack(">IIBB", head[16:26])
    samples = _PNG_SAMPLES.get(colour, 4)
    return ((height, width) if samples == 1 else (height, width, samples)), np.dtype(
        np.uint16 if depth == 16 else np.uint8
    )


def _png_pages(f: BinaryIO, path: Path, limit: int | None, seen: list[str]) -> Iterator[Page]:
    import imagecodecs

    declared = _png_header(f.read(26))
    if declared is not None:
        check_pixels(declared[0], limit, "PNG")
    f.seek(0)
    data = read_bounded(f, max_file_bytes(limit))  # libpng (imagecodecs) needs all the bytes

    def decode() -> np.ndarray:
        with _reading("PNG", path, seen):
            return imagecodecs.png_decode(data)

    if declared is None:  # not a PNG: libpng says what is wrong
        image = decode()
        yield Page(image.shape, image.dtype, lambda: image)
        return
    yield Page(declared[0], declared[1], decode)


_JPEG_KEEP = {"L": 1, "RGB": 3, "CMYK": 4, "I;16": 1}


def _jpeg_pages(f: BinaryIO, path: Path, limit: int | None, seen: list[str]) -> Iterator[Page]:
    from PIL import Image, JpegImagePlugin

    with _reading("JPEG", path, seen):
        try:
            # The JPEG plugin itself reads only the header: the size is checked here, against
            # max_image_pixels, before Image.open's own decompression-bomb check could refuse or warn.
            im = JpegImagePlugin.jpeg_factory(f)
        except SyntaxError:  # not a JPEG after all (a PNG named .jpg): whatever Pillow reads it as
            f.seek(0)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                try:
                    im = Image.open(f)
                except Image.DecompressionBombError as exc:
                    raise SkipFile(f"{exc} (Pillow's limit, PIL.Image.MAX_IMAGE_PIXELS)") from None
    with im:
        width, height = im.size
        check_pixels((height, width), limit, "JPEG")
        mode = im.mode if im.mode in _JPEG_KEEP else "RGB"
        samples = _JPEG_KEEP[mode]
        shape = (height, width) if samples == 1 else (height, width, samples)

        def decode() -> np.ndarray:
            with _reading("JPEG", path, seen):
                im.load()
                return np.asarray(im if im.mode == mode else im.convert(mode))

        yield Page(shape, np.dtype(np.uint16 if mode == "I;16" else np.uint8), decode)


def _tiff_shape(page: Any) -> tuple[int, ...]:
    import tifffile

    shape = tuple(page.shape)
    if page.planarconfig == tifffile.PLANARCONFIG.SEPARATE and len(shape) == 3:
        shape = (*shape[1:], shape[0])  # (S, H, W) -> (H, W, S)
    return shape


def _tiff_pages(f: BinaryIO, path: Path, limit: int | None, seen: list[str]) -> Iterator[Page]:
    import tifffile

    with _reading("TIFF", path, seen):
        tif = tifffile.TiffFile(f)
    with tif:
        declared = []
        with _reading("TIFF", path, seen):
            pages = tif.pages
            pages.cache = False  # one page's metadata in memory at a time, however many pages
            n = len(pages)
            for k in range(n):  # every page's header is checked before any page is decoded
                page = pages[k]
                shape = _tiff_shape(page)
                _check_declared(shape, page.dtype)
                check_pixels(shape, limit, f"page {k + 1} of {n}" if n > 1 else "TIFF")
                declared.append((shape, page.dtype))

        def decode(k: int) -> np.ndarray:
            with _reading("TIFF", path, seen):
                page = tif.pages[k]
                image = page.asarray()
                if page.planarconfig == tifffile.PLANARCONFIG.SEPARATE and image.ndim == 3:
                    image = np.moveaxis(image, 0, -1)  # (S, H, W) -> (H, W, S)
                return np.ascontiguousarray(image)

        for k, (shape, dtype) in enumerate(declared):  # decoded one page at a time, as asked for
            yield Page(shape, dtype, functools.partial(decode, k))


def _dicom_pages(f: BinaryIO, path: Path, limit: int | None, seen: list[str]) -> Iterator[Page]:
    try:
        import pydicom
        from pydicom.pixels import iter_pixels
    except ImportError:
        raise SkipFile("DICOM needs pydicom: pip install 'imgbench[dicom]'") from None
    with _reading("DICOM", path, seen):
        ds = pydicom.dcmread(f, defer_size=1 << 16)  # large values (the pixels) stay in the file
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
    rows, columns = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    check_pixels((rows, columns), limit, "DICOM frame" if frames > 1 else "DICOM")
    bits = int(ds.get("BitsAllocated", 8) or 8)
    dtype = np.dtype(f"{'i' if ds.get('PixelRepresentation', 0) == 1 else 'u'}{max(1, bits // 8)}")
    shape = (rows, columns) if samples == 1 else (rows, columns, samples)
    f.seek(0)
    with _reading("DICOM pixels in", path, seen):
        stream = iter_pixels(f)  # one frame decoded at a time

    def decode() -> np.ndarray:
        with _reading("DICOM pixels in", path, seen):
            frame = next(stream, None)
        if frame is None:
            raise SourceError(f"cannot read DICOM pixels in {path}: it declares {frames} frames and holds fewer")
        return np.ascontiguousarray(frame)

    try:
        for _ in range(frames):
            yield Page(shape, dtype, decode)
    finally:
        stream.close()  # pydicom's generator seeks the file back when closed: while it is open


_PAGES: dict[str, Callable[[BinaryIO, Path, int | None, list[str]], Iterator[Page]]] = {
    "png": _png_pages, "jpeg": _jpeg_pages, "tiff": _tiff_pages, "dicom": _dicom_pages,
}


def _check(image: np.ndarray) -> None:
    if np.dtype(image.dtype.name) not in STORABLE:
        raise SkipFile(f"pixel type {image.dtype} (stores take uint8, uint16, int16, float32)")
    if image.ndim not in (2, 3) or (image.ndim == 3 and not 1 <= image.shape[2] <= 4) or image.size == 0:
        raise SkipFile(f"image shape {image.shape} (stores take HxW or HxWxC with C of 1 to 4)")


def _finish(decode: Callable[[], np.ndarray]) -> np.ndarray:
    image = np.asarray(decode())
    if image.dtype.byteorder == (">" if np.little_endian else "<"):
        image = image.astype(image.dtype.newbyteorder("="))
    _check(image)
    return image


def _as_source(source: SourceFile | str | os.PathLike) -> SourceFile:
    if isinstance(source, SourceFile):
        return source
    path = Path(os.fspath(source))
    kind = _kind(path)
    if kind is None:
        raise SourceError(f"{path} is not an image imgbench reads (PNG, JPEG, TIFF, DICOM)")
    return SourceFile(path, kind)


def iter_pages(source: SourceFile | str | os.PathLike, *, max_image_pixels: int | None = None) -> Iterator[Page]:
    """The images of one file, one :class:`Page` at a time, each checked before it is decoded.

    The file is opened only if it is a regular file (``SkipFile`` naming what it is otherwise:
    a FIFO, a device, a socket, a broken link), and every image it declares is checked against
    ``max_image_pixels`` (default Pillow's ``PIL.Image.MAX_IMAGE_PIXELS``) before any is decoded.
    Multi-page TIFF and multi-frame DICOM are decoded one page/frame at a time, when asked.
    """
    source = _as_source(source)
    limit = pixel_limit(max_image_pixels)
    with open_regular(source.path) as f, contextlib.closing(
        _PAGES[source.kind](f, source.path, limit, [])
    ) as pages:
        for page in pages:  # closed (readers finish) before the file is, even when the caller stops early
            yield Page(page.shape, page.dtype, functools.partial(_finish, page.decode))


def read_file(source: SourceFile | str | os.PathLike, *, max_image_pixels: int | None = None) -> list[np.ndarray]:
    """The images in one file (several for multi-page TIFF or multi-frame DICOM).

    Raises :class:`SourceError` for a damaged file and ``SkipFile`` for one that
    is readable in principle but not here (not a regular file, more pixels than
    ``max_image_pixels``, missing DICOM decoder, exotic pixel type). To hold one
    page in memory at a time, use :func:`iter_pages`.
    """
    return [page.decode() for page in iter_pages(source, max_image_pixels=max_image_pixels)]


def iter_images(
    found: Scan, skipped: Counter | None = None, *, max_image_pixels: int | None = None
) -> Iterator[tuple[np.ndarray, int | None]]:
    """Yield ``(image, label)`` for every image in the scanned files, one at a time, counting skipped files."""
    if skipped is not None:
        skipped.update(found.skipped)
    for source in found.files:
        try:
            for page in iter_pages(source, max_image_pixels=max_image_pixels):
                yield page.decode(), source.label
        except SkipFile as why:
            if skipped is not None:
                skipped[str(why)] += 1


def load(
    folder: str | os.PathLike,
    max_images: int | None = None,
    max_bytes: int | None = None,
    *,
    max_image_pixels: int | None = None,
) -> Loaded:
    """Read images from ``folder`` into memory, stopping at ``max_images`` or ``max_bytes`` of pixels.

    ``max_bytes`` is checked against each image's declared size before it is decoded: the first
    image is always read, and reading stops at the first one that would go beyond the budget
    (one page of a multi-page TIFF, one frame of a DICOM, never the rest of the file).
    """
    found = scan(folder)
    skipped: Counter = Counter(found.skipped)
    images: list[np.ndarray] = []
    labels: list[int] = []
    total = 0
    truncated = False
    files_read = 0
    for source in found.files:
        if truncated:
            break
        kept = len(images)
        try:
            for page in iter_pages(source, max_image_pixels=max_image_pixels):
                if (max_images is not None and len(images) >= max_images) or (
                    max_bytes is not None and images and total + page.nbytes > max_bytes
                ):
                    truncated = True
                    break
                image = page.decode()
                images.append(image)
                labels.append(source.label if source.label is not None else -1)
                total += image.nbytes
        except SkipFile as why:
            skipped[str(why)] += 1
            del images[kept:], labels[kept:]  # a file is used whole or not at all
            total = sum(im.nbytes for im in images)
            continue
        if len(images) > kept:
            files_read += 1
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

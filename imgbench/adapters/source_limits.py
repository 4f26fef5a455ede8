"""What reading one source file may cost: regular files only, declared sizes checked before decoding.

A source folder is not always of the user's own making (a download, a shared
drive, a mounted volume). It may hold a FIFO, which blocks every reader until a
writer comes, or a symlink to ``/dev/zero``, which never ends. It may also hold a
small file that declares a huge image (a decompression bomb: 389 KB of PNG that
decodes to 20000x20000). So a source file is opened only after ``os.stat`` says it
is a regular file, opened ``O_NONBLOCK`` and checked again with ``fstat`` (it may
have been swapped in between), and read whole only up to a bound. Every image's
declared size is compared with ``max_image_pixels`` before a pixel is decoded.

The default pixel limit is Pillow's own, ``PIL.Image.MAX_IMAGE_PIXELS``: Pillow
warns above it that the file "could be decompression bomb DOS attack" (and
refuses above twice it); imgbench refuses above it, for every format. Setting
Pillow's value, or passing ``max_image_pixels``, changes it.

Libraries' log records while a file is read (tifffile logs every damaged tag it
meets) go to the ``imgbench.sources`` logger and into the error about that file,
never straight to stderr.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from imgbench.core.errors import ImgbenchError, UnsupportedError

#: bytes per pixel of the widest image a source may hold (16-bit RGBA)
MAX_BYTES_PER_PIXEL = 8
#: a file read whole into memory (PNG: libpng needs all its bytes) may be this large at least ...
MIN_FILE_BYTES = 1 << 30
#: ... and more when the pixel limit allows more: the limit times MAX_BYTES_PER_PIXEL

#: libraries whose log records are kept out of stderr while a source file is read
QUIET_LOGGERS = ("tifffile", "pydicom")
log = logging.getLogger("imgbench.sources")


class SourceError(ImgbenchError):
    """A source folder or file that cannot be used (missing, empty, unreadable)."""


class SkipFile(Exception):
    """Internal: this file is skipped with a counted warning, not an error."""


def pixel_limit(value: int | None = None) -> int | None:
    """The pixel limit in force: ``value``, or Pillow's ``PIL.Image.MAX_IMAGE_PIXELS`` when None (None there: no limit)."""
    if value is None:
        from PIL import Image

        return Image.MAX_IMAGE_PIXELS
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UnsupportedError(f"max_image_pixels must be a positive number of pixels, not {value!r}")
    return value


def max_file_bytes(pixels: int | None) -> int | None:
    """The most bytes a file read whole may hold under the pixel limit ``pixels`` (None: no limit)."""
    return None if pixels is None else max(MIN_FILE_BYTES, pixels * MAX_BYTES_PER_PIXEL)


def check_pixels(shape: tuple[int, ...], limit: int | None, what: str = "image") -> None:
    """SkipFile when an image declared as ``shape`` (H, W[, ...]) has more pixels than ``limit``."""
    if limit is None or len(shape) < 2:
        return
    pixels = int(shape[0]) * int(shape[1])
    if pixels > limit:
        raise SkipFile(
            f"{what} declares {shape[1]}x{shape[0]} = {pixels:,} pixels, above the limit of {limit:,} "
            "(a decompression bomb?); raise it with --max-image-pixels N (max_image_pixels=N)"
        )


_KINDS = (
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISDIR, "a directory"),
)


def _not_regular(mode: int) -> str:
    what = next((name for test, name in _KINDS if test(mode)), "not a regular file")
    return f"not a regular file ({what})" if what != "not a regular file" else what


def regular_stat(path: Path) -> os.stat_result:
    """``os.stat(path)`` of a regular file; SkipFile naming what else it is (FIFO, device, broken link...)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        if os.path.islink(path):
            raise SkipFile("broken symbolic link") from None
        raise SourceError(f"{path} disappeared while it was being read; run again") from None
    except OSError as exc:
        raise SourceError(f"cannot open {path}: {exc.strerror or exc}") from None
    if not stat.S_ISREG(st.st_mode):
        raise SkipFile(_not_regular(st.st_mode))
    return st


def open_regular(path: Path) -> BinaryIO:
    """``path`` opened for reading, only if it is a regular file; never blocks (FIFO) or opens a device."""
    before = regular_stat(path)  # a device is never opened: opening some has effects (a tape rewinds)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise SourceError(f"cannot open {path}: {exc.strerror or exc}") from None
    f = None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise SkipFile(_not_regular(st.st_mode))
        if (st.st_dev, st.st_ino) != (before.st_dev, before.st_ino):
            raise SourceError(f"{path} was replaced while it was being read; run again")
        f = os.fdopen(fd, "rb")
        f.raw.name = os.fspath(path)  # libraries name the file by it (tifffile needs a path there)
    except BaseException:  # Ctrl-C included: the fd is closed once, by its owner (a second close is EBADF)
        if f is not None:
            f.close()
        else:
            _close_if_ours(fd, before)
        raise
    return f


def _close_if_ours(fd: int, st: os.stat_result) -> None:
    """Close ``fd`` unless it is closed already or now names another file: a Ctrl-C inside ``os.fdopen``
    can land after the file object took the fd and was collected, closing it."""
    try:
        now = os.fstat(fd)
    except OSError:
        return
    if (now.st_dev, now.st_ino) == (st.st_dev, st.st_ino):
        os.close(fd)


def read_bounded(f: BinaryIO, limit: int | None) -> bytes:
    """All of the open regular file ``f``, or SkipFile when it holds more than ``limit`` bytes."""
    size = os.fstat(f.fileno()).st_size
    if limit is not None and size > limit:
        raise SkipFile(f"file of {size:,} bytes, above the {limit:,} a file read whole may hold")
    want = size + 1 if limit is None else min(size, limit) + 1
    data = f.read(want)
    while len(data) == want and (limit is None or len(data) <= limit):  # it grew while being read
        more = f.read(1 << 20 if limit is None else min(1 << 20, limit + 1 - len(data)))
        if not more:
            break
        data += more
        want = len(data)
    if limit is not None and len(data) > limit:
        raise SkipFile(f"file grew above the {limit:,} bytes a file read whole may hold")
    return data


# ----------------------------------------------------------------- library log records
_NOTES: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar("imgbench_source_notes", default=None)


class _Collect(logging.Handler):
    """Keeps the records of QUIET_LOGGERS for the file being read (per thread/context), then logs them quietly."""

    def emit(self, record: logging.LogRecord) -> None:
        notes = _NOTES.get()
        if notes is not None:
            notes.append(f"{record.name}: {record.getMessage()}")
        elif logging.lastResort is not None and record.levelno >= logging.lastResort.level and not self._others(record):
            logging.lastResort.handle(record)  # outside imgbench's reads: as if this handler were not there

    def _others(self, record: logging.LogRecord) -> bool:
        """Whether another handler sees ``record`` (then Python would not have used its last resort)."""
        logger: logging.Logger | None = logging.getLogger(record.name)
        while logger is not None:
            if any(h is not self for h in logger.handlers):
                return True
            logger = logger.parent if logger.propagate else None
        return False


_HANDLER = _Collect(logging.WARNING)


def _install() -> None:
    # A logger with a handler keeps Python's last-resort handler (which prints to stderr) out of it;
    # records still propagate to whatever logging the application configured.
    for name in QUIET_LOGGERS:
        logger = logging.getLogger(name)
        if _HANDLER not in logger.handlers:
            logger.addHandler(_HANDLER)


@contextlib.contextmanager
def library_notes() -> Iterator[list[str]]:
    """Collect the libraries' warnings logged inside the block (for an error message), off stderr."""
    _install()
    notes: list[str] = []
    token = _NOTES.set(notes)
    try:
        yield notes
    finally:
        _NOTES.reset(token)
        for note in notes:
            log.info("%s", note)

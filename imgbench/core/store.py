"""The Store contract every backend implements (opening one is :func:`imgbench.api.open`).

The base class owns everything backends must agree on: modes and their
atomicity, validation of images and labels, the label rule, attrs, indexing,
fork and pickle safety. A backend fills in a handful of ``_hooks`` that move
bytes; it never sees an invalid image or an out-of-range index.

Life of a writer: ``w``/``x`` build the store under a hidden temporary name
beside ``path`` and publish it atomically on a clean ``close()``; ``a`` appends
in place for backends whose engine is crash-safe (``in_place_append``) and
otherwise copies the store, appends to the copy and swaps it in on close.
"""

from __future__ import annotations

import abc
import contextlib
import operator
import os
import shutil
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from imgbench.core import atomic, checksum, codecs
from imgbench.core.atomic import claim_new
from imgbench.core.attrs import Attrs
from imgbench.core.errors import (
    CorruptStoreError,
    ImgbenchError,
    InvalidImageError,
    StoreReplacedError,
    UnsupportedError,
)
from imgbench.core.header import FORMAT_VERSION, check_meta
from imgbench.core.images import as_batch, as_image, as_label, as_labels

# Attrs, check_meta, claim_new and FORMAT_VERSION live in their own modules; they are named here too,
# where backends outside this repository import them from.
__all__ = ["FLUSH_BYTES", "FORMAT_VERSION", "MODES", "Attrs", "Store", "check_meta", "claim_new", "stack_if_uniform"]

MODES = ("r", "w", "x", "a")
#: Pending images are handed to the backend once they hold this many bytes.
FLUSH_BYTES = 64 << 20

# Handles inherited across fork() must never be used or closed in the child
# (closing an LMDB environment there would clear the parent's reader slots).
_ABANDONED: list[Any] = []


def stack_if_uniform(images: list[np.ndarray]) -> np.ndarray | list[np.ndarray]:
    if images and all(im.shape == images[0].shape and im.dtype == images[0].dtype for im in images):
        return np.stack(images)
    return images


class Store(abc.ABC):
    """One open store. Use :func:`imgbench.open` to get one.

    A backend subclasses it and implements the abstract ``_hooks`` below (Python refuses to
    instantiate a subclass that misses one); the others have defaults."""

    #: registry name of the backend
    name: ClassVar[str]
    #: compression names this backend supports; the first is the default
    compressions: ClassVar[tuple[str, ...]]
    #: backend options and their defaults; anything else is rejected
    option_defaults: ClassVar[dict[str, Any]] = {}
    #: True when appending in place is crash-safe (else copy, append, swap)
    in_place_append: ClassVar[bool] = True
    #: True when the backend stores a per-image checksum: its ``_write`` then takes
    #: ``checksums`` (uint64, one per image) and ``_get_checksums`` returns them
    stores_checksums: ClassVar[bool] = False
    #: True for the raw reference (npy): uncompressed pixels with nothing between reader and bytes,
    #: the speed limit others are measured against; compare's recommendation then says what it is
    raw_reference: ClassVar[bool] = False

    # ------------------------------------------------------------------ set-up
    def __init__(self, path: Path, mode: str, compression: str | None, level: int | None, options: dict):
        self.path = path
        self.mode = mode
        options = dict(options)
        verify = options.pop("verify", False)
        if not isinstance(verify, bool):
            raise UnsupportedError(f"verify must be True or False, got {verify!r}")
        #: check every image read against its stored checksum (``imgbench.open(path, verify=True)``)
        self.verify = verify
        unknown = sorted(set(options) - set(self.option_defaults))
        if unknown:
            known = ", ".join(sorted([*self.option_defaults, "verify"]))
            raise UnsupportedError(
                f"unknown option(s) {', '.join(unknown)} for backend {self.name!r}; it takes: {known}"
            )
        self.options = {**self.option_defaults, **options}
        self._check_options()
        self._pid = os.getpid()
        self._closed = False
        self._lock: atomic.WriterLock | None = None
        self._tmp: Path | None = None
        self._pending: list[np.ndarray] = []
        self._pending_labels: list[int] = []
        self._pending_bytes = 0
        self._labels_cache: np.ndarray | None = None
        self._checksums_cache: np.ndarray | None = None
        self._checksummed = self.stores_checksums  # new stores; an existing one says in its metadata
        self._failed: str | None = None  # why a backend write failed; the writer can then only abort
        self._init_handles()

        if mode in ("r", "a"):
            meta = self._start_existing()
            try:
                self._adopt_meta(meta)
            except BaseException:
                self._discard()
                raise
            if compression is not None and compression != self.compression:
                self._discard()
                raise UnsupportedError(
                    f"{path} is stored with compression {self.compression!r}; compression is chosen when a "
                    "store is created (mode 'w' or 'x'), not when it is opened"
                )
            if level is not None and level != self.level:
                self._discard()
                raise UnsupportedError(
                    f"{path} is stored at level {self.level!r}; the level is chosen when a store is created"
                )
        else:
            self.compression = compression if compression is not None else self.compressions[0]
            if self.compression not in self.compressions:
                raise UnsupportedError(
                    f"compression {self.compression!r} is not supported by backend {self.name!r}; "
                    f"choose one of: {', '.join(self.compressions)}"
                )
            self.level = self._check_level(self.compression, level)
            self._count = 0
            self._labelled: bool | None = None
            self._attrs = Attrs({}, writable=True)
            self._start_new()

    def _start_existing(self, lock: atomic.WriterLock | None = None) -> dict[str, Any]:
        if self.mode == "r":
            return self._open_reader()
        # ``lock``: already taken on what the path names (a copy-on-write flush locks its copy before the swap).
        self._lock = lock if lock is not None else atomic.lock_store(self.path, self._what())
        if self.in_place_append:
            try:
                return self._open_appender(self.path)
            except BaseException:
                self._release_lock()
                raise
        # Copy-on-write append: lock the current file, copy it, append to the copy.
        try:
            atomic.remove_stale_temps(self.path)
            self._tmp = atomic.temp_sibling(self.path)
            shutil.copyfile(self.path, self._tmp)
            return self._open_appender(self._tmp)
        except BaseException:
            self._abort_quietly()
            raise

    def _start_new(self) -> None:
        self._tmp = claim_new(self.path, self.mode)
        try:
            if self.mode == "w":  # the store it replaces is locked like an appender locks it
                self._lock = atomic.lock_replaced(self.path, self._what())
            self._create(self._tmp)
        except BaseException:
            self._abort_quietly()
            raise

    def _adopt_meta(self, meta: dict[str, Any]) -> None:
        meta = check_meta(meta, self.name, self.path)
        compression = meta.get("compression")
        if compression not in self.compressions:
            raise CorruptStoreError(f"{self.path}: unknown compression {compression!r} in metadata")
        self.compression = compression
        self.level = meta.get("level")
        self._count = meta["count"]
        self._checksummed = self.stores_checksums and meta.get("checksum") == checksum.ALGORITHM
        labelled = meta.get("labels")
        if labelled not in (True, False):
            raise CorruptStoreError(f"{self.path}: metadata 'labels' flag is missing")
        self._labelled = labelled if self._count else None
        self._attrs = Attrs(meta.get("attrs", {}), writable=self.mode != "r")

    def _check_options(self) -> None:
        """Backends validate option values here."""

    def _check_level(self, compression: str, level: int | None) -> int | None:
        return codecs.get(compression, self.compressions, self.name).check_level(level)

    def _check_dtype(self, dtype: np.dtype) -> None:
        """Raise UnsupportedError if this store's compression cannot hold ``dtype``."""
        codecs.get(self.compression, self.compressions, self.name).check_dtype(dtype)

    def _check_shape(self, shape: tuple[int, ...]) -> None:
        """Raise UnsupportedError if this store's per-image codec cannot hold ``shape``'s channel count."""
        codec = codecs.CODECS.get(self.compression)
        if codec is not None:
            codec.check_shape(shape)

    # ------------------------------------------------------- backend hooks
    # Abstract: every backend implements these; a class missing one cannot be instantiated.
    @classmethod
    @abc.abstractmethod
    def detect(cls, path: Path) -> bool:
        """True if ``path`` holds a store of this backend (cheap, no full open)."""

    #: why this backend's stores cannot be read from a URL (backends that can override ``remote_reader``)
    remote_refusal: ClassVar[str] = "this backend reads only local files"

    @classmethod
    def detect_remote(cls, probe: Any) -> bool:
        """True if the URL described by ``probe`` (an :class:`imgbench.remote.Probe`) holds a store of this backend."""
        return False

    @classmethod
    def remote_reader(cls) -> type[Store]:
        """The class that reads this backend's stores from a URL (``s3://...``); UnsupportedError if none can."""
        raise UnsupportedError(
            f"{cls.name} stores cannot be read from an object store: {cls.remote_refusal}. Copy the store to a "
            "local path (aws s3 sync, or s3fs get(recursive=True)) and open the copy, or convert it to zarr, tar "
            "or hdf5, which read from s3:// directly"
        )

    def _init_handles(self) -> None:
        """Set handle attributes to their closed state (no I/O)."""

    @abc.abstractmethod
    def _open_reader(self) -> dict[str, Any]:
        """Open read handles; return the metadata dict."""

    @abc.abstractmethod
    def _open_appender(self, target: Path) -> dict[str, Any]:
        """Open ``target`` (the store or its copy) for appending; return the metadata dict."""

    @abc.abstractmethod
    def _create(self, target: Path) -> None:
        """Create an empty store at ``target`` (a temporary path) and open it for writing."""

    @abc.abstractmethod
    def _write(self, images: np.ndarray | list[np.ndarray], labels: np.ndarray | None, start: int) -> None:
        """Store validated images as indices ``start``, ``start + 1``, ... (``stores_checksums``
        backends take ``checksums=``: uint64 per image, or None for a store written without them)."""

    @abc.abstractmethod
    def _flush(self, meta: dict[str, Any]) -> None:
        """Make everything written durable; in place, make it visible to new readers."""

    @abc.abstractmethod
    def _close_writer(self, commit: bool) -> None:
        """Release write handles; ``commit=False`` drops what was not flushed."""

    @abc.abstractmethod
    def _close_reader(self) -> None:
        """Release read handles."""

    @abc.abstractmethod
    def _reader_handles(self) -> Any:
        """What a forked child must abandon (never use, never close)."""

    @abc.abstractmethod
    def _get(self, index: int) -> np.ndarray:
        """Image ``index`` (in range, the reader open)."""

    def _get_many(self, indices: np.ndarray) -> np.ndarray | list[np.ndarray]:
        return stack_if_uniform([self._get(int(i)) for i in indices])

    def _get_all(self) -> np.ndarray | list[np.ndarray]:
        return self._get_many(np.arange(self._count))

    @abc.abstractmethod
    def _get_labels(self) -> np.ndarray | None:
        """int64 label per image (called for labelled stores only)."""

    def _get_checksums(self) -> np.ndarray | None:
        """uint64 checksum per image; required of ``stores_checksums`` backends (see ``__init_subclass__``)."""
        raise NotImplementedError

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.stores_checksums and cls._get_checksums is Store._get_checksums:
            raise TypeError(f"{cls.__qualname__} sets stores_checksums but does not implement _get_checksums")

    # ------------------------------------------------------------ writing
    def _check_writable(self) -> None:
        self._check_open()
        if self.mode == "r":
            raise UnsupportedError(f"{self.path} is open read-only; open it with mode='a' to add images")
        if self._failed is not None:
            raise ImgbenchError(
                f"an earlier write failed on {self.path} ({self._failed}); this writer cannot continue: "
                "close it and open the store again"
            )

    @contextlib.contextmanager
    def _writing(self) -> Iterator[None]:
        """Backend writes: once one fails, the images it dropped cannot be accounted for,
        so the writer refuses further work and ``close()`` publishes nothing."""
        try:
            yield
        except BaseException as exc:
            self._failed = str(exc) or type(exc).__name__
            raise

    def _check_open(self) -> None:
        if self._closed:
            raise ImgbenchError(f"store {self.path} is closed")

    def _label_rule(self, has_label: bool, count: int) -> None:
        if self._labelled is None or has_label == self._labelled:
            return
        if self._labelled:
            raise InvalidImageError(
                f"this store labels every image: pass label= (append) or labels= (extend) for the {count} new image(s)"
            )
        raise InvalidImageError(
            "this store has unlabelled images: a store labels every image or none, so drop the label(s) "
            "or write labelled images to a new store"
        )

    def append(self, image: np.ndarray, label: int | None = None) -> None:
        """Add one image (and its label when the store is labelled)."""
        self._check_writable()
        image = as_image(image)
        self._check_dtype(image.dtype)
        self._check_shape(image.shape)
        if label is not None:
            label = as_label(label)
        self._label_rule(label is not None, 1)
        self._pending.append(image)
        if label is not None:
            self._pending_labels.append(label)
        self._labelled = label is not None
        self._pending_bytes += image.nbytes
        self._count += 1
        if self._pending_bytes >= FLUSH_BYTES:
            self._write_pending()

    def extend(self, images: np.ndarray | Iterable[np.ndarray], labels: Iterable[int] | None = None) -> None:
        """Add a stacked batch ``(N, H, W[, C])`` or any iterable of images.

        A stacked batch is validated as a whole and written without per-image
        Python work. From an iterable, images before an invalid one are kept
        (like ``list.extend``); the error names the bad item.
        """
        self._check_writable()
        if isinstance(images, np.ndarray):
            batch = as_batch(images)
            self._check_dtype(batch.dtype)
            self._check_shape(batch.shape[1:])
            label_arr = None if labels is None else as_labels(labels, len(batch))
            self._label_rule(label_arr is not None, len(batch))
            self._write_pending()
            self._labelled = label_arr is not None
            with self._writing():
                self._write_checked(batch, label_arr, self._count)
            self._count += len(batch)
            self._labels_cache = self._checksums_cache = None
            return
        if isinstance(images, (str, bytes)) or not isinstance(images, Iterable):
            raise InvalidImageError(
                f"extend() takes a stacked ndarray or an iterable of images, got {type(images).__name__}"
            )
        label_arr = None
        if labels is not None:
            known = len(images) if hasattr(images, "__len__") else None
            label_arr = as_labels(list(labels) if not hasattr(labels, "__len__") else labels, known)
        n = 0
        for k, image in enumerate(images):
            if label_arr is not None and k >= len(label_arr):
                raise InvalidImageError(
                    f"labels has {len(label_arr)} entries but more images followed: give one label per image"
                )
            try:
                image = as_image(image, f"image {k}")
            except InvalidImageError as exc:
                raise InvalidImageError(f"{exc} (images before it in this extend() were added)") from None
            self.append(image, None if label_arr is None else int(label_arr[k]))
            n = k + 1
        if label_arr is not None and n != len(label_arr):
            raise InvalidImageError(
                f"labels has {len(label_arr)} entries for {n} images: give one label per image"
            )

    def _write_pending(self) -> None:
        if not self._pending:
            return
        images, self._pending = self._pending, []
        labels = np.asarray(self._pending_labels, dtype=np.int64) if self._pending_labels else None
        self._pending_labels = []
        self._pending_bytes = 0
        self._labels_cache = self._checksums_cache = None
        with self._writing():
            self._write_checked(images, labels, self._count - len(images))

    def _write_checked(self, images: np.ndarray | list[np.ndarray], labels: np.ndarray | None, start: int) -> None:
        """Hand images to the backend, with their checksums when it stores them."""
        self._check_still_ours()
        if self._checksummed:
            self._write(images, labels, start, checksums=checksum.digests(images, labels))
        elif self.stores_checksums:
            self._write(images, labels, start, checksums=None)  # appending to a store written without them
        else:
            self._write(images, labels, start)

    def _meta(self) -> dict[str, Any]:
        return {
            "format": "imgbench",
            "version": FORMAT_VERSION,
            "backend": self.name,
            "compression": self.compression,
            "level": self.level,
            "count": self._count,
            "labels": bool(self._labelled),
            "attrs": self._attrs.to_dict(),
            **({"checksum": checksum.ALGORITHM} if self._checksummed else {}),
        }

    def flush(self) -> None:
        """Write pending images; in mode 'a' they are durable and visible afterwards.

        In mode 'w'/'x' nothing becomes visible before ``close()``.
        """
        self._check_writable()
        self._write_pending()
        with self._writing():
            self._check_still_ours()
            self._flush(self._meta())
            self._attrs.dirty = False
            if self.mode == "a" and not self.in_place_append:
                # Copy-on-write: swap the copy in, then continue on a fresh copy. The copy is locked
                # before the swap, so no other writer can slip in between the two.
                self._close_writer(commit=True)
                self._check_still_ours()
                lock = atomic.WriterLock(self._tmp, self._what())
                try:
                    atomic.publish(self._tmp, self.path, replace=True)
                except BaseException:
                    lock.close()
                    raise
                self._release_lock()
                self._tmp = None
                self._start_existing(lock)

    # ------------------------------------------------------------ closing
    def close(self) -> None:
        """Finish the store. For writers this is what publishes it; see the module doc."""
        if self._closed or os.getpid() != self._pid:
            return
        if self.mode == "r":
            self._closed = True
            self._close_reader()
            return
        if self._failed is not None:
            self._abort_quietly()
            raise ImgbenchError(
                f"{self.path} was left as it was: an earlier write failed ({self._failed}), so the images "
                "written since the last flush were discarded"
            )
        try:
            self._check_still_ours()
            self._write_pending()
            self._flush(self._meta())
            self._close_writer(commit=True)
            if self._tmp is not None:
                if self.mode == "a":
                    self._check_still_ours()
                elif self.mode == "w":  # what is at the path now, locked (it may have changed since open)
                    self._lock = atomic.lock_for_publish(self.path, self._lock, self._what())
                atomic.publish(self._tmp, self.path, replace=self.mode != "x")
                self._tmp = None
        except BaseException:
            self._abort_quietly()
            raise
        self._closed = True
        self._release_lock()

    def _abort_quietly(self) -> None:
        """Drop everything not yet flushed; leave the published store as it was."""
        if os.getpid() != self._pid:
            return
        self._closed = True
        self._pending = []
        self._pending_labels = []
        interrupted: BaseException | None = None
        try:
            self._close_writer(commit=False)
        except Exception:
            pass
        except BaseException as exc:  # Ctrl-C again: still remove the temporary, then let it through
            interrupted = exc
        if self._tmp is not None:
            atomic.remove(self._tmp)
            self._tmp = None
        self._release_lock()
        if interrupted is not None:
            raise interrupted

    def _discard(self) -> None:
        """Undo a failed open, whatever the mode."""
        if self.mode == "r":
            self._closed = True
            try:
                self._close_reader()
            except Exception:
                pass
        else:
            self._abort_quietly()

    def _what(self) -> str:
        """What this store is called in lock errors ("lmdb store")."""
        return f"{self.name} store"

    def _check_still_ours(self) -> None:
        """An appender commits only into the store it opened and locked: if another program replaced
        the path since (imgbench's own ``w`` waits for the lock), its images are not written there."""
        if self.mode == "a" and self._lock is not None and not self._lock.holds(self.path):
            raise StoreReplacedError(
                f"{self.path} was replaced by another program since this writer opened it; the images it "
                "appended were not committed into the store now there. Reopen it with mode='a' and append again"
            )

    def _release_lock(self) -> None:
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def __enter__(self) -> Store:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None and self.mode != "r":
            self._abort_quietly()
        else:
            self.close()

    def __del__(self) -> None:
        if getattr(self, "_closed", True) or getattr(self, "_pid", None) != os.getpid():
            return
        if self.mode == "r":
            try:
                self._close_reader()
            except Exception:
                pass
            return
        warnings.warn(
            f"imgbench store {self.path} (mode {self.mode!r}) was never closed; unflushed images are "
            "discarded. Use 'with imgbench.open(...)' or call close()",
            ResourceWarning,
            stacklevel=2,
        )
        self._abort_quietly()

    # ------------------------------------------------------------ reading
    def _ensure_reader(self) -> None:
        self._check_open()
        if self.mode != "r":
            raise UnsupportedError(
                f"{self.path} is open for writing (mode {self.mode!r}); read it with imgbench.open(path) after close()"
            )
        if self._pid != os.getpid():
            # Forked or unpickled: handles of another process are not ours to use or
            # close; open our own now, on first use.
            if self._pid is not None:
                _ABANDONED.append(self._reader_handles())
            self._pid = os.getpid()
            self._adopt_meta(self._open_reader())

    def __len__(self) -> int:
        return self._count

    def _index(self, index: Any) -> int:
        try:
            i = operator.index(index)
        except TypeError:
            raise TypeError(f"image indices must be integers or slices, not {type(index).__name__}") from None
        n = self._count
        if not -n <= i < n:
            raise IndexError(f"image index {i} is out of range for a store of {n} images")
        return i + n if i < 0 else i

    def __getitem__(self, index: int | slice) -> Any:
        """``store[i]`` is image ``i``; ``store[a:b:c]`` is ``read_many(range(a, b, c))``."""
        if isinstance(index, slice):
            return self.read_many(range(*index.indices(self._count)))
        i = self._index(index)
        self._ensure_reader()
        image = self._get(i)
        if self.verify:
            self._verify([image], [i])
        return image

    def __iter__(self) -> Iterator[np.ndarray]:
        for i in range(len(self)):
            yield self[i]

    def read_many(self, indices: Iterable[int] | None = None) -> np.ndarray | list[np.ndarray]:
        """Images at ``indices`` in that order (all when None): stacked if shapes agree, else a list."""
        self._ensure_reader()
        if indices is None:
            if self._count == 0:
                return []
            images = self._get_all()
            if self.verify:
                self._verify(images, range(self._count))
            return images
        idx = np.asarray(indices if not isinstance(indices, range) else np.arange(
            indices.start, indices.stop, indices.step))
        if idx.size == 0:
            return []
        if idx.ndim != 1 or idx.dtype.kind not in "iu":
            raise TypeError(f"indices must be a 1-D sequence of integers, got {idx.dtype} with shape {idx.shape}")
        n = self._count
        bad = (idx < -n) | (idx >= n)
        if bad.any():
            raise IndexError(f"image index {int(idx[bad][0])} is out of range for a store of {n} images")
        idx = np.where(idx < 0, idx + n, idx).astype(np.int64)
        images = self._get_many(idx)
        if self.verify:
            self._verify(images, idx)
        return images

    @property
    def checksums(self) -> np.ndarray | None:
        """uint64 xxh3-64 of each image's raw pixels seeded with its label, or None for a store written without them."""
        self._ensure_reader()
        if not self._checksummed:
            return None
        if self._checksums_cache is None:
            sums = self._one_per_image(self._get_checksums(), "records checksums but holds {}")
            self._checksums_cache = np.asarray(sums, np.uint64)
        return self._checksums_cache.copy()

    def _verify(self, images: Any, indices: Any) -> None:
        if self._checksums_cache is None and self.checksums is None:
            return  # a store written without checksums
        idx = np.asarray(indices, np.int64)
        sums = self._checksums_cache[idx]  # no copy of the whole array per read
        if self._labelled and self._labels_cache is None:
            self.labels  # noqa: B018 - load and check them once
        labels = self._labels_cache[idx] if self._labelled else None
        checksum.check(images, sums, indices, f"{self.path}: ", labels)

    @property
    def labels(self) -> np.ndarray | None:
        """int64 label per image, or None when the store is unlabelled."""
        self._ensure_reader()
        if not self._labelled:
            return None
        if self._labels_cache is None:
            self._labels_cache = self._one_per_image(self._get_labels(), "is labelled but holds {} labels")
        return self._labels_cache.copy()

    def _one_per_image(self, values: np.ndarray | None, says: str) -> np.ndarray:
        """``values`` if it holds one entry per image, else CorruptStoreError: "store <says> for N images"."""
        held = 0 if values is None else len(values)
        if held != self._count:
            raise CorruptStoreError(f"{self.path}: store {says.format(held)} for {self._count} images")
        return values

    @property
    def attrs(self) -> Attrs:
        return self._attrs

    @property
    def backend(self) -> str:
        return self.name

    def __repr__(self) -> str:
        state = "closed" if getattr(self, "_closed", True) else f"mode={self.mode!r}"
        return (
            f"<imgbench {self.name} store {str(getattr(self, 'path', '?'))!r} {state} "
            f"images={getattr(self, '_count', '?')} compression={getattr(self, 'compression', '?')!r}>"
        )

    # -------------------------------------------------------------- pickle
    def __getstate__(self) -> dict[str, Any]:
        if self.mode != "r":
            raise TypeError(
                f"a store open for writing (mode {self.mode!r}) cannot be pickled; pickle a read-mode store"
            )
        return {"path": str(self.path), "options": dict(self.options), "meta": self._meta(), "verify": self.verify}

    def __setstate__(self, state: dict[str, Any]) -> None:
        # Nothing is opened here: the first read in this process opens the handles.
        self.path = Path(state["path"])
        self.mode = "r"
        self.options = state["options"]
        self._pid = None
        self._closed = False
        self._lock = None
        self._tmp = None
        self._pending, self._pending_labels, self._pending_bytes = [], [], 0
        self._labels_cache = self._checksums_cache = None
        self.verify = state.get("verify", False)
        self._failed = None
        self._init_handles()
        self._adopt_meta(state["meta"])

"""Disk backend: one ordinary image file per image, in one directory.

Layout (open any image with an image viewer, or ``np.load`` for raw ones):

- ``00000000.png``, ``00000001.png``, ... (compression ``png``, 8/16-bit,
  gray/gray+alpha/RGB/RGBA) or ``00000000.npy``, ... (compression ``none``:
  NumPy ``.npy`` files, no pickle); the name is the zero-padded image index;
- ``imgbench.json``: format, version, backend, compression, level, count,
  attrs, the labels flag, ``image_labels`` (one int per image when labelled) and
  ``images``: ``{"shape", "dtype"}`` when every image agrees, else
  ``{"shapes": [...], "dtypes": [...]}`` per image. PNG cannot tell ``(H, W)``
  from ``(H, W, 1)``; the sidecar can.

The sidecar is the commit record: images are written first, synced, then the
sidecar is replaced atomically, so a reader (or a crash) sees the store before or
after an append, never in between. Files beyond ``count`` are leftovers of an
interrupted append and are overwritten by the next one. Encoding and decoding run
on a thread pool using every core (libpng releases the GIL).
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from .. import atomic, codecs, parallel
from ..errors import CorruptStoreError, ImgbenchError, UnsupportedError
from ..images import DTYPE_CODES, dtype_from_code
from ..store import Store, stack_if_uniform

SIDECAR = "imgbench.json"
_MAX_SIDECAR_BYTES = 1 << 30


def _npy_bytes(image: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.ascontiguousarray(image, dtype=image.dtype.newbyteorder("<")), allow_pickle=False)
    return buf.getvalue()


def _npy_decode(data: bytes, dtype: np.dtype, shape: tuple[int, ...]) -> np.ndarray:
    fp = io.BytesIO(data)
    try:
        version = np.lib.format.read_magic(fp)
        if version == (1, 0):
            stored_shape, fortran, stored_dtype = np.lib.format.read_array_header_1_0(fp)
        else:
            stored_shape, fortran, stored_dtype = np.lib.format.read_array_header_2_0(fp)
    except (ValueError, SyntaxError, TypeError) as exc:
        raise CorruptStoreError(f"stored .npy header is damaged: {exc}") from None
    if fortran or tuple(stored_shape) != tuple(shape) or np.dtype(stored_dtype) != np.dtype(dtype).newbyteorder("<"):
        raise CorruptStoreError(
            f"stored .npy holds {stored_shape} {stored_dtype}, the store recorded {shape} {np.dtype(dtype)}"
        )
    return codecs.CODECS["none"].decode(memoryview(data)[fp.tell() :], dtype, shape)


class DiskStore(Store):
    name = "disk"
    compressions = ("png", "none")
    option_defaults = {
        "threads": None,  # encode/decode threads (None = all cores)
        "sync": True,  # sync the files and the sidecar before an append or a new store becomes visible
    }

    def _check_options(self) -> None:
        threads = self.options["threads"]
        if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
            raise UnsupportedError(f"threads must be a positive integer, got {threads!r}")

    def _init_handles(self) -> None:
        self._dir: Path | None = None
        self._dirfd: int | None = None  # readers open images relative to the directory they opened
        self._shapes = np.zeros((0, 3), np.int64)  # 0 in the third column for 2-D images
        self._dtypes: list[np.dtype] = []
        self._image_labels = np.zeros(0, np.int64)
        self._uniform: tuple[tuple[int, ...], np.dtype] | None | bool = None

    @classmethod
    def detect(cls, path: Path) -> bool:
        return path.is_dir() and (path / SIDECAR).is_file()

    def _suffix(self) -> str:
        return codecs.CODECS[self.compression].suffix

    def _name(self, index: int) -> str:
        # A plain string: pathlib costs more than decoding a small PNG.
        return f"{index:08d}{self._suffix()}"

    def _file(self, index: int) -> str:
        return f"{self._dir}{os.sep}{self._name(index)}"

    # ------------------------------------------------------------ opening
    def _load(self, directory: Path) -> dict[str, Any]:
        sidecar = directory / SIDECAR
        try:
            if sidecar.stat().st_size > _MAX_SIDECAR_BYTES:
                raise CorruptStoreError(f"{sidecar} is implausibly large")
            meta = json.loads(sidecar.read_bytes())
        except FileNotFoundError:
            raise CorruptStoreError(f"{directory} has no {SIDECAR}; it is not a disk store") from None
        except (ValueError, UnicodeDecodeError) as exc:
            raise CorruptStoreError(f"{sidecar} is not valid JSON ({exc})") from None
        if not isinstance(meta, dict):
            raise CorruptStoreError(f"{sidecar} does not hold an imgbench header")
        count = meta.get("count")
        if not isinstance(count, int) or count < 0:
            return meta  # check_meta reports it
        images = meta.get("images") or {}
        try:
            if "shape" in images:
                shape = tuple(int(d) for d in images["shape"])
                dtype = dtype_from_code(images["dtype"])
                self._uniform = (shape, dtype)
                self._shapes = np.tile(np.array(shape + (0,) * (3 - len(shape)), np.int64), (count, 1))
                self._dtypes = [dtype] * count
            elif "shapes" in images:
                self._shapes = np.array(
                    [list(s) + [0] * (3 - len(s)) for s in images["shapes"]], np.int64
                ).reshape(-1, 3)
                self._dtypes = [dtype_from_code(c) for c in images["dtypes"]]
                self._uniform = False
            elif count == 0:
                self._uniform = None
            else:
                raise CorruptStoreError(f"{sidecar} has no image shapes")
            if len(self._shapes) != count or len(self._dtypes) != count:
                raise CorruptStoreError(f"{sidecar} lists shapes for {len(self._shapes)} of {count} images")
            if (self._shapes[:, :2] < 1).any() or (self._shapes[:, 2] > 4).any() or (self._shapes < 0).any():
                raise CorruptStoreError(f"{sidecar} lists an impossible image shape")
            if meta.get("labels"):
                self._image_labels = np.asarray(meta.get("image_labels"), dtype=np.int64).reshape(-1)
                if len(self._image_labels) != count:
                    raise CorruptStoreError(f"{sidecar} has {len(self._image_labels)} labels for {count} images")
        except (TypeError, ValueError, OverflowError) as exc:
            raise CorruptStoreError(f"{sidecar} has malformed image entries ({exc})") from None
        return meta

    def _open_reader(self) -> dict[str, Any]:
        # Holding the directory keeps this reader on the store it opened: if a
        # writer swaps a new store in at the same path, our reads fail (the old
        # files are deleted) instead of returning the new store's pixels.
        self._dir = self.path
        self._dirfd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            return self._load(self.path)
        except BaseException:
            self._close_reader()
            raise

    def _open_appender(self, target: Path) -> dict[str, Any]:
        self._dir = target
        return self._load(target)

    def _create(self, target: Path) -> None:
        target.mkdir()
        self._dir = target

    # ------------------------------------------------------------ writing
    def _write(self, images, labels, start) -> None:
        items = images if isinstance(images, list) else list(images)
        codec, level = codecs.CODECS[self.compression], self.level
        encode = _npy_bytes if self.compression == "none" else (lambda im: codec.encode(im, level))

        def write(s: int, e: int) -> None:
            for j in range(s, e):
                with open(self._file(start + j), "wb") as f:
                    f.write(encode(items[j]))

        try:
            parallel.map_chunks(write, len(items), self.options["threads"], chunk=16)
        except OSError as exc:
            raise ImgbenchError(f"writing images to {self._dir} failed: {exc}") from exc
        new = np.array([im.shape + (0,) * (3 - im.ndim) for im in items], np.int64).reshape(-1, 3)
        self._shapes = np.concatenate([self._shapes[:start], new])
        self._dtypes = self._dtypes[:start] + [im.dtype for im in items]
        if labels is not None:
            self._image_labels = np.concatenate([self._image_labels[:start], labels])
        kinds = {(im.shape, im.dtype) for im in items}
        if self._uniform is None:
            self._uniform = next(iter(kinds)) if len(kinds) == 1 else False
        elif self._uniform and kinds != {self._uniform}:
            self._uniform = False

    def _flush(self, meta) -> None:
        n = self._count
        meta = dict(meta)
        if self._uniform:
            meta["images"] = {"shape": list(self._uniform[0]), "dtype": DTYPE_CODES[self._uniform[1]]}
        else:
            meta["images"] = {
                "shapes": [[int(d) for d in row if d] for row in self._shapes[:n]],
                "dtypes": [DTYPE_CODES[d] for d in self._dtypes[:n]],
            }
        if meta["labels"]:
            meta["image_labels"] = self._image_labels[:n].tolist()
        sync = self.options["sync"]
        try:
            if sync:
                atomic.sync_filesystem(self._dir)
            atomic.write_file(self._dir / SIDECAR, json.dumps(meta).encode(), sync=sync)
        except OSError as exc:
            raise ImgbenchError(f"writing {self._dir / SIDECAR} failed: {exc}") from exc

    def _close_writer(self, commit: bool) -> None:
        self._dir = None if commit else self._dir

    # ------------------------------------------------------------ reading
    def _close_reader(self) -> None:
        if self._dirfd is not None:
            os.close(self._dirfd)
            self._dirfd = None

    def _reader_handles(self) -> Any:
        fd, self._dirfd = self._dirfd, None
        return fd  # an inherited descriptor: left open, the parent still uses it

    def _kind(self, index: int) -> tuple[np.dtype, tuple[int, ...]]:
        if self._uniform:
            return self._uniform[1], self._uniform[0]
        return self._dtypes[index], tuple(int(d) for d in self._shapes[index] if d)

    def _decode_file(self, index: int) -> np.ndarray:
        path = self._file(index)
        try:
            with open(os.open(self._name(index), os.O_RDONLY, dir_fd=self._dirfd), "rb", buffering=0) as f:
                data = f.read()
        except FileNotFoundError:
            raise CorruptStoreError(
                f"image {index} is missing: {path} does not exist (damaged, or the store was replaced)"
            ) from None
        except IsADirectoryError:
            raise CorruptStoreError(f"image {index}: {path} is a directory") from None
        dtype, shape = self._kind(index)
        if self.compression == "none":
            return _npy_decode(data, dtype, shape)
        try:
            return codecs.CODECS[self.compression].decode(data, dtype, shape)
        except CorruptStoreError as exc:
            raise CorruptStoreError(f"image {index} ({self._name(index)}): {exc}") from None

    def _get(self, index: int) -> np.ndarray:
        return self._decode_file(index)

    def _get_many(self, indices: np.ndarray) -> np.ndarray | list[np.ndarray]:
        idx = indices.tolist()
        kinds = {(self._dtypes[i], tuple(self._shapes[i])) for i in set(idx)} if not self._uniform else None
        if self._uniform or len(kinds) == 1:
            return parallel.decode_stacked(lambda j: self._decode_file(idx[j]), len(idx), self.options["threads"])
        parts = parallel.map_chunks(
            lambda s, e: [self._decode_file(i) for i in idx[s:e]], len(idx), self.options["threads"]
        )
        return stack_if_uniform([im for part in parts for im in part])

    def _get_labels(self) -> np.ndarray | None:
        return self._image_labels[: self._count].copy()

"""Disk backend: one ordinary image file per image in a directory, the baseline everyone has.

Any image viewer opens the files (``np.load`` the raw ones); a JSON sidecar is the
commit record. Layout: docs/formats/disk.md.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

from imgbench.core import atomic, checksum, codecs, ownfiles, parallel
from imgbench.core.errors import CorruptStoreError, ImgbenchError, UnsupportedError
from imgbench.core.images import DTYPE_CODES, dtype_from_code
from imgbench.core.npyformat import npy_bytes, npy_decode
from imgbench.core.store import Store, stack_if_uniform

SIDECAR = "imgbench.json"
_MAX_SIDECAR_BYTES = 1 << 30


class DiskStore(Store):
    name = "disk"
    compressions = ("png", "none", "jpegls", "htj2k", "jpegxl", "lerc")
    stores_checksums = True
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
        self._sums = np.zeros(0, np.uint64)  # writer: digests of images 0..count-1
        self._sums_hex: Any = None  # reader: the sidecar's image_checksums, decoded on first use
        self._uniform: tuple[tuple[int, ...], np.dtype] | None | bool = None

    @classmethod
    def detect(cls, path: Path) -> bool:
        return path.is_dir() and (path / SIDECAR).is_file()

    remote_refusal = "one object per image would cost one request per image read"

    @classmethod
    def detect_remote(cls, probe) -> bool:
        return probe.names is not None and SIDECAR in probe.names

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
            # A reader opens it relative to the directory it holds; never through a symlink.
            raw = ownfiles.read_own(SIDECAR if self._dirfd is not None else sidecar, _MAX_SIDECAR_BYTES + 1,
                                    self._dirfd, str(sidecar))
            if len(raw) > _MAX_SIDECAR_BYTES:
                raise CorruptStoreError(f"{sidecar} is implausibly large")
            meta = json.loads(raw)
        except FileNotFoundError:
            raise CorruptStoreError(f"{directory} has no {SIDECAR}; it is not a disk store") from None
        except IsADirectoryError:
            raise CorruptStoreError(f"{sidecar} is a directory") from None
        except (ValueError, UnicodeDecodeError) as exc:
            raise CorruptStoreError(f"{sidecar} is not valid JSON ({exc})") from None
        if not isinstance(meta, dict):
            raise CorruptStoreError(f"{sidecar} does not hold an imgbench header")
        count = meta.get("count")
        if not isinstance(count, int) or count < 0:
            return meta  # check_meta reports it
        self._check_last_file(meta, count, directory)
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
        except (TypeError, ValueError, OverflowError, KeyError, AttributeError) as exc:
            raise CorruptStoreError(
                f"{sidecar} has malformed image entries ({type(exc).__name__}: {exc})"
            ) from None
        self._sums_hex = meta.get("image_checksums")
        if self.mode == "a" and meta.get("checksum") == checksum.ALGORITHM:
            # The appender rewrites every digest with the next commit: they must be whole now.
            self._sums = self._decode_sums(count)
        return meta

    def _check_last_file(self, meta: dict[str, Any], count: int, directory: Path) -> None:
        """Image ``count - 1`` must exist before anything is sized by ``count`` (O(1)): a sidecar
        claiming 10**12 images would otherwise cost a 10**12-row shape table at open."""
        compression = meta.get("compression")
        if not count or compression not in self.compressions:
            return  # check_meta reports a bad compression
        last = f"{count - 1:08d}{codecs.CODECS[compression].suffix}"
        try:
            os.stat(last if self._dirfd is not None else directory / last, dir_fd=self._dirfd, follow_symlinks=False)
        except FileNotFoundError:
            raise CorruptStoreError(
                f"{directory / SIDECAR} records {count} images but image {count - 1} ({last}) is missing: "
                "the store is damaged or its count lies"
            ) from None

    def _decode_sums(self, count: int) -> np.ndarray | None:
        """The sidecar's digests as uint64; None when absent, CorruptStoreError when malformed or the wrong length."""
        text = self._sums_hex
        if text is None:
            if self.mode == "a":
                raise CorruptStoreError(
                    f"{self.path}/{SIDECAR} records checksums but has no image_checksums; "
                    "run 'imgbench verify' and rewrite the store (imgbench convert)"
                )
            return None
        if not isinstance(text, str) or len(text) != 16 * count:
            got = len(text) / 16 if isinstance(text, str) else type(text).__name__
            raise CorruptStoreError(f"{self.path}/{SIDECAR} has image_checksums for {got} of {count} images")
        try:
            return np.frombuffer(bytes.fromhex(text), ">u8").astype(np.uint64)
        except ValueError:
            raise CorruptStoreError(f"{self.path}/{SIDECAR}: image_checksums is not hexadecimal") from None

    def _open_reader(self) -> dict[str, Any]:
        # Holding the directory keeps this reader on the store it opened: if a
        # writer swaps a new store in at the same path, our reads fail (the old
        # files are deleted) instead of returning the new store's pixels.
        self._dir = self.path
        self._dirfd = ownfiles.open_dir(self.path)
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
    def _write(self, images, labels, start, checksums=None) -> None:
        items = images if isinstance(images, list) else list(images)
        codec, level = codecs.CODECS[self.compression], self.level
        encode = npy_bytes if self.compression == "none" else (lambda im: codec.encode(im, level))

        def write(s: int, e: int) -> None:
            for j in range(s, e):
                # Never through a symlink: a leftover past the count may be one.
                ownfiles.write_own(self._file(start + j), encode(items[j]))

        try:
            parallel.map_chunks(write, len(items), self.options["threads"], chunk=16)
        except OSError as exc:
            raise ImgbenchError(f"writing images to {self._dir} failed: {exc}") from exc
        new = np.array([im.shape + (0,) * (3 - im.ndim) for im in items], np.int64).reshape(-1, 3)
        self._shapes = np.concatenate([self._shapes[:start], new])
        self._dtypes = self._dtypes[:start] + [im.dtype for im in items]
        if labels is not None:
            self._image_labels = np.concatenate([self._image_labels[:start], labels])
        if checksums is not None:
            self._sums = np.concatenate([self._sums[:start], checksums])
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
        if meta.get("checksum") == checksum.ALGORITHM:
            if len(self._sums) < n:
                raise ImgbenchError(f"internal error: {len(self._sums)} checksums for {n} images")
            meta["image_checksums"] = self._sums[:n].astype(">u8").tobytes().hex()
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
            fd, self._dirfd = self._dirfd, None  # forgotten first: a Ctrl-C between must not close it twice
            os.close(fd)

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
            name = self._name(index) if self._dirfd is not None else path
            data = ownfiles.read_own(name, sys.maxsize, self._dirfd, f"image {index}: {path}")
        except FileNotFoundError:
            raise CorruptStoreError(
                f"image {index} is missing: {path} does not exist (damaged, or the store was replaced)"
            ) from None
        except IsADirectoryError:
            raise CorruptStoreError(f"image {index}: {path} is a directory") from None
        dtype, shape = self._kind(index)
        if self.compression == "none":
            return npy_decode(data, dtype, shape)
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

    def _get_checksums(self) -> np.ndarray | None:
        return self._decode_sums(self._count)

"""Direct reads of an uncompressed HDF5 dataset: where each chunk lies in the file, for one ``pread`` per image.

HDF5's own selection machinery costs ~20 µs per call; one ``pread`` at the offset
the chunk index gives costs ~2 µs. Used only for files that hold exactly what
imgbench writes (anything else is read through HDF5, which checks its own structures).
"""

from __future__ import annotations

import os

import h5py
import numpy as np

from imgbench.core.errors import CorruptStoreError


class ChunkTable:
    """Byte offsets of an uncompressed chunked dataset's chunks, for direct ``pread``.

    Only built when the file holds exactly what imgbench writes: chunked along
    the first axis only, no filters, every chunk allocated, in order, inside
    the file, little-endian. Anything else returns None and reads go through
    HDF5, which checks its own structures.
    """

    def __init__(self, fd: int, offsets: np.ndarray, per: int, nbytes: int, limit: int):
        self.fd, self.offsets, self.per, self.nbytes, self.limit = fd, offsets, per, nbytes, limit

    @classmethod
    def build(cls, ds: h5py.Dataset, count: int) -> ChunkTable | None:
        try:
            dsid = ds.id
            dcpl = dsid.get_create_plist()
            if dcpl.get_layout() != h5py.h5d.CHUNKED or dcpl.get_nfilters() != 0 or ds.chunks is None:
                return None
            if ds.dtype.byteorder == ">" or ds.chunks[1:] != ds.shape[1:] or ds.shape[0] != count:
                return None
            per, nbytes = ds.chunks[0], int(np.prod(ds.shape[1:])) * ds.dtype.itemsize
            found: list[tuple[int, int, int, int]] = []
            dsid.chunk_iter(lambda info: found.append(
                (info.chunk_offset[0], info.byte_offset, info.size, info.filter_mask)))
            table = np.array(sorted(found), dtype=np.int64).reshape(-1, 4)
            fd = ds.file.id.get_vfd_handle()
            size = os.fstat(fd).st_size
        except Exception:
            return None
        want = -(-count // per)
        if (
            len(table) != want
            or not (table[:, 0] == np.arange(want) * per).all()
            or not (table[:, 2] == per * nbytes).all()
            or (table[:, 3] != 0).any()
            or (table[:, 1] < 0).any()
            or (table[:, 1] + table[:, 2] > size).any()
        ):
            return None
        return cls(fd, table[:, 1].copy(), per, nbytes, size)

    def read_many_into(self, indices: np.ndarray, out: np.ndarray) -> None:
        """``out[j] = image indices[j]``, reading in file order (sequential on a cold disk)."""
        chunk, within = np.divmod(indices, self.per)
        where = self.offsets[chunk] + within * self.nbytes
        order = np.argsort(where, kind="stable")
        flat, nb, fd = memoryview(out.reshape(-1).view(np.uint8)), self.nbytes, self.fd
        for j, offset in zip(order.tolist(), where[order].tolist()):
            if os.preadv(fd, [flat[j * nb : (j + 1) * nb]], offset) != nb:
                raise CorruptStoreError(f"image {int(indices[j])}: the file is truncated")

    def read_into(self, index: int, out: np.ndarray) -> None:
        chunk, within = divmod(index, self.per)
        got = os.preadv(self.fd, [out], int(self.offsets[chunk]) + within * self.nbytes)
        if got != self.nbytes:
            raise CorruptStoreError(f"image {index}: read {got} of {self.nbytes} bytes, the file is truncated")

"""zarr's zstd codec for readers, refusing a frame that declares more than the chunk it stands for.

numcodecs allocates a frame's declared content size before decoding it (and grows
its output without bound for a frame that declares none), so a few bytes of hostile
chunk would cost the reader any amount of memory. Readers open arrays with
``zarr.config.set(BOUNDED_CODECS)``; the metadata is identical (``to_dict`` is the parent's).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import zstandard
from zarr.codecs import ZstdCodec
from zarr.core.buffer import Buffer
from zarr.registry import register_codec

from imgbench.core import limits
from imgbench.core.errors import CorruptStoreError


class BoundedZstdCodec(ZstdCodec):
    """zarr's zstd codec, refusing a frame that declares more than the chunk it stands for."""

    def _check_frame(self, chunk_bytes: Buffer, chunk_spec: Any) -> None:
        data = chunk_bytes.as_numpy_array()
        try:
            itemsize = chunk_spec.dtype.to_native_dtype().itemsize
        except AttributeError:  # older zarr: a numpy dtype
            itemsize = np.dtype(chunk_spec.dtype).itemsize
        expected = math.prod(chunk_spec.shape) * itemsize
        try:
            declared = zstandard.frame_content_size(data[:18].tobytes())
        except zstandard.ZstdError as exc:
            raise CorruptStoreError(f"a zstd chunk has a damaged frame header ({exc})") from None
        if declared < 0 or declared > expected + limits.ZARR_SLACK_BYTES:
            what = "does not declare its size" if declared < 0 else f"declares {declared} bytes"
            raise CorruptStoreError(
                f"a zstd chunk {what}, the chunk holds {expected}: the store is damaged or hostile"
            )

    def _decode_sync(self, chunk_bytes: Buffer, chunk_spec: Any) -> Buffer:
        self._check_frame(chunk_bytes, chunk_spec)
        return super()._decode_sync(chunk_bytes, chunk_spec)

    async def _decode_single(self, chunk_bytes: Buffer, chunk_spec: Any) -> Buffer:
        self._check_frame(chunk_bytes, chunk_spec)
        return await super()._decode_single(chunk_bytes, chunk_spec)


register_codec("zstd", BoundedZstdCodec)
#: the zarr configuration under which arrays decode zstd chunks with the bounded codec
BOUNDED_CODECS = {"codecs.zstd": f"{BoundedZstdCodec.__module__}.{BoundedZstdCodec.__qualname__}"}

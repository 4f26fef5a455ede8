"""Per-image encode/decode, shared by the backends that store one blob per image.

A codec turns one validated image into bytes and back. Decoders check what the
bytes claim (dimensions, decoded size) against what the store recorded *before*
decoding, so a damaged or hostile blob raises :class:`CorruptStoreError` instead
of returning wrong pixels or allocating unbounded memory.

Containers with their own compression filters (HDF5) do not use this module.
"""

from __future__ import annotations

import math
import struct
import threading

import numpy as np

from imgbench.core import limits
from imgbench.core.codec_base import (  # noqa: F401  (supporting: re-exported)
    _UNSIGNED,
    REGISTRY,
    Codec,
    _le,
    _nbytes,
    supporting,
)
from imgbench.core.errors import CorruptStoreError, UnsupportedError
from imgbench.core.imagecodecs_lossless import (
    HTJ2KCodec,
    JpegLsCodec,
    JpegXlCodec,
    LercCodec,
)
from imgbench.core.levels import LevelRange


class RawCodec(Codec):
    """Raw little-endian C-order bytes: no work, the physical-limit reference."""

    name = "none"
    suffix = ".npy"

    def encode(self, image: np.ndarray, level: int | None = None) -> bytes:
        return np.ascontiguousarray(image, dtype=_le(image.dtype)).tobytes()

    def decode(self, data, dtype: np.dtype, shape: tuple[int, ...]) -> np.ndarray:
        expected = _nbytes(dtype, shape)
        if len(data) != expected:
            raise CorruptStoreError(
                f"raw image holds {len(data)} bytes where {expected} were stored ({dtype}, {shape})"
            )
        out = np.empty(shape, dtype=dtype)
        out.reshape(-1).view(np.uint8)[:] = np.frombuffer(data, dtype=np.uint8)
        return out


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_END = b"\x00\x00\x00\x00IEND\xaeB`\x82"
#: PNG colour type -> channel count.
_PNG_CHANNELS = {0: 1, 4: 2, 2: 3, 6: 4}


class PngCodec(Codec):
    """Lossless PNG through libpng (imagecodecs): 8 and 16 bit, 1 to 4 channels.

    Pillow cannot write or read 16-bit RGB/RGBA PNG exactly, so libpng it is;
    the files are ordinary PNGs any viewer opens.
    """

    name = "png"
    suffix = ".png"
    #: default zlib level 1 (as OpenCV): on the built-in photo-like and CT-like images level 6
    #: saved 0-3% of the bytes for 1.1-6x the encode time.
    levels = LevelRange(0, 9, 1)
    dtypes = _UNSIGNED

    def encode(self, image: np.ndarray, level: int | None = None) -> bytes:
        import imagecodecs

        return bytes(imagecodecs.png_encode(image, level=self.default_level if level is None else level))

    def decode(self, data, dtype: np.dtype, shape: tuple[int, ...]) -> np.ndarray:
        import imagecodecs

        data = bytes(data) if not isinstance(data, (bytes, bytearray)) else data
        if len(data) < 45 or data[:8] != _PNG_SIGNATURE or data[12:16] != b"IHDR":
            raise CorruptStoreError("stored PNG has no valid signature/header")
        if data[-12:] != _PNG_END:
            raise CorruptStoreError("stored PNG is truncated (no IEND chunk at its end)")
        width, height, depth, colour = struct.unpack(">IIBB", data[16:26])
        channels = shape[2] if len(shape) == 3 else 1
        if limits.PNG.exceeded(_nbytes(dtype, shape), len(data)):
            raise CorruptStoreError(
                f"stored PNG of {len(data)} bytes claims {_nbytes(dtype, shape)} decoded bytes, more than "
                "deflate can produce: damaged, or a decompression bomb"
            )
        if (
            (height, width) != tuple(shape[:2])
            or depth != 8 * np.dtype(dtype).itemsize
            or _PNG_CHANNELS.get(colour) != channels
        ):
            raise CorruptStoreError(
                f"stored PNG is {width}x{height}, {depth}-bit, colour type {colour}; "
                f"the store recorded {shape} {dtype}"
            )
        try:
            image = imagecodecs.png_decode(data)
        except Exception as exc:
            raise CorruptStoreError(f"stored PNG does not decode: {exc}") from None
        if image.dtype != dtype or image.size != math.prod(shape):
            raise CorruptStoreError(f"stored PNG decoded to {image.shape} {image.dtype}, expected {shape} {dtype}")
        return np.ascontiguousarray(image).reshape(shape)


class ZstdCodec(Codec):
    """Zstandard frames with content size and checksum: a bit flip is detected."""

    name = "zstd"
    suffix = ".zst"
    levels = LevelRange(1, 22, 3)
    _local = threading.local()

    def _compressor(self, level: int):
        import zstandard

        cache = getattr(self._local, "compressors", None)
        if cache is None:
            cache = self._local.compressors = {}
        if level not in cache:
            cache[level] = zstandard.ZstdCompressor(level=level, write_checksum=True, write_content_size=True)
        return cache[level]

    def encode(self, image: np.ndarray, level: int | None = None) -> bytes:
        raw = np.ascontiguousarray(image, dtype=_le(image.dtype))
        return self._compressor(self.default_level if level is None else level).compress(raw.data)

    def decode(self, data, dtype: np.dtype, shape: tuple[int, ...]) -> np.ndarray:
        import zstandard

        expected = _nbytes(dtype, shape)
        try:
            declared = zstandard.frame_content_size(data)
        except zstandard.ZstdError as exc:
            raise CorruptStoreError(f"stored zstd frame is damaged: {exc}") from None
        if declared != expected:
            raise CorruptStoreError(f"stored zstd frame declares {declared} bytes where {expected} were stored")
        if limits.ZSTD_FRAME.exceeded(expected, len(data)):
            # Header and frame may both lie (a hostile store): zstandard would
            # allocate the declared size before finding out the frame is short.
            raise CorruptStoreError(
                f"stored zstd frame of {len(data)} bytes claims {expected} decoded bytes, more than zstd "
                "can produce: damaged, or a decompression bomb"
            )
        decompressor = getattr(self._local, "decompressor", None)
        if decompressor is None:
            decompressor = self._local.decompressor = zstandard.ZstdDecompressor()
        try:
            raw = decompressor.decompress(data, max_output_size=expected)
        except zstandard.ZstdError as exc:
            raise CorruptStoreError(f"stored zstd frame does not decode: {exc}") from None
        if len(raw) != expected:
            raise CorruptStoreError(f"stored zstd frame decoded to {len(raw)} bytes, expected {expected}")
        return np.frombuffer(raw, dtype=_le(dtype)).astype(dtype).reshape(shape)


REGISTRY.update(
    (c.name, c) for c in (RawCodec(), PngCodec(), ZstdCodec(), JpegLsCodec(), HTJ2KCodec(), JpegXlCodec(), LercCodec())
)
#: every codec by name (the registry itself)
CODECS: dict[str, Codec] = REGISTRY
#: the lossless image codecs (medical-grade, DICOM's own): what ``imgbench codecs`` compares with png
IMAGE_CODECS = ("png", "jpegls", "htj2k", "jpegxl", "lerc")


def get(name: str, allowed: tuple[str, ...] | None = None, backend: str | None = None) -> Codec:
    """Look up a codec by name, limited to what a backend offers."""
    allowed = tuple(CODECS) if allowed is None else allowed
    if name not in allowed or name not in CODECS:
        where = f"backend {backend!r}" if backend else "imgbench"
        raise UnsupportedError(
            f"compression {name!r} is not supported by {where}; choose one of: {', '.join(allowed)}"
        )
    return CODECS[name]

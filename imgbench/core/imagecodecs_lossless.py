"""The medical-grade lossless image codecs: JPEG-LS, HTJ2K, JPEG XL (lossless) and LERC (zero error).

All four go through imagecodecs (CharLS, OpenJPH, libjxl, LERC). What each stores
exactly was found by round-tripping every dtype and channel count
(tests/core/test_image_codecs.py pins it; docs/guide/codecs.md is the table).

Safety, as for PNG and zstd: before decoding, the header a codestream declares
(dimensions, components, bit depth, sign) is parsed and compared with what the
store recorded, and the decoder writes into an array of the recorded shape
(``out=``), so a blob claiming 60000x60000 is a :class:`CorruptStoreError`
without allocating its pixels. JPEG-LS must end in its EOI marker: CharLS 2.4
loops forever on a truncated stream. Only LERC carries a checksum of its own;
the others rely on imgbench's per-image checksum (``verify=True``) for damage
that still decodes.
"""

from __future__ import annotations

import struct
from typing import ClassVar

import numpy as np

from imgbench.core.codec_base import Codec
from imgbench.core.errors import CorruptStoreError
from imgbench.core.levels import LevelRange

_U8, _U16, _I16, _F32 = (np.dtype(d) for d in ("uint8", "uint16", "int16", "float32"))


def _channels(shape: tuple[int, ...]) -> int:
    return shape[2] if len(shape) == 3 else 1


def _out(dtype: np.dtype, shape: tuple[int, ...]) -> np.ndarray:
    """The array the decoder fills: 2-D for one channel (the decoders return no axis of 1)."""
    return np.empty(shape[:2] if _channels(shape) == 1 else shape, dtype)


def _bytes(data) -> bytes:
    return data if isinstance(data, bytes) else bytes(data)


class _LosslessImageCodec(Codec):
    """Shared decode path: check the header, decode into the recorded shape, turn failures into CorruptStoreError."""

    label: ClassVar[str]

    def _check_header(self, data: bytes, dtype: np.dtype, shape: tuple[int, ...]) -> None:
        raise NotImplementedError

    def _decode_into(self, data: bytes, out: np.ndarray) -> None:
        raise NotImplementedError

    def _mismatch(self, what: str, dtype: np.dtype, shape: tuple[int, ...]) -> CorruptStoreError:
        return CorruptStoreError(f"stored {self.label} codestream declares {what}; the store recorded {shape} {dtype}")

    def decode(self, data, dtype: np.dtype, shape: tuple[int, ...]) -> np.ndarray:
        data = _bytes(data)
        dtype = np.dtype(dtype)
        try:
            self._check_header(data, dtype, shape)
        except (struct.error, IndexError):
            raise CorruptStoreError(f"stored {self.label} codestream has a truncated header") from None
        out = _out(dtype, shape)
        try:
            self._decode_into(data, out)
        except Exception as exc:  # the libraries raise their own error types (and ValueError on a shape mismatch)
            raise CorruptStoreError(f"stored {self.label} codestream does not decode: {exc}") from None
        return out.reshape(shape)


class JpegLsCodec(_LosslessImageCodec):
    """JPEG-LS (CharLS), lossless (NEAR=0): 8/16-bit unsigned, 1, 3 or 4 channels. DICOM 1.2.840.10008.1.2.4.80."""

    name = "jpegls"
    label = "JPEG-LS"
    suffix = ".jls"
    dtypes = frozenset({_U8, _U16})
    channels = frozenset({1, 3, 4})  # imagecodecs refuses 2 components

    def encode(self, image: np.ndarray, level: int | None = None) -> bytes:
        import imagecodecs

        image = np.ascontiguousarray(image.reshape(image.shape[:2]) if _channels(image.shape) == 1 else image)
        # CharLS needs a destination buffer; noise can exceed the raw size, so give it room.
        return bytes(imagecodecs.jpegls_encode(image, out=2 * image.nbytes + 4096))

    def _check_header(self, data, dtype, shape):
        if len(data) < 4 or data[:2] != b"\xff\xd8":
            raise CorruptStoreError("stored JPEG-LS codestream has no SOI marker")
        if data[-2:] != b"\xff\xd9":
            raise CorruptStoreError("stored JPEG-LS codestream is truncated (no EOI marker at its end)")
        pos = 2
        while True:
            if data[pos] != 0xFF:
                raise CorruptStoreError(f"stored JPEG-LS codestream has no marker at byte {pos}")
            marker = data[pos + 1]
            (length,) = struct.unpack_from(">H", data, pos + 2)
            if marker == 0xF7:  # SOF55: start of a JPEG-LS frame
                precision, height, width, components = struct.unpack_from(">BHHB", data, pos + 4)
                break
            if marker in (0xDA, 0xD9) or length < 2:
                raise CorruptStoreError("stored JPEG-LS codestream has no frame header (SOF55)")
            pos += 2 + length
        if (height, width) != tuple(shape[:2]) or components != _channels(shape) or precision != 8 * dtype.itemsize:
            raise self._mismatch(f"{width}x{height}, {components} component(s), {precision}-bit", dtype, shape)

    def _decode_into(self, data, out):
        import imagecodecs

        imagecodecs.jpegls_decode(data, out=out)


class HTJ2KCodec(_LosslessImageCodec):
    """High-throughput JPEG 2000 (OpenJPH), reversible 5/3 wavelet: 8/16-bit, signed 16-bit too; 1 to 4 channels.

    A raw J2K codestream (.j2c); DICOM 1.2.840.10008.1.2.4.201 (HTJ2K lossless).
    """

    name = "htj2k"
    label = "HTJ2K"
    suffix = ".j2c"
    dtypes = frozenset({_U8, _U16, _I16})

    def encode(self, image: np.ndarray, level: int | None = None) -> bytes:
        import imagecodecs

        image = np.ascontiguousarray(image.reshape(image.shape[:2]) if _channels(image.shape) == 1 else image)
        return bytes(imagecodecs.htj2k_encode(image, reversible=True, planar=False))

    def _check_header(self, data, dtype, shape):
        if data[:4] != b"\xff\x4f\xff\x51":
            raise CorruptStoreError("stored HTJ2K codestream has no SOC/SIZ marker")
        lsiz, _rsiz, xsiz, ysiz, xo, yo, xt, yt, xto, yto, csiz = struct.unpack_from(">HHIIIIIIIIH", data, 4)
        if lsiz != 38 + 3 * csiz or len(data) < 6 + lsiz:
            raise CorruptStoreError("stored HTJ2K codestream has a malformed SIZ segment")
        # imgbench writes one tile at the origin: anything else is damage (and an offset makes OpenJPH loop).
        if xo or yo or xto or yto or xt < xsiz or yt < ysiz:
            raise CorruptStoreError("stored HTJ2K codestream declares an image or tile offset imgbench never writes")
        want = (8 * dtype.itemsize - 1) | (0x80 if dtype.kind == "i" else 0)
        comps = [struct.unpack_from(">BBB", data, 42 + 3 * k) for k in range(csiz)]
        if (ysiz, xsiz) != tuple(shape[:2]) or csiz != _channels(shape) or any(c != (want, 1, 1) for c in comps):
            depth = sorted({(c[0] & 0x7F) + 1 for c in comps})
            raise self._mismatch(f"{xsiz}x{ysiz}, {csiz} component(s) of {depth} bits", dtype, shape)

    def _decode_into(self, data, out):
        import imagecodecs

        imagecodecs.htj2k_decode(data, planar=False, out=out)


_JXL_RATIOS = {1: (1, 1), 2: (12, 10), 3: (4, 3), 4: (3, 2), 5: (16, 9), 6: (5, 4), 7: (2, 1)}


def _jxl_codestream(data: bytes) -> bytes:
    """The first bytes of the JPEG XL codestream, in or out of its ISO BMFF container."""
    if data[:2] == b"\xff\x0a":
        return data
    pos = 0
    while pos + 8 <= len(data):
        size, kind = struct.unpack_from(">I4s", data, pos)
        head = 8
        if size == 1:
            (size,) = struct.unpack_from(">Q", data, pos + 8)
            head = 16
        elif size == 0:
            size = len(data) - pos
        if size < head:
            break
        if kind == b"jxlc":
            return data[pos + head : pos + size]
        if kind == b"jxlp":
            return data[pos + head + 4 : pos + size]
        pos += size
    raise CorruptStoreError("stored JPEG XL container has no codestream box")


def _jxl_size(data: bytes) -> tuple[int, int]:
    """(height, width) from a JPEG XL SizeHeader (ISO/IEC 18181-1 D.2), read LSB first."""
    cs = _jxl_codestream(data)
    if cs[:2] != b"\xff\x0a":
        raise CorruptStoreError("stored JPEG XL data has no codestream signature")
    bits = int.from_bytes(cs[2:18], "little")
    pos = 0

    def u(n):
        nonlocal pos
        v = (bits >> pos) & ((1 << n) - 1)
        pos += n
        return v

    def u32():
        return 1 + u((9, 13, 18, 30)[u(2)])

    small = u(1)
    height = (u(5) + 1) * 8 if small else u32()
    ratio = u(3)
    if ratio:
        num, den = _JXL_RATIOS[ratio]
        width = height * num // den
    else:
        width = (u(5) + 1) * 8 if small else u32()
    return height, width


class JpegXlCodec(_LosslessImageCodec):
    """JPEG XL, lossless modular mode (libjxl): 8/16-bit unsigned and float32 (every bit pattern); 1 to 4 channels.

    The level is libjxl's effort (1 fastest .. 9 smallest). DICOM 1.2.840.10008.1.2.4.110.
    """

    name = "jpegxl"
    label = "JPEG XL"
    suffix = ".jxl"
    dtypes = frozenset({_U8, _U16, _F32})
    #: imagecodecs' default effort; ``imgbench codecs`` measures the others
    levels = LevelRange(1, 9, 5)

    def encode(self, image: np.ndarray, level: int | None = None) -> bytes:
        import imagecodecs

        image = np.ascontiguousarray(image.reshape(image.shape[:2]) if _channels(image.shape) == 1 else image)
        effort = self.default_level if level is None else level
        return bytes(imagecodecs.jpegxl_encode(image, lossless=True, effort=effort, numthreads=1))

    def _check_header(self, data, dtype, shape):
        if data[:2] != b"\xff\x0a" and data[:12] != b"\x00\x00\x00\x0cJXL \r\n\x87\n":
            raise CorruptStoreError("stored JPEG XL data has no codestream or container signature")
        # Before allocating the recorded shape: a damaged index or sidecar may record a huge one.
        height, width = _jxl_size(data)
        if (height, width) != tuple(shape[:2]):
            raise self._mismatch(f"{width}x{height}", dtype, shape)

    def _decode_into(self, data, out):
        import imagecodecs

        image = imagecodecs.jpegxl_decode(data, out=out, numthreads=1)
        if image.dtype != out.dtype:
            raise CorruptStoreError(f"decoded to {image.dtype}, expected {out.dtype}")


#: LERC data type codes (Lerc2 header)
_LERC_TYPES = {_U8: 1, _I16: 2, _U16: 3}


class LercCodec(_LosslessImageCodec):
    """LERC 2 with zero error (maxZError 0): 8/16-bit, signed 16-bit too; 1 to 4 channels; Fletcher-32 checked.

    float32 is not offered: LERC turns NaN into a mask and does not give the NaN back.
    """

    name = "lerc"
    label = "LERC"
    suffix = ".lerc"
    dtypes = frozenset(_LERC_TYPES)

    def encode(self, image: np.ndarray, level: int | None = None) -> bytes:
        import imagecodecs

        return bytes(imagecodecs.lerc_encode(np.ascontiguousarray(image), level=0.0))

    def _check_header(self, data, dtype, shape):
        if data[:6] != b"Lerc2 ":
            raise CorruptStoreError("stored LERC blob has no Lerc2 signature")
        (version,) = struct.unpack_from("<i", data, 6)
        if version < 4:
            raise CorruptStoreError(f"stored LERC blob has version {version}; imgbench writes 4 or later")
        height, width, depth, _valid, _micro, blob, lerc_type = struct.unpack_from("<7i", data, 14)
        if blob != len(data):
            raise CorruptStoreError(f"stored LERC blob declares {blob} bytes but holds {len(data)}")
        if (height, width) != tuple(shape[:2]) or depth != _channels(shape) or lerc_type != _LERC_TYPES[dtype]:
            raise self._mismatch(f"{width}x{height}, depth {depth}, LERC type {lerc_type}", dtype, shape)

    def _decode_into(self, data, out):
        import imagecodecs

        imagecodecs.lerc_decode(data, out=out)

"""What counts as an image, and how its dtype is named inside stores.

Validation lives here, apart from any backend, so every backend rejects the same
inputs with the same messages before anything is written.
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np

from imgbench.core.errors import CorruptStoreError, InvalidImageError

#: dtypes every raw codec stores exactly; PNG takes only the unsigned ones.
SUPPORTED_DTYPES: tuple[np.dtype, ...] = tuple(
    np.dtype(d) for d in ("uint8", "uint16", "int16", "float32")
)
#: On-disk spelling: explicit little-endian, readable by ``np.dtype(code)``.
DTYPE_CODES: dict[np.dtype, str] = {np.dtype(d): np.dtype(d).newbyteorder("<").str for d in SUPPORTED_DTYPES}
_BY_CODE = {code: dt for dt, code in DTYPE_CODES.items()}
#: One-byte ids used in binary headers and index columns (LMDB values, tar, npy and zarr indexes).
DTYPE_IDS: dict[np.dtype, int] = {dt: i + 1 for i, dt in enumerate(SUPPORTED_DTYPES)}
_BY_ID = {i: dt for dt, i in DTYPE_IDS.items()}
#: Item size of each one-byte dtype id, 0 for an id imgbench never writes: checks whole index
#: columns of stored ids at once (``ITEMSIZE_BY_ID[np.minimum(ids, 255)]``).
ITEMSIZE_BY_ID = np.zeros(256, np.int64)
for _dtype, _ident in DTYPE_IDS.items():
    ITEMSIZE_BY_ID[_ident] = _dtype.itemsize

_DTYPE_HINT = "use uint8, uint16, int16 or float32 (convert with image.astype(np.uint16), say)"


def dtype_from_code(code: str) -> np.dtype:
    """Map a stored dtype string back to a dtype; unknown strings mean a damaged store."""
    try:
        return _BY_CODE[code]
    except (KeyError, TypeError):
        raise CorruptStoreError(f"stored dtype {code!r} is not one imgbench writes") from None


def dtype_from_id(ident: int) -> np.dtype:
    try:
        return _BY_ID[ident]
    except KeyError:
        raise CorruptStoreError(f"stored dtype id {ident} is not one imgbench writes") from None


def check_dtype(dtype: np.dtype, where: str = "image") -> np.dtype:
    """Return the native-order dtype to store, or raise InvalidImageError."""
    dtype = np.dtype(dtype)
    native = dtype.newbyteorder("=") if dtype.byteorder not in ("=", "|") else dtype
    if native not in DTYPE_IDS:
        raise InvalidImageError(f"{where} has dtype {dtype}, which imgbench does not store: {_DTYPE_HINT}")
    return native


def check_shape(shape: tuple[int, ...], where: str = "image") -> None:
    if len(shape) not in (2, 3):
        raise InvalidImageError(
            f"{where} has shape {shape}: an image is 2-D (H, W) or 3-D (H, W, C); "
            "for a batch of images use extend()"
        )
    if len(shape) == 3 and not 1 <= shape[2] <= 4:
        raise InvalidImageError(
            f"{where} has shape {shape}: the channel axis comes last and holds 1 to 4 channels "
            "(move channels last with np.moveaxis(image, 0, -1))"
        )
    if any(d == 0 for d in shape):
        raise InvalidImageError(f"{where} has shape {shape}: it is empty; every side must be at least 1")


def as_image(image: Any, where: str = "image") -> np.ndarray:
    """Validate one image and return it as a C-contiguous native-order array."""
    if not isinstance(image, np.ndarray):
        try:
            image = np.asarray(image)
        except Exception as exc:  # ragged lists, unconvertible objects
            raise InvalidImageError(f"{where} is not an array: {exc}") from None
    if image.dtype == object:
        raise InvalidImageError(f"{where} is not a numeric array (dtype object): {_DTYPE_HINT}")
    dtype = check_dtype(image.dtype, where)
    check_shape(image.shape, where)
    return np.ascontiguousarray(image, dtype=dtype)


def as_batch(images: np.ndarray, where: str = "images") -> np.ndarray:
    """Validate a stacked batch (N, H, W[, C]) without touching images one by one."""
    if images.dtype == object:
        raise InvalidImageError(f"{where} is not a numeric array (dtype object): {_DTYPE_HINT}")
    if images.ndim not in (3, 4):
        raise InvalidImageError(
            f"{where} has shape {images.shape}: a batch is (N, H, W) or (N, H, W, C); "
            "for a single image use append()"
        )
    if images.shape[0] == 0:
        raise InvalidImageError(f"{where} is an empty batch (shape {images.shape}): nothing to store")
    dtype = check_dtype(images.dtype, where)
    check_shape(images.shape[1:], f"each image in {where}")
    return np.ascontiguousarray(images, dtype=dtype)


def as_label(label: Any, where: str = "label") -> int:
    if isinstance(label, (bool, np.bool_)) or not isinstance(label, numbers.Integral):
        raise InvalidImageError(f"{where} must be an integer, got {label!r} ({type(label).__name__})")
    value = int(label)
    if not -(2**63) <= value < 2**63:
        raise InvalidImageError(f"{where} {value} does not fit in int64")
    return value


def as_labels(labels: Any, count: int | None, where: str = "labels") -> np.ndarray:
    """Validate a label sequence; ``count`` is the number of images when known."""
    try:
        arr = np.asarray(labels)
    except Exception as exc:
        raise InvalidImageError(f"{where} is not a sequence of integers: {exc}") from None
    if arr.ndim != 1:
        raise InvalidImageError(f"{where} must be 1-D with one integer per image, got shape {arr.shape}")
    if arr.size and (arr.dtype.kind not in "iu"):
        raise InvalidImageError(f"{where} must be integers, got dtype {arr.dtype}")
    if arr.dtype.kind == "u" and arr.size and int(arr.max()) >= 2**63:
        raise InvalidImageError(f"{where} hold a value that does not fit in int64")
    if count is not None and len(arr) != count:
        raise InvalidImageError(f"{where} has {len(arr)} entries for {count} images: give one label per image")
    return arr.astype(np.int64, copy=False)

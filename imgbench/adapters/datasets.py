"""Deterministic, realistic built-in images for demos, tests and benchmarks.

Image ``k`` of a generator depends only on ``(seed, k)``, never on how many are
asked for, so ``photos(10)`` is the first ten of ``photos(1000)`` and a slice can
be made alone with ``start=``. Benchmarks rely on that: **generators are
append-only** (changing one silently changes what old results mean; add a new
one instead).

The images compress the way real ones do: smooth regions, edges, texture and
sensor noise, not uniform noise (incompressible) and not flat fields (absurdly
compressible). On the defaults PNG stores photos at about 75% of raw size, like
CIFAR-10, and CT slices at about 45%, like real 16-bit CT.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from imgbench.core.errors import UnsupportedError

#: Named datasets used by ``imgbench compare`` and the benchmarks.
BUILTIN: dict[str, dict] = {
    "cifar": {"kind": "photos", "shape": (32, 32, 3), "about": "photo-like RGB, 32x32x3 uint8 (CIFAR-shaped)"},
    "ct": {"kind": "ct_slices", "shape": (512, 512), "about": "CT-like slices, 512x512 uint16 (HU + 1024)"},
}


_BLOCK = 32  # photos are generated in fixed blocks of absolute indices, vectorised


def _rng(seed: int, index: int) -> np.random.Generator:
    return np.random.default_rng([seed, index])


def _interp_matrix(n: int, cells: int) -> np.ndarray:
    """(n, cells+1) bilinear interpolation weights from a coarse grid to n samples."""
    pos = np.linspace(0, cells, n)
    i0 = np.minimum(pos.astype(int), cells - 1)
    f = (pos - i0).astype(np.float32)
    m = np.zeros((n, cells + 1), np.float32)
    m[np.arange(n), i0] = 1 - f
    m[np.arange(n), i0 + 1] += f
    return m


def _smooth_field(grid: np.ndarray, h: int, w: int) -> np.ndarray:
    """Low-frequency texture: coarse random grid(s) (..., g, g) upsampled to (..., h, w)."""
    cells = grid.shape[-1] - 1
    return _interp_matrix(h, cells) @ grid @ _interp_matrix(w, cells).T


def _photo_block(seed: int, block: int, h: int, w: int, c: int) -> np.ndarray:
    rng = _rng(seed, block)
    b = _BLOCK
    yy = (np.arange(h, dtype=np.float32) / max(h - 1, 1))[None, :, None]
    xx = (np.arange(w, dtype=np.float32) / max(w - 1, 1))[None, None, :]
    # Background: a gradient between two colours, in a random direction.
    angle = rng.uniform(0, 2 * np.pi, (b, 1, 1)).astype(np.float32)
    t = np.clip(0.5 + np.cos(angle) * (xx - 0.5) + np.sin(angle) * (yy - 0.5), 0, 1)[..., None]
    c0, c1 = rng.uniform(0, 255, (2, b, 1, 1, c)).astype(np.float32)
    img = c0 * (1 - t) + c1 * t
    # Objects: one to four soft-edged, shaded ellipses per image.
    count = rng.integers(1, 5, b)
    for j in range(4):
        cy, cx, ry, rx, rot, sharp = (
            rng.uniform(lo, hi, (b, 1, 1)).astype(np.float32)
            for lo, hi in ((0.1, 0.9), (0.1, 0.9), (0.08, 0.45), (0.08, 0.45), (0, np.pi), (3, 12))
        )
        colour = rng.uniform(0, 255, (b, 1, 1, c)).astype(np.float32)
        dy, dx = yy - cy, xx - cx
        u = (dx * np.cos(rot) + dy * np.sin(rot)) / rx
        v = (dy * np.cos(rot) - dx * np.sin(rot)) / ry
        r2 = u * u + v * v
        alpha = (np.clip((1.0 - r2) * sharp, 0, 1) * (j < count)[:, None, None])[..., None]
        img = img * (1 - alpha) + colour * (1.0 - 0.35 * np.clip(r2, 0, 1))[..., None] * alpha
    # Texture and sensor noise.
    cells = max(2, min(h, w) // 6)
    img += 18.0 * _smooth_field(rng.uniform(-1, 1, (b, cells + 1, cells + 1)).astype(np.float32), h, w)[..., None]
    # Triangular noise from random bytes (std ~3.3 grey levels): 10x cheaper than normals.
    noise = np.frombuffer(rng.bytes(2 * b * h * w * c), np.uint8).reshape(2, b, h, w, c).astype(np.int16)
    img = np.clip(img + 0.5, 0, 255).astype(np.int16) + ((noise[0] + noise[1] - 255) >> 5)
    return np.clip(img, 0, 255).astype(np.uint8)


def photos(n: int, shape: tuple[int, ...] = (32, 32, 3), seed: int = 0, start: int = 0) -> np.ndarray:
    """``n`` photo-like uint8 images, stacked ``(n, *shape)``; shape (H, W) or (H, W, C<=4)."""
    h, w = shape[:2]
    c = shape[2] if len(shape) == 3 else 1
    out = np.empty((n, h, w, c), dtype=np.uint8)
    pos = 0
    while pos < n:
        block, offset = divmod(start + pos, _BLOCK)
        take = min(n - pos, _BLOCK - offset)
        out[pos : pos + take] = _photo_block(seed, block, h, w, c)[offset : offset + take]
        pos += take
    return out.reshape((n, *shape))


#: Hounsfield units of the tissues drawn (stored as HU + 1024, like DICOM with rescale -1024).
_HU = {"air": -1000, "lung": -850, "fat": -100, "water": 0, "soft": 40, "liver": 60, "marrow": 250, "bone": 900}


def _ct_slice(seed: int, index: int, h: int, w: int) -> np.ndarray:
    # Slices come in volumes of 64; anatomy drifts smoothly along the volume.
    vol, z = divmod(index, 64)
    vrng = _rng(seed + 7919, vol)
    body_ry, body_rx = vrng.uniform(0.30, 0.42), vrng.uniform(0.40, 0.47)
    phase = z / 64.0
    rng = _rng(seed, index)
    ys = np.arange(h, dtype=np.float32) / h - 0.5
    xs = np.arange(w, dtype=np.float32) / w - 0.5
    hu = np.full((h, w), _HU["air"], dtype=np.float32)

    def paint(cy: float, cx: float, ry: float, rx: float, value: float) -> None:
        """Fill an ellipse, touching only its bounding box."""
        r0, r1 = np.searchsorted(ys, [cy - ry, cy + ry])
        c0, c1 = np.searchsorted(xs, [cx - rx, cx + rx])
        inside = ((ys[r0:r1, None] - cy) / ry) ** 2 + ((xs[None, c0:c1] - cx) / rx) ** 2 <= 1.0
        hu[r0:r1, c0:c1][inside] = value

    scale = 1.0 - 0.08 * np.cos(np.pi * phase)
    paint(0.02, 0.0, body_ry * scale, body_rx * scale, _HU["fat"])
    body = hu > _HU["air"]
    paint(0.02, 0.0, body_ry * scale - 0.03, body_rx * scale - 0.03, _HU["soft"])
    # Lungs fade out towards the end of the volume, the liver grows in.
    lung_r = 0.16 * max(0.0, 1.0 - 1.4 * phase)
    if lung_r > 0.02:
        for side in (-1, 1):
            paint(-0.02, side * 0.17, lung_r * 1.2, lung_r * 0.8, _HU["lung"])
    liver_r = 0.18 * min(1.0, 1.5 * phase)
    if liver_r > 0.02:
        paint(0.02, -0.12, liver_r, liver_r * 1.1, _HU["liver"])
    # Spine: cortical bone around marrow.
    paint(0.24, 0.0, 0.07, 0.06, _HU["bone"])
    paint(0.24, 0.0, 0.045, 0.038, _HU["marrow"])
    # Soft tissue inhomogeneity and quantum noise (stronger inside the body).
    sigma = np.where(body, np.float32(14.0), np.float32(4.0))
    hu += _smooth_field(rng.uniform(-1, 1, (9, 9)).astype(np.float32), h, w) * sigma
    hu += rng.standard_normal((h, w), dtype=np.float32) * sigma
    return np.clip(hu + 1024.5, 0, 4095).astype(np.uint16)


def ct_slices(n: int, shape: tuple[int, int] = (512, 512), seed: int = 0, start: int = 0) -> np.ndarray:
    """``n`` CT-like uint16 slices ``(n, H, W)`` in HU + 1024, 12-bit range, as scanners store them."""
    h, w = shape
    out = np.empty((n, h, w), dtype=np.uint16)
    for k in range(n):
        out[k] = _ct_slice(seed, start + k, h, w)
    return out


def labels(n: int, classes: int = 10, seed: int = 0, start: int = 0) -> np.ndarray:
    """Deterministic int64 labels in ``[0, classes)``; label ``k`` depends only on ``(seed, k)``."""
    k = np.arange(start, start + n, dtype=np.uint64)
    mixed = (k + np.uint64(seed)) * np.uint64(0x9E3779B97F4A7C15) >> np.uint64(33)
    return (mixed % np.uint64(classes)).astype(np.int64)


def generate(name: str, n: int, seed: int = 0, start: int = 0) -> np.ndarray:
    """Images of a named built-in dataset (see :data:`BUILTIN`)."""
    if name not in BUILTIN:
        raise UnsupportedError(f"unknown built-in dataset {name!r}; choose one of: {', '.join(BUILTIN)}")
    spec = BUILTIN[name]
    make: Callable[..., np.ndarray] = photos if spec["kind"] == "photos" else ct_slices
    return make(n, shape=spec["shape"], seed=seed, start=start)

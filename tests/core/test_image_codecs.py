"""The lossless image codecs (jpegls, htj2k, jpegxl, lerc): what each claims is what it stores exactly.

The claims (``Codec.dtypes`` / ``Codec.channels``) are the table in docs/guide/codecs.md;
these tests hold every claim against a real round trip, every refusal against the store
(refused before anything is written, naming the codecs that do store it), and every
codestream header against the shape the store recorded (a lying header is a
CorruptStoreError before the decoder allocates).
"""

from __future__ import annotations

import struct
import warnings

import numpy as np
import pytest

import imgbench
from imgbench.core import codecs
from imgbench.storage import registry

from ..conftest import same, sample, store_path

NEW = ("jpegls", "htj2k", "jpegxl", "lerc")
DTYPES = [np.dtype(d) for d in ("uint8", "uint16", "int16", "float32")]
#: every backend that offers each codec (the others refuse it by name)
OFFERING = {c: [b for b in imgbench.backends() if c in registry.get(b).compressions] for c in NEW}


def shape_with(channels: int, base=(9, 7)) -> tuple[int, ...]:
    return base if channels == 1 else base + (channels,)


@pytest.mark.parametrize("name", NEW)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("channels", [1, 2, 3, 4])
def test_codec_stores_exactly_what_it_claims(name, dtype, channels):
    codec = codecs.CODECS[name]
    image = sample(shape_with(channels), dtype, seed=channels)
    claimed = dtype in codec.dtypes and channels in codec.channels
    try:
        back = codec.decode(codec.encode(image, None), dtype, image.shape)
        exact = same(back, image)
    except Exception:
        exact = False
    assert exact == claimed, f"{name} {dtype} {channels} channel(s): claims {claimed}, round trip exact {exact}"


@pytest.mark.parametrize("name", NEW)
def test_a_claimed_dtype_round_trips_at_its_extremes_and_every_float_bit_pattern(name):
    codec = codecs.CODECS[name]
    rng = np.random.default_rng(3)
    for dtype in codec.dtypes:
        if dtype.kind == "f":  # NaN payloads, subnormals, infinities: every float32 bit pattern
            image = rng.integers(0, 2**32, (33, 31), dtype=np.uint32).view(np.float32)
        else:
            image = sample((33, 31), dtype)
        assert same(codec.decode(codec.encode(image, None), dtype, image.shape), image), dtype


@pytest.mark.parametrize("name", NEW)
def test_unsupported_dtype_is_refused_before_anything_is_written(tmp_path, name):
    codec = codecs.CODECS[name]
    for backend in OFFERING[name]:
        for dtype in (d for d in DTYPES if d not in codec.dtypes):
            path = store_path(tmp_path, backend, f"{backend}-{dtype}")
            with pytest.raises(imgbench.UnsupportedError, match=rf"{name}.*{dtype}") as info:
                with imgbench.open(path, "w", backend=backend, compression=name) as s:
                    s.append(np.zeros((4, 4), dtype))
            supporting = [n for n, c in codecs.CODECS.items() if dtype in c.dtypes and n != name]
            assert all(n in str(info.value) for n in supporting), info.value
            assert not path.exists()


def test_two_channel_images_are_refused_by_jpegls_naming_the_codecs_that_take_them(tmp_path):
    for backend in OFFERING["jpegls"]:
        path = store_path(tmp_path, backend)
        with pytest.raises(imgbench.UnsupportedError, match="2-channel.*htj2k, jpegxl, lerc"):
            with imgbench.open(path, "w", backend=backend, compression="jpegls") as s:
                s.extend(np.zeros((2, 5, 5, 2), np.uint8))
        assert not path.exists()


@pytest.mark.parametrize("name", NEW)
def test_odd_sizes_and_colour_round_trip_on_every_backend(tmp_path, name):
    codec = codecs.CODECS[name]
    shapes = [(1, 37), (37, 1), (3, 5), (4097, 3), (5, 6, 3), (6, 5, 4), (5, 5, 1)]
    images = [sample(s, d, seed=k) for k, s in enumerate(shapes) for d in sorted(codec.dtypes, key=str)
              if (s[2] if len(s) == 3 else 1) in codec.channels and (len(s) == 2 or d == np.uint8 or k % 2)]
    assert len(OFFERING[name]) >= 3
    for backend in OFFERING[name]:
        path = store_path(tmp_path, backend, backend)
        with imgbench.open(path, "w", backend=backend, compression=name) as s:
            s.extend(images, labels=range(len(images)))
        with imgbench.open(path, verify=True) as s:
            assert all(same(s[i], im) for i, im in enumerate(images)), backend
            assert all(same(a, b) for a, b in zip(s.read_many(), images)), backend


# ------------------------------------------------------------------ lying headers
def _patched(name: str, data: bytes, height: int, width: int) -> bytes:
    """``data`` with the dimensions its header declares set to ``height`` x ``width`` (nothing else changed)."""
    b = bytearray(data)
    if name == "jpegls":
        at = b.index(b"\xff\xf7")
        struct.pack_into(">HH", b, at + 5, height, width)
    elif name == "htj2k":
        struct.pack_into(">II", b, 8, width, height)
        struct.pack_into(">II", b, 24, width, height)  # the tile too, so only the size lies
    elif name == "lerc":
        struct.pack_into("<ii", b, 14, height, width)
    return bytes(b)


@pytest.mark.parametrize("name", ["jpegls", "htj2k", "lerc"])
def test_a_header_claiming_60000x60000_is_corrupt_before_decoding(name, monkeypatch):
    codec = codecs.CODECS[name]
    image = sample((3, 5), np.uint16)
    blob = _patched(name, codec.encode(image, None), 60000, 60000)
    import imagecodecs

    def never(*a, **k):
        raise AssertionError("the decoder was reached")

    monkeypatch.setattr(imagecodecs, f"{name}_decode", never)
    with pytest.raises(imgbench.CorruptStoreError, match="60000x60000"):
        codec.decode(blob, np.dtype("uint16"), (3, 5))


@pytest.mark.parametrize("name", NEW)
def test_a_store_recording_60000x60000_for_a_small_codestream_allocates_nothing(name, monkeypatch):
    """A damaged index/sidecar/header records a huge shape: the codestream's own header refutes it first."""
    from imgbench.core import imagecodecs_lossless

    def no_allocation(*a, **k):
        raise AssertionError("the recorded shape was allocated")

    monkeypatch.setattr(imagecodecs_lossless, "_out", no_allocation)
    codec = codecs.CODECS[name]
    blob = codec.encode(sample((3, 5), np.uint16), None)
    with pytest.raises(imgbench.CorruptStoreError, match="5x3"):
        codec.decode(blob, np.dtype("uint16"), (60000, 60000))


@pytest.mark.parametrize("shape", [(1, 37), (37, 1), (4097, 3), (9, 12), (16, 9), (600, 500), (24, 20, 3)])
def test_jpegxl_size_header_is_read_exactly(shape):
    from imgbench.core.imagecodecs_lossless import _jxl_size

    for dtype in ("uint8", "uint16"):
        blob = codecs.CODECS["jpegxl"].encode(np.zeros(shape, dtype), 1)
        assert _jxl_size(blob) == shape[:2]


@pytest.mark.parametrize("name", NEW)
def test_a_genuine_codestream_of_another_size_or_dtype_is_corrupt(name):
    """The decoder writes into an array of the recorded shape: a bigger image is refused, not allocated."""
    codec = codecs.CODECS[name]
    big = np.zeros((600, 500), np.uint16)
    with pytest.raises(imgbench.CorruptStoreError):
        codec.decode(codec.encode(big, None), np.dtype("uint16"), (3, 5))
    if np.dtype("uint8") in codec.dtypes:
        with pytest.raises(imgbench.CorruptStoreError):
            codec.decode(codec.encode(np.zeros((3, 5), np.uint8), None), np.dtype("uint16"), (3, 5))
    if np.dtype("int16") in codec.dtypes:
        with pytest.raises(imgbench.CorruptStoreError):
            codec.decode(codec.encode(np.zeros((3, 5), np.uint16), None), np.dtype("int16"), (3, 5))


def test_truncated_jpegls_is_corrupt_without_reaching_charls():
    """CharLS 2.4 loops forever on some truncated streams: the EOI check refuses them first."""
    codec = codecs.CODECS["jpegls"]
    blob = codec.encode(sample((37, 23), np.uint16), None)
    for cut in (len(blob) // 2, len(blob) - 1, 3):
        with pytest.raises(imgbench.CorruptStoreError):
            codec.decode(blob[:cut], np.dtype("uint16"), (37, 23))


@pytest.mark.parametrize("level", [1, 9])
def test_jpegxl_effort_is_a_level(tmp_path, level):
    image = sample((20, 30), np.uint16)
    path = store_path(tmp_path, "lmdb")
    with imgbench.open(path, "w", backend="lmdb", compression="jpegxl", level=level) as s:
        s.append(image)
    with imgbench.open(path) as s:
        assert s.level == level and same(s[0], image)
    for name in ("jpegls", "htj2k", "lerc"):
        with pytest.raises(imgbench.UnsupportedError, match="takes no level"):
            imgbench.open(tmp_path / f"x-{name}.lmdb", "w", backend="lmdb", compression=name, level=1)


def test_containers_with_their_own_filters_refuse_the_image_codecs(tmp_path):
    for backend in ("zarr", "hdf5", "npy"):
        for name in NEW:
            with pytest.raises(imgbench.UnsupportedError, match=rf"{name!r} is not supported by backend"):
                imgbench.open(store_path(tmp_path, backend, f"{backend}-{name}"), "w", backend=backend,
                              compression=name)


@pytest.mark.parametrize("backend, name", [("lmdb", "htj2k"), ("tar", "jpegls"), ("disk", "lerc")])
def test_convert_to_a_sharded_dataset_with_an_image_codec_then_verify(tmp_path, capsys, backend, name):
    """`imgbench convert --compression` into shards, read back exactly, `imgbench verify` passes, then finds damage."""
    import imagecodecs

    from imgbench.cli import main

    src = tmp_path / "scans"
    src.mkdir()
    images = [sample((20 + k, 17), np.uint16, seed=k) for k in range(7)]
    for k, im in enumerate(images):
        (src / f"{k:02d}.png").write_bytes(imagecodecs.png_encode(im))
    dst = tmp_path / "ds"
    assert main(["convert", str(src), str(dst), "--backend", backend, "--compression", name,
                 "--images-per-shard", "3", "-q"]) == 0
    with imgbench.open(dst, verify=True) as s:
        assert s.compression == name and s.shards == 3 and len(s) == 7
        got = s.read_many()
        assert all(same(g, im) for g, im in zip(got, images))
    capsys.readouterr()
    assert main(["verify", "-q", str(dst)]) == 0
    assert "ok: 7 images checked" in capsys.readouterr().out


@pytest.mark.parametrize("backend", ["lmdb", "disk", "tar"])
@pytest.mark.parametrize("name", NEW)
def test_a_damaged_codestream_that_still_decodes_is_caught_by_verify(tmp_path, capsys, backend, name):
    """A valid codestream of other pixels in image 1's place: every codec decodes it; only the digest knows."""
    from imgbench.cli import main

    from ..contract.backends import kit_for

    kit = kit_for(backend)
    images = [sample((9, 8), np.uint16, seed=k) for k in range(3)]
    path = kit.path(tmp_path)
    with imgbench.open(path, "w", backend=backend, compression=name) as s:
        s.extend(images)
    other = images[1].copy()
    other[4, 4] ^= 1
    kit.replace_encoded(path, 1, codecs.CODECS[name].encode(other, None))
    with imgbench.open(path) as s:
        assert same(s[1], other)  # it decodes: no codec check can see it
    with imgbench.open(path, verify=True) as s:
        assert same(s[0], images[0]) and same(s[2], images[2])
        with pytest.raises(imgbench.CorruptStoreError, match=r"image 1\b.*checksum"):
            s[1]
    capsys.readouterr()
    assert main(["verify", "-q", str(path)]) == 1
    assert "damaged image 1:" in capsys.readouterr().out


# ------------------------------------------------------------------ real DICOM files nobody here made
#: pydicom's bundled test files with 16-bit pixels: (file, dtype pydicom decodes it to)
DICOM = [
    ("examples_overlay.dcm", "uint16"),
    ("SC_rgb_rle_16bit.dcm", "uint16"),
    ("CT_small.dcm", "int16"),
    ("MR_small.dcm", "int16"),
    ("JPEG2000.dcm", "int16"),
    ("MR_small_jpeg_ls_lossless.dcm", "int16"),
]


def dicom_pixels(name: str) -> np.ndarray:
    pydicom = pytest.importorskip("pydicom")
    from pydicom.data import get_testdata_file

    path = get_testdata_file(name, download=False)
    assert path is not None, f"pydicom no longer bundles {name}"
    ds = pydicom.dcmread(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return ds.pixel_array
    except RuntimeError as exc:  # only a missing transfer-syntax handler (e.g. JPEG-LS needs pyjpegls)
        pytest.skip(f"pydicom has no handler here for {ds.file_meta.TransferSyntaxUID.name} ({exc})")


@pytest.mark.parametrize("name, dtype", DICOM, ids=[d[0] for d in DICOM])
def test_real_dicom_pixels_are_stored_exactly(tmp_path, name, dtype):
    pixels = dicom_pixels(name)
    assert pixels.dtype == np.dtype(dtype)
    frames = list(pixels) if pixels.ndim == 4 else [pixels]
    stored = 0
    for codec in NEW:
        if np.dtype(dtype) not in codecs.CODECS[codec].dtypes:
            continue
        for backend in OFFERING[codec]:
            path = store_path(tmp_path, backend, f"{backend}-{codec}")
            with imgbench.open(path, "w", backend=backend, compression=codec) as s:
                s.extend(frames)
            with imgbench.open(path, verify=True) as s:
                assert all(same(s[i], f) for i, f in enumerate(frames)), (codec, backend)
            stored += 1
    assert stored >= 6  # uint16: all four codecs; int16: htj2k and lerc, on lmdb, disk and tar

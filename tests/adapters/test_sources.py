"""Reading users' images: exact pixels for lossless formats, labels, skips and errors."""

from __future__ import annotations

import imagecodecs
import numpy as np
import pytest
import tifffile
from PIL import Image

from imgbench import StoreNotFoundError
from imgbench.adapters import sources

RNG = np.random.default_rng(1234)


def rand(shape, dtype):
    info = np.iinfo(dtype)
    return RNG.integers(info.min, info.max, shape, dtype=dtype, endpoint=True)


def write_png(path, image):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(imagecodecs.png_encode(image))


def test_png_all_depths_and_channels_exact(tmp_path):
    cases = {
        "g8.png": rand((7, 9), np.uint8),
        "g16.png": rand((5, 4), np.uint16),
        "ga8.png": rand((6, 5, 2), np.uint8),
        "rgb8.png": rand((4, 6, 3), np.uint8),
        "rgb16.png": rand((8, 3, 3), np.uint16),  # Pillow cannot read this one exactly
        "rgba16.png": rand((3, 5, 4), np.uint16),
    }
    for name, image in cases.items():
        write_png(tmp_path / name, image)
    for name, image in cases.items():
        (got,) = sources.read_file(tmp_path / name)
        assert got.dtype == image.dtype and got.shape == image.shape, name
        np.testing.assert_array_equal(got, image)


def test_png_written_by_pillow_reads_back(tmp_path):
    image = rand((10, 12, 3), np.uint8)
    Image.fromarray(image).save(tmp_path / "p.png")
    (got,) = sources.read_file(tmp_path / "p.png")
    np.testing.assert_array_equal(got, image)


def test_tiff_pages_planar_and_dtypes_exact(tmp_path):
    g16 = rand((11, 13), np.uint16)
    rgb = rand((6, 7, 3), np.uint8)
    planar = rand((3, 5, 4), np.uint8)  # stored (S, H, W)
    stack = rand((3, 4, 5), np.uint16)
    f32 = RNG.standard_normal((4, 4)).astype(np.float32)
    tifffile.imwrite(tmp_path / "g16.tif", g16)
    tifffile.imwrite(tmp_path / "rgb.tiff", rgb, photometric="rgb")
    tifffile.imwrite(tmp_path / "planar.tif", planar, photometric="rgb", planarconfig="separate")
    with tifffile.TiffWriter(tmp_path / "pages.tif") as tif:
        for page in stack:
            tif.write(page)
    tifffile.imwrite(tmp_path / "f32.tif", f32)
    np.testing.assert_array_equal(sources.read_file(tmp_path / "g16.tif")[0], g16)
    assert sources.read_file(tmp_path / "g16.tif")[0].dtype == np.uint16
    np.testing.assert_array_equal(sources.read_file(tmp_path / "rgb.tiff")[0], rgb)
    np.testing.assert_array_equal(sources.read_file(tmp_path / "planar.tif")[0], np.moveaxis(planar, 0, -1))
    pages = sources.read_file(tmp_path / "pages.tif")
    assert len(pages) == 3
    for got, want in zip(pages, stack):
        np.testing.assert_array_equal(got, want)
    got = sources.read_file(tmp_path / "f32.tif")[0]
    assert got.dtype == np.float32 and np.array_equal(got, f32)


def test_jpeg_gives_the_decoded_pixels(tmp_path):
    image = rand((16, 24, 3), np.uint8)
    Image.fromarray(image).save(tmp_path / "a.jpg", quality=90)
    Image.fromarray(image[..., 0]).save(tmp_path / "g.jpeg")
    (got,) = sources.read_file(tmp_path / "a.jpg")
    with Image.open(tmp_path / "a.jpg") as im:
        np.testing.assert_array_equal(got, np.asarray(im))
    assert got.shape == (16, 24, 3) and got.dtype == np.uint8
    assert sources.read_file(tmp_path / "g.jpeg")[0].shape == (16, 24)


def test_scan_labels_from_subfolders_in_stable_order(tmp_path):
    write_png(tmp_path / "dogs" / "b.png", rand((3, 3), np.uint8))
    write_png(tmp_path / "cats" / "z.png", rand((4, 3), np.uint8))
    write_png(tmp_path / "cats" / "deep" / "a.png", rand((5, 3), np.uint8))
    (tmp_path / "cats" / "notes.txt").write_text("not an image")
    (tmp_path / ".hidden.png").write_bytes(b"ignored")
    found = sources.scan(tmp_path)
    assert found.classes == ["cats", "dogs"]
    assert [f.path.relative_to(tmp_path).as_posix() for f in found.files] == [
        "cats/deep/a.png", "cats/z.png", "dogs/b.png"]
    assert [f.label for f in found.files] == [0, 0, 1]
    assert found.ignored == 1
    loaded = sources.load(tmp_path)
    assert loaded.labels.tolist() == [0, 0, 1]
    assert [im.shape for im in loaded.images] == [(5, 3), (4, 3), (3, 3)]


def test_no_labels_when_images_sit_at_the_top(tmp_path):
    write_png(tmp_path / "a.png", rand((3, 3), np.uint8))
    write_png(tmp_path / "sub" / "b.png", rand((3, 3), np.uint8))
    found = sources.scan(tmp_path)
    assert found.classes is None and all(f.label is None for f in found.files)
    assert sources.load(tmp_path).labels is None


def test_load_stops_at_limits(tmp_path):
    for k in range(6):
        write_png(tmp_path / f"{k}.png", rand((10, 10), np.uint8))
    loaded = sources.load(tmp_path, max_images=4)
    assert len(loaded.images) == 4 and loaded.truncated
    loaded = sources.load(tmp_path, max_bytes=250)  # the third image (300 bytes in all) would go beyond
    assert len(loaded.images) == 2 and loaded.truncated
    assert len(sources.load(tmp_path, max_bytes=50).images) == 1  # the first is always read
    assert not sources.load(tmp_path).truncated


def test_errors_missing_empty_file_and_damaged(tmp_path):
    with pytest.raises(StoreNotFoundError):
        sources.scan(tmp_path / "nope")
    with pytest.raises(sources.SourceError, match="holds no images"):
        sources.scan(tmp_path)
    (tmp_path / "x.txt").write_text("hello")
    with pytest.raises(sources.SourceError, match="1 other file"):
        sources.scan(tmp_path)
    with pytest.raises(sources.SourceError, match="is a file"):
        sources.scan(tmp_path / "x.txt")
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\nthis is not a png")
    with pytest.raises(sources.SourceError, match="bad.png"):
        sources.load(tmp_path)


def test_unsupported_pixel_type_is_skipped_and_counted(tmp_path):
    tifffile.imwrite(tmp_path / "f64.tif", np.zeros((4, 4), np.float64))
    write_png(tmp_path / "ok.png", rand((4, 4), np.uint8))
    loaded = sources.load(tmp_path)
    assert len(loaded.images) == 1
    assert sum(loaded.skipped.values()) == 1 and "float64" in loaded.warnings[0]


# --------------------------------------------------------------------- DICOM
def make_dicom(path, frames, *, signed=False, syntax=None, fragments=None):
    """A minimal valid DICOM file (Secondary Capture) written by pydicom itself."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.encaps import encapsulate
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = syntax or ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "CT"
    ds.PatientName = "Test^Phantom"
    n, h, w = frames.shape
    ds.Rows, ds.Columns = h, w
    if n > 1:
        ds.NumberOfFrames = n
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1 if signed else 0
    if fragments is not None:
        ds.PixelData = encapsulate(fragments)
        ds["PixelData"].VR = "OB"
    else:
        ds.PixelData = frames.tobytes()
    ds.save_as(path, enforce_file_format=True)


def missing_decoder_syntax():
    """A compressed transfer syntax this environment cannot decode (None if it decodes them all)."""
    from pydicom import uid
    from pydicom.pixels import get_decoder

    for syntax in (uid.JPEGLSLossless, uid.JPEGLossless, uid.JPEGLSNearLossless, uid.JPEGExtended12Bit):
        if not get_decoder(syntax).is_available:
            return syntax
    return None


def test_dicom_single_multi_frame_signed_and_no_suffix(tmp_path):
    pytest.importorskip("pydicom")
    one = rand((1, 16, 12), np.uint16) & 0x0FFF
    multi = rand((3, 8, 9), np.int16)
    make_dicom(tmp_path / "one.dcm", one)
    make_dicom(tmp_path / "multi.dcm", multi, signed=True)
    make_dicom(tmp_path / "IM0001", one)  # scanners often write files without a suffix
    (got,) = sources.read_file(tmp_path / "one.dcm")
    assert got.dtype == np.uint16 and np.array_equal(got, one[0])
    frames = sources.read_file(tmp_path / "multi.dcm")
    assert len(frames) == 3 and all(f.dtype == np.int16 for f in frames)
    for got, want in zip(frames, multi):
        np.testing.assert_array_equal(got, want)
    loaded = sources.load(tmp_path)
    assert len(loaded.images) == 5  # IM0001, multi (3 frames), one


def test_dicom_with_missing_decoder_is_skipped_with_a_counted_warning(tmp_path):
    pytest.importorskip("pydicom")
    syntax = missing_decoder_syntax()
    if syntax is None:
        pytest.skip("every compressed DICOM syntax tried has a decoder installed here")
    image = rand((1, 8, 8), np.uint16)
    make_dicom(tmp_path / "plain.dcm", image)
    make_dicom(tmp_path / "c1.dcm", image, syntax=syntax, fragments=[b"\xff\xd8\xff\xf7 not decodable here"])
    make_dicom(tmp_path / "c2.dcm", image, syntax=syntax, fragments=[b"\xff\xd8\xff\xf7 not decodable here"])
    loaded = sources.load(tmp_path)
    assert len(loaded.images) == 1 and np.array_equal(loaded.images[0], image[0])
    assert sum(loaded.skipped.values()) == 2
    assert "skipped 2 file(s)" in loaded.warnings[0] and "decoder" in loaded.warnings[0]


def test_damaged_dicom_is_an_error(tmp_path):
    pytest.importorskip("pydicom")
    make_dicom(tmp_path / "a.dcm", rand((1, 32, 32), np.uint16))
    data = (tmp_path / "a.dcm").read_bytes()
    (tmp_path / "a.dcm").write_bytes(data[: len(data) - 1000])  # pixel data cut short
    with pytest.raises(sources.SourceError, match="a.dcm"):
        sources.read_file(tmp_path / "a.dcm")

"""DICOM series are stored in slice order (issue 19): grouped by SeriesInstanceUID, ordered by
ImagePositionPatient along the slice normal, else InstanceNumber, else file name, and the order used is said."""

from __future__ import annotations

import glob
import os
import shutil

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pydicom = pytest.importorskip("pydicom")

import imgbench
from imgbench.adapters import dicom_series
from imgbench.adapters.convert import convert
from tests.adapters.dicom_files import write_ct

AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
OBLIQUE = (1.0, 0.0, 0.0, 0.0, 0.8, -0.6)  # normal (0, 0.6, 0.8)


def write_slice(path, series, position, orientation=AXIAL, instance=None, value=0):
    elements = {"SeriesInstanceUID": series}
    if position is not None:
        elements["ImagePositionPatient"] = [float(v) for v in position]
        elements["ImageOrientationPatient"] = [float(v) for v in orientation]
    if instance is not None:
        elements["InstanceNumber"] = instance
    write_ct(path, np.full((4, 5), value, np.uint16), **elements)


def stored_values(path) -> list[int]:
    with imgbench.open(path) as store:
        return [int(im[0, 0]) for im in store.read_many()]


def test_a_radial_series_is_ordered_by_instance_number_and_says_why(tmp_path):
    """pydicom's MR700 series sorts by file name as InstanceNumber 4, 2, 1, 3, 5, 7, 6; its slices are
    radial (each has its own orientation), so the position along one normal is not defined."""
    files = glob.glob(os.path.join(os.path.dirname(pydicom.data.get_testdata_file("CT_small.dcm")),
                                   "dicomdirtests", "98892003", "MR700", "*"))
    if len(files) != 7:
        pytest.skip("pydicom's MR700 test series is not installed with this pydicom")
    src = tmp_path / "mr"
    src.mkdir()
    for f in files:
        shutil.copy(f, src)
    report = convert(src, tmp_path / "mr.npy", backend="npy")
    by_instance = sorted(files, key=lambda f: int(pydicom.dcmread(f).InstanceNumber))
    want = [pydicom.dcmread(f).pixel_array for f in by_instance]
    with imgbench.open(tmp_path / "mr.npy") as store:
        got = store.read_many()
    assert all(np.array_equal(a, b) for a, b in zip(got, want, strict=True))
    assert report.notes == ["DICOM series in the top folder (7 files) stored in slice order, by InstanceNumber "
                            "(the slices do not share one orientation), not by file name"]


@pytest.mark.parametrize("orientation", [AXIAL, OBLIQUE], ids=["axial", "oblique"])
def test_parallel_slices_are_ordered_along_the_normal_not_by_name_or_instance(tmp_path, orientation):
    normal = np.cross(orientation[:3], orientation[3:])
    depths = [3.0, -1.5, 7.0, 0.0, 4.5]  # file k is at depth depths[k]; InstanceNumber deliberately wrong
    for k, d in enumerate(depths):
        write_slice(tmp_path / "src" / f"{k:02d}.dcm", "1.2.3", normal * d + (10, -5, 2), orientation,
                    instance=len(depths) - k, value=k)
    report = convert(tmp_path / "src", tmp_path / "out.lmdb")
    assert stored_values(tmp_path / "out.lmdb") == [int(k) for k in np.argsort(depths)]
    assert "by position along the slice normal" in report.notes[0]


def test_two_interleaved_series_are_grouped_each_in_order(tmp_path):
    for name, series, z, value in (("a1", "1.1", 2, 11), ("b1", "2.2", 9, 21), ("a2", "1.1", 1, 10),
                                   ("b2", "2.2", 8, 20), ("c.dcm", "3.3", None, 99)):
        write_slice(tmp_path / "src" / name, series, None if z is None else (0, 0, z), value=value)
    convert(tmp_path / "src", tmp_path / "out.npy", backend="npy")
    assert stored_values(tmp_path / "out.npy") == [10, 11, 20, 21, 99]


def test_without_geometry_instance_number_then_file_name(tmp_path):
    for name, inst, value in (("x1", 3, 2), ("x2", 1, 0), ("x3", 2, 1)):
        write_slice(tmp_path / "inst" / name, "4.4", None, instance=inst, value=value)
    report = convert(tmp_path / "inst", tmp_path / "i.npy", backend="npy")
    assert stored_values(tmp_path / "i.npy") == [0, 1, 2]
    assert "InstanceNumber (no ImagePositionPatient)" in report.notes[0]
    for name, value in (("y2", 1), ("y1", 0)):
        write_slice(tmp_path / "name" / name, "5.5", None, value=value)
    report = convert(tmp_path / "name", tmp_path / "n.npy", backend="npy")
    assert stored_values(tmp_path / "n.npy") == [0, 1] and report.notes == []  # name order is no change


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(-500, 500, allow_nan=False), min_size=2, max_size=12, unique=True),
       st.sampled_from([AXIAL, OBLIQUE]))
def test_order_is_the_depth_along_the_normal_for_any_positions(depths, orientation):
    normal = np.cross(orientation[:3], orientation[3:])
    headers = [dicom_series.Header("s", tuple(normal * d), orientation, None) for d in depths]
    order, why = dicom_series.order_series([f"{k}" for k in range(len(depths))], headers)
    projected = [float(np.dot(normal * depths[i], normal)) for i in order]
    if why == "position along the slice normal":
        assert projected == sorted(projected)
    else:  # depths equal after rounding to 1e-6: nothing to order by but the name
        assert why.startswith("file name")

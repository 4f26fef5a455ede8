"""Patient-identifying data never enters a store (issue 19): a DICOM file whose patient attributes hold a
marker string is converted into every backend, plain and sharded, and the marker occurs in no byte of the
result. It guards the day per-image metadata is kept: PHI may enter only when the user names it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pydicom = pytest.importorskip("pydicom")

import imgbench
from imgbench.adapters.convert import convert
from tests.adapters.dicom_files import write_ct

MARKER = "ZZPHIMARKER7431"


def phi_file(path: Path, k: int) -> None:
    write_ct(path, np.arange(42, dtype=np.uint16).reshape(6, 7) + k, bits_stored=12,
             PatientName=f"{MARKER}^NAME", PatientID=f"{MARKER}-ID", PatientBirthDate="19010101",
             InstitutionName=f"{MARKER} HOSPITAL", ReferringPhysicianName=f"{MARKER}^DOCTOR",
             AccessionNumber=MARKER[:16], SeriesInstanceUID="1.2.826.0.1.3680043.8.498.1",
             ImagePositionPatient=[0.0, 0.0, float(k)], ImageOrientationPatient=[1.0, 0.0, 0.0, 0.0, 1.0, 0.0])


@pytest.mark.parametrize("sharded", [False, True], ids=["plain", "sharded"])
@pytest.mark.parametrize("backend", imgbench.backends())
def test_no_byte_of_patient_data_enters_the_store(tmp_path, backend, sharded):
    src = tmp_path / "scan"
    src.mkdir()
    for k in range(3):
        phi_file(src / f"{k}.dcm", k)
    assert MARKER.encode() in (src / "0.dcm").read_bytes()  # control: the marker is in the source
    dst = tmp_path / "store"
    convert(src, dst, backend=backend, **({"shards": 2} if sharded else {}))
    with imgbench.open(dst) as store:
        assert len(store) == 3
    for path in [dst, *dst.rglob("*")] if dst.is_dir() else [dst]:
        if path.is_file():
            data = path.read_bytes()
            for needle in (MARKER.encode(), MARKER.encode("utf-16-le"), b"19010101"):
                assert needle not in data, (path, needle)

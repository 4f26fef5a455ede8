"""imgbench info / verify: describe a store, find damaged images, exit codes."""

from __future__ import annotations

import json

import numpy as np

import imgbench
from imgbench.adapters.integrity import describe, verify
from imgbench.cli import main


def make(tmp_path, backend="disk"):
    path = tmp_path / "s"
    with imgbench.open(path, "w", backend=backend) as s:
        s.extend(np.stack([np.full((6, 6, 3), i, np.uint8) for i in range(12)]), labels=np.arange(12) % 3)
        s.attrs["modality"] = "CT"
    return path


def test_describe(tmp_path):
    info = describe(make(tmp_path))
    assert info["backend"] == "disk" and info["images"] == 12 and info["classes"] == 3
    assert info["shapes"] == {"6x6x3 uint8": 12} and info["attrs"] == {"modality": "CT"}
    assert info["disk"]["files"] == 13


def test_verify_finds_each_damaged_image(tmp_path, capsys):
    path = make(tmp_path)
    assert verify(path).ok
    assert main(["verify", "-q", str(path)]) == 0
    assert "ok: 12 images" in capsys.readouterr().out
    (path / "00000004.png").write_bytes(b"not a png")
    (path / "00000009.png").unlink()
    report = verify(path)
    assert sorted(report.damaged) == [4, 9] and not report.ok
    assert main(["verify", "-q", str(path)]) == 1
    out = capsys.readouterr().out
    assert "damaged image 4" in out and "damaged image 9" in out and "2 of 12 images damaged" in out


def test_verify_of_an_unreadable_store_exits_1(tmp_path, capsys):
    path = make(tmp_path)
    (path / "imgbench.json").write_text("{")
    assert main(["verify", "-q", str(path)]) == 1
    assert "damaged" in capsys.readouterr().out


def test_info_and_errors_are_one_line(tmp_path, capsys):
    path = make(tmp_path)
    assert main(["info", "--json", str(path)]) == 0
    assert json.loads(capsys.readouterr().out)["images"] == 12
    assert main(["info", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no store" in err and "Traceback" not in err


def test_verify_survives_a_store_that_crashes_its_reader(tmp_path):
    """LMDB trusts its pages: a damaged leaf page aborts a reading process. `imgbench verify`
    reads in a child, reports the damage at the image being read, resumes after it, exits 1."""
    import struct
    import subprocess
    import sys

    import numpy as np

    import imgbench
    from imgbench.adapters.integrity import verify

    from ..contract.backends import lmdb_leaf_pages

    path = tmp_path / "big.lmdb"
    rng = np.random.default_rng(0)
    with imgbench.open(path, "w", compression="zstd") as s:
        s.extend(rng.integers(0, 256, (40, 40, 40, 3), dtype=np.uint8), labels=np.arange(40))
    data = bytearray((path / "data.mdb").read_bytes())
    page = lmdb_leaf_pages(bytes(data))[0][0]
    ptr = struct.unpack_from("<H", data, page * 4096 + 16 + 2)[0]  # second node: its value runs 2 GiB past EOF
    struct.pack_into("<H", data, page * 4096 + ptr + 2, 0x7FFF)
    (path / "data.mdb").write_bytes(bytes(data))

    report = verify(path, isolate=True)
    assert not report.ok and report.images == 40
    assert any("crashed the reader" in reason for reason in report.damaged.values()), report.damaged
    assert len(report.damaged) < 40  # the others were still read
    cli = subprocess.run([sys.executable, "-m", "imgbench.cli", "verify", "-q", str(path)], capture_output=True, text=True)
    assert cli.returncode == 1 and "Traceback" not in cli.stderr + cli.stdout and "damaged image" in cli.stdout

"""The other subcommands keep working next to compare/convert, with one-line errors."""

from __future__ import annotations

import json

import numpy as np

import imgbench
from imgbench.cli import main


def test_info_and_verify(tmp_path, capsys):
    path = tmp_path / "s.lmdb"
    with imgbench.open(path, "w") as store:
        store.extend(np.zeros((3, 4, 5), np.uint8), labels=[0, 1, 1])
    assert main(["info", str(path), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["images"] == 3 and info["backend"] == "lmdb" and info["classes"] == 2
    assert main(["verify", str(path), "-q"]) == 0
    assert "ok: 3 images" in capsys.readouterr().out


def test_missing_store_is_one_line(tmp_path, capsys):
    for cmd in ("info", "verify"):
        assert main([cmd, str(tmp_path / "nope")]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("imgbench: error:") and len(err.splitlines()) == 1


def test_demo_still_runs(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path / "d"), "--count", "5"]) == 0
    out = capsys.readouterr().out
    for name in imgbench.backends():
        assert name in out

"""Small defects of issue 14: each pinned by a test that failed before its fix."""

from __future__ import annotations

import numpy as np

import imgbench
from imgbench.cli import main


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("imgbench: error:") and len(err.splitlines()) == 1, err
    return err


def test_verify_on_a_folder_that_is_not_a_store_says_so_rc2(tmp_path, capsys):
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "a.txt").write_text("hi")
    assert main(["info", str(folder)]) == 2
    _one_line_error(capsys)
    assert main(["verify", str(folder), "-q"]) == 2
    err = _one_line_error(capsys)
    assert "not an imgbench store" in err
    assert "store is damaged" not in capsys.readouterr().out


def test_verify_on_a_damaged_store_still_exits_1(tmp_path, capsys):
    path = tmp_path / "s"
    with imgbench.open(path, "w", backend="npy") as store:
        store.extend(np.arange(3 * 4 * 5, dtype=np.uint8).reshape(3, 4, 5))
    assert main(["verify", str(path), "-q"]) == 0
    capsys.readouterr()
    data = [p for p in path.rglob("*") if p.is_file() and p.stat().st_size >= 60]
    assert data, list(path.rglob("*"))
    for p in data:
        raw = bytearray(p.read_bytes())
        raw[-1] ^= 0xFF
        p.write_bytes(bytes(raw))
    assert main(["verify", str(path), "-q"]) == 1
    assert "damaged" in capsys.readouterr().out


def test_compare_dataset_too_big_for_memory_is_one_line_before_allocating(tmp_path, capsys, monkeypatch):
    from imgbench.adapters import datasets
    from imgbench.measure import compare_plan

    def never(*a, **k):
        raise AssertionError("allocated a dataset before checking memory")

    monkeypatch.setattr(datasets, "ct_slices", never)
    monkeypatch.setattr(datasets, "photos", never)
    out = tmp_path / "rep"
    argv = ["compare", "--datasets", "ct:99999x99999", "--counts", "10", "--backends", "npy", "--out", str(out), "-q"]
    assert main(argv) == 2
    err = _one_line_error(capsys)
    assert "186.3 GiB" in err and "available" in err and "--counts" in err
    assert not out.exists()
    monkeypatch.setattr(compare_plan, "available_memory", lambda: 1 << 20)
    assert main(["compare", "--datasets", "cifar", "--counts", "1000", "--backends", "npy", "--out", str(out)]) == 2
    assert "2.9 MiB" in _one_line_error(capsys)


def test_convert_help_lists_every_backend_suffix_and_compression(capsys):
    import pytest

    from imgbench.storage import registry

    with pytest.raises(SystemExit):
        main(["convert", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for name in imgbench.backends():
        assert name in text
        for suffix in registry.suffixes(name):
            assert f"{suffix} ({name})" in text
        assert f"{name}: {', '.join(registry.get(name).compressions)}" in text
    with pytest.raises(SystemExit) as exit_:
        main(["convert", "a", "b", "--backend", "nosuch"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "invalid choice" in err and "zarr" in err


def test_info_shows_every_shape_or_says_how_many_more_and_counts_add_up(tmp_path, capsys):
    import json

    path = tmp_path / "mixed.lmdb"
    with imgbench.open(path, "w") as store:
        for i in range(14):
            store.append(np.zeros((i + 1, 4, 3), np.uint8))
    assert main(["info", str(path), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert all(isinstance(c, int) for c in info["shapes"].values())
    assert sum(info["shapes"].values()) + info["shapes_more"]["images"] == info["shapes_looked_at"] == 14
    assert len(info["shapes"]) + info["shapes_more"]["shapes"] == 14 and info["shapes_sampled"] is False
    assert main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    assert "14 distinct (all 14 images)" in out
    assert f"and {info['shapes_more']['shapes']} more shapes ({info['shapes_more']['images']} images)" in out
    assert "{" not in out.split("shapes", 1)[1].split("labelled")[0]


def test_info_on_a_large_sharded_store_says_shapes_were_sampled(tmp_path, capsys):
    src = tmp_path / "big"
    with imgbench.open(src, "w", backend="npy") as store:
        store.extend(np.zeros((2500, 8, 8, 3), np.uint8))
    dst = tmp_path / "shd"
    assert main(["convert", str(src), str(dst), "--backend", "lmdb", "--images-per-shard", "1000", "-q"]) == 0
    capsys.readouterr()
    assert main(["info", str(dst)]) == 0
    out = capsys.readouterr().out
    assert "sampled" in out and "'sampled'" not in out
    assert "sampled 1,250 of 2,500 images" in out and "8x8x3 uint8  1,250" in out


def _outside_any_repository(tmp_path, monkeypatch):
    """cwd and the package's own location both outside a checkout (as for a pip-installed imgbench)."""
    from imgbench.present import dashboard

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    monkeypatch.setattr(dashboard, "__file__", str(tmp_path / "site" / "imgbench" / "present" / "dashboard.py"))
    return elsewhere


def test_dashboard_with_results_works_from_any_folder(tmp_path, monkeypatch, capsys):
    import shutil
    from pathlib import Path

    import pytest

    pytest.importorskip("asv")
    repo_results = Path(__file__).resolve().parents[2] / "results"
    if not (repo_results / "benchmarks.json").is_file():
        pytest.skip("no committed asv results")
    results = tmp_path / "copied-results"
    shutil.copytree(repo_results, results)
    _outside_any_repository(tmp_path, monkeypatch)
    assert main(["dashboard", "--results", str(results), "--out", "dash"]) == 0, capsys.readouterr().err
    out = Path("dash")
    assert (out / "index.html").is_file() and (out / "compare.html").is_file()
    assert (out / "graphs").is_dir() and "compare.html" in (out / "index.html").read_text()


def test_dashboard_without_results_outside_a_repository_says_pass_results(tmp_path, monkeypatch, capsys):
    _outside_any_repository(tmp_path, monkeypatch)
    assert main(["dashboard", "--out", "dash"]) == 2
    assert "--results" in _one_line_error(capsys)


def _photos(tmp_path):
    from PIL import Image

    src = tmp_path / "photos"
    src.mkdir()
    for i in range(2):
        Image.fromarray(np.full((4, 5, 3), i, np.uint8)).save(src / f"{i}.png")
    return src


def _assert_cli_words(err: str, *flags: str) -> None:
    for flag in flags:
        assert flag in err, err
    for python_word in ("backend=", "mode=", "level=", "config=", "lock=", "locking="):
        assert python_word not in err, err


def test_cli_errors_name_flags_not_keyword_arguments(tmp_path, capsys):
    src = _photos(tmp_path)
    assert main(["convert", str(src), str(tmp_path / "out.weird")]) == 2
    _assert_cli_words(_one_line_error(capsys), "--backend")

    assert main(["convert", str(src), str(tmp_path / "s.lmdb"), "-q"]) == 0
    capsys.readouterr()
    assert main(["convert", str(src), str(tmp_path / "s.lmdb")]) == 2
    _assert_cli_words(_one_line_error(capsys), "--overwrite")

    assert main(["convert", str(src), str(tmp_path / "t.lmdb"), "--compression", "none", "--level", "3"]) == 2
    _assert_cli_words(_one_line_error(capsys), "--level")


def test_library_errors_keep_python_words_and_survive_a_process_pool(tmp_path):
    import pickle

    import pytest

    with pytest.raises(imgbench.UnsupportedError, match="backend=") as caught:
        imgbench.open(tmp_path / "out.weird", "w")
    again = pickle.loads(pickle.dumps(caught.value))
    assert str(again) == str(caught.value) and "--backend" in again.for_cli()

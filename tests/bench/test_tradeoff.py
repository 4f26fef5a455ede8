"""`imgbench png-levels`: the PNG level/threads measurement behind the disk defaults (structure, not speed)."""

from __future__ import annotations

import json

from imgbench import cli, datasets
from imgbench.core import codecs
from imgbench.measure import tradeoff


def test_levels_and_threads_are_measured_on_real_encodings(tmp_path):
    levels, threads = tradeoff.measure(levels=(0, 1, 9), threads=(1, 2), counts={"cifar": 20, "ct": 1}, repeat=1)
    assert [(r.dataset, r.level) for r in levels] == [(d, lv) for d in ("cifar", "ct") for lv in (0, 1, 9)]
    images = datasets.generate("cifar", 20)
    want = sum(len(codecs.CODECS["png"].encode(im, 9)) for im in images) / images.nbytes
    assert levels[2].ratio == want  # bytes are counted, not estimated
    assert levels[0].ratio > 1.0 > levels[1].ratio  # level 0 stores; level 1 compresses
    assert all(r.encode_us > 0 and r.decode_us > 0 for r in levels)
    assert [(r.dataset, r.threads) for r in threads] == [("cifar", 1), ("cifar", 2), ("ct", 1), ("ct", 2)]
    assert threads[0].speedup_encode == 1.0 and threads[0].speedup_decode == 1.0
    table = tradeoff.markdown(levels, threads)
    assert table.count("\n| cifar |") == 5 and "| ct | 9 |" in table
    assert tradeoff.plot(levels, tmp_path / "p.png").stat().st_size > 1000


def test_cli_writes_table_plot_and_json(tmp_path, capsys):
    assert cli.main(["png-levels", "--quick", "--repeat", "1", "-q", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "| cifar | 1 |" in out and "speed-up" in out
    data = json.loads((tmp_path / "png_levels.json").read_text())
    assert len(data["levels"]) == 20 and (tmp_path / "png_levels.png").exists()


def test_cli_writes_the_tables_into_the_readme(tmp_path, capsys):
    from imgbench.measure import sections, tradeoff

    begin, end = sections.markers(tradeoff.README_SECTION, "imgbench png-levels")
    path = tmp_path / "README.md"
    path.write_text(f"intro\n{begin}\nold table\n{end}\nrest\n")
    assert cli.main(["png-levels", "--quick", "--repeat", "1", "-q", "--readme", str(path)]) == 0
    text = path.read_text()
    assert "old table" not in text and text.startswith(f"intro\n{begin}\n") and text.endswith(f"{end}\nrest\n")
    assert "`imgbench png-levels --quick --repeat 1 -q --readme" in text
    assert "| data | PNG level | bytes / raw |" in text and "| data | threads |" in text


def test_cli_readme_without_markers_fails_before_measuring(tmp_path, capsys):
    path = tmp_path / "README.md"
    path.write_text("no markers\n")
    assert cli.main(["png-levels", "--quick", "-q", "--readme", str(path)]) == 2
    err = capsys.readouterr()
    assert "no png levels table markers" in err.err and len(err.err.strip().splitlines()) == 1
    assert err.out == "" and path.read_text() == "no markers\n"

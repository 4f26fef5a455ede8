"""`imgbench codecs`: the lossless-codec comparison (structure and exactness, not speed)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from imgbench import cli
from imgbench.core import codecs
from imgbench.measure import codec_bench, sections
from imgbench.measure.matrix import Dataset

SETTINGS = (("png", 1), ("jpegls", None), ("htj2k", None), ("jpegxl", 1), ("lerc", None))


def tiny(dtype="uint16", n=3) -> Dataset:
    rng = np.random.default_rng(0)
    images = [(rng.integers(0, 900, (17, 13)) + np.arange(13) * 40).astype(dtype) for _ in range(n)]
    return Dataset("tiny", "test", images, None, [n])


def test_rows_count_real_bytes_and_check_every_image():
    result = codec_bench.measure([tiny()], settings=SETTINGS, repeats=2, threads=2)
    assert [(r.codec, r.level) for r in result.rows] == list(SETTINGS)
    images = tiny().images
    for r in result.rows:
        codec = codecs.CODECS[r.codec]
        assert r.encoded_bytes == sum(len(codec.encode(im, r.level)) for im in images)  # counted, not estimated
        assert r.raw_bytes == sum(im.nbytes for im in images) and r.ratio == r.encoded_bytes / r.raw_bytes
        assert r.exact and r.images == 3 and r.threads == 2
        for t in (r.encode_us_1, r.decode_us_1, r.encode_us_all, r.decode_us_all):
            assert t["n"] == 2 and 0 < t["min"] <= t["median"] <= t["max"]


def test_pareto_front_is_decided_by_bytes_when_times_tie():
    result = codec_bench.measure([tiny()], settings=SETTINGS, repeats=1, threads=1)
    for r in result.rows:  # equal times: only the smallest setting (fewest bytes) is on the front
        r.decode_us_1 = {"median": 5.0}
    front = codec_bench.pareto(result.rows)
    smallest = min(range(len(result.rows)), key=lambda i: result.rows[i].encoded_bytes)
    assert front == {smallest}
    # a setting that is both bigger and slower than another is never on it
    result.rows[smallest].decode_us_1 = {"median": 1.0}
    for i, r in enumerate(result.rows):
        if i != smallest:
            r.decode_us_1 = {"median": 2.0 + i}
    assert codec_bench.pareto(result.rows) == {smallest}


def test_an_inexact_setting_is_flagged_and_left_off_the_front(monkeypatch):
    lerc = codecs.CODECS["lerc"]
    real = type(lerc).decode
    monkeypatch.setattr(type(lerc), "decode", lambda self, *a: real(self, *a) + 1)
    result = codec_bench.measure([tiny()], settings=SETTINGS, repeats=1, threads=1)
    bad = [r for r in result.rows if r.codec == "lerc"]
    assert len(bad) == 1 and not bad[0].exact and not bad[0].pareto
    assert codec_bench.as_json(result)["all_exact"] is False


def test_codecs_that_cannot_store_a_dtype_are_skipped_with_the_reason():
    result = codec_bench.measure([tiny("int16")], settings=SETTINGS, repeats=1, threads=1)
    assert {r.codec for r in result.rows} == {"htj2k", "lerc"}
    assert {(s["codec"], s["reason"]) for s in result.skipped} == {
        ("png", "cannot store int16"), ("jpegls", "cannot store int16"), ("jpegxl", "cannot store int16")}


def test_cli_writes_table_plot_json_and_the_docs_section(tmp_path, capsys):
    begin, end = sections.markers(codec_bench.SECTION, codec_bench.COMMAND, "codecs.md")
    doc = tmp_path / "codecs.md"
    doc.write_text(f"intro\n{begin}\nold\n{end}\nrest\n")
    argv = ["codecs", "--datasets", "ct:24x20", "--count", "2", "--repeat", "1", "-q", "--out", str(tmp_path),
            "--readme", str(doc)]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert all(len(line) <= 80 for line in out.splitlines() if not line.startswith("plot:"))
    assert "jpegls" in out and "htj2k" in out and "★" in out
    data = json.loads((tmp_path / "codecs.json").read_text())
    assert data["all_exact"] is True and data["threads"] >= 1
    row = data["rows"][0]
    assert {"dataset", "codec", "level", "setting", "ratio", "encoded_bytes", "raw_bytes", "encode_us_1",
            "decode_us_1", "encode_us_all", "decode_us_all", "exact", "pareto"} <= set(row)
    assert (tmp_path / "codecs.png").stat().st_size > 1000
    text = doc.read_text()
    assert text.startswith("intro\n") and text.endswith(f"{end}\nrest\n") and "| ct:24x20 | jpegls" in text


def test_cli_refuses_missing_markers_before_measuring(tmp_path, capsys):
    doc = tmp_path / "x.md"
    doc.write_text("no markers\n")
    assert cli.main(["codecs", "--datasets", "ct:8x8", "--count", "1", "-q", "--readme", str(doc)]) != 0
    assert "markers" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["codecs", "--source", str(tmp_path), "--datasets", "ct"])

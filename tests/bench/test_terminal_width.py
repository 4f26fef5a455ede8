"""compare's terminal output reads in an 80-column terminal (issue 14): nothing that names a setting or gives
the verdict is cut to an ellipsis, no line runs past the terminal, the short headers are explained, and every
figure of the wide table is still shown somewhere."""

from __future__ import annotations

import copy

import pytest
from rich.console import Console

from imgbench.measure import compare
from imgbench.present import report

WIDTHS = (80, 100, 160)


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """A real results document: every backend and setting, two datasets, spreads, four parallel worker counts
    (too many columns for 80), and one run marked as not exact so the verdict NO must show."""
    datasets = [compare.builtin_dataset("cifar", [3, 12]), compare.builtin_dataset("ct", [2])]
    plan = compare.Plan(datasets, compare.settings_for(), repeats=2, random_reads=3,
                        workdir=tmp_path_factory.mktemp("width"), parallel_workers=[1, 2, 3, 4],
                        parallel_repeats=2)
    out = copy.deepcopy(compare.run(plan))
    out["runs"][-1]["exact"] = False
    return out


def render(results, width: int) -> str:
    console = Console(width=width, record=True, color_system=None)
    report.print_summary(results, console=console, out_dir="/tmp/imgbench-report")
    return console.export_text()


def table_rows(text: str) -> list[list[str]]:
    """The body rows of every table, as stripped cells."""
    return [[c.strip() for c in line.strip().strip("│").split("│")] for line in text.splitlines()
            if line.startswith("│")]


@pytest.mark.parametrize("width", WIDTHS)
def test_no_line_runs_past_the_terminal(results, width):
    lines = render(results, width).splitlines()
    assert max(len(line.rstrip()) for line in lines) <= width


@pytest.mark.parametrize("width", WIDTHS)
def test_settings_and_verdicts_are_never_cut(results, width):
    text = render(results, width)
    settings = {report.setting(r) for r in results["runs"] if r["status"] == "ok"}
    rows = table_rows(text)
    assert rows
    for cells in rows:
        assert "…" not in cells[0] and "…" not in cells[-1], cells
        assert cells[0] in settings | {""}, cells  # "" only on the wrapped line of a taller row
        assert cells[-1] in ("yes", "NO", ""), cells
    assert settings <= {cells[0] for cells in rows}
    assert "NO" in {cells[-1] for cells in rows}
    assert "…" not in text


@pytest.mark.parametrize("width", WIDTHS)
def test_legend_explains_the_short_headers(results, width):
    text = " ".join(render(results, width).split())
    assert "Legend:" in text
    for words in ("random/img = time per image of random reads", "vs raw = on disk / raw pixel bytes",
                  "peak mem w / r = peak memory writing / reading", "± = half the min-max spread",
                  "exact = what was read equals what was written"):
        assert words in text


@pytest.mark.parametrize("width", WIDTHS)
def test_every_figure_of_the_wide_table_is_shown(results, width):
    rows = table_rows(render(results, width))
    for name in report.dataset_names(results):
        for run in report.largest(results, name):
            cells = report._summary_cells(run)
            shown = [c for row in rows if row[0] == cells["setting"] for c in row[1:]]
            for key in ("write", "read all", "random/img", "on disk", "vs raw", "files", "peak mem w / r"):
                assert cells[key] in shown, (width, name, cells["setting"], key)
    for name in report.dataset_names(results):
        for run in report.parallel_runs(results, name):
            shown = [c for row in rows if row[0] == report.setting(run) for c in row[1:]]
            for w in run["by_workers"]:
                assert report.fmt_rate(w["images_per_s"]) + report._spread(w["stats"]) in shown


def test_layout_follows_the_width(results):
    """Wide terminals keep the one table per dataset; 80 columns splits it, and splits the parallel table."""
    wide, narrow = render(results, 160), render(results, 80)
    assert "space and memory" not in wide and "part 1 of" not in wide
    assert "space and memory" in narrow and "part 1 of" in narrow
    header = next(line for line in wide.splitlines() if "setting" in line and "on disk" in line)
    assert "peak mem w / r" in header and "exact" in header

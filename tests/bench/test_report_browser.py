"""The report opens in a real browser (headless Chromium), offline, and its plots render."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest

from imgbench.cli import main

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
pytestmark = [
    pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium not installed (Debian: apt-get install -y chromium)"),
    pytest.mark.xdist_group("report_browser"),  # one worker: the report page is built once (module fixture)
]


def chromium(tmp_path, *args):
    cmd = [
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
        f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=5000", *args,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def colour_pixels(png, rgb, tol=12):
    from PIL import Image

    with Image.open(png) as im:
        a = np.asarray(im.convert("RGB")).astype(int)
    return int((np.abs(a - np.array(rgb)).max(axis=-1) <= tol).sum())


@pytest.fixture(scope="module")
def report_page(tmp_path_factory):
    out = tmp_path_factory.mktemp("browser") / "report"
    code = main(["compare", "--datasets", "cifar", "--counts", "5", "20", "--repeats", "1",
                 "--random-reads", "5", "--out", str(out), "-q"])
    assert code == 0
    return out / "report.html"


def test_report_dom_loads_with_all_plots(report_page, tmp_path):
    proc = chromium(tmp_path, "--dump-dom", report_page.as_uri())
    assert proc.returncode == 0, proc.stderr[-2000:]
    dom = proc.stdout
    assert "<title>imgbench compare report</title>" in dom
    assert dom.count("<svg") == 6 and "Recommendation" in dom  # 5 plots + the parallel read (on by default)


def test_report_plots_render_on_screen(report_page, tmp_path):
    shot = tmp_path / "shot.png"
    proc = chromium(tmp_path, f"--screenshot={shot}", "--window-size=1200,3200", report_page.as_uri())
    assert proc.returncode == 0 and shot.exists(), proc.stderr[-2000:]
    # Plot lines and bars use the matplotlib colours of the backends; text and tables are black/grey.
    blue, orange = colour_pixels(shot, (31, 119, 180)), colour_pixels(shot, (255, 127, 14))
    assert blue > 500 and orange > 500, (blue, orange)
    # Control: the same page without its SVGs shows none of those colours, so they come from the plots.
    bare = tmp_path / "bare.html"
    text = report_page.read_text()
    while "<svg" in text:
        start = text.index("<svg")
        text = text[:start] + text[text.index("</svg>", start) + 6:]
    bare.write_text(text)
    shot2 = tmp_path / "bare.png"
    chromium(tmp_path, f"--screenshot={shot2}", "--window-size=1200,3200", bare.as_uri())
    assert colour_pixels(shot2, (31, 119, 180)) < 50

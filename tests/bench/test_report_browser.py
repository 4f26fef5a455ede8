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
    # Plot lines and bars use the backends' colours (plots.PALETTE); text and tables are black/grey.
    blue, orange = colour_pixels(shot, (0, 114, 178)), colour_pixels(shot, (213, 94, 0))
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
    assert colour_pixels(shot2, (0, 114, 178)) < 50


#: Collects, once the page has loaded, every element wider than its box or reaching past the window's
#: right edge (a table hidden in a side-scroller counts: its .wide box scrolls).
OVERFLOW_PROBE = """<script>window.addEventListener('load', () => {
  const bad = [], vw = document.documentElement.clientWidth;
  if (document.documentElement.scrollWidth > vw) bad.push('page ' + document.documentElement.scrollWidth + '>' + vw);
  for (const el of document.querySelectorAll('body *')) {
    if (el.closest('svg') && el.tagName.toLowerCase() !== 'svg') continue;  // drawing inside a plot
    const what = el.tagName + (el.className && el.className.baseVal === undefined ? '.' + el.className : '');
    if (el.clientWidth > 0 && el.scrollWidth > el.clientWidth + 1) bad.push(what + ' ' + el.scrollWidth + '>' + el.clientWidth);
    const right = el.getBoundingClientRect().right;
    if (right > vw + 1) bad.push(what + ' right ' + Math.round(right) + '>' + vw);
  }
  document.body.setAttribute('data-overflow', JSON.stringify(bad.slice(0, 20)));
});</script>"""


@pytest.mark.parametrize("width", [1280, 1920])
def test_no_plot_or_table_overflows_sideways(report_page, tmp_path, width):
    import html
    import json
    import re

    page = tmp_path / "probe.html"
    page.write_text(report_page.read_text().replace("</body>", OVERFLOW_PROBE + "</body>"))
    proc = chromium(tmp_path, f"--window-size={width},900", "--dump-dom", page.as_uri())
    assert proc.returncode == 0, proc.stderr[-2000:]
    found = re.search(r'data-overflow="([^"]*)"', proc.stdout)
    assert found, "the probe did not run"
    assert json.loads(html.unescape(found.group(1))) == []
    shot = tmp_path / f"report-{width}.png"
    chromium(tmp_path, "--hide-scrollbars", f"--screenshot={shot}", f"--window-size={width},2400", report_page.as_uri())
    assert shot.exists()


def test_the_probe_sees_a_table_too_wide_for_the_window(report_page, tmp_path):
    """Control: the same probe on the report with one 3000 px wide cell finds it."""
    import re

    page = tmp_path / "probe.html"
    wide = "<div class=wide><table><tr><td style='min-width:3000px'>x</td></tr></table></div>"
    page.write_text(report_page.read_text().replace("</body>", wide + OVERFLOW_PROBE + "</body>"))
    proc = chromium(tmp_path, "--window-size=1280,900", "--dump-dom", page.as_uri())
    found = re.search(r'data-overflow="([^"]*)"', proc.stdout)
    assert found and "DIV.wide" in found.group(1)

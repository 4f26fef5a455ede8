"""`imgbench dashboard`: asv pages built from results/ open offline in headless Chromium and graphs render."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import threading
from pathlib import Path

import pytest

from imgbench.present import asv_compare_view, dashboard

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "results"

#: one worker runs this module: the dashboard is built and served once (module fixtures)
pytestmark = pytest.mark.xdist_group("dashboard")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")

pytest.importorskip("asv", reason="asv is not installed (pip install asv==0.6.6; it is in the test extra)")

needs_results = pytest.mark.skipif(
    not any(RESULTS.glob("*/*-*.json")), reason="no committed asv results in results/ (run `asv run` first)"
)
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="headless Chromium not installed (Debian: apt-get install -y chromium)"
)


def chromium(tmp_path, *args, timeout=120):
    """Headless Chromium that can reach 127.0.0.1 only: every other host fails to resolve."""
    cmd = [
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
        f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=5000", *args,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    if not any(RESULTS.glob("*/*-*.json")):
        pytest.skip("no committed asv results in results/")
    out = tmp_path_factory.mktemp("dash") / "html"
    dashboard.build(out, RESULTS, config=ROOT / "asv.conf.json", quiet=True)
    return out


@pytest.fixture(scope="module")
def server(built):
    srv = dashboard.make_server(built, port=0)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


# ------------------------------------------------------------------ static checks


@needs_results
def test_pages_load_nothing_from_the_network(built):
    pages = list(built.glob("*.html"))
    assert {"index.html", "compare.html"} <= {p.name for p in pages}
    for page in pages:
        text = page.read_text()
        remote = re.findall(r"<(?:script|link)\b[^>]*(?:src|href)=\"(https?://[^\"]+)\"", text)
        remote = [u for u in remote if "rel=\"alternate\"" not in u]
        assert not remote, (page.name, remote)
    index = (built / "index.html").read_text()
    for src in re.findall(r'src="(vendor/[^"]+)"', index) + re.findall(r'href="(vendor/[^"]+)"', index):
        assert (built / src).is_file(), src
    assert 'href="compare.html"' in index
    assert (built / "vendor" / "licenses").is_dir()


@needs_results
def test_server_binds_loopback_only(built):
    srv = dashboard.make_server(built, port=0)
    try:
        assert srv.server_address[0] == "127.0.0.1"
    finally:
        srv.server_close()


def test_missing_results_is_a_clear_error(tmp_path):
    with pytest.raises(dashboard.DashboardError, match="no asv results"):
        dashboard.build(tmp_path / "out", tmp_path / "nothing", config=ROOT / "asv.conf.json", quiet=True)


def test_unknown_cdn_library_is_refused():
    page = '<script src="https://cdn.example.org/newlib.js"></script>'
    with pytest.raises(dashboard.DashboardError, match="not vendored"):
        dashboard._rewrite_cdn(page)


# ------------------------------------------------------------------ compare view


@needs_results
def test_compare_view_puts_backends_side_by_side():
    data = asv_compare_view.load(RESULTS)
    assert data["machines"], "no machine with results"
    for machine, info in data["machines"].items():
        backends = {p["backend"] for values in info["values"].values() for p, _ in values}
        assert {"disk", "hdf5", "lmdb"} <= backends, (machine, backends)
        ops = {name.rsplit(".", 1)[-1] for name in info["values"]}
        assert {"time_write", "time_read_all", "track_allocated_bytes"} <= ops, ops
    page = asv_compare_view.render(data)
    assert page.count('<table class="side-by-side">') >= 3
    assert page.count('<svg class="plot"') >= 3 and "<polyline" in page


def test_compare_view_on_synthetic_results(tmp_path):
    (tmp_path / "m1").mkdir()
    (tmp_path / "benchmarks.json").write_text(json.dumps({
        "bench_x.W.time_write": {"param_names": ["backend", "count"], "unit": "seconds", "type": "time",
                                 "params": [["'a'", "'b'"], ["10", "100"]]},
        "version": 2,
    }))
    (tmp_path / "m1" / "machine.json").write_text("{}")
    (tmp_path / "m1" / "abc-env.json").write_text(json.dumps({
        "commit_hash": "abc", "date": 1, "env_name": "env", "result_columns": ["result", "params"],
        "results": {"bench_x.W.time_write": [[1.0, 2.0, None, 0.5], [["'a'", "'b'"], ["10", "100"]]]},
    }))
    data = asv_compare_view.load(tmp_path)
    values = data["machines"]["m1"]["values"]["bench_x.W.time_write"]
    assert sorted((p["backend"], p["count"], v) for p, v in values) == [("a", 10, 1.0), ("a", 100, 2.0), ("b", 100, 0.5)]
    page = asv_compare_view.render(data)
    assert "<polyline" in page and "500 ms" in page


# ------------------------------------------------------------------ in a browser


@needs_results
@needs_chromium
def test_dashboard_graphs_render_offline(server, tmp_path):
    # The grid draws the graphs in view only: a tall window shows them all.
    proc = chromium(tmp_path, "--window-size=1400,4000", "--dump-dom", f"{server}/index.html")
    assert proc.returncode == 0, proc.stderr[-2000:]
    dom = proc.stdout
    assert "airspeed velocity" in dom and "Can't load" not in dom
    # The benchmark grid: one small flot graph (canvas) per benchmark.
    meta = json.loads((RESULTS / "benchmarks.json").read_text())
    n = sum(1 for v in meta.values() if isinstance(v, dict))
    assert dom.count('class="flot-base"') >= min(n, 15), dom[:3000]


@needs_results
@needs_chromium
def test_one_benchmark_graph_renders_offline(server, tmp_path):
    data = json.loads((RESULTS / "benchmarks.json").read_text())
    name = next(n for n in sorted(data) if n.endswith("time_write") and "WriteImages" in n)
    proc = chromium(tmp_path, "--dump-dom", f"{server}/index.html#{name}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    dom = proc.stdout
    assert 'class="flot-base"' in dom and "flot-overlay" in dom
    # The parameter selectors of the graph page name the suite's axes.
    for axis in ("backend", "count", "shape", "compression"):
        assert axis in dom


@needs_results
@needs_chromium
def test_graph_pixels_are_drawn(server, tmp_path):
    np = pytest.importorskip("numpy")
    Image = pytest.importorskip("PIL.Image")
    data = json.loads((RESULTS / "benchmarks.json").read_text())
    name = next(n for n in sorted(data) if n.endswith("track_allocated_bytes") and "StoreSize" in n)
    shot = tmp_path / "shot.png"
    proc = chromium(tmp_path, f"--screenshot={shot}", "--window-size=1400,1000", f"{server}/index.html#{name}")
    assert proc.returncode == 0 and shot.exists(), proc.stderr[-2000:]
    with Image.open(shot) as im:
        a = np.asarray(im.convert("RGB")).astype(int)
    # Series lines are saturated colours; text, axes and page background are grey/white.
    saturated = (a.max(axis=-1) - a.min(axis=-1)) > 80
    assert saturated.sum() > 300, int(saturated.sum())


@needs_results
@needs_chromium
def test_compare_page_renders(built, tmp_path):
    proc = chromium(tmp_path, "--dump-dom", (built / "compare.html").as_uri())
    assert proc.returncode == 0, proc.stderr[-2000:]
    dom = proc.stdout
    assert dom.count("<polyline") >= 3
    assert all(b in dom for b in ("disk", "hdf5", "lmdb"))


def test_bad_port_is_a_clear_error(tmp_path):
    with pytest.raises(dashboard.DashboardError, match="port"):
        dashboard.make_server(tmp_path, port=70000)

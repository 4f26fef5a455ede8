"""The asv suite: `asv check` passes and a quick smoke run against the working tree succeeds.

The smoke run uses the interpreter running the tests (``-E existing:same``, so the
working tree's imgbench), a throw-away HOME (asv machine file), TMPDIR, results and
html dirs, and ``IMGBENCH_ASV_SMOKE=1`` which shrinks every grid to its smallest
counts. asv exits 2 when any benchmark fails, so a broken benchmark fails here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

asv_util = pytest.importorskip("asv.util", reason="asv is not installed (pip install asv==0.6.6; it is in the test extra)")

#: one worker runs this module: one asv machine file and config (module fixture)
pytestmark = pytest.mark.xdist_group("asv")


@pytest.fixture(scope="module")
def asv_env(tmp_path_factory):
    """A private asv config (results/html/env in a temp dir) and environment for subprocesses."""
    tmp = tmp_path_factory.mktemp("asv")
    conf = asv_util.load_json(str(ROOT / "asv.conf.json"), js_comments=True)
    conf.update(
        repo=str(ROOT),
        benchmark_dir=str(ROOT / "benchmarks"),
        results_dir=str(tmp / "results"),
        html_dir=str(tmp / "html"),
        env_dir=str(tmp / "env"),
    )
    conf_path = tmp / "asv.conf.json"
    conf_path.write_text(json.dumps(conf))
    (tmp / "home").mkdir()
    (tmp / "tmp").mkdir()
    env = dict(os.environ, HOME=str(tmp / "home"), TMPDIR=str(tmp / "tmp"), ASV_SKIP_SLOW="1", IMGBENCH_ASV_SMOKE="1")
    run = subprocess.run(
        [sys.executable, "-m", "asv", "machine", "--yes", "--machine", "smoke"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    return conf_path, env


def asv(asv_env, *args, timeout=300):
    conf_path, env = asv_env
    return subprocess.run(
        [sys.executable, "-m", "asv", *args, "--config", str(conf_path)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout,
    )


def test_config_follows_conventions():
    conf = asv_util.load_json(str(ROOT / "asv.conf.json"), js_comments=True)
    assert conf["repo"] == "." and conf["branches"] == ["main"]
    assert conf["environment_type"] == "virtualenv"
    assert conf["benchmark_dir"] == "benchmarks" and conf["results_dir"] == "results"
    assert conf["html_dir"].startswith(".asv/") and conf["env_dir"].startswith(".asv/")
    assert "--no-deps" in conf["build_command"][0]
    assert "pip+asv_runner" in conf["matrix"]["req"]
    assert conf["default_benchmark_timeout"] >= 300
    assert ".asv/" in (ROOT / ".gitignore").read_text().split()


def test_asv_check(asv_env):
    proc = asv(asv_env, "check", "-E", "existing:same")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "No problems found" in proc.stdout + proc.stderr


def test_quick_smoke_run(asv_env):
    # forkserver: imports once, forks per benchmark (spawn takes ~5x longer here)
    proc = asv(
        asv_env, "run", "--quick", "--dry-run", "--show-stderr", "-E", "existing:same", "--machine", "smoke",
        "--launch-method", "forkserver",
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-6000:]
    assert "failed" not in out, out[-6000:]
    # every benchmark module ran
    for module in ("bench_write", "bench_read.", "bench_read_cold", "bench_size", "bench_sweep", "bench_convert",
                   "bench_parallel_read"):
        assert module in out, module


def test_grid_axes():
    sys.path.insert(0, str(ROOT))
    try:
        from benchmarks import helpers
    finally:
        sys.path.remove(str(ROOT))
    import imgbench
    from imgbench.storage import registry

    assert helpers.PARAM_NAMES == ["backend", "count", "shape", "compression"]
    assert helpers.BACKENDS == imgbench.backends()
    for backend, chosen in helpers.COMPRESSION_BY_BACKEND.items():
        supported = registry.get(backend).compressions
        assert chosen[0] == supported[0] and len(chosen) == min(2, len(supported)) and set(chosen) <= set(supported)
    assert {"32x32x3", "512x512"} <= set(helpers.SHAPE_NAMES)


def _grid_in_subprocess(full: bool) -> dict:
    """The main grid's cells and a few checks, as the suite sees them with or without IMGBENCH_ASV_FULL."""
    code = (
        "import json; from benchmarks import helpers, bench_sweep, bench_parallel_read, bench_targets\n"
        "def na(f, *a):\n"
        "    try: f(*a); return False\n"
        "    except NotImplementedError: return True\n"
        "print(json.dumps({'cells': sorted(helpers.grid()), 'full': helpers.FULL,\n"
        "  'ct1000_na': na(helpers.check, 'lmdb', 1000, '512x512', 'none'),\n"
        "  'sweep_100000_na': na(bench_sweep._check, 'lmdb', 100000),\n"
        "  'parallel_100000_na': na(bench_parallel_read._check, 'lmdb', 100000),\n"
        "  'random_store': bench_targets.RANDOM_STORE}))\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("IMGBENCH_ASV_FULL", "ASV_SKIP_SLOW", "IMGBENCH_ASV_SMOKE")}
    if full:
        env["IMGBENCH_ASV_FULL"] = "1"
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.splitlines()[-1])


def test_fast_grid_covers_every_backend_both_shapes_and_counts_100x_apart():
    """Issue 16: the default grid is the fast one; every backend at its default and one compressed
    setting, both shapes, counts 100x apart; the full grid's extra cells are n/a (NotImplementedError)."""
    import imgbench
    from imgbench.storage import registry

    sys.path.insert(0, str(ROOT))
    try:
        from benchmarks import helpers
    finally:
        sys.path.remove(str(ROOT))
    fast = _grid_in_subprocess(full=False)
    assert not fast["full"]
    cells = {tuple(c) for c in fast["cells"]}
    for backend in imgbench.backends():
        chosen = helpers.COMPRESSION_BY_BACKEND[backend]
        assert len(chosen) == min(2, len(registry.get(backend).compressions))  # npy stores raw only
        for compression in chosen:
            assert {(s, n) for b, n, s, c in cells if (b, c) == (backend, compression)} == helpers.FAST_CELLS
    assert {s for s, _ in helpers.FAST_CELLS} == {"32x32x3", "512x512"}
    counts = {n for _, n in helpers.FAST_CELLS}
    assert max(counts) / min(counts) >= 100
    assert fast["ct1000_na"] and fast["sweep_100000_na"] and fast["parallel_100000_na"]
    assert fast["random_store"] == 20_000

    full = _grid_in_subprocess(full=True)
    assert full["full"] and not full["ct1000_na"] and not full["sweep_100000_na"]
    assert full["random_store"] == 100_000
    assert {tuple(c) for c in full["cells"]} > cells

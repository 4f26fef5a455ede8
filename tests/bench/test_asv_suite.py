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

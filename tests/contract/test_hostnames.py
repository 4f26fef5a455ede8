"""Temporaries of killed writers are removed by the next writer on a host named with dashes (issue 20).

EC2 names hosts ``ip-10-0-0-1``; the stale-temporary parser once expected exactly four
``-``-separated fields after ``imgbench-``, so on such a host nothing a killed writer left was
ever removed. Here a real writer is killed (SIGKILL) and the next writer runs, both in a private
UTS namespace whose host name is ``ip-10-0-0-1`` (``unshare -u``, which needs root or user
namespaces: skipped with the reason otherwise), for every backend, plain and sharded, and for
``convert --overwrite``. The name rule for any host name: ``tests/core/test_atomic_names.py``.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap

import pytest

import imgbench

HOST = "ip-10-0-0-1"

SCRIPT = textwrap.dedent(
    """
    import json, os, signal, socket, sys, time
    import numpy as np
    import imgbench
    from imgbench.adapters.convert import convert

    root = sys.argv[1]
    assert socket.gethostname() == {host!r}, socket.gethostname()
    batch = np.zeros((6, 8, 6, 3), np.uint8)

    def imgbench_names(d):
        return sorted(n for n in os.listdir(d) if ".imgbench-" in n)

    def write(path, backend, how, opts):
        if how == "convert":
            convert(os.path.join(root, "source"), path, backend=backend, overwrite=True, **opts)
            return None
        s = imgbench.open(path, "w", backend=backend, **opts)
        s.extend(batch)
        s.flush()
        return s

    with imgbench.open(os.path.join(root, "source"), "w", backend="npy") as s:
        s.extend(batch)
    report = {{}}
    for backend in imgbench.backends():
        for how in ("plain", "sharded", "convert"):
            opts = {{"images_per_shard": 4}} if how != "plain" else {{}}
            d = os.path.join(root, backend + "-" + how)
            os.makedirs(d)
            path = os.path.join(d, "s" + {{"lmdb": ".lmdb", "hdf5": ".h5"}}.get(backend, ""))
            write(path, backend, "plain", opts).close()
            r, w = os.pipe()
            pid = os.fork()
            if pid == 0:  # the writer to kill: its temporary exists, then it waits to be killed
                try:
                    if how == "convert":
                        import imgbench.adapters.convert as c
                        real = c.convert_shard
                        def stall(*a, **k):
                            out = real(*a, **k)
                            os.write(w, b"x")
                            time.sleep(120)
                        c.convert_shard = stall
                        write(path, backend, how, opts)
                    else:
                        held = write(path, backend, how, opts)  # kept: dropping it would discard the temporary
                        os.write(w, b"x")
                        time.sleep(120)
                finally:
                    os._exit(1)
            os.read(r, 1)
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            left = imgbench_names(d)
            s = write(path, backend, how, opts)  # the next writer
            if s is not None:
                s.close()
            with imgbench.open(path) as s:
                count = len(s)
            report[backend + "-" + how] = {{"left": left, "after": imgbench_names(d), "count": count}}
    print(json.dumps(report))
    """
).format(host=HOST)


def unshare_problem() -> str | None:
    """Why a private UTS namespace cannot be had here (None: it can)."""
    if shutil.which("unshare") is None:
        return "unshare is not installed"
    probe = subprocess.run(["unshare", "-u", "sh", "-c", f"hostname {HOST} && hostname"], capture_output=True,
                           text=True, timeout=60)
    if probe.returncode != 0 or probe.stdout.strip() != HOST:
        return f"unshare -u cannot set a private host name here (needs root): {probe.stderr.strip()[:200]}"
    return None


def test_temporaries_of_killed_writers_on_a_host_named_with_dashes(tmp_path):
    problem = unshare_problem()
    if problem:
        pytest.skip(problem)
    run = subprocess.run(["unshare", "-u", "sh", "-c", f'hostname {HOST} && exec "$0" -c "$1" "$2"',
                          sys.executable, SCRIPT, str(tmp_path)], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads(run.stdout.strip().splitlines()[-1])
    assert sorted(report) == sorted(f"{b}-{how}" for b in imgbench.backends() for how in ("plain", "sharded",
                                                                                           "convert"))
    for case, seen in report.items():
        assert seen["left"] and all(f"-{HOST}-" in name for name in seen["left"]), (case, seen)
        assert seen["after"] == [], f"{case}: the next writer left the killed writer's {seen['after']}"
        assert seen["count"] == 6, (case, seen)

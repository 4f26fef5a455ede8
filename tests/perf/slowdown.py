"""Inject a known slowdown into one backend of a checkout, to measure the perf gate's detection power.

Used on a throw-away clone only (docs/benchmarks/perf-gate.md gives the commands)::

    python tests/perf/slowdown.py CLONE lmdb read   # _get, _get_many, _get_all take 3x the CPU time
    python tests/perf/slowdown.py CLONE lmdb write  # _write, _flush, _close_writer take 3x

Each wrapped method runs, then spins on the CPU for ``factor - 1`` times the CPU time it took: the
path becomes ``factor`` times slower in CPU time and in wall time alike, whatever the machine.
The patch is appended to the backend's module in ``CLONE``, which is left uncommitted.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

PATHS = {
    "read": ("_get", "_get_many", "_get_all"),
    "write": ("_write", "_flush", "_close_writer"),
}
#: backend -> (module file under the clone, class name)
MODULES = {"lmdb": ("imgbench/storage/lmdb.py", "LMDBStore")}

PATCH = '''

# --- injected by tests/perf/slowdown.py: {factor}x slower {path} path (measurement only) ---
def _injected_slowdown(fn, factor={factor}):
    import functools
    import time

    @functools.wraps(fn)
    def slow(*args, **kwargs):
        start = time.process_time()
        result = fn(*args, **kwargs)
        until = time.process_time() + (factor - 1) * (time.process_time() - start)
        while time.process_time() < until:
            pass
        return result

    return slow


for _name in {methods!r}:
    setattr({cls}, _name, _injected_slowdown(getattr({cls}, _name)))
'''


def inject(clone: Path, backend: str, path: str, factor: float = 3.0) -> Path:
    module, cls = MODULES[backend]
    target = Path(clone) / module
    target.write_text(target.read_text() + PATCH.format(factor=factor, path=path, methods=PATHS[path], cls=cls))
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("clone", type=Path)
    parser.add_argument("backend", choices=sorted(MODULES))
    parser.add_argument("path", choices=sorted(PATHS))
    parser.add_argument("--factor", type=float, default=3.0)
    args = parser.parse_args(argv)
    print(f"injected into {inject(args.clone, args.backend, args.path, args.factor)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

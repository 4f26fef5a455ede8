"""Running independent tasks on Dask (``dask.distributed``): what ``imgbench convert --workers`` uses.

By default a ``LocalCluster`` of worker processes (one thread each: the work is
image decoding and store writing, which hold the GIL in places) is started for
the call and shut down after it; with ``scheduler=`` the tasks go to an existing
cluster (``tcp://host:8786``), whose workers must have imgbench installed and
see the same paths.

Tasks are submitted in a bounded window (a few per worker thread) and more are
submitted as results come back, so the scheduler never holds the whole job;
completions drive the caller's progress callback. A failed task is retried
(``retries``); the first task that still fails cancels the rest and its error
is raised as it was (an ``ImgbenchError`` stays one). Dask itself is an optional
extra, imported only here and only when called.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable
from typing import Any

from imgbench.core.errors import ImgbenchError, UnsupportedError

#: how to get Dask, for error messages
INSTALL = "pip install 'imgbench[dask]'"
#: tasks in flight per worker thread (keeps workers busy without queueing the whole job)
WINDOW_PER_THREAD = 4


def require() -> Any:
    """Import ``dask.distributed``; an UnsupportedError naming the extra to install when it is missing."""
    try:
        import distributed
    except ImportError:
        raise UnsupportedError(f"parallel conversion (--workers, --scheduler) needs Dask: {INSTALL}") from None
    return distributed


def check_workers(workers: Any, scheduler: Any) -> None:
    """Validate ``workers``/``scheduler`` before any work starts."""
    if workers is not None and scheduler is not None:
        raise UnsupportedError(
            "give --workers (start a local Dask cluster of N processes) or --scheduler (use an existing "
            "cluster, whose size it decides), not both"
        )
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise UnsupportedError(f"workers must be a positive number of processes, got {workers!r}")
    if scheduler is not None and (not isinstance(scheduler, str) or not scheduler):
        raise UnsupportedError(f"scheduler must be an address such as tcp://host:8786, got {scheduler!r}")


def _connect(distributed: Any, workers: int | None, scheduler: str | None) -> tuple[Any, Any]:
    if scheduler is not None:
        try:
            return distributed.Client(scheduler, timeout="15s"), None
        except Exception as exc:  # OSError, TimeoutError, ValueError (bad address)...
            raise ImgbenchError(
                f"cannot reach the Dask scheduler at {scheduler} ({type(exc).__name__}: {exc}); start one "
                "(dask scheduler; dask worker ADDRESS) or drop --scheduler to use a local cluster"
            ) from None
    try:
        cluster = distributed.LocalCluster(
            n_workers=workers or 1, threads_per_worker=1, processes=True, dashboard_address=None,
            silence_logs=logging.CRITICAL,
        )
    except Exception as exc:  # RuntimeError("Nanny failed to start.") when a worker process dies starting
        cause = exc.__cause__ or exc.__context__
        why = f"{type(exc).__name__}: {exc}" + (f" ({type(cause).__name__}: {cause})" if cause else "")
        raise ImgbenchError(
            f"the local Dask cluster of {workers or 1} worker processes did not start: a worker died while "
            f"starting ({' '.join(why.split())[:300]}); check memory and process limits, retry with fewer "
            "--workers, or drop --workers to convert in this process"
        ) from None
    try:
        return distributed.Client(cluster), cluster
    except BaseException:
        cluster.close()
        raise


def run(
    fn: Callable[[Any], Any],
    tasks: Iterable[Any],
    count: int,
    *,
    workers: int | None = None,
    scheduler: str | None = None,
    retries: int = 2,
    done: Callable[[int, Any], None] | None = None,
    name: str = "imgbench",
) -> list[Any]:
    """``[fn(task) for task in tasks]`` computed on Dask; results in task order.

    ``tasks`` may be a generator (it is consumed as the window advances);
    ``count`` is how many it yields. ``done(i, result)`` is called in the
    caller's process as each task finishes, in completion order.
    """
    check_workers(workers, scheduler)
    distributed = require()
    client, cluster = _connect(distributed, workers, scheduler)
    results: list[Any] = [None] * count
    in_flight: dict[str, tuple[int, Any]] = {}
    token = os.urandom(4).hex()
    try:
        threads = sum(client.nthreads().values()) or 1
        window = max(2, WINDOW_PER_THREAD * threads)
        source = enumerate(tasks)
        queue = distributed.as_completed()

        def submit_next() -> None:
            item = next(source, None)
            if item is None:
                return
            i, task = item
            future = client.submit(fn, task, key=f"{name}-{i:06d}-{token}", retries=retries, pure=False)
            in_flight[future.key] = (i, future)
            queue.add(future)

        for _ in range(window):
            submit_next()
        finished = 0
        for future in queue:
            i, _ = in_flight.pop(future.key)
            try:
                results[i] = future.result()
            except (ImgbenchError, OSError, MemoryError):
                raise
            except Exception as exc:  # a worker that kept dying (KilledWorker), a lost connection, a bug
                raise ImgbenchError(f"task {i} of {count} failed on the Dask cluster: {type(exc).__name__}: {exc}") from None
            future.release()
            finished += 1
            if done is not None:
                done(i, results[i])
            submit_next()
        if finished != count:
            raise ImgbenchError(f"the Dask cluster returned {finished} of {count} results")
        return results
    finally:
        if in_flight:
            try:
                client.cancel([f for _, f in in_flight.values()])
            except Exception:
                pass
        client.close()
        if cluster is not None:
            cluster.close()

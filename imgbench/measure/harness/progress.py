"""The one progress bar of the measuring commands (compare, targets) and of convert.

A rich bar on stderr (stdout keeps only what a command prints as its result), with an
estimate of the time left that turns into the time taken when the bar is full.
Measurements take a :data:`Progress` callback, ``progress(advance, text)``: ``text`` (when
not empty) says what runs now, ``advance`` counts finished units of the run's total.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

Progress = Callable[[int, str], None]

#: characters of the description column; with the bar, count and time the line fits 80 columns
DESCRIPTION_WIDTH = 40
BAR_WIDTH = 20


def no_progress(advance: int, text: str) -> None:
    """The :data:`Progress` callback of a run nobody watches."""


class ProgressBar:
    """A running bar: call it as a :data:`Progress` callback; ``advance`` and ``set_total`` serve
    counts learnt late (convert finds its files first). Without a bar (quiet) every call does nothing."""

    def __init__(self, bar: Any = None, task: Any = None):
        self._bar, self._task = bar, task

    def __call__(self, advance: int, text: str = "") -> None:
        if self._bar is None:
            return
        if text:
            self._bar.update(self._task, description=text[:DESCRIPTION_WIDTH])
        if advance:
            self._bar.advance(self._task, advance)

    def advance(self, count: int) -> None:
        """``count`` more units done."""
        self(count)

    def set_total(self, total: int) -> None:
        """The run's total, once known."""
        if self._bar is not None:
            self._bar.update(self._task, total=total)


@contextmanager
def progress_bar(total: int | None, description: str = "measuring", *, enabled: bool = True
                 ) -> Iterator[ProgressBar]:
    """A progress bar of ``total`` units (None: learnt later, :meth:`ProgressBar.set_total`) for the block."""
    if not enabled:
        yield ProgressBar()
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn
    from rich.progress import Progress as RichProgress

    with RichProgress(
        TextColumn(f"[progress.description]{{task.description:<{DESCRIPTION_WIDTH}}}"), BarColumn(bar_width=BAR_WIDTH),
        MofNCompleteColumn(), TimeRemainingColumn(elapsed_when_finished=True), console=Console(file=sys.stderr),
    ) as bar:
        task = bar.add_task(description[:DESCRIPTION_WIDTH], total=total)
        yield ProgressBar(bar, task)
        bar.update(task, description="done")

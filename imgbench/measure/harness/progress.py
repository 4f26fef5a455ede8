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
    counts learnt late (convert finds its files first). The bar is drawn from the moment its total
    is known, so an error found before any work (a missing folder) is the only line printed.
    Without a bar (quiet) every call does nothing."""

    def __init__(self, description: str = "", enabled: bool = False):
        self._description, self._enabled = description[:DESCRIPTION_WIDTH], enabled
        self._bar: Any = None
        self._task: Any = None

    def __call__(self, advance: int, text: str = "") -> None:
        if text:
            self._description = text[:DESCRIPTION_WIDTH]
        if self._bar is None:
            return
        if text:
            self._bar.update(self._task, description=self._description)
        if advance:
            self._bar.advance(self._task, advance)

    def advance(self, count: int) -> None:
        """``count`` more units done."""
        self(count)

    def set_total(self, total: int) -> None:
        """The run's total, once known: the bar appears."""
        if not self._enabled:
            return
        if self._bar is None:
            self._start(total)
        else:
            self._bar.update(self._task, total=total)

    @contextmanager
    def paused(self) -> Iterator[None]:
        """The bar taken off the terminal for the block, so what the block prints stands on its own lines."""
        if self._bar is None:
            yield
            return
        live = self._bar.live
        live.transient = True
        self._bar.stop()
        try:
            yield
        finally:
            live.transient = False
            self._bar.start()

    def _start(self, total: int) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn
        from rich.progress import Progress as RichProgress

        self._bar = RichProgress(
            TextColumn(f"[progress.description]{{task.description:<{DESCRIPTION_WIDTH}}}"),
            BarColumn(bar_width=BAR_WIDTH), MofNCompleteColumn(), TimeRemainingColumn(elapsed_when_finished=True),
            console=Console(file=sys.stderr),
        )
        self._task = self._bar.add_task(self._description, total=total)
        self._bar.start()

    def _stop(self, failed: bool) -> None:
        if self._bar is None:
            return
        if failed:  # the error line stands alone: nothing of the bar is left
            self._bar.update(self._task, visible=False)
            self._bar.live.transient = True
        else:
            self._bar.update(self._task, description="done")
        self._bar.stop()


@contextmanager
def progress_bar(total: int | None, description: str = "measuring", *, enabled: bool = True
                 ) -> Iterator[ProgressBar]:
    """A progress bar of ``total`` units (None: learnt later, :meth:`ProgressBar.set_total`) for the block."""
    bar = ProgressBar(description, enabled)
    if total is not None:
        bar.set_total(total)
    try:
        yield bar
    except BaseException:
        bar._stop(failed=True)
        raise
    bar._stop(failed=False)

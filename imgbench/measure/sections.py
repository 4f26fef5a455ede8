"""Figures in README.md written by the command that measured them, never typed by hand.

A section is the text between two HTML comments that GitHub does not render::

    <!-- targets table: written by `imgbench targets --readme README.md`; do not edit by hand -->
    ...replaced on every run...
    <!-- /targets table -->
"""

from __future__ import annotations

import os
from pathlib import Path

from imgbench.core import atomic
from imgbench.core.errors import ImgbenchError


class ReadmeError(ImgbenchError):
    """The file cannot take the section (unreadable, or its markers are missing)."""


def markers(name: str, command: str) -> tuple[str, str]:
    """The begin and end lines of section ``name``, filled by ``command --readme README.md``."""
    return (f"<!-- {name}: written by `{command} --readme README.md`; do not edit by hand -->", f"<!-- /{name} -->")


def parts(path: str | os.PathLike, name: str, command: str) -> tuple[str, str]:
    """The text of ``path`` before and after section ``name``; ReadmeError without its markers.

    Commands call it before measuring too, so a missing marker fails in a second, not after
    minutes of measurements."""
    path = Path(os.fspath(path))
    begin, end = markers(name, command)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ReadmeError(f"cannot read {path}: {exc.strerror}") from None
    start, stop = text.find(begin), text.find(end)
    if start < 0 or stop < start:
        raise ReadmeError(
            f"{path} has no {name} markers; put the line {begin} and below it the line {end} where the table goes"
        )
    return text[:start], text[stop:]


def write_section(path: str | os.PathLike, name: str, command: str, ran: str, body: str) -> None:
    """Replace section ``name`` of ``path`` with ``body``, saying which command line (``ran``) produced it."""
    head, tail = parts(path, name, command)
    begin = markers(name, command)[0]
    text = f"{head}{begin}\n\n`{ran}`:\n\n{body.strip()}\n\n{tail}"
    atomic.write_file(Path(os.fspath(path)), text.encode("utf-8"))

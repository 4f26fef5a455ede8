"""Figures in the docs written by the command that measured them, never typed by hand.

A section is the text between two HTML comments that neither GitHub nor MkDocs renders,
naming the command that fills it and the file it lives in::

    <!-- targets table: written by `imgbench targets --readme docs/performance.md`; do not edit by hand -->
    ...replaced on every run...
    <!-- /targets table -->

``imgbench targets --readme FILE`` and ``imgbench png-levels --readme FILE`` take any markdown
file (the flag keeps its name: the command line is a public contract). The writer finds the
begin marker whatever file it names and keeps it as it is, unless it names a file with another
name (a table moved from README.md into a docs page): then it is rewritten to name this one.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from imgbench.core import atomic
from imgbench.core.errors import ImgbenchError


class ReadmeError(ImgbenchError):
    """The file cannot take the section (unreadable, or its markers are missing)."""


def markers(name: str, command: str, file: str | os.PathLike = "README.md") -> tuple[str, str]:
    """The begin and end lines of section ``name`` of ``file``, filled by ``command --readme FILE``."""
    where = Path(os.fspath(file)).as_posix()
    return (f"<!-- {name}: written by `{command} --readme {where}`; do not edit by hand -->", f"<!-- /{name} -->")


def _begin_pattern(name: str, command: str) -> re.Pattern[str]:
    """The begin marker of section ``name``, naming any file."""
    return re.compile(
        rf"<!-- {re.escape(name)}: written by `{re.escape(command)} --readme (?P<file>[^`\n]+)`; do not edit by hand -->"
    )


def display_name(path: str | os.PathLike) -> str:
    """``path`` as a marker names it: relative to the current directory when inside it."""
    path = Path(os.fspath(path))
    try:
        return path.resolve().relative_to(Path.cwd().resolve()).as_posix()
    except (ValueError, OSError):
        return path.as_posix()


def _find(path: str | os.PathLike, name: str, command: str) -> tuple[str, str, str]:
    """``path``'s text before section ``name``, its begin line, and the text from the end marker on."""
    path = Path(os.fspath(path))
    end = markers(name, command)[1]
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ReadmeError(f"cannot read {path}: {exc.strerror}") from None
    found = _begin_pattern(name, command).search(text)
    stop = text.find(end, found.end()) if found else -1
    if found is None or stop < 0:
        begin = markers(name, command, display_name(path))[0]
        raise ReadmeError(
            f"{path} has no {name} markers; put the line {begin} and below it the line {end} where the table goes"
        )
    line = found.group(0)
    if Path(found.group("file")).name != path.name:  # the marker names another file: name this one
        line = markers(name, command, display_name(path))[0]
    return text[: found.start()], line, text[stop:]


def parts(path: str | os.PathLike, name: str, command: str) -> tuple[str, str]:
    """The text of ``path`` before and after section ``name``; ReadmeError without its markers.

    Commands call it before measuring too, so a missing marker fails in a second, not after
    minutes of measurements."""
    head, _, tail = _find(path, name, command)
    return head, tail


def write_section(path: str | os.PathLike, name: str, command: str, ran: str, body: str) -> None:
    """Replace section ``name`` of ``path`` with ``body``, saying which command line (``ran``) produced it."""
    head, begin, tail = _find(path, name, command)
    text = f"{head}{begin}\n\n`{ran}`:\n\n{body.strip()}\n\n{tail}"
    atomic.write_file(Path(os.fspath(path)), text.encode("utf-8"))

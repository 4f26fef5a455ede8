"""Describing a store and checking that every image in it reads back whole."""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from imgbench.api import detect
from imgbench.api import open as open_store
from imgbench.core import errors, transport
from imgbench.core.errors import CorruptStoreError
from imgbench.core.usage import disk_usage
from imgbench.sharded import leftovers


#: images whose shapes ``describe`` reads at most (evenly spaced), and distinct shapes it lists by name
SHAPE_SAMPLE = 1000
MAX_SHAPES = 10


class NotAStoreError(errors.ImgbenchError):
    """``imgbench verify`` was given a path that no backend recognises (bad input: exit 2, not damage)."""


def _remote_options(path: str | os.PathLike, remote_timeout: float | None) -> dict[str, Any]:
    """``remote_timeout=`` for :func:`imgbench.open` when ``path`` is a URL and a deadline was given."""
    return {"remote_timeout": remote_timeout} if remote_timeout is not None and transport.is_url(path) else {}


def describe(path: str | os.PathLike, remote_timeout: float | None = None) -> dict[str, Any]:
    """What ``imgbench info`` prints: backend, compression, count, shapes, labels, attrs, bytes.

    ``remote_timeout``: seconds each request may take when ``path`` is a URL (see :func:`imgbench.open`)."""
    with open_store(path, **_remote_options(path, remote_timeout)) as store:
        n = len(store)
        kinds: Counter[str] = Counter()
        # Shapes of a sample, not all: info must stay instant on a million images.
        step = max(1, n // SHAPE_SAMPLE)
        looked = 0
        for i in range(0, n, step):
            image = store[i]
            kinds[f"{'x'.join(map(str, image.shape))} {image.dtype}"] += 1
            looked += 1
        top = kinds.most_common(MAX_SHAPES)
        rest = kinds.most_common()[MAX_SHAPES:]
        labels = store.labels
        return {
            "path": str(store.path),
            "backend": store.backend,
            "compression": store.compression,
            "level": store.level,
            "images": n,
            # counts among the images looked at; they add up to shapes_looked_at with shapes_more
            "shapes": dict(top),
            "shapes_looked_at": looked,
            "shapes_sampled": looked < n,
            "shapes_more": {"shapes": len(rest), "images": sum(c for _, c in rest)},
            "labelled": labels is not None,
            "classes": int(len(set(labels.tolist()))) if labels is not None else 0,
            "attrs": store.attrs.to_dict(),
            **({"shards": store.shards} if hasattr(store, "shards") else {}),  # a sharded dataset
            **_disk(path, store, remote_timeout),
        }


def _disk(path: str | os.PathLike, store: Any, remote_timeout: float | None = None) -> dict[str, Any]:
    """The store's size; a local sharded dataset counts only its manifest and the shards it names, and
    lists apart what a killed appender left (``leftovers``: never counted, removed by the next appender)."""
    if transport.is_url(path):
        return {"disk": transport.usage(path, timeout=remote_timeout)}
    if not hasattr(store, "shard_names"):
        return {"disk": disk_usage(path)}
    names = store.shard_names
    found = leftovers.find_leftovers(store.path, names)
    disk = leftovers.dataset_usage(store.path, names)
    if not found:
        return {"disk": disk}
    return {"disk": disk, "leftovers": {"names": found, **leftovers.usage_of(store.path, found),
                                        "note": "not part of the dataset; the next append removes them"}}


def format_info(info: dict[str, Any]) -> list[str]:
    """The lines ``imgbench info`` prints for :func:`describe`'s dict: shape counts that add up, sampling said."""
    info = dict(info)
    disk = info.pop("disk")
    left = info.pop("leftovers", None)
    looked, sampled = info.pop("shapes_looked_at"), info.pop("shapes_sampled")
    more = info.pop("shapes_more")
    lines = []
    for key, value in info.items():
        if key != "shapes":
            lines.append(f"{key:12} {value}")
            continue
        if not value:
            lines.append(f"{'shapes':12} none (no images)")
            continue
        how = (f"sampled {looked:,} of {info['images']:,} images, evenly spaced" if sampled
               else f"all {looked:,} images")
        lines.append(f"{'shapes':12} {len(value) + more['shapes']:,} distinct ({how}):")
        width = max(len(k) for k in value)
        lines.extend(f"{'':12} {k:{width}}  {c:,}" for k, c in value.items())
        if more["shapes"]:
            lines.append(f"{'':12} and {more['shapes']:,} more shapes ({more['images']:,} images)")
    lines.append(f"{'disk':12} {disk['allocated'] / 1e6:.2f} MB allocated, {disk['apparent'] / 1e6:.2f} MB apparent, "
                 f"{disk['files']} files")
    if left:
        shown = ", ".join(left["names"][:5]) + (f" and {len(left['names']) - 5} more" if len(left["names"]) > 5 else "")
        lines.append(f"{'leftovers':12} {len(left['names'])} entries a killed writer left ({left['allocated'] / 1e6:.2f} "
                     f"MB allocated, not counted above): {shown}; {left['note']}")
    return lines


@dataclass
class VerifyReport:
    images: int = 0
    damaged: dict[int, str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    #: False for stores written without per-image checksums: only damage the format itself detects is found
    checksummed: bool = True

    @property
    def ok(self) -> bool:
        return not self.damaged and not self.problems


def verify(path: str | os.PathLike, progress: bool = False, isolate: bool = False,
           remote_timeout: float | None = None) -> VerifyReport:
    """Read every image, check it against its stored checksum, and read the labels.

    Collects what is damaged instead of stopping at the first. ``isolate=True``
    (what ``imgbench verify`` uses) reads in a child process: a store damaged
    where its engine trusts its own structures (LMDB pages) can crash the
    reader with SIGBUS/SIGSEGV; the child's death is then reported as damage
    at the image being read, and reading resumes after it in a fresh child.
    A network failure reading a URL is never damage: it raises RemoteAccessError.
    ``remote_timeout``: seconds each request may take when ``path`` is a URL.
    """
    _check_is_store(path)
    if remote_timeout is not None:
        transport.deadline(remote_timeout)  # a bad value is bad input, before any child starts
    if isolate:
        return _verify_isolated(path, progress, remote_timeout)
    report = VerifyReport()
    for event in _verify_events(path, 0, remote_timeout):
        _apply(report, event)
    return report


def _check_is_store(path: str | os.PathLike) -> None:
    """Raise (as ``imgbench info`` does) when no backend recognises ``path``: that is bad input, not damage."""
    if transport.is_url(path) or not os.path.lexists(path):
        return  # opening says what is wrong (missing store, remote errors)
    from pathlib import Path

    try:
        detect(Path(path))
    except CorruptStoreError as exc:
        raise NotAStoreError(f"{exc} (imgbench verify checks imgbench stores only)") from None


def _verify_events(path: str | os.PathLike, start: int, remote_timeout: float | None = None):
    """What verifying from image ``start`` finds, as small dicts (also the child's protocol)."""
    try:
        store = open_store(path, verify=True, **_remote_options(path, remote_timeout))
    except CorruptStoreError as exc:
        yield {"problem": str(exc)}
        return
    with store:
        yield {"images": len(store)}
        try:
            store.labels  # noqa: B018 - labels first: every seeded digest needs them
        except CorruptStoreError as exc:
            yield {"problem": str(exc)}
            store.verify = False
        try:
            yield {"checksummed": store.checksums is not None}
        except CorruptStoreError as exc:
            yield {"problem": str(exc)}
            store.verify = False  # still read every image: the format's own checks remain
        for i in range(start, len(store)):
            yield {"at": i}
            try:
                store[i]
            except CorruptStoreError as exc:
                yield {"damaged": i, "reason": str(exc)}


def _apply(report: VerifyReport, event: dict[str, Any]) -> None:
    if "images" in event:
        report.images = event["images"]
    elif "checksummed" in event:
        report.checksummed = event["checksummed"]
    elif "problem" in event and event["problem"] not in report.problems:
        report.problems.append(event["problem"])
    elif "damaged" in event:
        report.damaged[int(event["damaged"])] = event["reason"]


_MAX_CRASHES = 100


def _verify_isolated(path: str | os.PathLike, progress: bool, remote_timeout: float | None = None) -> VerifyReport:
    import json
    import signal
    import subprocess
    import sys

    report = VerifyReport()
    bar = None
    start, crashes = 0, 0
    while True:
        child = subprocess.Popen(
            [sys.executable, "-c", "import sys; from imgbench.adapters.integrity import _child; _child(sys.argv[1], int(sys.argv[2]))",
             os.fspath(path), str(start)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env=None if remote_timeout is None else {**os.environ, transport.TIMEOUT_ENV: str(remote_timeout)},
        )
        at = None
        for line in child.stdout:
            event = json.loads(line)
            if "raise" in event:
                child.wait()
                cls = getattr(errors, event["raise"], errors.ImgbenchError)
                raise cls(event["message"])
            if "at" in event:
                at = event["at"]
                if bar is not None:
                    bar.update(at + 1 - bar.n)
                continue
            _apply(report, event)
            if progress and bar is None and "images" in event:
                from tqdm import tqdm

                bar = tqdm(total=event["images"], initial=start, desc="verify", unit="img", disable=None)
        err = child.stderr.read()
        code = child.wait()
        if code == 0:
            break
        name = signal.Signals(-code).name if code < 0 else f"exit status {code}"
        where = f"image {at}" if at is not None else "opening the store"
        last = (err.strip().splitlines() or ["no message"])[-1][-300:]
        reason = (f"reading it crashed the reader ({name}): the store's internal structures are damaged "
                  "(LMDB trusts its pages)") if code < 0 else f"reading it failed: {last}"
        if at is None:
            report.problems.append(f"{path}: {where} crashed the reader ({name}): {err.strip()[-300:] or 'no message'}")
            break
        report.damaged[at] = reason
        crashes += 1
        if crashes >= _MAX_CRASHES:
            report.problems.append(f"{path}: stopped after {crashes} reader crashes; the store is badly damaged")
            break
        start = at + 1
        if start >= report.images:
            break
    if bar is not None:
        bar.close()
    return report


def _child(path: str, start: int) -> None:
    """Child side of :func:`verify` with ``isolate=True``: one JSON event per line, flushed."""
    import json
    import sys


    try:
        for event in _verify_events(path, start):
            sys.stdout.write(json.dumps(event) + "\n")
            sys.stdout.flush()
    except errors.ImgbenchError as exc:  # bad input (no store there...): the parent raises it as such
        sys.stdout.write(json.dumps({"raise": type(exc).__name__, "message": str(exc)}) + "\n")
    except Exception as exc:
        if not (transport.is_url(path) and transport.is_remote_failure(exc)):
            raise
        # a network failure that escaped a reader's mapping: never damage (exit status 1 would say so)
        failure = transport.explain(exc, path)
        sys.stdout.write(json.dumps({"raise": type(failure).__name__, "message": str(failure)}) + "\n")

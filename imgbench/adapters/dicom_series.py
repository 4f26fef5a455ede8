"""DICOM files in slice order: grouped by series, each series ordered along its slice normal.

A folder's file names say nothing about anatomy (pydicom's MR700 series sorts by name as
InstanceNumber 4, 2, 1, 3, 5, 7, 6). Within a series (SeriesInstanceUID) slices are ordered by
ImagePositionPatient projected on the normal of ImageOrientationPatient when every slice shares
one orientation; else (radial or localiser series, missing geometry) by InstanceNumber; else by
file name, and the fallback taken is said in a note. Series stay where their first file was
found; multi-frame files keep their frame order (they are one file). Only headers are read.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

#: the header elements the order needs; reading stops before the pixel data
TAGS = ("SeriesInstanceUID", "ImagePositionPatient", "ImageOrientationPatient", "InstanceNumber")
#: orientations closer than this (cosines) are one orientation
ORIENTATION_TOLERANCE = 1e-4


@dataclass
class Header:
    """What ordering needs from one file's header (None where it lacks the element)."""

    series: str | None
    position: tuple[float, float, float] | None
    orientation: tuple[float, ...] | None
    instance: int | None


def read_header(path: Path) -> Header | None:
    """The ordering elements of one DICOM file; None when pydicom cannot read its header."""
    try:
        import pydicom

        ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=list(TAGS))
    except Exception:  # noqa: BLE001 - unreadable here: the pixel reader reports it with its reason
        return None

    def floats(name: str, n: int) -> tuple[float, ...] | None:
        try:
            values = tuple(float(v) for v in ds.get(name) or ())
        except (TypeError, ValueError):
            return None
        return values if len(values) == n else None

    try:
        instance = int(ds.get("InstanceNumber")) if ds.get("InstanceNumber") not in (None, "") else None
    except (TypeError, ValueError):
        instance = None
    series = ds.get("SeriesInstanceUID")
    return Header(str(series) if series else None, floats("ImagePositionPatient", 3),
                  floats("ImageOrientationPatient", 6), instance)


def _normal(orientation: tuple[float, ...]) -> tuple[float, float, float]:
    r, c = orientation[:3], orientation[3:]
    return (r[1] * c[2] - r[2] * c[1], r[2] * c[0] - r[0] * c[2], r[0] * c[1] - r[1] * c[0])


def _one_orientation(headers: list[Header]) -> bool:
    first = headers[0].orientation
    return first is not None and all(
        h.orientation is not None and max(abs(a - b) for a, b in zip(h.orientation, first, strict=True))
        <= ORIENTATION_TOLERANCE for h in headers)


def order_series(names: Sequence[str], headers: Sequence[Header]) -> tuple[list[int], str]:
    """Indices of one series' files in slice order, and how that order was found."""
    items = list(range(len(names)))
    hs = list(headers)
    one_orientation = _one_orientation(hs)
    if len(items) > 1 and all(h.position is not None for h in hs) and one_orientation:
        n = _normal(hs[0].orientation)  # type: ignore[arg-type]
        depth = [sum(p * q for p, q in zip(h.position, n, strict=True)) for h in hs]  # type: ignore[arg-type]
        if len({round(d, 6) for d in depth}) == len(depth):
            return sorted(items, key=lambda i: depth[i]), "position along the slice normal"
    if all(h.instance is not None for h in hs) and len({h.instance for h in hs}) == len(hs):
        why = "InstanceNumber" if len(items) == 1 or one_orientation else \
            "InstanceNumber (the slices do not share one orientation)"
        if any(h.position is None for h in hs):
            why = "InstanceNumber (no ImagePositionPatient)"
        return sorted(items, key=lambda i: hs[i].instance), why  # type: ignore[arg-type, return-value]
    return sorted(items, key=lambda i: names[i]), "file name (no usable position or InstanceNumber)"


def order(names: Sequence[str], paths: Sequence[Path]) -> tuple[list[int], list[str]]:
    """A new order of the DICOM files ``paths`` (relative ``names``, sorted by name): each series in slice
    order, series where their first file was; plus one note per series that was reordered."""
    headers = [read_header(p) for p in paths]
    groups: dict[str, list[int]] = {}
    for i, h in enumerate(headers):
        key = h.series if h is not None and h.series else f"\0{i}"  # unreadable or no UID: stays alone
        groups.setdefault(key, []).append(i)
    out: list[int] = []
    notes: list[str] = []
    for members in groups.values():  # dicts keep insertion order: first appearance
        if len(members) == 1:
            out.extend(members)
            continue
        local, why = order_series([names[i] for i in members], [headers[i] for i in members])  # type: ignore[misc]
        ordered = [members[k] for k in local]
        if ordered != members:
            folder = str(Path(names[members[0]]).parent)
            notes.append(f"DICOM series in {folder if folder != '.' else 'the top folder'} ({len(members)} files) "
                         f"stored in slice order, by {why}, not by file name")
        out.extend(ordered)
    return out, notes

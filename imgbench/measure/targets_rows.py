"""What a target is and how it is judged: thresholds, one measured :class:`Row`, its verdict.

A row keeps every sample of imgbench's side and of its reference's; the figure and the
verdict are always derived from them (never stored, never trusted from a file).
"""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass, field
from typing import Any

#: (operation, backend) -> (kind, threshold). kind "ratio": imgbench / reference <= threshold;
#: "speedup": reference / imgbench >= threshold; "us": microseconds per image <= threshold.
#: The same numbers as the "Performance targets" table of docs/design.md.
THRESHOLDS: dict[tuple[str, str], tuple[str, float]] = {
    ("read_all", "hdf5"): ("ratio", 1.3),
    ("read_all", "lmdb"): ("ratio", 3.0),
    ("write", "hdf5"): ("ratio", 1.5),
    ("write", "lmdb"): ("ratio", 10.0),
    ("read_all", "disk"): ("speedup", 1.6),
    ("random_loop", "lmdb"): ("us", 20.0),
    ("random_loop", "hdf5"): ("us", 20.0),
}

#: datasets whose rows are gated. docs/design.md states the targets on CIFAR-shaped images; the CT
#: slices (few large images: per-image overheads vanish, bandwidth dominates) are held to the
#: same numbers. Drop "ct" here to report CT rows without gating on them.
GATED_DATASETS: tuple[str, ...] = ("cifar", "cifar-large", "ct")

#: the reference of disk png read all (the other references are the raw .npy: imgbench.measure.harness.raw_npy)
PILLOW_LOOP = "1-thread Pillow loop: np.asarray(Image.open(f)) into a preallocated array"


def gated_threshold(threshold: float, dataset: str, cold: bool) -> float | None:
    """The threshold, or None (reported, not gated) for cold reads and datasets outside GATED_DATASETS."""
    return None if cold or dataset not in GATED_DATASETS else threshold


def target_text(kind: str, threshold: float | None) -> str:
    """The target as the table prints it: ``<= 1.3x raw``, ``>= 1.6x faster``, ``<= 20 µs/image``, ``-``."""
    if threshold is None:
        return "-"
    if kind == "speedup":
        return f">= {threshold:g}x faster"
    if kind == "us":
        return f"<= {threshold:g} µs/image"
    return f"<= {threshold:g}x raw"


@dataclass
class Row:
    """One measured figure: imgbench's samples beside the reference's, and the verdict."""

    key: str  # e.g. "hdf5_read_all" (asv and JSON name it so)
    operation: str  # "read_all", "write", "random_loop", "random_many"
    backend: str
    compression: str
    dataset: str  # "cifar" / "ct"
    shape: str  # "32x32x3 uint8"
    images: int  # images read or written by one timed call
    cache: str  # "warm" / "cold" / "-" (writes)
    reference: str  # what the reference side does
    imgbench_s: list[float] = field(default_factory=list)
    reference_s: list[float] = field(default_factory=list)
    kind: str = "ratio"  # "ratio", "speedup" or "us" (see THRESHOLDS)
    threshold: float | None = None  # None: reported, not gated
    exact: bool = True
    parts: dict[str, list[float]] = field(default_factory=dict)  # e.g. open / read_many split
    store_images: int | None = None  # random reads: images in the store read from
    wall_s: float | None = None  # seconds spent measuring this row (warm-up, syncs, evictions included)

    @property
    def imgbench_median(self) -> float:
        return statistics.median(self.imgbench_s)

    @property
    def reference_median(self) -> float:
        return statistics.median(self.reference_s)

    @property
    def ratio(self) -> float:
        """median(imgbench) / median(reference)."""
        ref = self.reference_median
        return self.imgbench_median / ref if ref > 0 else float("inf")

    @property
    def figure(self) -> float:
        """The number compared with the threshold, in the row's ``kind``."""
        if self.kind == "speedup":
            got = self.imgbench_median
            return self.reference_median / got if got > 0 else float("inf")
        if self.kind == "us":
            return self.imgbench_median / self.images * 1e6
        return self.ratio

    @property
    def verdict(self) -> str:
        if not self.exact:
            return "WRONG"
        if self.threshold is None:
            return "info"
        ok = self.figure >= self.threshold if self.kind == "speedup" else self.figure <= self.threshold
        return "PASS" if ok else "FAIL"

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.update(
            imgbench_median=self.imgbench_median, reference_median=self.reference_median, ratio=self.ratio,
            figure=self.figure, verdict=self.verdict, target=target_text(self.kind, self.threshold),
        )
        return out


def row_from_dict(data: dict[str, Any]) -> Row:
    """A :class:`Row` back from its JSON form (derived fields are recomputed, never trusted)."""
    names = Row.__dataclass_fields__
    return Row(**{k: v for k, v in data.items() if k in names})


def exit_code(doc: dict[str, Any]) -> int:
    """0 when every gated target passes and every read was exact, else 1 (so CI can gate on it)."""
    rows = [row_from_dict(d) for d in doc["rows"]]
    return 0 if rows and all(r.verdict in ("PASS", "info") for r in rows) else 1

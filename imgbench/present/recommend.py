"""The recommendation: plain-language verdicts per dataset that do not flip on noise.

A verdict names the winner of one figure (write, read all, random access, bytes) at the dataset's
largest count. Settings are ranked by median, and every setting *tied* with the best is named with
it: two settings tie when their repeats overlap (one's min–max range reaches into the other's) or
their medians are within :data:`TIE` of each other. So two runs on one machine either agree or say
"tie": a winner is named alone only when its repeats are clear of every other setting's. Sizes are
deterministic; they tie within :data:`SIZE_TIE`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from imgbench.present.figures import (
    dataset_names,
    fmt_bytes,
    fmt_time,
    largest,
    median,
    ok_runs,
    setting,
)

#: Medians closer than this (relative) are a tie even when the repeats do not overlap: a shared
#: machine drifts by about this much between runs.
TIE = 0.10
#: Sizes closer than this (relative) are "about as small".
SIZE_TIE = 0.05
#: A setting whose file count grows by at least this many files per added image keeps one file per image.
ONE_FILE_PER_IMAGE = 0.9
#: Backends that are the raw reference when a results document does not say (made before it did).
DEFAULT_RAW_REFERENCE = ("npy",)
#: What the raw reference is, for the verdict that would otherwise name it without saying so.
RAW_REFERENCE_MEANS = ("the raw reference: uncompressed pixels in one memory-mapped file, so the most bytes on "
                       "disk and no file an image viewer opens; it sets the speed limit the other stores are "
                       "measured against")


@dataclass
class Verdict:
    """The settings that win one figure; more than one when they are tied."""

    figure: str
    winners: list[str]
    value: str = ""
    runner_up: str | None = None
    ratio: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def tie(self) -> bool:
        return len(self.winners) > 1


def interval(run: dict[str, Any], key: str) -> tuple[float, float, float]:
    """(min, median, max) of one figure's repeats."""
    st = run["stats"][key]
    return st["min"], st["median"], st["max"]


def tied(a: dict[str, Any], b: dict[str, Any], key: str, tie: float = TIE) -> bool:
    """Whether two settings cannot be told apart on ``key``: overlapping repeats, or medians within ``tie``."""
    lo_a, med_a, hi_a = interval(a, key)
    lo_b, med_b, hi_b = interval(b, key)
    if max(lo_a, lo_b) <= min(hi_a, hi_b):
        return True
    small, big = sorted((med_a, med_b))
    return big <= small * (1 + tie)


def leaders(runs: list[dict[str, Any]], key: str) -> list[dict[str, Any]]:
    """The best setting on ``key`` (lowest median) and every setting tied with it, best first."""
    ranked = sorted(runs, key=lambda r: (median(r, key), setting(r)))
    return [ranked[0], *(r for r in ranked[1:] if tied(ranked[0], r, key))] if ranked else []


def _names(settings: list[str]) -> str:
    return settings[0] if len(settings) == 1 else ", ".join(settings[:-1]) + " and " + settings[-1]


def _speed(runs: list[dict[str, Any]], key: str, figure: str, per_image: bool = False) -> Verdict:
    group = leaders(runs, key)
    first = group[0]
    scale = first["random_reads"] if per_image else 1
    lo = min(interval(r, key)[0] for r in group) / scale
    hi = max(interval(r, key)[2] for r in group) / scale
    if len(group) > 1 and fmt_time(lo) != fmt_time(hi):
        value = f"{fmt_time(lo)}–{fmt_time(hi)}"
    elif len(group) > 1:
        value = fmt_time(lo)
    else:
        value = fmt_time(median(first, key) / scale)
    rest = [r for r in sorted(runs, key=lambda r: median(r, key)) if r not in group]
    verdict = Verdict(figure, [setting(r) for r in group], value + (" per image" if per_image else ""),
                      extra={"per_image": per_image})
    if rest:
        verdict.runner_up = setting(rest[0])
        verdict.ratio = median(rest[0], key) / median(first, key) if median(first, key) > 0 else None
    return verdict


def _speed_line(v: Verdict, count: int) -> str:
    where = "" if v.extra.get("per_image") else f" for {count} images"
    if v.tie:
        text = f"{v.figure}: a tie between {_names(v.winners)} ({v.value}{where}, too close to call"
    else:
        text = f"{v.figure}: {v.winners[0]} ({v.value}{where}"
    if v.runner_up and v.ratio:
        text += f"; {v.ratio:.1f}x faster than the runner-up {v.runner_up}"
    return text + ")"


def files_per_image(results: dict[str, Any], dataset: str) -> dict[str, tuple[float, int, int]]:
    """Per setting: files added per image (the slope between the smallest and largest count), and the
    file and image counts at the largest count. Read from the stores themselves (their disk usage)."""
    by: dict[str, list[dict[str, Any]]] = {}
    for r in ok_runs(results, dataset):
        by.setdefault(setting(r), []).append(r)
    out = {}
    for name, runs in by.items():
        runs.sort(key=lambda r: r["count"])
        lo, hi = runs[0], runs[-1]
        if hi["count"] > lo["count"]:
            slope = (hi["disk"]["files"] - lo["disk"]["files"]) / (hi["count"] - lo["count"])
        else:
            slope = hi["disk"]["files"] / hi["count"] if hi["count"] else 0.0
        out[name] = (slope, hi["disk"]["files"], hi["count"])
    return out


def _files_line(results: dict[str, Any], dataset: str) -> str | None:
    layout = files_per_image(results, dataset)
    if not layout:
        return None
    many = sorted(s for s, (slope, _, _) in layout.items() if slope >= ONE_FILE_PER_IMAGE)
    few = {s: files for s, (slope, files, _) in layout.items() if slope < ONE_FILE_PER_IMAGE}
    counts = sorted({n for _, _, n in layout.values()})
    parts = []
    if many:
        files, n = layout[many[0]][1], layout[many[0]][2]
        parts.append(f"{_names(many)} {'keeps' if len(many) == 1 else 'keep'} one file per image ({files} files "
                     f"for {n} images); at millions of images that means inodes, slow listings and slow copies")
    if few:
        grouped: dict[int, list[str]] = {}
        for s, files in sorted(few.items()):
            grouped.setdefault(files, []).append(s)
        for files, ss in grouped.items():  # a backend whose every setting keeps the same count: its name alone
            whole = {s.split("/")[0] for s in ss if all(o in ss for o in layout if o.split("/")[0] == s.split("/")[0])}
            grouped[files] = sorted(whole | {s for s in ss if s.split("/")[0] not in whole})
        fixed = "; ".join(f"{_names(ss)} {f} file{'s' if f != 1 else ''}" for f, ss in sorted(grouped.items()))
        parts.append(f"{'the others keep' if many else 'every setting keeps'} a few files whatever the count "
                     f"({fixed} at {counts[-1]} images)")
    return "Files: " + "; ".join(parts) + "."


def raw_reference(results: dict[str, Any]) -> set[str]:
    """Backends the run marked as the raw reference (``config.raw_reference``)."""
    return set(results.get("config", {}).get("raw_reference", DEFAULT_RAW_REFERENCE))


def _overall(write: Verdict, read: Verdict, reference: set[str]) -> str | None:
    """A backend among the leaders of both writing and reading, explained when it is the raw reference."""
    both = sorted({s.split('/')[0] for s in write.winners} & {s.split('/')[0] for s in read.winners})
    if not both:
        return None
    stores = [b for b in both if b not in reference]
    refs = [b for b in both if b in reference]
    if stores and not refs:
        return (f"Overall for these images: {_names(stores)} (among the fastest both to write and to read"
                + (", tied)" if len(stores) > 1 else ")") + ".")
    text = f"Overall fastest: {_names(refs)}, {RAW_REFERENCE_MEANS}."
    if stores:
        text += f" Among full stores, {_names(stores)} {'is' if len(stores) == 1 else 'are'} as fast."
    return text


def verdicts(results: dict[str, Any]) -> dict[str, dict[str, Verdict]]:
    """Per dataset, the verdict of each figure: ``write``, ``read``, ``random``, ``size``."""
    out: dict[str, dict[str, Verdict]] = {}
    for name in dataset_names(results):
        runs = largest(results, name)
        if not runs:
            continue
        by_size = sorted(runs, key=lambda r: (r["disk"]["allocated"], setting(r)))
        small = by_size[0]
        size_group = [small, *(r for r in by_size[1:]
                               if r["disk"]["allocated"] <= small["disk"]["allocated"] * (1 + SIZE_TIE))]
        out[name] = {
            "write": _speed(runs, "write_s", "Fastest to write"),
            "read": _speed(runs, "read_s", "Fastest to read all"),
            # a peer without a random-access reader installed has no random figure (n/a): left out here
            "random": _speed([r for r in runs if r["stats"]["random_s"]], "random_s", "Fastest random access",
                             per_image=True),
            "size": Verdict("Smallest on disk", [setting(r) for r in size_group], fmt_bytes(small["disk"]["allocated"]),
                            extra={"runs": size_group}),
        }
    return out


def disagreements(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """Where two results documents name different winners with neither calling it a tie (empty: they agree)."""
    va, vb = verdicts(a), verdicts(b)
    out = []
    for name in sorted(set(va) & set(vb)):
        for key, x in va[name].items():
            y = vb[name].get(key)
            if y is None or x.tie or y.tie:
                if y is not None and not set(x.winners) & set(y.winners):
                    out.append(f"{name} {key}: {_names(x.winners)} against {_names(y.winners)}")
                continue
            if x.winners != y.winners:
                out.append(f"{name} {key}: {x.winners[0]} against {y.winners[0]}")
    return out


def recommend(results: dict[str, Any]) -> dict[str, list[str]]:
    """Plain-language findings per dataset, at its largest count."""
    out: dict[str, list[str]] = {}
    found = verdicts(results)
    reference = raw_reference(results)
    for name in dataset_names(results):
        if name not in found:
            out[name] = ["no setting could store these images (see the notes)"]
            continue
        v = found[name]
        runs = largest(results, name)
        n = runs[0]["count"]
        lines = [_speed_line(v["write"], n), _speed_line(v["read"], n), _speed_line(v["random"], n)]
        size_runs = v["size"].extra["runs"]
        small = size_runs[0]
        raw = small["raw_bytes"]
        text = (f"Smallest on disk: {setting(small)} ({fmt_bytes(small['disk']['allocated'])}, "
                f"{small['disk']['allocated'] / raw:.0%} of the {fmt_bytes(raw)} of raw pixels")
        if len(size_runs) > 1:
            text += f"; within {SIZE_TIE:.0%} of it: " + ", ".join(setting(r) for r in size_runs[1:])
        lines.append(text + ")")
        lines.extend(_trade_off(runs, size_runs, v["read"]))
        lines.extend(_against_png(runs))
        files = _files_line(results, name)
        if files:
            lines.append(files)
        overall = _overall(v["write"], v["read"], reference)
        if overall:
            lines.append(overall)
        bad = [r for r in ok_runs(results, name) if not r["exact"]]
        if bad:
            lines.append("WARNING: read-back differed from what was written for " +
                         ", ".join(sorted({setting(r) + " x" + str(r["count"]) for r in bad})))
        out[name] = lines
    return out


def _trade_off(runs: list[dict[str, Any]], compact_runs: list[dict[str, Any]], read: Verdict) -> list[str]:
    """The fastest readers among the (nearly) smallest, against the fastest readers overall."""
    compact = leaders(compact_runs, "read_s")
    names = [setting(r) for r in compact]
    if set(names) & set(read.winners):
        return [f"No trade-off here: {_names([s for s in names if s in read.winners])} "
                f"{'is' if len(names) == 1 else 'are'} among both the smallest and the fastest to read."]
    fastest = [r for r in runs if setting(r) in read.winners]
    if all(tied(c, fastest[0], "read_s") for c in compact):
        return [f"Best of both: {_names(names)} {'is' if len(names) == 1 else 'are'} among the smallest and "
                f"{'reads' if len(names) == 1 else 'read'} about as fast as {_names(read.winners)}."]
    slower = median(compact[0], "read_s") / median(fastest[0], "read_s")
    saved = 1 - compact[0]["disk"]["allocated"] / fastest[0]["disk"]["allocated"]
    if saved <= 0:
        return []
    tie = " (tied in read speed)" if len(names) > 1 else ""
    return [f"Trade-off: {_names(names)}{tie} {'is' if len(names) == 1 else 'are'} the fastest of the smallest; "
            f"{'it saves' if len(names) == 1 else 'they save'} {saved:.0%} of the space of {_names(read.winners)} "
            f"but {'reads' if len(names) == 1 else 'read'} {slower:.1f}x slower."]


def _against_png(runs: list[dict[str, Any]]) -> list[str]:
    """The smallest and the fastest-decoding lossless setting against PNG, where PNG was measured: what a
    radiology archive saves by leaving PNG (every compression imgbench stores is lossless). Sizes are the
    stores' file sizes (apparent bytes), so one file system block per PNG file is not counted against it."""
    size = lambda r: r["disk"]["apparent"]
    png = [r for r in runs if r["compression"] == "png"]
    if not png:
        return []
    ref = min(png, key=size)
    packed = [r for r in runs if r["compression"] not in ("none", "png") and size(r) < size(ref)]
    if not packed:
        return []
    lines = []
    small = min(packed, key=lambda r: (size(r), setting(r)))
    saved = size(ref) - size(small)
    lines.append(f"Smallest lossless against PNG: {setting(small)} stores these images in {fmt_bytes(size(small))}, "
                 f"{fmt_bytes(saved)} ({saved / size(ref):.0%}) less than {setting(ref)} ({fmt_bytes(size(ref))}).")
    fastest = leaders([*packed, ref], "read_s")
    if ref not in fastest:
        first = fastest[0]
        speedup = median(ref, "read_s") / median(first, "read_s") if median(first, "read_s") > 0 else None
        lines.append(f"Fastest-decoding smaller than PNG: {_names([setting(r) for r in fastest])} reads all "
                     + (f"{speedup:.1f}x faster than {setting(ref)}" if speedup else f"faster than {setting(ref)}")
                     + f" at {size(first) / size(ref):.0%} of its bytes.")
    return lines

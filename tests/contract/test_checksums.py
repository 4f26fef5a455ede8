"""Per-image checksums on every backend and compression: stored with the images, read lazily,
and a single flipped bit inside one image's stored bytes is found and named.

The bit is flipped by the backend's kit (``backends.py``) at an offset taken from the
documented layout, inside the image's payload (raw pixels after any header, or the coded
data of a compressed image), so nothing but that image's bytes changes. Stores are written
with the kit's ``isolating_options`` (one image per chunk where the format chunks), so the
damage hits one image; where a ragged layout packs several images into one chunk, the kit
says which images share it and each of them must be reported.

Format-specific checksum tests (damaged or missing digest storage, chunking of the digests,
old layouts) are in ``tests/backends/test_<name>.py``.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import xxhash

import imgbench
from imgbench.adapters import integrity
from imgbench.cli import main
from imgbench.core import checksum
from imgbench.storage import registry

from .. import scripts
from ..conftest import same, sample, supports
from .backends import CONFIGS, RAW_CAPABLE, config_id, kit_for, png_with_flipped_pixel_bit

DAMAGED = 3
PNG_CONFIGS = [c for c in CONFIGS if c[1] == "png"]


def smooth(shape, dtype, seed):
    """Photo-like enough that png/zstd really compress (a bit flip then lands in coded data)."""
    rng = np.random.default_rng(seed)
    h, w = shape[:2]
    ramp = np.add.outer(np.arange(h), np.arange(w)).astype(np.float64) * 3
    if len(shape) == 3:
        ramp = ramp[..., None] + np.arange(shape[2]) * 17
    top = np.iinfo(dtype).max if np.dtype(dtype).kind in "iu" else 1000.0
    noisy = (ramp + rng.integers(0, 4, shape)) % (min(top, 250) if dtype == np.uint8 else top)
    return noisy.astype(dtype)


def images_for(compression, layout):
    if layout == "uniform":
        return np.stack([smooth((24, 20, 3), np.uint8, i) for i in range(6)])
    images = [
        smooth((24, 20, 3), np.uint8, 0),
        smooth((30, 31), np.uint16, 1),
        smooth((12, 9, 4), np.uint8, 2),
        smooth((40, 48, 3), np.uint8, 3),  # > half an LMDB page: an overflow value
        smooth((5, 7, 1), np.uint16, 4),
    ]
    extras = [((6, 5, 2), np.float32, 5), ((8, 3), np.int16, 6)]
    return images + [sample(shape, dt, seed) for shape, dt, seed in extras if supports(compression, dt, shape)]


def labels_for(n):
    """The labels ``write`` stores, the seeds of the digests (negative ones too: their two's complement)."""
    return [7 * i - 3 for i in range(n)]


def write(path, backend, compression, images, labels=True, **options):
    with imgbench.open(path, "w", backend=backend, compression=compression, **options) as s:
        s.extend(images, labels=labels_for(len(images)) if labels else None)


def bits_differing(a: np.ndarray, b: np.ndarray) -> int:
    return int(np.unpackbits(np.bitwise_xor(a.view(np.uint8), b.view(np.uint8))).sum())


def plain_digests(images, labels=None) -> list[int]:
    """The README recipe: xxh3-64 of the image's raw little-endian bytes, seeded with its label."""
    labels = [0] * len(images) if labels is None else labels
    return [xxhash.xxh3_64_intdigest(np.ascontiguousarray(im).tobytes(), seed=int(lab) & 0xFFFFFFFFFFFFFFFF)
            for im, lab in zip(images, labels)]


def assert_only_damaged(path, images, damaged: set[int], kit, compression, capsys, *, format_detects: bool) -> None:
    """(a) verify=True reads refuse exactly the damaged images, naming them; (b) verify() and the CLI report them."""
    n = len(images)
    first = DAMAGED if DAMAGED in damaged else min(damaged)
    others = [i for i in range(n) if i not in damaged]
    names = "|".join(str(i) for i in sorted(damaged))
    with imgbench.open(path, verify=True) as s:
        assert len(s) == n
        for i in sorted(damaged):
            with pytest.raises(imgbench.CorruptStoreError, match=rf"image {i}\b"):
                s[i]
        for i in others:
            assert same(s[i], images[i]), i
        if others:
            got = s.read_many(others)
            assert all(same(g, images[i]) for g, i in zip(got, others))
            if isinstance(images, np.ndarray):  # one shape: stacked
                assert same(got, images[others])
        # a batched read names the image when the checksum finds it (the kit says when the format's check does)
        bulk = not format_detects or kit.names_damaged_image(compression, "bulk")
        with pytest.raises(imgbench.CorruptStoreError, match=rf"image ({names})\b" if bulk else None):
            s.read_many()
        batch = not format_detects or kit.names_damaged_image(compression, "batch")
        for order in ([others[0], first], [first, others[0]]) if others else ([first],):
            with pytest.raises(imgbench.CorruptStoreError, match=rf"image {first}\b" if batch else None):
                s.read_many(order)
        assert s.labels.tolist() == labels_for(n)

    report = integrity.verify(path)
    assert report.checksummed and report.images == n and not report.ok
    assert sorted(report.damaged) == sorted(damaged) and report.problems == [], report.problems
    if not format_detects and compression in RAW_CAPABLE:  # image codecs: the decoder may refuse first
        assert "checksum" in report.damaged[first]
    capsys.readouterr()
    assert main(["verify", "-q", str(path)]) == 1
    out = capsys.readouterr().out
    assert f"damaged image {first}:" in out and f"{len(damaged)} of {n} images damaged" in out


# ------------------------------------------------------------------ a flipped bit
@pytest.mark.parametrize("layout", ["uniform", "ragged"])
@pytest.mark.parametrize("config", CONFIGS, ids=config_id)
def test_flipped_bit_in_one_image_is_found(tmp_path, config, layout, capsys):
    backend, compression = config
    kit = kit_for(backend)
    path = kit.path(tmp_path)
    images = images_for(compression, layout)
    write(path, backend, compression, images, **kit.isolating_options)
    n = len(images)
    damaged = kit.damage_image(path, DAMAGED, compression)
    if layout == "uniform":
        assert damaged == {DAMAGED}, "isolating_options must keep each image's bytes apart"
    detects = kit.format_detects(compression)

    assert_only_damaged(path, images, damaged, kit, compression, capsys, format_detects=detects)

    # (c) without verify=True: raw data has no check of its own, the wrong pixels come back
    # (one bit off, and the stored digest is that of the right ones); a format with its own
    # check (PNG CRC, zstd frame checksum, HDF5 Fletcher-32, zarr CRC-32C) refuses, naming the image.
    with imgbench.open(path) as s:
        if not detects and compression not in RAW_CAPABLE:
            # an image codec without a check of its own (JPEG-LS, HTJ2K, JPEG XL): the flipped bit either
            # stops the decoder or comes back as wrong pixels, which only the digest (verify=True) sees
            try:
                wrong = s[DAMAGED]
            except imgbench.CorruptStoreError:
                wrong = None
            if wrong is not None and not same(wrong, images[DAMAGED]):
                label = labels_for(n)[DAMAGED]
                assert checksum.digests([wrong], [label])[0] != s.checksums[DAMAGED]
        elif not detects:
            wrong = s[DAMAGED]
            assert wrong.shape == images[DAMAGED].shape and wrong.dtype == images[DAMAGED].dtype
            assert bits_differing(wrong, images[DAMAGED]) == 1
            label = labels_for(n)[DAMAGED]
            assert checksum.digests([images[DAMAGED]], [label])[0] == s.checksums[DAMAGED]
            assert checksum.digests([wrong], [label])[0] != s.checksums[DAMAGED]
            assert same(s.read_many()[DAMAGED], wrong)
        else:
            with pytest.raises(imgbench.CorruptStoreError, match=rf"image {DAMAGED}\b"):
                s[DAMAGED]
        for i in range(n):
            if i not in damaged:
                assert same(s[i], images[i])


@pytest.mark.parametrize("config", PNG_CONFIGS, ids=config_id)
def test_valid_png_with_other_pixels_is_found_only_by_the_checksum(tmp_path, config, capsys):
    """Damage every format check passes (re-encoded, CRCs right): only the stored digest tells."""
    backend, compression = config
    kit = kit_for(backend)
    path = kit.path(tmp_path)
    images = images_for(compression, "uniform")
    write(path, backend, compression, images)
    kit.replace_encoded(path, DAMAGED, png_with_flipped_pixel_bit(kit.encoded(path, DAMAGED)))
    with imgbench.open(path) as s:  # verify=False: the forged image decodes cleanly
        got = s[DAMAGED]
        assert got.shape == images[DAMAGED].shape and not same(got, images[DAMAGED])
        assert int((got != images[DAMAGED]).sum()) == 1
    assert_only_damaged(path, images, {DAMAGED}, kit, compression, capsys, format_detects=False)


def test_cli_verify_process_exit_code(tmp_path, kit):
    """The real command in its own process: exit 0, then 1 naming the image, never a traceback."""
    path = kit.path(tmp_path)
    images = images_for("none", "uniform")
    write(path, kit.name, "none", images, **kit.isolating_options)
    run = [sys.executable, "-m", "imgbench.cli", "verify", "-q", str(path)]
    ok = subprocess.run(run, capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    kit.damage_image(path, DAMAGED, "none")
    result = subprocess.run(run, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"damaged image {DAMAGED}:" in result.stdout and "Traceback" not in result.stderr


# ------------------------------------------------------------------ what is stored
@pytest.mark.parametrize("layout", ["uniform", "ragged"])
@pytest.mark.parametrize("config", CONFIGS, ids=config_id)
def test_checksums_are_the_digests_of_the_images(tmp_path, config, layout):
    backend, compression = config
    kit = kit_for(backend)
    path = kit.path(tmp_path)
    images = images_for(compression, layout)
    write(path, backend, compression, images)
    labels = labels_for(len(images))  # what write() stored: the digests' seeds
    expected = checksum.digests(images, labels)
    with imgbench.open(path) as s:
        sums = s.checksums
        assert sums.dtype == np.uint64 and np.array_equal(sums, expected)
        sums[0] ^= 1  # a copy: the store's own stays intact
        assert np.array_equal(s.checksums, expected)
    with imgbench.open(path, verify=True) as s:
        assert all(same(s[i], im) for i, im in enumerate(images))
        assert all(same(a, b) for a, b in zip(s.read_many(), images))
    assert integrity.verify(path).ok
    # Plain tools read them where the layout says, and plain xxhash recomputes them.
    stored = kit.stored_digests(path)
    assert stored == expected.tolist() == plain_digests(images, labels)


@pytest.mark.parametrize("labelled", [True, False], ids=["labelled", "unlabelled"])
@pytest.mark.parametrize("config", CONFIGS, ids=config_id)
def test_checksums_survive_append(tmp_path, config, labelled):
    """Appended in several commits, with other dtypes and shapes (a store that turns ragged)."""
    backend, compression = config
    kit = kit_for(backend)
    path = kit.path(tmp_path)
    first = images_for(compression, "uniform")[:4]
    write(path, backend, compression, first, labels=labelled)
    extra = [sample((7, 5), dt, seed=10 + k) for k, dt in enumerate(kit.dtypes(compression)[1:])]
    extra += [sample((9, 4, 1), np.uint8, seed=3), smooth((11, 13), np.uint16, 51)]
    batch = np.stack([smooth((9, 9), np.uint8, 60 + i) for i in range(3)])
    last = smooth((4, 4, 3), np.uint8, 70)
    extra_labels = list(range(100, 100 + len(extra) + 4))
    with imgbench.open(path, "a") as s:
        s.extend(extra[:2], labels=extra_labels[:2] if labelled else None)
        s.flush()
        s.extend(extra[2:], labels=extra_labels[2 : len(extra)] if labelled else None)
        s.extend(batch, labels=extra_labels[len(extra) : len(extra) + 3] if labelled else None)
        s.append(last, label=extra_labels[-1] if labelled else None)
    everything = [*first, *extra, *batch, last]
    labels = [*labels_for(4), *extra_labels] if labelled else None
    expected = np.concatenate([checksum.digests(first, labels_for(4) if labelled else None),
                               checksum.digests(everything[4:], extra_labels if labelled else None)])
    assert np.array_equal(expected, checksum.digests(everything, labels))
    with imgbench.open(path, verify=True) as s:
        assert len(s) == len(everything)
        assert s.checksums.dtype == np.uint64 and np.array_equal(s.checksums, expected)
        assert all(same(s[i], im) for i, im in enumerate(everything))
        assert all(same(a, b) for a, b in zip(s.read_many(), everything))
        assert (s.labels.tolist() if labelled else s.labels) == labels
        twin = pickle.loads(pickle.dumps(s))  # a worker process's copy still verifies
        assert twin.verify and np.array_equal(twin.checksums, expected) and same(twin[5], everything[5])
        twin.close()
    report = integrity.verify(path)
    assert report.ok and report.checksummed and report.images == len(everything)
    assert main(["verify", "-q", str(path)]) == 0
    assert kit.stored_digests(path) == expected.tolist() == plain_digests(everything, labels)


@pytest.mark.parametrize("config", CONFIGS, ids=config_id)
def test_checksums_are_loaded_lazily(tmp_path, config, monkeypatch):
    """Never read without verify=True; read once per open store with it, and by a pickled copy."""
    backend, compression = config
    kit = kit_for(backend)
    path = kit.path(tmp_path)
    images = images_for(compression, "uniform")
    write(path, backend, compression, images)
    cls = registry.get(backend)
    calls = []
    real = cls._get_checksums
    monkeypatch.setattr(cls, "_get_checksums", lambda self: calls.append(1) or real(self))
    with imgbench.open(path) as s:
        assert same(s[4], images[4]) and same(s.read_many(), images) and same(s.read_many([5, 0]), images[[5, 0]])
        assert s.labels.tolist() == labels_for(6)
        assert calls == [], "checksums were loaded by a read without verify=True"
    with imgbench.open(path, verify=True) as s:
        s[0], s[1], s.read_many()
        assert calls == [1], "read once per open store, then cached"
        clone = pickle.loads(pickle.dumps(s))
        assert clone.verify and same(clone[3], images[3])
        clone.close()


# ------------------------------------------------------------------ stores without checksums
@pytest.mark.parametrize("config", CONFIGS, ids=config_id)
def test_store_written_without_checksums_reads_and_appends_without_them(tmp_path, config, monkeypatch, capsys):
    """A store from before checksums opens, reads, verifies and stays checksum-less when appended to."""
    backend, compression = config
    kit = kit_for(backend)
    path = kit.path(tmp_path, "old")
    old = images_for(compression, "uniform")
    with monkeypatch.context() as m:  # what this code wrote before checksums existed
        m.setattr(registry.get(backend), "stores_checksums", False)
        write(path, backend, compression, old)
    with imgbench.open(path, verify=True) as s:
        assert s.checksums is None and same(s.read_many(), old) and same(s[1], old[1])
    report = integrity.verify(path)
    assert report.ok and not report.checksummed
    capsys.readouterr()
    assert main(["verify", "-q", str(path)]) == 0
    assert "no per-image checksums" in capsys.readouterr().out
    new = [sample((7, 5), dt, seed=50 + k) for k, dt in enumerate(kit.dtypes(compression))]
    with imgbench.open(path, "a") as s:
        s.extend(new, labels=range(100, 100 + len(new)))
    everything = [*old, *new]
    with imgbench.open(path, verify=True) as s:
        assert s.checksums is None and len(s) == len(everything)
        assert all(same(a, b) for a, b in zip(s.read_many(), everything))
        assert all(same(s[i], im) for i, im in enumerate(everything))
    assert kit.stored_digests(path) is None, "the append must not start storing digests"
    report = integrity.verify(path)
    assert report.ok and not report.checksummed


@pytest.mark.parametrize("config", CONFIGS, ids=config_id)
def test_empty_store_has_an_empty_checksum_array(tmp_path, config):
    backend, compression = config
    kit = kit_for(backend)
    path = kit.path(tmp_path)
    with imgbench.open(path, "w", backend=backend, compression=compression):
        pass
    with imgbench.open(path, verify=True) as s:
        assert len(s) == 0 and s.checksums.shape == (0,) and s.checksums.dtype == np.uint64
    images = images_for(compression, "uniform")[:4]
    with imgbench.open(path, "a") as s:
        s.append(images[0])
        s.extend(images[1:])
    with imgbench.open(path, verify=True) as s:
        assert np.array_equal(s.checksums, checksum.digests(images)) and same(s.read_many(), images)
    assert integrity.verify(path).ok and os.path.isdir(path) != kit.single_file


# ------------------------------------------------------------------ labels
#: negative ones too: they seed the digest as their two's complement
LABELS = [7, -3, 12, 0, -1, 9]
CHANGED_AT = 1
#: one flipped bit: -3 -> -4
CHANGED = LABELS[CHANGED_AT] ^ 1


def test_changed_label_is_a_damaged_image(tmp_path, kit, capsys):
    """The per-image digest is seeded with the image's label, so a changed label is found on every backend.

    Each backend keeps its labels somewhere of its own, most without any check of their own
    (the disk sidecar's ``image_labels``, the npy and tar index label columns, the lmdb label
    chunks, the hdf5 ``labels`` dataset, the zarr ``labels`` array). The kit changes ONE label
    in that storage with the plain tool for the format (json, numpy, lmdb, h5py, zarr), so every
    container check still passes and the pixels are untouched: only the seeded digest can tell.
    """
    path = kit.path(tmp_path)
    images = np.stack([sample((10, 8, 3), np.uint8, seed=i) for i in range(len(LABELS))])
    with imgbench.open(path, "w", backend=kit.name) as s:
        s.extend(images, labels=LABELS)
    with imgbench.open(path) as s:
        assert s.labels.tolist() == LABELS
        assert np.array_equal(s.checksums, checksum.digests(images, LABELS))
    assert integrity.verify(path).ok

    kit.set_label(path, CHANGED_AT, CHANGED)
    others = [i for i in range(len(LABELS)) if i != CHANGED_AT]

    # verify() and the CLI report exactly that image, and nothing else as a problem.
    report = integrity.verify(path)
    assert report.checksummed and report.images == len(LABELS) and not report.ok
    assert sorted(report.damaged) == [CHANGED_AT] and report.problems == []
    assert "label" in report.damaged[CHANGED_AT]
    assert main(["verify", "-q", str(path)]) == 1
    assert f"damaged image {CHANGED_AT}" in capsys.readouterr().out

    # verify=True: reading that image raises, naming it; the others read whole.
    with imgbench.open(path, verify=True) as s:
        with pytest.raises(imgbench.CorruptStoreError, match=rf"image {CHANGED_AT}\b"):
            s[CHANGED_AT]
        with pytest.raises(imgbench.CorruptStoreError, match=rf"image {CHANGED_AT}\b"):
            s.read_many()
        for i in others:
            assert same(s[i], images[i])
        assert same(s.read_many(others), images[others])

    # verify=False (the default): the pixels are intact and the wrong label comes back unnoticed.
    with imgbench.open(path) as s:
        labels = s.labels.tolist()
        assert labels[CHANGED_AT] == CHANGED != LABELS[CHANGED_AT]
        assert labels[:CHANGED_AT] + labels[CHANGED_AT + 1 :] == LABELS[:CHANGED_AT] + LABELS[CHANGED_AT + 1 :]
        assert same(s[CHANGED_AT], images[CHANGED_AT]) and same(s.read_many(), images)
        # the stored digest is still that of the pixels with the ORIGINAL label
        one = images[CHANGED_AT : CHANGED_AT + 1]
        assert s.checksums[CHANGED_AT] == checksum.digests(one, [LABELS[CHANGED_AT]])[0]
        assert s.checksums[CHANGED_AT] != checksum.digests(one, [CHANGED])[0]

    # The original label back: the store verifies again.
    kit.set_label(path, CHANGED_AT, LABELS[CHANGED_AT])
    assert integrity.verify(path).ok


# ------------------------------------------------------------------ a killed appender
KILLED = textwrap.dedent(
    """
    import os, sys, numpy as np, imgbench
    s = imgbench.open(sys.argv[1], "a")
    s.extend(np.full((3, 24, 20, 3), 9, np.uint8), labels=np.zeros(3, int))
    os._exit(0)  # killed after writing, never flushed or closed
    """
)


def test_killed_appender_leaves_old_images_with_their_digests(tmp_path, kit):
    """Digests are committed with the images: a killed appender leaves each image with its own digest.

    Whether an ``extend`` that was never flushed survived depends on the backend (lmdb commits
    each call); either way the digests match the images there are. disk and tar are also killed at
    the last moment, just before their commit record, and must then add nothing
    (``tests/backends/test_disk.py``, ``test_tar.py``).
    """
    path = kit.path(tmp_path)
    batch = images_for("none", "uniform")[:4]
    write(path, kit.name, None, batch)
    scripts.run(KILLED, path, check=True, timeout=120)
    killed = np.full((3, 24, 20, 3), 9, np.uint8)
    with imgbench.open(path, verify=True) as s:
        n = len(s)
        assert n in (4, 7), f"{n} images: neither the old store nor the old store and the whole batch"
        kept = np.concatenate([batch, killed])[:n]
        kept_labels = [*labels_for(4), 0, 0, 0][:n]
        assert np.array_equal(s.checksums, checksum.digests(kept, kept_labels))
        assert same(s.read_many(), kept) and s.labels.tolist() == kept_labels
    extra = images_for("none", "uniform")[4:]
    with imgbench.open(path, "a") as s:
        s.extend(extra, labels=[1, 2])
    both = np.concatenate([kept, extra])
    with imgbench.open(path, verify=True) as s:
        assert np.array_equal(s.checksums, checksum.digests(both, [*kept_labels, 1, 2])) and same(s.read_many(), both)
        assert s.labels.tolist() == [*kept_labels, 1, 2]
    assert integrity.verify(path).ok

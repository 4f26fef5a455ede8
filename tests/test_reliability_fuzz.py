"""Property-based damage: flip bits in / truncate any file of a valid store, then read it all with verify=True.

For each backend (its default compression, ``none``, and zstd where offered) one small valid
store is built once; hypothesis picks files, byte offsets, xor masks and truncation lengths;
each damaged copy is opened and read completely (``read_many()``, every ``s[i]``,
``read_many`` in reverse, labels, attrs) with ``verify=True`` by a long-lived worker
*subprocess*, which answers one JSON line per variant. So a segfault, SIGBUS or abort is a
failure naming the signal (the worker is restarted), not a dead pytest, and a variant that
blocks is a failure after a timeout.

Acceptable outcomes, and why:

- the exact original images (count, shape, dtype, every bit): the damage hit bytes that do
  not matter (padding, free pages, unused chunk space);
- ``CorruptStoreError`` (``FormatVersionError`` included: a flipped digit of ``version``):
  the contract's error for damaged data. Nothing else: byte damage never removes a file,
  so ``StoreNotFoundError`` cannot be the right answer (a store no backend recognises any
  more is ``CorruptStoreError`` from detection), and other ``ImgbenchError``s
  (``UnsupportedError``, ``StoreLockedError``) mean misuse, which would send a user looking
  in the wrong place.

Not acceptable: wrong pixels or a wrong image count without an error, any other exception
(a library's own error leaking: ``lmdb.CorruptedError``, ``MemoryError``...), a crash, a
hang, or a reader growing by more than ``MEMORY_BOUND``.

Labels are read after the images; each image's digest is seeded with its label, so a
damaged label must be an error too (``test_label_bit_flip_is_detected`` checks it directly,
and the case the digests cannot cover: labels read without their images).

``IMGBENCH_FUZZ_EXAMPLES`` (default 25) sets hypothesis' examples per configuration.

LMDB trusts its B-tree pages: a damaged page header can abort the process (an mdb_assert)
or make it read past the end of the file (SIGBUS). Those crashes are pinned down by
deterministic tests below (xfail, strict) and the whole-file LMDB fuzz is xfail(strict)
with one of them as its explicit example; damage limited to the stored values, which
imgbench must detect, is fuzzed separately and must pass.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import select
import shutil
import signal
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import imgbench
from imgbench.storage import registry

from .conftest import RAW_CAPABLE, store_path

EXAMPLES = int(os.environ.get("IMGBENCH_FUZZ_EXAMPLES", "25"))
#: seconds a worker may spend on one damaged store
VARIANT_TIMEOUT = 60
MEMORY_BOUND = 256 << 20
AS_LIMIT = 4 << 30


def fuzz_configs() -> list[tuple[str, str]]:
    out = []
    for backend in imgbench.backends():
        compressions = registry.get(backend).compressions
        for c in (compressions[0], "none", "zstd"):
            if c in compressions and (backend, c) not in out:
                out.append((backend, c))
    return out


CONFIGS = fuzz_configs()


def store_images(compression: str) -> list[np.ndarray]:
    """A uniform run, then other shapes and dtypes (ragged layouts, per-image headers)."""
    rng = np.random.default_rng(7)
    out = [rng.integers(0, 256, (12, 10, 3), dtype=np.uint8) for _ in range(8)]
    out.append(rng.integers(0, 65536, (9, 7), dtype=np.uint16))
    out.append(rng.integers(0, 256, (5, 6, 1), dtype=np.uint8))
    if compression in RAW_CAPABLE:
        out.append(rng.normal(0, 100, (4, 3, 2)).astype(np.float32))
        out.append(rng.integers(-30000, 30000, (3, 8), dtype=np.int16))
    else:
        out.append(rng.integers(0, 65536, (4, 3, 2), dtype=np.uint16))
        out.append(rng.integers(0, 256, (3, 8, 4), dtype=np.uint8))
    return out


def fingerprint(image: np.ndarray) -> list:
    return [list(image.shape), image.dtype.str, hashlib.sha1(np.ascontiguousarray(image).tobytes()).hexdigest()]


# ------------------------------------------------------------------ the worker
WORKER = textwrap.dedent(
    """
    import hashlib, json, resource, sys, traceback
    resource.setrlimit(resource.RLIMIT_AS, ({as_limit}, resource.RLIM_INFINITY))
    import numpy as np
    import imgbench
    from imgbench.storage import registry
    for name in imgbench.backends():
        registry.get(name)

    def fp(im):
        return [list(im.shape), im.dtype.str, hashlib.sha1(np.ascontiguousarray(im).tobytes()).hexdigest()]

    def rss():
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    print("ready", flush=True)
    for line in sys.stdin:
        req = json.loads(line)
        before = rss()
        try:
            with imgbench.open(req["path"], verify=True) as s:
                n = len(s)
                every = s.read_many() if n else []
                bulk = [fp(every[i]) for i in range(n)]
                one = [fp(s[i]) for i in range(n)]
                back = s.read_many(list(range(n))[::-1]) if n else []
                rev = [fp(back[n - 1 - i]) for i in range(n)]
                labels = s.labels
                res = {{"outcome": "read", "count": n, "bulk": bulk, "one": one, "rev": rev,
                       "labels": None if labels is None else labels.tolist(), "attrs": s.attrs.to_dict()}}
        except imgbench.ImgbenchError as exc:
            res = {{"outcome": "error", "type": type(exc).__name__,
                   "corrupt": isinstance(exc, imgbench.CorruptStoreError), "message": str(exc)[:400]}}
        except BaseException as exc:
            res = {{"outcome": "exception", "type": type(exc).__module__ + "." + type(exc).__name__,
                   "message": str(exc)[:400], "traceback": traceback.format_exc()[-1500:]}}
        res["rss_growth"] = rss() - before
        print(json.dumps(res), flush=True)
    """
).format(as_limit=AS_LIMIT)


class Worker:
    """One long-lived reader process; restarted after it crashes or hangs."""

    def __init__(self):
        self.proc: subprocess.Popen | None = None
        self.started = 0

    def _start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", WORKER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True,
        )
        self.started += 1
        line = self.proc.stdout.readline().strip()
        assert line == "ready", f"worker did not start: {line!r} {self.proc.stderr.read()[-2000:]}"

    def read(self, path: Path) -> dict:
        if self.proc is None or self.proc.poll() is not None:
            self._start()
        proc = self.proc
        proc.stdin.write(json.dumps({"path": str(path)}) + "\n")
        proc.stdin.flush()
        ready, _, _ = select.select([proc.stdout], [], [], VARIANT_TIMEOUT)
        if not ready:
            self.stop()
            return {"outcome": "hang", "message": f"no answer within {VARIANT_TIMEOUT} s"}
        line = proc.stdout.readline()
        if not line:
            code = proc.wait()
            err = proc.stderr.read()[-2000:]
            self.proc = None
            name = signal.Signals(-code).name if code < 0 else f"exit status {code}"
            return {"outcome": "crash", "signal": name, "message": err}
        return json.loads(line)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None


@pytest.fixture(scope="module")
def worker():
    w = Worker()
    yield w
    w.stop()


# ------------------------------------------------------------------ pristine stores
class Pristine:
    def __init__(self, path: Path, expected: list, labels: list[int]):
        self.path = path
        self.expected = expected
        self.labels = labels
        root = path if path.is_dir() else path.parent
        self.files = sorted(str(p.relative_to(path)) if path.is_dir() else "" for p in
                            (path.rglob("*") if path.is_dir() else [path]) if p.is_file())
        assert root.exists() and self.files

    def copy(self, dest_dir: Path) -> Path:
        dest_dir.mkdir(parents=True)
        dst = dest_dir / self.path.name
        if self.path.is_dir():
            shutil.copytree(self.path, dst)
        else:
            shutil.copyfile(self.path, dst)
        return dst


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    cache: dict[tuple[str, str, int], Pristine] = {}

    def get(backend: str, compression: str, many: int = 0) -> Pristine:
        key = (backend, compression, many)
        if key not in cache:
            ims = store_images(compression)
            rng = np.random.default_rng(11)
            ims += [rng.integers(0, 256, (4, 4), dtype=np.uint8) for _ in range(many)]
            labels = [int(x) for x in np.arange(len(ims)) * 7 - 3]
            path = store_path(tmp_path_factory.mktemp(f"pristine-{backend}-{compression}-{many}"), backend)
            with imgbench.open(path, "w", backend=backend, compression=compression) as s:
                s.extend(np.stack(ims[:8]), labels=labels[:8])
                s.extend(ims[8:], labels=labels[8:])
                s.attrs["site"] = "fuzz"
            cache[key] = Pristine(path, [fingerprint(im) for im in ims], labels)
        return cache[key]

    return get


# ------------------------------------------------------------------ damage
def lmdb_values(data_mdb: bytes, store: Path) -> list[tuple[int, int]]:
    """(offset, length) in data.mdb of every stored image value (header + payload)."""
    import lmdb

    env = lmdb.open(str(store), readonly=True, lock=False, max_dbs=4)
    try:
        db = env.open_db(b"images", create=False)
        with env.begin() as txn:
            values = [bytes(v) for _k, v in txn.cursor(db=db)]
    finally:
        env.close()
    out = []
    for value in values:
        at = data_mdb.find(value)
        if at >= 0:
            out.append((at, len(value)))
    return out


def lmdb_leaf_pages(data: bytes, psize: int = 4096) -> list[tuple[int, bytes]]:
    """(page number, first key) of the leaf pages whose keys are 8 bytes (the images database)."""
    out = []
    for pg in range(2, len(data) // psize):
        off = pg * psize
        pgno, _pad, flags, lower, _upper = struct.unpack_from("<QHHHH", data, off)
        if pgno != pg or flags & 0x07 != 0x02 or lower < 18:
            continue
        ptr = struct.unpack_from("<H", data, off + 16)[0]
        _lo, _hi, _nflags, ksize = struct.unpack_from("<HHHH", data, off + ptr)
        if ksize == 8:
            out.append((pg, data[off + ptr + 8 : off + ptr + 16]))
    return out


OP = st.tuples(
    st.sampled_from(["xor", "xor", "xor", "truncate"]),
    st.integers(0, 2**31),  # which file / which value
    st.integers(0, 2**31),  # where
    st.integers(1, 255),  # xor mask
)


def apply_damage(store: Path, files: list[str], ops: list[tuple], values_only: bool = False) -> list[str]:
    """Damage the copy at ``store``; return a human-readable reproduction of what was done."""
    done = []
    for kind, which, where, mask in ops:
        if kind == "lmdb-leaf-flags":
            f = store / "data.mdb"
            data = bytearray(f.read_bytes())
            # A leaf in the middle of the images database (neither its first nor its last), and
            # any stale copy of it on a free page: found by the first key it holds.
            leaves = lmdb_leaf_pages(bytes(data))
            keys = sorted({key for _pg, key in leaves})[1:-1]
            assert keys, "the images database needs three leaf pages or more"
            key = keys[which % len(keys)]
            for pg in [pg for pg, k in leaves if k == key]:
                data[pg * 4096 + 10] ^= mask
                done.append(f"data.mdb: xor byte {pg * 4096 + 10} (flags of leaf page {pg}) with {mask:#04x}")
            f.write_bytes(bytes(data))
            continue
        if values_only:
            f = store / "data.mdb"
            data = bytearray(f.read_bytes())
            spans = lmdb_values(bytes(data), store)
            start, length = spans[which % len(spans)]
            offset = start + where % length
            data[offset] ^= mask
            f.write_bytes(bytes(data))
            done.append(f"data.mdb: xor byte {offset} (value {which % len(spans)}) with {mask:#04x}")
            continue
        rel = files[which % len(files)]
        f = store / rel if rel else store
        size = f.stat().st_size
        name = rel or store.name
        if kind == "truncate":
            length = where % (size + 1) if size else 0
            os.truncate(f, length)
            done.append(f"{name}: truncate from {size} to {length} bytes")
        elif size:
            offset = where % size
            with open(f, "r+b") as fh:
                fh.seek(offset)
                byte = fh.read(1)[0]
                fh.seek(offset)
                fh.write(bytes([byte ^ mask]))
            done.append(f"{name}: xor byte {offset} of {size} with {mask:#04x}")
    return done


#: leaks the fuzz found, each pinned down by a deterministic xfail(strict) test below; tolerated here
#: so that the fuzz keeps looking for new problems (file of the frame that raised, exception type)
KNOWN_LEAKS = {
    ("imgbench/storage/disk.py", "builtins.KeyError"): "test_disk_sidecar_with_a_damaged_key_is_corrupt",
    ("numpy/lib/_format_impl.py", "tokenize.TokenError"): "test_damaged_npy_header_is_corrupt",
    ("imgbench/storage/hdf5.py", "builtins.AttributeError"): "test_hdf5_object_that_is_not_a_dataset_is_corrupt",
}


def judge(res: dict, p: Pristine) -> tuple[bool, str]:
    """(acceptable, outcome): see the module docstring."""
    kind = res["outcome"]
    if kind in ("crash", "hang"):
        return False, f"{kind.upper()} ({res.get('signal', '')}): {res['message'][-600:]}"
    if kind == "exception":
        for (where, exc_type), test in KNOWN_LEAKS.items():
            if res["type"] == exc_type and where in res["traceback"]:
                return True, f"known bug, see {test}: leaked {exc_type}"
        return False, f"leaked {res['type']}: {res['message']}\n{res['traceback']}"
    if res.get("rss_growth", 0) > MEMORY_BOUND:
        return False, f"the reader grew by {res['rss_growth'] / 2**20:.0f} MiB on a store of a few KB"
    if kind == "error":
        if not res["corrupt"]:
            return False, f"{res['type']} (not a CorruptStoreError): {res['message']}"
        return True, f"CorruptStoreError: {res['message'][:200]}"
    if res["count"] != len(p.expected):
        return False, f"read {res['count']} images without an error; the store holds {len(p.expected)}"
    for how in ("bulk", "one", "rev"):
        bad = [i for i, (a, b) in enumerate(zip(res[how], p.expected)) if a != b]
        if bad:
            return False, f"WRONG PIXELS with verify=True ({how} read): images {bad} differ from what was written"
    if res["labels"] != p.labels:  # labels are read after the images, whose digests are seeded with them
        return False, f"exact pixels but wrong labels with verify=True: {res['labels']} != {p.labels}"
    return True, "exact"


_variants = itertools.count()


def check_variant(worker, pristine_store: Pristine, tmp_root: Path, ops: list[tuple], values_only=False,
                  label: str = "") -> None:
    dest = tmp_root / f"v{next(_variants)}"
    store = pristine_store.copy(dest)
    try:
        done = apply_damage(store, pristine_store.files, ops, values_only)
        res = worker.read(store)
        ok, outcome = judge(res, pristine_store)
        assert ok, f"{label}: damage {done} -> {outcome}"
    finally:
        shutil.rmtree(dest, ignore_errors=True)


FUZZ_SETTINGS = settings(max_examples=EXAMPLES, deadline=None,
                         suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


@pytest.mark.parametrize("config", [c for c in CONFIGS if c[0] != "lmdb"], ids=lambda c: f"{c[0]}-{c[1]}")
def test_damaged_store_reads_exact_or_raises_corrupt(worker, pristine, tmp_path, config):
    p = pristine(*config)

    @FUZZ_SETTINGS
    @given(ops=st.lists(OP, min_size=1, max_size=3))
    def run(ops):
        check_variant(worker, p, tmp_path, ops, label=f"{config[0]}-{config[1]}")

    run()


LMDB_CONFIGS = [c for c in CONFIGS if c[0] == "lmdb"]


@pytest.mark.parametrize("config", LMDB_CONFIGS, ids=lambda c: f"{c[0]}-{c[1]}")
def test_lmdb_damaged_values_read_exact_or_raise_corrupt(worker, pristine, tmp_path, config):
    """Damage inside the stored image values (header + payload): imgbench's own checks and the checksums."""
    p = pristine(*config)

    @FUZZ_SETTINGS
    @given(ops=st.lists(OP.map(lambda op: ("xor", *op[1:])), min_size=1, max_size=3))
    def run(ops):
        check_variant(worker, p, tmp_path, ops, values_only=True, label=f"{config[0]}-{config[1]} values")

    run()


LMDB_TRUSTS_ITS_PAGES = (
    "LMDB trusts its B-tree pages (no page checksums): damage to a page header aborts the reader "
    "(mdb.c: Assertion 'IS_LEAF(mp)' failed in mdb_cursor_next(), SIGABRT), an enlarged node size makes it "
    "read past the mapped file (SIGBUS), and other page damage leaks lmdb.CorruptedError / "
    "lmdb.PageNotFoundError instead of CorruptStoreError (imgbench/storage/lmdb.py wraps lmdb.Error on open "
    "only, not in _get/_get_many/_get_all/_get_labels). Open untrusted LMDB stores with `imgbench verify` in a "
    "subprocess first. The explicit example flips the LEAF flag of a leaf page of the images database"
)


@pytest.mark.xfail(strict=True, reason=LMDB_TRUSTS_ITS_PAGES)
@pytest.mark.parametrize("config", LMDB_CONFIGS, ids=lambda c: f"{c[0]}-{c[1]}")
def test_lmdb_damaged_anywhere_reads_exact_or_raises_corrupt(worker, pristine, tmp_path, config):
    p = pristine(*config, many=600)  # the images database spans several leaf pages

    @FUZZ_SETTINGS
    @given(ops=st.lists(OP, min_size=1, max_size=3))
    @example(ops=[("lmdb-leaf-flags", 1, 0, 0x02)])
    def run(ops):
        check_variant(worker, p, tmp_path, ops, label=f"{config[0]}-{config[1]}")

    run()


# ------------------------------------------------------------------ LMDB crashes, pinned down
CRASH_PROBE = textwrap.dedent(
    """
    import sys, imgbench
    path, how = sys.argv[1], sys.argv[2]
    try:
        with imgbench.open(path) as s:
            if how == "bulk":
                s.read_many()
            else:
                [s[i] for i in range(len(s))]
        print("read")
    except imgbench.CorruptStoreError as exc:
        print("CorruptStoreError", exc)
    except Exception as exc:
        print("leaked", type(exc).__module__ + "." + type(exc).__name__, exc)
    """
)


def run_crash_probe(path: Path, how: str) -> str:
    res = subprocess.run([sys.executable, "-c", CRASH_PROBE, str(path), how], capture_output=True, text=True,
                         timeout=120)
    if res.returncode < 0:
        return f"killed by {signal.Signals(-res.returncode).name}: {res.stderr.strip()[-300:]}"
    return res.stdout.strip()


@pytest.fixture
def lmdb_many_pages(tmp_path) -> Path:
    """3,000 small labelled images: an images database spanning dozens of leaf pages."""
    path = tmp_path / "pages.lmdb"
    rng = np.random.default_rng(0)
    with imgbench.open(path, "w") as s:
        s.extend(rng.integers(0, 256, (3000, 6, 6), dtype=np.uint8), labels=np.arange(3000))
    return path


@pytest.mark.xfail(strict=True, reason="LMDB trusts its pages: " + LMDB_TRUSTS_ITS_PAGES.split(": ", 1)[1])
def test_lmdb_leaf_page_flag_flip_is_an_error_not_an_abort(lmdb_many_pages):
    """Reproduction: flip bit 0x02 (P_LEAF) of byte 10 (mp_flags) of a middle leaf page; read_many() aborts."""
    data = bytearray((lmdb_many_pages / "data.mdb").read_bytes())
    leaves = sorted(lmdb_leaf_pages(bytes(data)), key=lambda p: p[1])
    assert len(leaves) > 10
    page = leaves[len(leaves) // 2][0]
    data[page * 4096 + 10] ^= 0x02
    (lmdb_many_pages / "data.mdb").write_bytes(bytes(data))
    outcome = run_crash_probe(lmdb_many_pages, "bulk")
    assert outcome.startswith("CorruptStoreError"), outcome


@pytest.mark.xfail(strict=True, reason=(
    "LMDB trusts its pages: an overflow value's node size (mn_hi) raised to 0x7fff makes LMDB hand out a "
    "value that runs 2 GiB past the end of data.mdb; copying it is SIGBUS. imgbench could bound it: the "
    "value's address and length are known (buffers=True) and the map's extent is in /proc/self/maps "
    "(_mapping_of), so a value ending past the file's size can be refused before it is touched"))
def test_lmdb_value_size_past_the_file_is_an_error_not_sigbus(tmp_path):
    """Reproduction: 40 zstd images of 40x40x40x3 (values ~5 KB, overflow pages); set mn_hi of the 2nd node."""
    path = tmp_path / "big.lmdb"
    rng = np.random.default_rng(0)
    with imgbench.open(path, "w", compression="zstd") as s:
        s.extend(rng.integers(0, 256, (40, 40, 40, 3), dtype=np.uint8), labels=np.arange(40))
    data = bytearray((path / "data.mdb").read_bytes())
    page = lmdb_leaf_pages(bytes(data))[0][0]
    ptr = struct.unpack_from("<H", data, page * 4096 + 16 + 2)[0]  # second node
    struct.pack_into("<H", data, page * 4096 + ptr + 2, 0x7FFF)
    (path / "data.mdb").write_bytes(bytes(data))
    outcome = run_crash_probe(path, "single")
    assert outcome.startswith("CorruptStoreError"), outcome


def test_lmdb_page_errors_are_corrupt_store_errors(lmdb_many_pages):
    data = bytearray((lmdb_many_pages / "data.mdb").read_bytes())
    for page, _key in lmdb_leaf_pages(bytes(data)):
        data[page * 4096 + 10] ^= 0x02  # every leaf of the images database: no cursor walk reaches a sibling
    (lmdb_many_pages / "data.mdb").write_bytes(bytes(data))
    outcome = run_crash_probe(lmdb_many_pages, "single")
    assert outcome.startswith("CorruptStoreError"), outcome


# ------------------------------------------------------------------ labels
def _flip_label(path: Path, backend: str) -> None:
    """Change image 3's label (7 * 3 - 3 = 18) by xor 1, wherever this backend keeps labels."""
    if backend == "npy":
        from imgbench.storage import npy

        rows = np.fromfile(path / npy.INDEX, dtype=npy.INDEX_DTYPE)
        rows[3]["label"] ^= 1
        rows.tofile(path / npy.INDEX)
    elif backend == "tar":
        from imgbench.storage import tar

        cols = list(tar.INDEX_COLUMNS)
        rows = np.fromfile(path / tar.INDEX, "<i8").reshape(-1, len(cols))
        rows[3, cols.index("label")] ^= 1
        rows.tofile(path / tar.INDEX)
    elif backend == "lmdb":
        data = bytearray((path / "data.mdb").read_bytes())
        old = np.array([-3, 4, 11, 18], "<i8").tobytes()
        at = data.find(old)
        assert at >= 0
        while at >= 0:  # the live labels value and any stale copy on a free page
            data[at + 24] ^= 1
            at = data.find(old, at + 1)
        (path / "data.mdb").write_bytes(bytes(data))
    elif backend == "hdf5":
        import h5py

        with h5py.File(path, "r+") as f:
            f["labels"][3] ^= 1
    elif backend == "disk":
        meta = json.loads((path / "imgbench.json").read_text())
        meta["image_labels"][3] ^= 1
        (path / "imgbench.json").write_text(json.dumps(meta))
    else:
        raise AssertionError(backend)


LABELS_ONLY_GAP = pytest.mark.xfail(strict=True, reason=(
    "GAP imgbench/store.py Store.labels: with verify=True the labels are checked only through the digests "
    "of the images read with them (each digest is seeded with its label); `store.labels` read on its own "
    "(class counts, `imgbench info`, a sampler built before any image is read) returns a damaged label "
    "without an error. Fix: with verify, check the labels against the stored digests when they are first "
    "loaded (that needs the pixels: a separate xxh3 of the labels array would not), or document the limit"))


@pytest.mark.parametrize("backend,read", [
    (b, read) if read == "images then labels" or b == "zarr" else pytest.param(b, read, marks=LABELS_ONLY_GAP)
    for b in imgbench.backends() for read in ("images then labels", "labels only")
])
def test_label_bit_flip_is_detected(tmp_path, backend, read):
    """A silent one-bit change of a stored label must not read back as a different label with verify=True.

    zarr's labels array is zstd + CRC-32C, so a flipped bit in its labels shard is an error; the
    others rely on the per-image digest, which is seeded with the image's label.
    """
    labels = [int(x) for x in np.arange(6) * 7 - 3]
    path = store_path(tmp_path, backend)
    rng = np.random.default_rng(1)
    with imgbench.open(path, "w", backend=backend, compression="none" if backend != "disk" else "png") as s:
        s.extend(rng.integers(0, 256, (6, 4, 4, 3), dtype=np.uint8), labels=labels)
    if backend == "zarr":
        # A bit flip in the stored labels shard: the chunk's CRC-32C catches it.
        shard = next(p for p in (path / "labels").iterdir() if p.name.startswith("c."))
        data = bytearray(shard.read_bytes())
        data[len(data) // 3] ^= 0x01
        shard.write_bytes(bytes(data))
    else:
        _flip_label(path, backend)
    try:
        with imgbench.open(path, verify=True) as s:
            if read == "images then labels":
                s.read_many()
            got = s.labels.tolist()
    except imgbench.CorruptStoreError:
        return
    assert got == labels, f"label 3 reads back as {got[3]} (stored {labels[3]}) without an error"


# ------------------------------------------------------------------ leaks the fuzz found, pinned down
@pytest.mark.parametrize("layout", ["ragged", "uniform"])
def test_disk_sidecar_with_a_damaged_key_is_corrupt(tmp_path, layout):
    path = tmp_path / "d"
    ims = store_images("png") if layout == "ragged" else store_images("png")[:8]
    with imgbench.open(path, "w", backend="disk") as s:
        s.extend(ims)
    meta = json.loads((path / "imgbench.json").read_text())
    key = "dtypes" if layout == "ragged" else "dtype"
    meta["images"]["dtxpes"] = meta["images"].pop(key)
    (path / "imgbench.json").write_text(json.dumps(meta))
    with pytest.raises(imgbench.CorruptStoreError):
        with imgbench.open(path) as s:
            s.read_many()


@pytest.mark.parametrize("backend", ["disk", "tar"])
def test_damaged_npy_header_is_corrupt(tmp_path, backend):
    path = tmp_path / "n"
    ims = store_images("none")[:8]
    with imgbench.open(path, "w", backend=backend, compression="none") as s:
        s.extend(ims)
    victim = path / "00000000.npy" if backend == "disk" else next(path.glob("shard-*.tar"))
    data = bytearray(victim.read_bytes())
    at = data.index(b"'shape': (12, 10, 3)") + len(b"'shape': (12, 10, 3")
    assert data[at : at + 1] == b")"
    data[at] ^= 0x01
    victim.write_bytes(bytes(data))
    with pytest.raises(imgbench.CorruptStoreError):
        with imgbench.open(path) as s:
            s.read_many()


@pytest.mark.parametrize("name", ["images", "data", "labels"])
def test_hdf5_object_that_is_not_a_dataset_is_corrupt(tmp_path, name):
    import h5py

    path = tmp_path / "t.h5"
    ims = store_images("none")
    with imgbench.open(path, "w") as s:
        s.extend(ims if name == "data" else np.stack(ims[:8]), labels=np.arange(len(ims) if name == "data" else 8))
    with h5py.File(path, "r+") as f:
        del f[name]
        f[name] = np.dtype("<i8")  # a committed datatype where a dataset was
    with pytest.raises(imgbench.CorruptStoreError):
        with imgbench.open(path) as s:
            s.read_many()
            s.labels

"""Hostile stores (shared machinery): decompression bombs, lying metadata, symlinks and special files, foreign HDF5 features.

Threat model: someone hands you a store (a download, an upload to a service that converts
datasets). Opening and reading it must give exact images or a clean ``CorruptStoreError``:
never a crash, a hang, an allocation far beyond the store's size, wrong pixels, or a read
of (or a write to) a file outside the store. Per-image checksums do not help here: an
attacker drops ``checksum`` from the metadata or recomputes xxh3 (it is not a MAC), so
these cases open stores with the default ``verify=False``.

Every crafted store is read in a subprocess: a crash shows as the signal that killed it,
a hang as a timeout, and memory as the child's peak RSS growth and tracemalloc peak
(with RLIMIT_AS capped, so a runaway allocation cannot take the machine down).

This module is the shared machinery (the probe, inotify watches, crafted PNG/zstd/deflate
payloads, symlink and special-file set-ups); the hostile-store tests themselves are in the
backend's own file, ``tests/backends/test_<name>.py`` (sections "hostile stores"), next to the
other tests of that backend's layout (crafted tar index rows and shard names, npy index rows
and commit records, zarr records and codecs, disk sidecar and lmdb value-header lies).

Cases that fail today are marked ``xfail(strict=True)`` with the bug in the reason: when
the bug is fixed the test XPASSes, strict mode fails it, and the marker must go.
"""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import signal
import struct
import subprocess
import textwrap
import time
import zlib
from pathlib import Path

import numpy as np
import pytest

import imgbench

from .. import scripts
from ..conftest import store_path


N = 6

SHAPE = (16, 16, 3)

#: memory a refused store may cost the reader (RSS growth and tracemalloc peak)
BOUND = 64 << 20

#: address-space cap of the probe: a lie that asks for more fails there, not on the machine
AS_LIMIT = 4 << 30

#: seconds a probe that blocks forever is given (startup is ~1 s)
HANG_TIMEOUT = 8

def images() -> np.ndarray:
    return np.stack([np.random.default_rng(100 + i).integers(0, 256, SHAPE, dtype=np.uint8) for i in range(N)])

def build(tmp_path: Path, backend: str, compression: str | None = None, name: str = "store", labels=True) -> Path:
    path = store_path(tmp_path, backend, name)
    with imgbench.open(path, "w", backend=backend, compression=compression) as s:
        s.extend(images(), labels=np.arange(N) if labels else None)
    return path

PROBE = textwrap.dedent(
    """
    import hashlib, json, resource, sys, tracemalloc, traceback
    path, how, limit, verify = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4] == "1"
    if limit:
        resource.setrlimit(resource.RLIMIT_AS, (limit, resource.RLIM_INFINITY))
    import numpy as np
    import imgbench
    from imgbench.storage import registry
    for name in imgbench.backends():  # every import before the baseline
        registry.get(name)

    def rss():
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    def fp(im):
        return [list(im.shape), im.dtype.str, hashlib.sha1(np.ascontiguousarray(im).tobytes()).hexdigest()]

    base = rss()
    tracemalloc.start()
    try:
        with imgbench.open(path, verify=verify) as s:
            n = len(s)
            got = []
            if how == "bulk" or how == "all":
                every = s.read_many() if n else []
                got = [fp(every[i]) for i in range(n)]
            if how == "all":
                got = [fp(s[i]) for i in range(n)]
                s.labels
            if how.startswith("one:"):
                got = [fp(s[int(how[4:])])]
            if how == "labels":
                s.labels
        out = {"outcome": "read", "count": n, "images": got}
    except imgbench.ImgbenchError as exc:
        out = {"outcome": "error", "type": type(exc).__name__, "corrupt": isinstance(exc, imgbench.CorruptStoreError),
               "message": str(exc)[:500]}
    except BaseException as exc:
        out = {"outcome": "exception", "type": type(exc).__name__, "message": str(exc)[:500],
               "traceback": traceback.format_exc()[-2000:]}
    out["traced_peak"] = tracemalloc.get_traced_memory()[1]
    out["rss_growth"] = rss() - base
    print(json.dumps(out))
    """
)

def start_probe(path: Path, how: str = "all", verify: bool = False):
    """The probe in a process of its own (tests/scripts.py)."""
    return scripts.start(PROBE, path, how, AS_LIMIT, "1" if verify else "0")

def finish_probe(proc, timeout: float) -> dict:
    try:
        out, err = proc.communicate(timeout=max(0.1, timeout))
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        return {"outcome": "hang", "message": f"no answer within {timeout:.0f} s (killed)"}
    if proc.returncode < 0:
        return {"outcome": "crash", "signal": signal.Signals(-proc.returncode).name, "message": err[-1500:]}
    lines = out.strip().splitlines()
    if proc.returncode != 0 or not lines:
        return {"outcome": "died", "returncode": proc.returncode, "message": err[-1500:]}
    return json.loads(lines[-1])

def probe(path: Path, how: str = "all", verify: bool = False, timeout: float = 60) -> dict:
    """Open and read ``path`` in a fresh interpreter; what happened, as a dict."""
    return finish_probe(start_probe(path, how, verify), timeout)

def describe(res: dict) -> str:
    if res["outcome"] == "crash":
        return f"the reader was killed by {res['signal']}: {res['message']}"
    if res["outcome"] == "read":
        return f"the store read without error ({res['count']} images) instead of being refused"
    if res["outcome"] == "error":
        peak = max(res["traced_peak"], res["rss_growth"])
        return f"{res['type']}: {res['message']} (peak memory {peak / 2**20:.0f} MiB)"
    return f"{res['outcome']}: {res.get('type', '')} {res['message']}"

def assert_refused(res: dict, bound: int = BOUND) -> None:
    """A clean CorruptStoreError, at a small memory cost."""
    assert res["outcome"] == "error" and res["corrupt"], describe(res)
    assert res["traced_peak"] < bound, f"refusing cost {res['traced_peak'] / 2**20:.0f} MiB of allocations"
    assert res["rss_growth"] < bound, f"refusing grew the reader's RSS by {res['rss_growth'] / 2**20:.0f} MiB"

class Watch:
    """inotify on files outside the store: did anything open, read or write them?"""

    IN_ACCESS, IN_MODIFY, IN_ATTRIB, IN_OPEN = 0x1, 0x2, 0x4, 0x20
    NAMES = {IN_ACCESS: "read", IN_MODIFY: "written", IN_ATTRIB: "attributes changed", IN_OPEN: "opened"}

    def __init__(self, *paths: Path):
        libc = ctypes.CDLL(None, use_errno=True)
        if not hasattr(libc, "inotify_init1"):
            pytest.skip("needs Linux inotify")
        self.fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if self.fd < 0:
            pytest.skip("inotify is not available")
        mask = self.IN_ACCESS | self.IN_MODIFY | self.IN_ATTRIB | self.IN_OPEN
        self.wds = {libc.inotify_add_watch(self.fd, os.fsencode(p), mask): p for p in paths}

    def events(self) -> list[str]:
        buf = b""
        while True:
            try:
                chunk = os.read(self.fd, 65536)
            except BlockingIOError:
                break
            if not chunk:
                break
            buf += chunk
        os.close(self.fd)
        seen, pos = [], 0
        while pos + 16 <= len(buf):
            wd, mask, _cookie, length = struct.unpack_from("iIII", buf, pos)
            pos += 16 + length
            for bit, what in self.NAMES.items():
                if mask & bit:
                    seen.append(f"{self.wds.get(wd)} {what}")
        return seen

def outside_dir(tmp_path: Path) -> Path:
    d = tmp_path / "outside"
    d.mkdir(exist_ok=True)
    return d

PNG_SIG = b"\x89PNG\r\n\x1a\n"

def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

def lying_png(height: int, width: int, channels: int = 3) -> bytes:
    """A well-formed PNG whose header declares ``height x width`` and whose IDAT holds one row."""
    colour = {1: 0, 2: 4, 3: 2, 4: 6}[channels]
    ihdr = struct.pack(">IIBBBBB", width, height, 8, colour, 0, 0, 0)
    idat = zlib.compress(b"\0" * (1 + width * channels))
    return PNG_SIG + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")

def zstd_rle(total: int, declare: int | None = None) -> bytes:
    """A zstd frame of RLE blocks that really decodes to ``total`` zero bytes (~4 stored bytes per 128 KiB)."""
    frame = bytearray(b"\x28\xb5\x2f\xfd" + bytes([0b11100000]) + struct.pack("<Q", total if declare is None else declare))
    left = total
    while True:
        n = min(left, 128 << 10)
        left -= n
        frame += struct.pack("<I", (n << 3) | (1 << 1) | (left == 0))[:3] + b"\x00"
        if not left:
            return bytes(frame)

def deflate_zeros(total: int) -> bytes:
    z = zlib.compressobj(9)
    block = bytes(1 << 22)
    parts = [z.compress(block) for _ in range(total // len(block))]
    return b"".join(parts) + z.flush()

def fletcher32(data: bytes) -> int:
    """HDF5's Fletcher-32 (H5_checksum_fletcher32): the filter appends it, little-endian."""
    words = np.frombuffer(data[: len(data) // 2 * 2], ">u2").astype(np.uint64)
    s1 = s2 = 0
    for k in range(0, len(words), 360):
        sums = np.cumsum(words[k : k + 360]) + s1
        s2 += int(sums.sum())
        s1 = int(sums[-1])
        s1, s2 = (s1 & 0xFFFF) + (s1 >> 16), (s2 & 0xFFFF) + (s2 >> 16)
    if len(data) % 2:
        s1 += data[-1] << 8
        s2 += s1
        s1, s2 = (s1 & 0xFFFF) + (s1 >> 16), (s2 & 0xFFFF) + (s2 >> 16)
    s1, s2 = (s1 & 0xFFFF) + (s1 >> 16), (s2 & 0xFFFF) + (s2 >> 16)
    return ((s2 << 16) | s1) & 0xFFFFFFFF

HUGE_PNG = (50_000, 50_000)  # 7.5 GB of RGB pixels declared by a ~100 KB file at most

def swap_for_symlink(victim: Path, target: Path) -> None:
    victim.unlink()
    victim.symlink_to(target)

def outside_copy(tmp_path: Path, victim: Path) -> Path:
    target = outside_dir(tmp_path) / f"copy-of-{victim.name}"
    shutil.copyfile(victim, target)
    return target

def secret_image(tmp_path: Path, suffix: str) -> Path:
    """A valid image file outside the store, of the victim's shape: the worst case, it decodes fine."""
    secret = np.full(SHAPE, 42, np.uint8)
    target = outside_dir(tmp_path) / f"secret{suffix}"
    if suffix == ".npy":
        np.save(target, secret)
    else:
        import imagecodecs

        target.write_bytes(imagecodecs.png_encode(secret))
    return target


#: every symlink case (the tests of each backend take those named after it) and the bug it found (all fixed)
SYMLINK_BUGS = {
    "disk png image": "imgbench/storage/disk.py _decode_file opens images without O_NOFOLLOW",
    "disk none image": "imgbench/storage/disk.py _decode_file opens images without O_NOFOLLOW",
    "disk sidecar": "imgbench/storage/disk.py _load reads imgbench.json through the symlink",
    "npy data.bin": "imgbench/storage/npy.py _open_file opens without O_NOFOLLOW",
    "npy commit record": "imgbench/storage/npy.py _open_file opens without O_NOFOLLOW",
    "zarr shard": "imgbench/storage/zarr/localstore.py FileStore._open_key opens without O_NOFOLLOW",
    "zarr record": "imgbench/storage/zarr/localstore.py FileStore._open_key / ZarrStore.detect follow the symlink",
    "lmdb data.mdb": "imgbench/storage/lmdb.py opens the environment without checking its files are not symlinks",
}

def symlinked(tmp_path: Path, case: str) -> tuple[Path, Path]:
    if case.startswith("disk") and "image" in case:
        compression = case.split()[1]
        path = build(tmp_path, "disk", compression)
        suffix = ".png" if compression == "png" else ".npy"
        target = secret_image(tmp_path, suffix)
        swap_for_symlink(path / f"00000001{suffix}", target)
    elif case == "disk sidecar":
        path = build(tmp_path, "disk", "png")
        target = outside_copy(tmp_path, path / "imgbench.json")
        swap_for_symlink(path / "imgbench.json", target)
    elif case == "npy data.bin":
        path = build(tmp_path, "npy")
        data = bytearray((path / "data.bin").read_bytes())
        data[: int(np.prod(SHAPE))] = bytes([42]) * int(np.prod(SHAPE))  # same size, other pixels
        target = outside_dir(tmp_path) / "data.bin"
        target.write_bytes(bytes(data))
        swap_for_symlink(path / "data.bin", target)
    elif case == "npy commit record":
        from imgbench.storage import npy

        path = build(tmp_path, "npy")
        target = outside_copy(tmp_path, path / npy.COMMIT)
        swap_for_symlink(path / npy.COMMIT, target)
    elif case == "zarr shard":
        path = build(tmp_path, "zarr")
        shard = next(p for p in (path / "images").iterdir() if p.name.startswith("c."))
        target = outside_copy(tmp_path, shard)
        swap_for_symlink(shard, target)
    elif case == "zarr record":
        path = build(tmp_path, "zarr")
        target = outside_copy(tmp_path, path / "zarr.json")
        swap_for_symlink(path / "zarr.json", target)
    elif case == "lmdb data.mdb":
        path = build(tmp_path, "lmdb")
        target = outside_copy(tmp_path, path / "data.mdb")
        swap_for_symlink(path / "data.mdb", target)
    else:
        raise AssertionError(case)
    return path, target


#: every FIFO/device case (the tests of each backend take those named after it) and the bug it found (all fixed)
SPECIAL_BUGS = {
    "disk image fifo": "imgbench/storage/disk.py _decode_file: open() of a FIFO blocks forever (no O_NONBLOCK, no S_ISREG check)",
    "disk image /dev/zero": "imgbench/storage/disk.py _decode_file: f.read() of /dev/zero never ends (unbounded allocation, MemoryError under RLIMIT_AS)",
    "zarr shard fifo": "imgbench/storage/zarr/localstore.py FileStore._open_key: os.open of a FIFO blocks forever (no O_NONBLOCK, no S_ISREG check)",
    "zarr record fifo": "imgbench/storage/zarr/store.py ZarrStore.detect: open(zarr.json) of a FIFO blocks forever, so every imgbench.open() of the directory hangs in registry.detect",
}

def special(tmp_path: Path, case: str) -> Path:
    if case.startswith("disk"):
        path = build(tmp_path, "disk", "png")
        victim = path / "00000001.png"
        victim.unlink()
        if case.endswith("fifo"):
            os.mkfifo(victim)
        else:
            victim.symlink_to("/dev/zero")
        return path
    path = build(tmp_path, "zarr")
    victim = path / "zarr.json" if "record" in case else next(
        p for p in (path / "images").iterdir() if p.name.startswith("c."))
    victim.unlink()
    os.mkfifo(victim)
    return path


def assert_not_followed(path: Path, target: Path) -> None:
    """Reading ``path`` is a CorruptStoreError and never opens, reads or writes ``target`` (outside the store)."""
    watch = Watch(target)
    res = probe(path, "all")
    touched = watch.events()
    assert res["outcome"] == "error" and res["corrupt"], describe(res)
    assert not touched, f"a file outside the store was accessed: {touched}"


def probe_at_once(tmp_path_factory, cases) -> dict[str, dict]:
    """Probe every case that may block at once: the hangs cost HANG_TIMEOUT once, not once each."""
    if not hasattr(os, "mkfifo"):
        pytest.skip("needs FIFOs")
    procs = {}
    for case in cases:
        path = special(tmp_path_factory.mktemp("special"), case)
        procs[case] = start_probe(path, "all")
    deadline = time.monotonic() + HANG_TIMEOUT
    return {case: finish_probe(proc, deadline - time.monotonic()) for case, proc in procs.items()}

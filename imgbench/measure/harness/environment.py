"""What the figures were measured on and with: the machine, and the versions doing the work."""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

from imgbench import __version__

#: distributions whose versions results documents record (None when not installed)
DISTRIBUTIONS = ("numpy", "Pillow", "lmdb", "h5py", "hdf5plugin", "zstandard", "imagecodecs", "tifffile", "pydicom",
                 "matplotlib", "rich")


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def _filesystem(path: Path) -> str | None:
    """Filesystem type of the mount holding ``path`` (from /proc/mounts)."""
    best, kind = "", None
    target = str(path.resolve())
    for line in _read("/proc/mounts").splitlines():
        parts = line.split()
        if len(parts) >= 3 and (target == parts[1] or target.startswith(parts[1].rstrip("/") + "/")):
            if len(parts[1]) > len(best):
                best, kind = parts[1], f"{parts[2]} on {parts[1]}"
    return kind


def machine_info(where: Path | None = None) -> dict[str, Any]:
    """What the figures were measured on: CPU, cores, memory, OS, and the filesystem holding ``where``."""
    cpu = next(
        (line.split(":", 1)[1].strip() for line in _read("/proc/cpuinfo").splitlines() if line.startswith("model name")),
        platform.processor() or platform.machine(),
    )
    mem = next((line.split()[1] for line in _read("/proc/meminfo").splitlines() if line.startswith("MemTotal")), None)
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count()
    return {
        "hostname": platform.node(),
        "cpu": cpu,
        "cores": cores,
        "memory_GiB": round(int(mem) / 2**20, 1) if mem else None,
        "os": platform.platform(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "filesystem": _filesystem(where) if where is not None else None,
    }


def versions() -> dict[str, str | None]:
    """Versions of imgbench and of the libraries doing the work."""
    from importlib import metadata

    out: dict[str, str | None] = {"imgbench": __version__}
    for dist in DISTRIBUTIONS:
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = None
    try:
        import h5py

        out["libhdf5"] = h5py.version.hdf5_version
    except ImportError:
        pass
    try:
        import lmdb

        out["liblmdb"] = ".".join(map(str, lmdb.version()))
    except ImportError:
        pass
    return out

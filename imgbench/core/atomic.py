"""Atomic publication of stores and files, and the locks writers take.

New stores are built beside their final path under a hidden temporary name and
renamed into place only when complete. A directory replacing a directory uses
Linux ``renameat2(RENAME_EXCHANGE)`` so that at every instant the path holds the
old store or the new one; elsewhere it falls back to two renames, where a crash
between them leaves nothing at the path (never a half-written store).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import os
import shutil
import socket
import struct
import tempfile
from pathlib import Path

from imgbench.core import libc
from imgbench.core.errors import StoreExistsError, StoreLockedError

TMP_MARK = ".imgbench-tmp-"
_RENAME_NOREPLACE = 1
_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _renameat2(src: str, dst: str, flags: int) -> bool:
    """Call renameat2; False when the system or filesystem does not offer it."""
    renameat2 = libc.function("renameat2")
    if renameat2 is None:
        return False
    rc = renameat2(_AT_FDCWD, os.fsencode(src), _AT_FDCWD, os.fsencode(dst), flags)
    if rc == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP):
        return False
    raise OSError(err, os.strerror(err), dst)


def temp_sibling(path: Path, kind: str = "tmp") -> Path:
    """A fresh hidden name next to ``path`` (same filesystem, so rename is atomic)."""
    token = os.urandom(4).hex()
    host = socket.gethostname().split(".")[0][:16] or "host"
    return path.parent / f".{path.name}.imgbench-{kind}-{host}-{os.getpid()}-{token}"


def remove_stale_temps(path: Path) -> None:
    """Delete temporaries of writers of ``path`` that were killed on this host."""
    host = socket.gethostname().split(".")[0][:16] or "host"
    prefix = f".{path.name}.imgbench-"
    try:
        entries = list(os.scandir(path.parent))
    except OSError:
        return
    for entry in entries:
        if not entry.name.startswith(prefix):
            continue
        parts = entry.name[len(prefix):].split("-")
        if len(parts) != 4 or parts[1] != host or not parts[2].isdigit():
            continue
        try:
            os.kill(int(parts[2]), 0)
            continue  # writer still alive
        except ProcessLookupError:
            pass
        except PermissionError:
            continue
        remove(Path(entry.path))


def remove(path: Path) -> None:
    """Remove a file or directory tree if it exists.

    Finishes even when interrupted (Ctrl-C arriving mid-tree is re-raised once the tree is gone):
    this is how aborting writers drop their temporaries, and half a temporary is still a leftover."""
    interrupted: BaseException | None = None
    for _ in range(5):  # a tree that a straggling writer refilled is removed again
        try:
            _remove_once(path)
        except KeyboardInterrupt as exc:
            interrupted = exc
            continue
        if not os.path.lexists(path):
            break
    if interrupted is not None:
        raise interrupted


def _remove_once(path: Path) -> None:
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink()
    except FileNotFoundError:
        pass


def fsync_path(path: Path, directory: bool = False) -> None:
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if directory else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


_SYNC_FILE_RANGE_WRITE = 2  # Linux <fcntl.h>


def start_writeback(fd: int) -> None:
    """Start writing a file's dirty pages to the device now, without waiting.

    The fsync that makes the file durable later then finds most pages already
    written, so device time overlaps the work in between (metadata, closing)
    instead of following it. Linux ``sync_file_range(SYNC_FILE_RANGE_WRITE)``;
    elsewhere nothing (the fsync does it all). Never a durability guarantee.
    """
    fn = libc.function("sync_file_range")
    if fn is not None:
        fn.argtypes = (ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint)
        fn(fd, 0, 0, _SYNC_FILE_RANGE_WRITE)


def sync_filesystem(path: Path) -> None:
    """Flush every dirty page of the filesystem holding ``path`` (one call, not one per file)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        syncfs = libc.function("syncfs")
        if syncfs is None or syncfs(fd) != 0:
            os.sync()
    except OSError:
        os.sync()
    finally:
        os.close(fd)


def publish(tmp: Path, path: Path, replace: bool) -> None:
    """Move the finished store ``tmp`` to ``path``.

    ``replace=False`` fails with StoreExistsError if anything appeared at ``path``
    meanwhile; ``replace=True`` swaps atomically and deletes the old store.
    """
    if not replace:
        if _renameat2(str(tmp), str(path), _RENAME_NOREPLACE):
            fsync_path(path.parent, directory=True)
            return
        if os.path.lexists(path):
            raise StoreExistsError(f"{path} appeared while the store was being written; the new store is discarded")
        os.rename(tmp, path)
        fsync_path(path.parent, directory=True)
        return
    if not os.path.lexists(path):
        os.rename(tmp, path)
    elif tmp.is_dir() or path.is_dir():
        if _renameat2(str(tmp), str(path), _RENAME_EXCHANGE):
            # tmp now names the old store.
            remove(tmp)
        else:
            old = temp_sibling(path, "old")
            os.rename(path, old)
            os.rename(tmp, path)
            remove(old)
    else:
        os.replace(tmp, path)
    fsync_path(path.parent, directory=True)


def _umask() -> int:
    """The process umask, read without changing it where Linux allows (threads may be creating files)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_file(path: Path, data: bytes, sync: bool = True) -> None:
    """Write ``path`` so that readers see the old content or the new, never a mix."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        # mkstemp makes the file private (0600); a store's record must be as
        # readable as any file its owner creates, or a shared dataset is not.
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            if sync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    if sync:
        fsync_path(path.parent, directory=True)


class WriterLock:
    """An exclusive, non-blocking per-store writer lock, released on close or process death.

    Uses open-file-description locks (``F_OFD_SETLK``): unlike ``lockf`` they are not
    dropped when another descriptor of the same file closes, and unlike ``flock`` they
    do not collide with the locks HDF5 itself takes on the file.
    """

    def __init__(self, target: Path, what: str):
        is_dir = target.is_dir()
        self._fd = os.open(target, (os.O_RDONLY | os.O_DIRECTORY) if is_dir else os.O_RDWR)
        try:
            ofd = getattr(fcntl, "F_OFD_SETLK", None)
            if is_dir or ofd is None:
                fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            else:
                # struct flock {l_type, l_whence, l_start, l_len, l_pid}, native layout;
                # l_len 0 = the whole file, l_pid must be 0 for OFD locks.
                fcntl.fcntl(self._fd, ofd, struct.pack("hhqqi", fcntl.F_WRLCK, os.SEEK_SET, 0, 0, 0))
        except OSError as exc:
            os.close(self._fd)
            if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise StoreLockedError(
                    f"another process is writing to {what} {target}; wait for it to finish (one writer at a time)"
                ) from None
            raise
        self.inode = os.fstat(self._fd).st_ino

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def claim_new(path: Path, mode: str) -> Path:
    """Check that a new store may be created at ``path`` (mode ``x`` or ``w``); return the hidden
    temporary sibling to build it in (not created yet).

    ``x`` refuses anything at ``path``. That ``w`` replaces only an imgbench store or an empty
    directory is checked by :func:`imgbench.api.open`, the one place that knows every kind of
    store; stale temporaries of killed writers are removed here."""
    if mode == "x" and os.path.lexists(path):
        raise StoreExistsError(
            f"{path} already exists; use mode='w' to replace it or mode='a' to add to it",
            cli=f"{path} already exists; pass --overwrite to replace it (an imgbench store only)",
        )
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise StoreExistsError(f"{path.parent} is a file where a directory is expected") from None
    remove_stale_temps(path)
    return temp_sibling(path)

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


def host_tag(host: str | None = None) -> str:
    """This host's name as temporaries carry it: the first label, at most 16 characters, only
    ``[A-Za-z0-9-]`` (anything else becomes ``_``), never empty. Dashes stay: names are parsed from
    the right (:func:`parse_temp_name`), so ``ip-10-0-0-1`` is as good a host name as ``worker1``."""
    if host is None:
        host = socket.gethostname()
    label = host.split(".")[0][:16]
    return "".join(c if c.isascii() and (c.isalnum() or c == "-") else "_" for c in label) or "host"


def temp_name(store: str, kind: str, host: str, pid: int, token: str) -> str:
    """The hidden name of a temporary of ``store``: ``.{store}.imgbench-{kind}-{host}-{pid}-{token}``."""
    return f".{store}.imgbench-{kind}-{host_tag(host)}-{pid}-{token}"


def parse_temp_name(name: str, store: str) -> tuple[str, str, int] | None:
    """``(kind, host, pid)`` of a temporary of ``store`` named by :func:`temp_name`, else None.

    Parsed from the right: the token and the pid never hold a dash and the kind never does, so
    whatever lies between is the host, dashes and all."""
    prefix = f".{store}.imgbench-"
    if not name.startswith(prefix):
        return None
    kind, sep, rest = name[len(prefix):].partition("-")
    parts = rest.rsplit("-", 2)
    if not sep or not kind or len(parts) != 3:
        return None
    host, pid, token = parts
    if not host or not pid.isdigit() or not pid.isascii() or not token:
        return None
    return kind, host, int(pid)


def temp_sibling(path: Path, kind: str = "tmp") -> Path:
    """A fresh hidden name next to ``path`` (same filesystem, so rename is atomic)."""
    return path.parent / temp_name(path.name, kind, socket.gethostname(), os.getpid(), os.urandom(4).hex())


def remove_stale_temps(path: Path) -> None:
    """Delete temporaries of writers of ``path`` that were killed on this host."""
    host = host_tag()
    try:
        entries = list(os.scandir(path.parent))
    except OSError:
        return
    for entry in entries:
        parsed = parse_temp_name(entry.name, path.name)
        if parsed is None or parsed[1] != host:
            continue
        if not is_dead(parsed[2]):
            continue
        remove(Path(entry.path))


def is_dead(pid: int) -> bool:
    """True when no process ``pid`` runs on this host (one we may not signal is alive)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except (PermissionError, OverflowError):
        return False
    return False


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
    do not collide with the locks HDF5 itself takes on the file. Directories take ``flock``.
    Every writer takes it: appenders (``a``) for as long as they are open, and ``w`` (and
    ``imgbench convert --overwrite``) on the store it replaces, from open to publish.
    """

    def __init__(self, target: Path, what: str):
        is_dir = target.is_dir()
        self._fd: int | None = os.open(target, (os.O_RDONLY | os.O_DIRECTORY) if is_dir else os.O_RDWR)
        try:
            ofd = getattr(fcntl, "F_OFD_SETLK", None)
            if is_dir or ofd is None:
                fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            else:
                # struct flock {l_type, l_whence, l_start, l_len, l_pid}, native layout;
                # l_len 0 = the whole file, l_pid must be 0 for OFD locks.
                fcntl.fcntl(self._fd, ofd, struct.pack("hhqqi", fcntl.F_WRLCK, os.SEEK_SET, 0, 0, 0))
        except OSError as exc:
            fd, self._fd = self._fd, None
            try:
                if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                    raise StoreLockedError(
                        f"another process is writing to {what} {target} ({lock_holder(os.fstat(fd))}); "
                        "wait for it to finish or stop it (one writer at a time)"
                    ) from None
            finally:
                os.close(fd)
            raise
        st = os.fstat(self._fd)
        self.inode = st.st_ino
        self._identity = (st.st_dev, st.st_ino)

    def holds(self, path: Path) -> bool:
        """True while ``path`` still names the store this lock was taken on (not one swapped in since)."""
        try:
            st = os.stat(path)
        except OSError:
            return False
        return (st.st_dev, st.st_ino) == self._identity

    def close(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None  # forgotten first: a Ctrl-C between must not close it twice
            os.close(fd)


def lock_holder(st: os.stat_result) -> str:
    """Who holds the lock on the file ``st`` describes: "pid N on host H", from ``/proc/locks`` (``flock``)
    or the holders' ``/proc/PID/fdinfo`` (OFD locks record no pid). Asked only when a lock is refused."""
    key = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino} "
    host = socket.gethostname()
    try:
        with open("/proc/locks") as f:
            lines = [line for line in f if key in line and " WRITE " in line]
    except OSError:
        lines = []
    for line in lines:
        fields = line.split()
        pid = fields[4] if len(fields) > 4 and fields[1] in ("FLOCK", "POSIX", "OFDLCK") else "-1"
        if pid.isdigit():
            return f"pid {pid} on host {host}"
    if lines:  # an OFD lock: find the process whose descriptor carries it
        with contextlib.suppress(OSError):
            for proc in os.scandir("/proc"):
                if not proc.name.isdigit():
                    continue
                with contextlib.suppress(OSError):
                    for fdinfo in os.scandir(f"/proc/{proc.name}/fdinfo"):
                        with contextlib.suppress(OSError), open(fdinfo.path) as f:
                            if any(line.startswith("lock:") and key in line and " WRITE " in line for line in f):
                                return f"pid {proc.name} on host {host}"
    return "its holder is not visible from this host: another machine sharing the file system, or another user"


def lock_store(path: Path, what: str) -> WriterLock:
    """The writer lock on the store at ``path``, checked to be on what ``path`` names once taken
    (a store swapped in between opening and locking is locked again, not written unlocked)."""
    for _ in range(20):
        lock = WriterLock(path, what)
        if lock.holds(path):
            return lock
        lock.close()
    raise StoreLockedError(f"{path} kept being replaced while it was being opened; try again")


def lock_replaced(path: Path, what: str) -> WriterLock | None:
    """For mode ``w``: the writer lock on the store at ``path`` that is about to be replaced, so that no
    appender (or other writer) loses its work to the replacement: StoreLockedError naming the holder.
    None when nothing is there, or nothing an imgbench writer could lock (a file this user may not write)."""
    if not os.path.lexists(path) or os.path.islink(path):
        return None
    try:
        return lock_store(path, what)
    except (PermissionError, FileNotFoundError, NotADirectoryError, IsADirectoryError):
        return None


def lock_for_publish(path: Path, lock: WriterLock | None, what: str) -> WriterLock | None:
    """Before ``w`` publishes: the lock on what ``path`` names *now* (it may have changed since the
    writer opened), taken again if needed; StoreLockedError when another writer holds it."""
    if lock is not None and lock.holds(path):
        return lock
    if lock is not None:
        lock.close()
    return lock_replaced(path, what)


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

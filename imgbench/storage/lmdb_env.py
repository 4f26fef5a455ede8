"""LMDB environments of the lmdb backend: checked before LMDB opens them, and shared within a process.

LMDB's locks are per process, so one environment must be opened once per
process (py-lmdb enforces it): readers and an appender in the same process
share it, counted. A forked child closes what it inherited, which LMDB allows
(mdb_env_close clears only reader slots of the calling pid, and unmaps the
child's own mapping) and which frees py-lmdb's "already open" guard so the
child can open its own environment.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import lmdb

from imgbench.core.errors import CorruptStoreError, ImgbenchError

_SHARED: dict[tuple, list] = {}  # file identity -> [env, users, writable]


def _forget_shared_after_fork() -> None:
    for env, _users, _writable in _SHARED.values():
        try:
            env.close()
        except Exception:
            pass
    _SHARED.clear()


os.register_at_fork(after_in_child=_forget_shared_after_fork)


def _identity(target: Path) -> tuple:
    from lmdb import _envid

    return _envid.env_keys(str(target), True)


def check_files(target: Path) -> None:
    """Refuse an environment whose data.mdb or lock.mdb is a symlink or not a regular file.

    LMDB opens both read-write (lock.mdb with O_CREAT) and follows symlinks,
    and the first user of an environment truncates and rewrites lock.mdb as its
    reader table: a store whose lock.mdb points elsewhere would make a plain
    read overwrite a file outside the store. A FIFO would block the open. A
    lock.mdb with other hard links is refused for the same reason. (A swap
    between this check and the open remains possible; ``lock=False`` never
    opens lock.mdb.)
    """
    for name in ("data.mdb", "lock.mdb"):
        try:
            st = os.lstat(target / name)
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise ImgbenchError(f"cannot inspect {target / name}: {exc}") from None
        if stat.S_ISLNK(st.st_mode):
            raise CorruptStoreError(
                f"{target / name} is a symlink; imgbench does not follow links out of an LMDB store"
            )
        if not stat.S_ISREG(st.st_mode):
            raise CorruptStoreError(f"{target / name} is not a regular file")
        if name == "lock.mdb" and st.st_nlink > 1:
            raise CorruptStoreError(
                f"{target / name} has {st.st_nlink} hard links; LMDB rewrites its lock file, so a shared "
                "one would clobber another file (delete lock.mdb while no process uses the store)"
            )


def acquire(target: Path, readonly: bool, **kw: Any) -> lmdb.Environment:
    """This process's environment of ``target``: the one already open (counted once more), else a new one.

    ``kw`` go to :func:`lmdb.open` for a new environment (``lock``, ``readahead``, ``max_readers``,
    ``create``, ``map_size``, ``sync``, ...). Give it back with :func:`release`."""
    check_files(target)
    ident = _identity(target)
    entry = _SHARED.get(ident) if ident else None
    if entry is not None:
        if not readonly and not entry[2]:
            raise ImgbenchError(
                f"{target} is open read-only elsewhere in this process; close those readers before appending"
            )
        entry[1] += 1
        return entry[0]
    env = _open(target, readonly, **kw)
    _SHARED[_identity(target)] = [env, 1, not readonly]
    return env


def release(env: lmdb.Environment | None) -> None:
    """Give back an environment from :func:`acquire`; the last user closes it."""
    for ident, entry in list(_SHARED.items()):
        if entry[0] is env:
            entry[1] -= 1
            if entry[1] <= 0:
                del _SHARED[ident]
                env.close()
            return
    if env is not None:
        env.close()


def _open(target: Path, readonly: bool, create: bool = False, **kw: Any) -> lmdb.Environment:
    try:
        return lmdb.open(str(target), readonly=readonly, subdir=True, create=create, max_dbs=2, **kw)
    except lmdb.InvalidError as exc:
        raise CorruptStoreError(f"{target} is not a valid LMDB environment: {exc}") from None
    except lmdb.VersionMismatchError as exc:
        raise CorruptStoreError(f"{target}: LMDB version mismatch: {exc}") from None
    except (lmdb.ReadonlyError, PermissionError) as exc:
        raise ImgbenchError(
            f"cannot open {target}: {exc}; on read-only media pass lock=False (no writer may run meanwhile)",
            cli=f"cannot open {target}: {exc}; on read-only media open it from Python with "
            "imgbench.open(path, lock=False) (no writer may run meanwhile), or copy it to writable storage",
        ) from None
    except lmdb.Error as exc:
        raise CorruptStoreError(f"cannot open {target} as LMDB: {exc}") from None

"""Plumbing for reading stores from object stores and other fsspec filesystems (``s3://bucket/prefix``).

Only reading: a store becomes visible when it is complete because a writer
renames it into place, and an object store has no rename (and no file locks for
appenders), so ``w``/``x``/``a`` on a URL are refused. Write locally, upload
(``aws s3 sync``, ``s3fs.S3FileSystem().put(local, "bucket/x.zarr", recursive=True)``),
then read the URL.

Backends opt in per module: a backend class names a reader class in
``remote_reader()`` (zarr, tar, hdf5) and recognises its stores remotely in
``detect_remote()``; the others refuse with the reason they cannot be read
remotely (``remote_refusal``). Nothing here imports fsspec or s3fs until a URL
is opened, so the core install stays small (``pip install 'imgbench[s3]'``).
The dispatcher that picks a reader for a URL is :func:`imgbench.api.open_url`.

- :func:`is_url` -- is this path a URL (``scheme://...``)?
- :func:`filesystem` -- ``(fsspec filesystem, path within it)`` for a URL, the
  endpoint taken from ``storage_options`` or ``AWS_ENDPOINT_URL``;
- :func:`probe` -- what is at a URL (one listing), StoreNotFoundError if nothing;
- :func:`explain` -- a network/credential failure as one-line :class:`RemoteAccessError`;
- :func:`deadline` -- the seconds each request to the server may take (``remote_timeout=``,
  ``IMGBENCH_REMOTE_TIMEOUT``, default :data:`DEFAULT_TIMEOUT`);
- :class:`RemoteStore` -- the mixin of every backend's URL reader.

Every ``s3://`` request -- a listing, a HEAD, one GET of an object or a byte
range -- finishes within the deadline, retries included, or raises
RemoteAccessError naming the URL, the deadline and how to raise it
(:mod:`imgbench.core.s3deadline`); a server that accepts connections and never
answers cannot hang a reader.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from imgbench.core.errors import (
    CorruptStoreError,
    ImgbenchError,
    RemoteAccessError,
    StoreNotFoundError,
    UnsupportedError,
)

if TYPE_CHECKING:
    pass

T = TypeVar("T")

_URL_RE = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]+)://")
#: the package each protocol needs, for the "pip install" hint
_PACKAGES = {"s3": "s3fs", "s3a": "s3fs", "gs": "gcsfs", "gcs": "gcsfs", "az": "adlfs", "abfs": "adlfs"}
_INSTALL = "pip install 'imgbench[s3]'"
#: exception classes (by name: botocore/aiohttp are not imported here) meaning "cannot reach the server"
_UNREACHABLE = frozenset({
    "EndpointConnectionError", "ConnectionError", "ConnectTimeoutError", "ReadTimeoutError", "ClientConnectorError",
    "ServerDisconnectedError", "ClientOSError", "TimeoutError", "FSTimeoutError", "ConnectionRefusedError",
})
#: ... and "the server refused our credentials"
_DENIED = frozenset({"NoCredentialsError", "PartialCredentialsError", "PermissionError", "CredentialRetrievalError"})
#: seconds each request to an object store may take, retries included, unless remote_timeout= or the variable says
DEFAULT_TIMEOUT = 60.0
#: the environment variable that sets the deadline (seconds) where no remote_timeout= is given
TIMEOUT_ENV = "IMGBENCH_REMOTE_TIMEOUT"
_RAISE = f"raise it with remote_timeout= (or {TIMEOUT_ENV}, or --remote-timeout)"
#: modules whose exceptions are remote-access failures, whatever their class
_REMOTE_MODULES = ("botocore", "aiobotocore", "aiohttp", "s3fs", "fsspec", "gcsfs", "adlfs")


class URL(str):
    """A remote store's location: the URL as given, joined with ``/`` like a ``Path``.

    Store code writes messages such as ``f"{self.path / 'zarr.json'} is damaged"``;
    a URL keeps its ``//`` where ``Path`` would collapse it.
    """

    def __truediv__(self, other: str) -> URL:
        return URL(self.rstrip("/") + "/" + str(other))

    @property
    def name(self) -> str:
        return self.rstrip("/").rpartition("/")[2]

    @property
    def suffix(self) -> str:
        stem, dot, ext = self.name.rpartition(".")
        return f".{ext}" if dot and stem else ""


def is_url(path: Any) -> bool:
    """True for a ``scheme://...`` string (``s3://bucket/x.zarr``); local paths and ``file://`` are not URLs."""
    if not isinstance(path, str):
        return False
    m = _URL_RE.match(path)
    return m is not None and m.group(1).lower() != "file"


def local_destination(path: Any, role: str = "destination") -> Path:
    """``path`` as a local Path for writing; a one-line UnsupportedError for a URL, which would otherwise
    become a local folder named ``s3:/bucket/x`` while the user believes the data is in the bucket."""
    if is_url(path):
        raise UnsupportedError(
            f"the {role} {path} is a URL: imgbench writes only to local paths (object stores are read-only "
            "here); write to a local path, upload it (aws s3 sync, or s3fs put(recursive=True)), then open the URL"
        )
    return Path(os.fspath(local_path(path))).expanduser()


def local_path(path: Any) -> Any:
    """``file:///x`` as ``/x``; anything else unchanged (so ``file://`` URLs open like local paths)."""
    if isinstance(path, str) and path[:7].lower() == "file://":
        return path[7:]
    return path


def scheme(url: str) -> str:
    m = _URL_RE.match(url)
    return m.group(1).lower() if m else ""


def deadline(timeout: Any = None) -> float:
    """The seconds each request to an object store may take: ``timeout`` if given, else the
    ``IMGBENCH_REMOTE_TIMEOUT`` variable, else :data:`DEFAULT_TIMEOUT` (60 s)."""
    source = "remote_timeout"
    if timeout is None:
        timeout, source = os.environ.get(TIMEOUT_ENV) or None, TIMEOUT_ENV
        if timeout is None:
            return DEFAULT_TIMEOUT
        try:
            timeout = float(timeout)
        except ValueError:
            raise UnsupportedError(f"{TIMEOUT_ENV} must be a number of seconds, got {timeout!r}") from None
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 < timeout < float("inf"):
        raise UnsupportedError(f"{source} must be a positive number of seconds, got {timeout!r}")
    return float(timeout)


def _s3_options(options: dict[str, Any]) -> dict[str, Any]:
    """s3fs options with the endpoint of ``AWS_ENDPOINT_URL_S3``/``AWS_ENDPOINT_URL`` unless one is given.

    Passed explicitly: not every botocore version reads the variable itself.
    """
    client = options.get("client_kwargs") or {}
    if options.get("endpoint_url") or client.get("endpoint_url"):
        return options
    env = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    return {**options, "endpoint_url": env} if env else options


def _bounded_options(options: dict[str, Any], timeout: float) -> dict[str, Any]:
    """botocore timeouts and retries that fit in the deadline, unless ``storage_options`` set their own:
    connect and read timeouts of at most the deadline, and one botocore attempt (s3fs retries too) unless
    ``AWS_MAX_ATTEMPTS`` or ``config_kwargs["retries"]`` says otherwise."""
    config = dict(options.get("config_kwargs") or {})
    config.setdefault("connect_timeout", min(5.0, timeout))
    config.setdefault("read_timeout", min(15.0, timeout))
    if "retries" not in config and not os.environ.get("AWS_MAX_ATTEMPTS"):
        config["retries"] = {"max_attempts": 2, "mode": "standard"}
    return {**options, "config_kwargs": config}


def endpoint(url: str, storage_options: Mapping[str, Any] | None = None) -> str:
    """The server a URL is read from, for messages."""
    opts = dict(storage_options or {})
    if scheme(url) in ("s3", "s3a"):
        opts = _s3_options(opts)
        return opts.get("endpoint_url") or (opts.get("client_kwargs") or {}).get("endpoint_url") or "AWS S3"
    return f"the {scheme(url)}:// server"


def filesystem(
    url: str, storage_options: Mapping[str, Any] | None = None, *, asynchronous: bool = False,
    timeout: float | None = None,
) -> tuple[Any, str]:
    """The fsspec filesystem serving ``url`` and the path of ``url`` within it.

    ``storage_options`` go to the filesystem (s3fs: ``endpoint_url``, ``key``,
    ``secret``, ``anon``, ``client_kwargs``, ...). For ``s3://`` the endpoint is
    ``storage_options["endpoint_url"]``, else the ``AWS_ENDPOINT_URL_S3`` or
    ``AWS_ENDPOINT_URL`` environment variable, else AWS; credentials come from
    the usual AWS variables and files (``AWS_ACCESS_KEY_ID``,
    ``AWS_SECRET_ACCESS_KEY``, ``AWS_PROFILE``, ...). fsspec caches instances
    per process and makes fresh ones after ``fork``, so call this again in a
    child rather than keeping the parent's. ``asynchronous=True`` gives an
    instance for an event loop (zarr's). For ``s3://`` every request finishes
    within ``timeout`` seconds (:func:`deadline`) or raises.
    """
    if storage_options is not None and not isinstance(storage_options, Mapping):
        raise UnsupportedError(f"storage_options must be a dict, got {type(storage_options).__name__}")
    proto = scheme(url)
    package = _PACKAGES.get(proto)
    install = _INSTALL if package == "s3fs" else f"pip install fsspec {package or ''}".rstrip()
    try:
        import fsspec.core
    except ImportError:
        raise UnsupportedError(f"reading {url} needs fsspec and {package or 'its fsspec backend'}: {install}") from None
    opts = dict(storage_options or {})
    seconds = deadline(timeout)
    if proto in ("s3", "s3a"):
        opts = _bounded_options(_s3_options(opts), seconds)
    if asynchronous:
        opts["asynchronous"] = True
    try:
        if proto in ("s3", "s3a"):
            from imgbench.core.s3deadline import DeadlineS3FileSystem

            cls = DeadlineS3FileSystem
            return cls(**{**cls._get_kwargs_from_urls(url), **opts}, remote_timeout=seconds), cls._strip_protocol(url)
        return fsspec.core.url_to_fs(url, **opts)
    except ImportError:
        raise UnsupportedError(
            f"reading {proto}:// URLs needs {package or 'its fsspec backend'}: {install}"
        ) from None
    except ValueError as exc:
        raise UnsupportedError(f"cannot read {url}: {_one_line(exc)}") from None
    except TypeError as exc:
        raise UnsupportedError(f"storage_options for {url} are not accepted: {_one_line(exc)}") from None


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."


def is_remote_failure(exc: BaseException) -> bool:
    """True when ``exc`` is a network, credential or server failure (not a missing key, not a bug)."""
    if isinstance(exc, (ImgbenchError, FileNotFoundError)):
        return False
    names = {c.__name__ for c in type(exc).__mro__}
    if "DeadlineExceeded" in names:
        return True
    return (
        bool(names & (_UNREACHABLE | _DENIED))
        or isinstance(exc, OSError)
        or type(exc).__module__.split(".")[0] in _REMOTE_MODULES
    )


def explain(exc: BaseException, url: str, storage_options: Mapping[str, Any] | None = None) -> RemoteAccessError:
    """A network, credential or server failure reading ``url`` as a one-line error naming the fix."""
    where = endpoint(url, storage_options)
    names = {c.__name__ for c in type(exc).__mro__}
    detail = f"{type(exc).__name__}: {_one_line(exc)}"
    if "DeadlineExceeded" in names:
        return RemoteAccessError(
            f"{where} did not answer within the deadline of {exc.timeout:g} s reading {url} (the server is stalled "
            f"or too slow); {_RAISE}"
        )
    creds = ("set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE, or storage_options key=/secret=; "
             "anon=True for a public bucket)")
    if names & {"NoCredentialsError", "PartialCredentialsError", "CredentialRetrievalError"}:
        return RemoteAccessError(f"no credentials to read {url} from {where} ({detail}); {creds}")
    if names & _DENIED or "AccessDenied" in str(exc) or "InvalidAccessKeyId" in str(exc):
        return RemoteAccessError(f"{where} refused access to {url} ({detail}); {creds}")
    if names & _UNREACHABLE:
        return RemoteAccessError(
            f"cannot reach {where} to read {url} ({detail}); set AWS_ENDPOINT_URL (or storage_options "
            "endpoint_url=) to your S3-compatible server and check that it is running"
        )
    return RemoteAccessError(
        f"reading {url} from {where} failed ({detail}); check AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID and "
        "AWS_SECRET_ACCESS_KEY (or storage_options)"
    )


# ------------------------------------------------------------------ probing
@dataclass
class Probe:
    """What is at a URL, for backends' ``detect_remote``: one listing, files read on demand."""

    fs: Any
    path: str
    url: str
    #: names directly under ``path`` when it is a directory (prefix), None when it is one object
    names: frozenset[str] | None

    def read(self, name: str | None, limit: int) -> bytes | None:
        """The first ``limit`` bytes of ``name`` under the path (the object itself for None); None if absent."""
        if name is not None and (self.names is None or name not in self.names):
            return None
        target = self.path if name is None else f"{self.path.rstrip('/')}/{name}"
        try:
            return self.fs.cat_file(target, start=0, end=limit)
        except (FileNotFoundError, IsADirectoryError):
            return None


def probe(url: str, storage_options: Mapping[str, Any] | None = None, timeout: float | None = None) -> Probe:
    """What is at ``url``, listed afresh (an upload since the last listing is seen).

    StoreNotFoundError when there is no such object or prefix; a network or
    credential failure as :func:`explain` says; each request within ``timeout`` (:func:`deadline`).
    """
    fs, path = filesystem(url, storage_options, timeout=timeout)
    try:
        fs.invalidate_cache(path)  # a listing cached earlier in this process may predate an upload
        info = fs.info(path)
        names = None
        if info.get("type") == "directory":
            names = frozenset(p.rstrip("/").rpartition("/")[2] for p in fs.ls(path, detail=False))
    except FileNotFoundError:
        raise StoreNotFoundError(f"no store at {url}: {endpoint(url, storage_options)} has no such object or prefix "
                                 "(upload the store there first)") from None
    except Exception as exc:
        if is_remote_failure(exc):
            raise explain(exc, url, storage_options) from None
        raise
    return Probe(fs, path, url, names)


def usage(url: str, storage_options: Mapping[str, Any] | None = None, timeout: float | None = None
          ) -> dict[str, int]:
    """``disk_usage`` of a remote store: bytes of its objects (``allocated`` = ``apparent``) and their count."""
    fs, path = filesystem(url, storage_options, timeout=timeout)
    try:
        info = fs.info(path)
        sizes = (
            [int(i.get("size") or 0) for i in fs.find(path, detail=True).values()]
            if info.get("type") == "directory" else [int(info.get("size") or 0)]
        )
    except FileNotFoundError:
        raise StoreNotFoundError(f"no object or prefix at {url}") from None
    except Exception as exc:
        if is_remote_failure(exc):
            raise explain(exc, url, storage_options) from None
        raise
    return {"apparent": sum(sizes), "allocated": sum(sizes), "files": len(sizes)}


# ------------------------------------------------------------------ readers
class RemoteStore:
    """Mixin for a backend's URL reader: ``class RemoteZarrStore(RemoteStore, ZarrStore)``.

    Adds the ``storage_options`` and ``remote_timeout`` options, keeps ``path`` a :class:`URL` across
    pickling, and gives the backend its filesystem (``_remote_fs``, fetched
    again in a forked or unpickled child, whose event loop and connections are
    new) and error mapping (``_remote_call``). The backend overrides only the
    hooks that move bytes; its parsing and validation are the local reader's.
    """

    remote: ClassVar[bool] = True
    path: URL
    options: dict[str, Any]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.option_defaults = {**cls.option_defaults, "storage_options": None, "remote_timeout": None}

    def _check_options(self) -> None:
        opts = self.options["storage_options"]
        if opts is not None and not isinstance(opts, Mapping):
            raise UnsupportedError(f"storage_options must be a dict, got {type(opts).__name__}")
        deadline(self.options["remote_timeout"])
        super()._check_options()  # type: ignore[misc]

    def _remote_fs(self, asynchronous: bool = False) -> tuple[Any, str]:
        return filesystem(self.path, self.options["storage_options"], asynchronous=asynchronous,
                          timeout=self.options["remote_timeout"])

    def _remote_key(self, root: str, name: str) -> str:
        return f"{root.rstrip('/')}/{name}"

    def _remote_error(self, what: str, exc: BaseException) -> BaseException:
        """A failed remote read of ``what`` as the error to raise: a missing object is damage
        (CorruptStoreError), a network or credential failure the one-line error of :func:`explain`."""
        if isinstance(exc, FileNotFoundError):
            return CorruptStoreError(f"{self.path}: {what} is missing (the store is damaged or incomplete)")
        if is_remote_failure(exc):
            return explain(exc, self.path, self.options["storage_options"])
        return exc

    def _remote_call(self, what: str, fn: Callable[[], T]) -> T:
        """``fn()``, its remote failures raised as :meth:`_remote_error` says."""
        try:
            return fn()
        except Exception as exc:
            err = self._remote_error(what, exc)
            if err is exc:
                raise
            raise err from None

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)  # type: ignore[misc]
        self.path = URL(state["path"])

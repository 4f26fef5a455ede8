"""Public name of the object-store plumbing (:mod:`imgbench.core.transport`) and of
:func:`imgbench.api.open_url`, where both lived before the layered package."""

from imgbench.api import open_url
from imgbench.core.transport import (
    URL,
    Probe,
    RemoteAccessError,
    RemoteStore,
    endpoint,
    explain,
    filesystem,
    is_remote_failure,
    is_url,
    local_path,
    probe,
    scheme,
    usage,
)

__all__ = ["URL", "Probe", "RemoteAccessError", "RemoteStore", "endpoint", "explain", "filesystem",
           "is_remote_failure", "is_url", "local_path", "open_url", "probe", "scheme", "usage"]

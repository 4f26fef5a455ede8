"""A store's user metadata (``store.attrs``): a mapping of JSON values persisted with the store."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator, Mapping, MutableMapping
from typing import Any

from imgbench.core.errors import UnsupportedError


class Attrs(MutableMapping):
    """JSON-serialisable metadata persisted with the store.

    Values are stored as their JSON round trip (tuples come back as lists) and
    returned as copies, so changing a returned list does not change the store:
    assign it again.
    """

    def __init__(self, data: Mapping[str, Any] | None, writable: bool):
        self._data: dict[str, Any] = dict(data or {})
        self._writable = writable
        self.dirty = False

    def _check_writable(self) -> None:
        if not self._writable:
            raise UnsupportedError("store is open read-only; reopen it with mode='a' to change attrs")

    def __getitem__(self, key: str) -> Any:
        return copy.deepcopy(self._data[key])

    def __setitem__(self, key: str, value: Any) -> None:
        self._check_writable()
        if not isinstance(key, str):
            raise UnsupportedError(f"attrs keys must be strings, got {key!r}")
        try:
            value = json.loads(json.dumps(value, allow_nan=False))
        except (TypeError, ValueError) as exc:
            raise UnsupportedError(
                f"attrs[{key!r}] must be JSON-serialisable (str, int, float, bool, None, list, dict): {exc}"
            ) from None
        self._data[key] = value
        self.dirty = True

    def __delitem__(self, key: str) -> None:
        self._check_writable()
        del self._data[key]
        self.dirty = True

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._data))

    def __len__(self) -> int:
        return len(self._data)

    def __repr__(self) -> str:
        return f"Attrs({self._data!r})"

    def to_dict(self) -> dict[str, Any]:
        return copy.deepcopy(self._data)

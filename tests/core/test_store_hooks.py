"""core.store: the hooks a backend must implement are abstract, so a backend missing one fails at once."""

from __future__ import annotations

import inspect

import numpy as np
import pytest

import imgbench
from imgbench import sharded
from imgbench.core.store import Store
from imgbench.storage import registry

MUST_IMPLEMENT = {"detect", "_open_reader", "_open_appender", "_create", "_write", "_flush", "_close_writer",
                  "_close_reader", "_reader_handles", "_get", "_get_labels"}


def test_the_abstract_hooks_are_the_ones_without_a_default():
    assert set(Store.__abstractmethods__) == MUST_IMPLEMENT


def _classes() -> list[type]:
    out = [sharded.ShardedStore, sharded.RemoteShardedStore]
    for name in registry.backends():
        cls = registry.get(name)
        out.append(cls)
        try:
            out.append(cls.remote_reader())
        except imgbench.UnsupportedError:
            pass
    return out


@pytest.mark.parametrize("cls", _classes(), ids=lambda c: c.__qualname__)
def test_every_store_class_implements_every_hook(cls):
    assert not inspect.isabstract(cls), sorted(cls.__abstractmethods__)


class _Detecting(Store):
    name = "half"
    compressions = ("none",)

    @classmethod
    def detect(cls, path):
        return False


def test_a_backend_missing_a_hook_cannot_be_instantiated(tmp_path):
    with pytest.raises(TypeError, match="abstract") as info:
        _Detecting(tmp_path / "x", "w", None, None, {})
    for hook in MUST_IMPLEMENT - {"detect"}:
        assert hook in str(info.value)
    assert not (tmp_path / "x").exists() and not list(tmp_path.iterdir()), "nothing was written"


def test_a_checksum_backend_must_read_its_checksums():
    with pytest.raises(TypeError, match="sets stores_checksums but does not implement _get_checksums"):
        class _Checksummed(_Detecting):
            stores_checksums = True


def test_a_complete_minimal_backend_works(tmp_path):
    """The contract is the hooks: a backend keeping images in memory passes through the whole base class."""
    memory: dict[str, dict] = {}  # the one store's images and metadata; its directory only marks it

    class Memory(Store):
        name, compressions = "memory", ("none",)

        @classmethod
        def detect(cls, path):
            return path.is_dir() and "store" in memory

        def _create(self, target):
            target.mkdir()
            self._box = memory.setdefault("store", {"images": [], "labels": []})

        def _open_reader(self):
            self._box = memory["store"]
            return self._box["meta"]

        def _open_appender(self, target):
            raise NotImplementedError

        def _write(self, images, labels, start):
            self._box["images"][start:] = list(images)
            if labels is not None:
                self._box["labels"][start:] = list(labels)

        def _flush(self, meta):
            self._box["meta"] = meta

        def _close_writer(self, commit):
            pass

        def _close_reader(self):
            pass

        def _reader_handles(self):
            return None

        def _get(self, index):
            return self._box["images"][index]

        def _get_labels(self):
            return np.asarray(self._box["labels"], np.int64)

    path = tmp_path / "m"
    s = Memory(path, "w", None, None, {})
    s.extend(np.zeros((3, 2, 2), np.uint8), labels=[1, 2, 3])
    s.close()
    assert path.is_dir() and Memory.detect(path)
    r = Memory(path, "r", None, None, {})
    assert len(r) == 3 and r.labels.tolist() == [1, 2, 3] and r.read_many().shape == (3, 2, 2)

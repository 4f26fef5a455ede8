"""Names of temporaries: whatever the host is called, the next writer finds a dead writer's leftovers.

A temporary is named ``.{store}.imgbench-{kind}-{host}-{pid}-{token}`` and parsed from the right,
so a host name with dashes (EC2's ``ip-10-0-0-1``) or any other characters round-trips (issue 20).
The same with real killed writers under a real host name with dashes:
``tests/contract/test_hostnames.py``.
"""

from __future__ import annotations

import os
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from imgbench.core import atomic

STORE_NAMES = st.text(st.characters(blacklist_characters="/\0", blacklist_categories=("Cs",)), min_size=1,
                      max_size=40).filter(lambda n: n not in (".", ".."))


@given(store=STORE_NAMES, kind=st.sampled_from(["tmp", "old"]), host=st.text(max_size=80),
       pid=st.integers(1, 2**31), token=st.text("0123456789abcdef", min_size=8, max_size=8))
def test_temporary_names_round_trip_for_any_host_name(store, kind, host, pid, token):
    name = atomic.temp_name(store, kind, host, pid, token)
    assert "/" not in name and "\0" not in name
    tag = atomic.host_tag(host)
    assert tag and len(tag) <= 16 and all(c.isascii() and (c.isalnum() or c in "-_") for c in tag)
    assert atomic.parse_temp_name(name, store) == (kind, tag, pid)
    assert atomic.host_tag(host) == atomic.host_tag(f"{host}.example.com") or "." in host


def test_names_written_before_the_fix_parse_too():
    """Temporaries of an older imgbench on a host named with dashes (four fields became seven)."""
    assert atomic.parse_temp_name(".s.lmdb.imgbench-tmp-ip-10-0-0-1-4242-0a1b2c3d", "s.lmdb") == (
        "tmp", "ip-10-0-0-1", 4242)
    for other in (".s.lmdb.imgbench-tmp-4242-0a1b2c3d", ".s.lmdb.imgbench-tmp-host-x-0a1b2c3d", "s.lmdb",
                  ".t.lmdb.imgbench-tmp-host-4242-0a1b2c3d", ".s.lmdb.1234.part"):
        assert atomic.parse_temp_name(other, "s.lmdb") is None, other


def test_stale_temporaries_of_a_dead_writer_on_a_dashed_host_are_removed(tmp_path, monkeypatch):
    """The pid of a writer that is gone, on this host under a dashed name: removed; a live one's: kept."""
    monkeypatch.setattr(atomic.socket, "gethostname", lambda: "ip-10-0-0-1.ec2.internal")
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)  # a pid no process has now
    dead = tmp_path / atomic.temp_name("s.zarr", "tmp", "ip-10-0-0-1", pid, "0a1b2c3d")
    alive = tmp_path / atomic.temp_name("s.zarr", "tmp", "ip-10-0-0-1", os.getpid(), "0a1b2c3e")
    elsewhere = tmp_path / atomic.temp_name("s.zarr", "tmp", "ip-10-0-0-2", pid, "0a1b2c3f")
    for p in (dead, alive, elsewhere):
        p.mkdir()
    atomic.remove_stale_temps(Path(tmp_path / "s.zarr"))
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([alive.name, elsewhere.name])

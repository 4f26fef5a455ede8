"""Every ```python block of README.md and of the docs site (docs/**/*.md) runs (issue 14).

One test per page. A page's blocks run in file order in one fresh interpreter, in a fresh
temporary working directory, sharing one namespace: a later block may use names an earlier
one defined, as a reader following the page would. Each block is compiled under its page and
line (``docs/guide/api.md:42``), so a traceback names the line of the docs that failed.

Format pages show how to read a store without imgbench: the store a page names (``ct.h5``,
``train.lmdb``, ...) is made first, with imgbench, by that page's entry in ``GIVEN`` below,
which also defines the names a page's text says the reader has (``images``, ``labels``, a
store's ``pixels``/``label``/``checksums``). Some pages' ``CHECK`` then asserts that the
example computed what its text says.

A block is not run when
- an HTML comment ``<!-- no-run: REASON -->`` comes right before its fence (REASON required;
  the test of this module checks that every such comment gives one), or
- it reads from an object store (an ``s3://`` URL): that needs network and credentials.
torch and dask are installed for the tests: their blocks run.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
TIMEOUT = 240

FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>```+|~~~+)\s*(?P<info>[^\n`]*)$")
NO_RUN = re.compile(r"<!--\s*no-run:(?P<reason>.*?)-->", re.DOTALL)


@dataclass
class Block:
    page: Path
    line: int  # 1-based line of the first code line
    code: str
    skip: str | None  # why it is not run


def blocks(page: Path) -> list[Block]:
    """The ```python blocks of ``page``, in order, each with why it is skipped (None: it runs)."""
    lines = page.read_text(encoding="utf-8").splitlines()
    found: list[Block] = []
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, fence, info = m.group("indent"), m.group("fence"), m.group("info").strip()
        start = i + 1
        j = start
        while j < len(lines) and not lines[j].strip().startswith(fence):
            j += 1
        if info.split()[:1] == ["python"]:
            body = [ln[len(indent):] if ln.startswith(indent) else ln.lstrip() for ln in lines[start:j]]
            code = "\n".join(body) + "\n"
            found.append(Block(page, start + 1, code, _skip_reason(lines, i, code)))
        i = j + 1
    return found


def _skip_reason(lines: list[str], fence_line: int, code: str) -> str | None:
    k = fence_line - 1
    while k >= 0 and not lines[k].strip():
        k -= 1
    if k >= 0 and lines[k].strip().endswith("-->"):
        # The comment may span lines: gather back to its opening.
        end = k
        while k >= 0 and "<!--" not in lines[k]:
            k -= 1
        m = NO_RUN.search("\n".join(lines[k:end + 1]))
        if m:
            return "marked no-run: " + " ".join(m.group("reason").split())
    if "s3://" in code:
        return "reads from an object store (s3://): needs network and credentials"
    return None


def _rel(page: Path) -> str:
    return page.relative_to(REPO).as_posix()


PAGES_WITH_CODE = [p for p in PAGES if blocks(p)]

_RNG = "import imgbench, numpy as np\nrng = np.random.default_rng(0)\n"
_RGB = "rgb = rng.integers(0, 256, (48, 16, 20, 3), dtype=np.uint8)\nclasses = np.arange(48) % 3\n"
#: what each page assumes the reader already has (run before its blocks, in the same namespace)
GIVEN = {
    "docs/formats/disk.md": _RNG + _RGB + "with imgbench.open('photos', 'w', backend='disk') as s:\n"
                            "    s.extend(rgb, labels=classes)\n",
    "docs/formats/hdf5.md": _RNG + "ct = rng.integers(0, 4096, (6, 32, 32), dtype=np.uint16)\n"
                            "with imgbench.open('ct.h5', 'w', compression='zstd') as s:\n"
                            "    s.extend(ct, labels=np.arange(6))\n",
    "docs/formats/lmdb.md": _RNG + _RGB + "with imgbench.open('train.lmdb', 'w', compression='zstd') as s:\n"
                            "    s.extend(rgb, labels=classes)\n",
    "docs/formats/npy.md": _RNG + _RGB + "with imgbench.open('raw', 'w', backend='npy') as s:\n"
                           "    s.extend(rgb, labels=classes)\n",
    "docs/formats/tar.md": _RNG + _RGB + "with imgbench.open('train', 'w', backend='tar', compression='png') as s:\n"
                           "    s.extend(rgb, labels=classes)\n",
    "docs/formats/zarr.md": _RNG + "with imgbench.open('ct.zarr', 'w') as s:\n"
                            "    s.extend(rng.integers(0, 4096, (5, 16, 16), dtype=np.uint16), labels=np.arange(5))\n"
                            "    s.extend([rng.integers(0, 4096, (8, 12), dtype=np.uint16)] * 3, labels=[5, 6, 7])\n",
    "docs/formats/index.md": _RNG + _RGB + "with imgbench.open('train.lmdb', 'w') as s:\n"
                             "    s.extend(rgb, labels=classes)\n"
                             "with imgbench.open('train.lmdb') as s:\n"
                             "    pixels, label, expected = s[4], int(s.labels[4]), int(s.checksums[4])\n",
    "docs/formats/sharded.md": _RNG + _RGB + "import json\n"
                               "with imgbench.open('train', 'w', backend='lmdb', images_per_shard=5) as s:\n"
                               "    s.extend(rgb, labels=classes)\n"
                               "entry = json.load(open('train/imgbench-shards.json'))['shards'][0]\n"
                               "with imgbench.open('train/' + entry['name']) as shard:\n"
                               "    checksums, labels = shard.checksums, shard.labels\n",
    "docs/guide/pytorch.md": _RNG + _RGB + "with imgbench.open('train.lmdb', 'w') as s:\n"
                             "    s.extend(rgb, labels=classes)\n",
    "docs/guide/sharded.md": _RNG + "images = rng.integers(0, 256, (123_500, 4, 4), dtype=np.uint8)\n"
                             "labels = np.arange(123_500) % 10\n",
}
#: what a page's example must have computed (run after its blocks)
CHECK = {
    "docs/formats/disk.md": "assert n == 48 and (image(5) == rgb[5]).all() and labels == classes.tolist()\n",
    "docs/formats/hdf5.md": "assert (images == ct).all() and (labels == np.arange(6)).all()\n",
    "docs/formats/lmdb.md": "assert (image == rgb[0]).all() and (labels[:48] == classes).all()\n",
    "docs/formats/npy.md": "assert (images == rgb).all() and (labels == classes).all()\n",
    "docs/formats/index.md": "assert digest == expected\n",
    "docs/formats/tar.md": "import io\nfrom PIL import Image\nassert (np.asarray(Image.open(io.BytesIO(member))) == rgb[42]).all()\n",
    "docs/formats/zarr.md": "assert n == 8 and u == 5 and image(2).shape == (8, 12)\n",
}

RUNNER = """
import json, sys
namespace = {"__name__": "__main__"}
for name, line, code in json.load(sys.stdin):
    print(f"--- {name}:{line}", file=sys.stderr, flush=True)
    exec(compile("\\n" * (line - 1) + code, name, "exec"), namespace)
"""


@pytest.mark.parametrize("page", PAGES_WITH_CODE, ids=_rel)
def test_python_blocks_run(page: Path, tmp_path: Path):
    runnable = [b for b in blocks(page) if b.skip is None]
    if not runnable:
        pytest.skip("; ".join(sorted({b.skip for b in blocks(page)})))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
           "MPLBACKEND": "Agg", "PYTHONDONTWRITEBYTECODE": "1"}
    parts = [[str(b.page), b.line, b.code] for b in runnable]
    if _rel(page) in GIVEN:
        parts.insert(0, [f"GIVEN[{_rel(page)!r}]", 1, GIVEN[_rel(page)]])
    if _rel(page) in CHECK:
        parts.append([f"CHECK[{_rel(page)!r}]", 1, CHECK[_rel(page)]])
    payload = json.dumps(parts)
    proc = subprocess.run([sys.executable, "-c", RUNNER], input=payload, capture_output=True, text=True,
                          cwd=tmp_path, env=env, timeout=TIMEOUT, check=False)
    assert proc.returncode == 0, f"{_rel(page)}: a code block failed\n{proc.stderr[-4000:]}"


def test_blocks_are_found_and_skips_give_a_reason():
    everything = [b for p in PAGES for b in blocks(p)]
    assert any(b.page.name == "README.md" for b in everything), "README.md's python block was not found"
    for page in PAGES:
        for m in re.finditer(r"<!--\s*no-run\b(?P<rest>.*?)-->", page.read_text(encoding="utf-8"), re.DOTALL):
            reason = m.group("rest").lstrip(":").strip()
            assert len(reason) >= 10, f"{_rel(page)}: a no-run comment without a reason: {m.group(0)!r}"
    skipped = [b for b in everything if b.skip is not None]
    assert len(skipped) <= len(everything) // 3, f"most examples are skipped: {[(b.page.name, b.line) for b in skipped]}"

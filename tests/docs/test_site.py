"""The documentation site builds cleanly, every page renders in a browser, every internal link lands.

- ``mkdocs build --strict`` (mkdocs.yml at the repository root) into a temporary directory:
  a broken link or anchor, a page missing from the navigation or a nav entry without a page
  fails the build.
- The built HTML, read with :mod:`html.parser`: every ``<a href>`` inside the site names a file
  that exists and, with a ``#fragment``, an element with that id; no page loads a script,
  stylesheet, font or image from the network.
- Headless Chromium opens every page (one browser run: a harness page loads each one in an
  iframe, served from 127.0.0.1) and reports its h1, the length of its article text, whether
  the theme's stylesheet and JavaScript took effect; one screenshot of a page opened from
  ``file://`` shows the theme's header colour, so the site also works without a server.
- README.md's relative links name files that exist (they must work on GitHub).

Skips, with the reason, when mkdocs-material or Chromium is not installed.
"""

from __future__ import annotations

import html
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import threading
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urljoin, urlsplit

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def _have_mkdocs_material() -> bool:
    try:
        import material  # noqa: F401
        import mkdocs  # noqa: F401
    except ImportError:
        return False
    return True


needs_mkdocs = pytest.mark.skipif(
    not _have_mkdocs_material(), reason="mkdocs-material not installed (pip install '.[docs]')"
)
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="headless Chromium not installed (Debian: apt-get install -y chromium)"
)


# ----------------------------------------------------------------------------- the build
@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    if not _have_mkdocs_material():
        pytest.skip("mkdocs-material not installed (pip install '.[docs]')")
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(ROOT / "mkdocs.yml"),
         "--site-dir", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=120, env=env,
    )
    problems = [line for line in proc.stderr.splitlines() if line.startswith(("WARNING", "ERROR"))]
    assert proc.returncode == 0 and not problems, "mkdocs build --strict failed:\n" + "\n".join(
        problems or proc.stderr.splitlines()[-30:])
    return out


def nav_pages() -> list[str]:
    """The markdown files the navigation of mkdocs.yml names, in order."""
    import yaml

    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))
    pages: list[str] = []

    def walk(entry) -> None:
        if isinstance(entry, str):
            pages.append(entry)
        elif isinstance(entry, list):
            for item in entry:
                walk(item)
        elif isinstance(entry, dict):
            for value in entry.values():
                walk(value)

    walk(config["nav"])
    return pages


def built_html(page: str) -> str:
    """The built file of a docs page (use_directory_urls is off: a.md -> a.html)."""
    return page[: -len(".md")] + ".html"


class _Page(HTMLParser):
    """Ids, links and external resources of one HTML page."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.ids: set[str] = set()
        self.links: list[str] = []
        self.resources: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if a.get("id"):
            self.ids.add(a["id"])
        if tag == "a" and a.get("name"):
            self.ids.add(a["name"])
        if tag == "a" and a.get("href") is not None:
            self.links.append(a["href"])
        for attr in ("src", "href") if tag in ("script", "img", "link", "iframe", "source") else ():
            if a.get(attr) and not (tag == "link" and a.get("rel") in ("canonical",)):
                self.resources.append(a[attr])


def parse_site(site: Path) -> dict[str, _Page]:
    pages = {}
    for path in sorted(site.rglob("*.html")):
        parser = _Page()
        parser.feed(path.read_text(encoding="utf-8"))
        pages[path.relative_to(site).as_posix()] = parser
    return pages


@needs_mkdocs
def test_every_page_of_the_navigation_is_built(site):
    pages = nav_pages()
    assert len(pages) >= 25 and len(set(pages)) == len(pages)
    missing = [p for p in pages if not (site / built_html(p)).is_file()]
    assert not missing, f"in the nav but not built: {missing}"
    assert (site / "search" / "search_index.json").is_file(), "the search plugin wrote no index"


@needs_mkdocs
def test_every_internal_link_and_anchor_resolves(site):
    pages = parse_site(site)
    broken = []
    checked = 0
    for name, page in pages.items():
        for href in page.links:
            parts = urlsplit(href)
            if parts.scheme or href.startswith("//"):
                continue  # external (https:, mailto:, ...)
            target = urlsplit(urljoin(name, href))
            path = unquote(target.path).lstrip("/") or name  # "/x.html" (404.html): from the site root
            if path.endswith("/") or path == "":
                path += "index.html"
            checked += 1
            if not (site / path).is_file():
                broken.append(f"{name}: {href} -> no file {path}")
            elif target.fragment and path.endswith(".html"):
                if unquote(target.fragment) not in pages[path].ids:
                    broken.append(f"{name}: {href} -> {path} has no id {target.fragment!r}")
    assert checked > 500, checked  # the navigation alone links every page from every page
    assert not broken, "broken internal links:\n" + "\n".join(broken[:50])


@needs_mkdocs
def test_no_page_loads_anything_from_the_network(site):
    external = sorted({
        f"{name}: {url}" for name, page in parse_site(site).items() for url in page.resources
        if urlsplit(url).scheme in ("http", "https") or url.startswith("//")
    })
    assert not external, "pages load from the network:\n" + "\n".join(external[:20])
    css = "\n".join(p.read_text(encoding="utf-8", errors="replace") for p in site.rglob("*.css"))
    assert "fonts.googleapis" not in css and "fonts.gstatic" not in css


@needs_mkdocs
def test_generated_tables_keep_their_markers():
    """docs/performance.md holds the tables `imgbench targets/png-levels --readme` write, markers naming it."""
    from imgbench.measure import sections

    text = (ROOT / "docs" / "performance.md").read_text(encoding="utf-8")
    for name, command in (("targets table", "imgbench targets"), ("png levels table", "imgbench png-levels")):
        sections.parts(ROOT / "docs" / "performance.md", name, command)  # raises without its markers
        assert sections.markers(name, command, "docs/performance.md")[0] in text
    codecs_page = ROOT / "docs" / "guide" / "codecs.md"
    sections.parts(codecs_page, "codecs table", "imgbench codecs")  # `imgbench codecs --readme` writes it
    assert sections.markers("codecs table", "imgbench codecs", "docs/guide/codecs.md")[0] in codecs_page.read_text()


# ---------------------------------------------------------------------------- the browser
HARNESS = """<!doctype html>
<html><head><meta charset="utf-8"><title>harness</title></head>
<body><pre id="results">running</pre>
<script>
const pages = %s;
(async () => {
  const out = {};
  for (const page of pages) {
    const frame = document.createElement("iframe");
    frame.style.width = "1280px";
    frame.style.height = "900px";
    document.body.appendChild(frame);
    await new Promise((done) => { frame.onload = done; frame.src = page; });
    await new Promise((done) => setTimeout(done, 30));
    const doc = frame.contentDocument, win = frame.contentWindow;
    const article = doc.querySelector("article");
    const h1 = doc.querySelector("article h1");
    const header = doc.querySelector("header.md-header");
    out[page] = {
      title: doc.title,
      h1: h1 ? h1.textContent.replace(/\\u00b6/g, "").trim() : null,
      text: article ? article.innerText.length : 0,
      code: doc.querySelectorAll("pre > code").length,
      copy: doc.querySelectorAll("button.md-clipboard, button.md-code__button").length,
      header: header ? win.getComputedStyle(header).position : null,
      tabs: doc.querySelectorAll(".md-tabs__item").length,
      search: (doc.querySelector(".md-search__form") || {}).offsetWidth || 0,
    };
    frame.remove();
  }
  document.getElementById("results").textContent = JSON.stringify(out);
})().catch((e) => { document.getElementById("results").textContent = "error: " + e; });
</script></body></html>
"""


def chromium(profile: Path, *args: str, timeout: int = 120) -> subprocess.CompletedProcess:
    cmd = [
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
        f"--user-data-dir={profile}", *args,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # no request log on stderr
        pass


@needs_mkdocs
@needs_chromium
def test_every_page_renders_in_chromium(site, tmp_path):
    pages = [built_html(p) for p in nav_pages()]
    (site / "_harness.html").write_text(HARNESS % json.dumps(pages), encoding="utf-8")
    handler = lambda *a, **k: _Quiet(*a, directory=str(site), **k)  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/_harness.html"
        proc = chromium(tmp_path / "profile", "--virtual-time-budget=30000", "--dump-dom", url)
    finally:
        server.shutdown()
        server.server_close()
    assert proc.returncode == 0, proc.stderr[-2000:]
    found = re.search(r'<pre id="results">(.*?)</pre>', proc.stdout, re.S)
    assert found, proc.stdout[-2000:]
    raw = html.unescape(found.group(1))
    assert raw.startswith("{"), f"the harness did not finish: {raw[:500]}"
    results = json.loads(raw)
    assert sorted(results) == sorted(pages)
    bad = []
    for page, r in results.items():
        if not r["h1"]:
            bad.append(f"{page}: no h1")
        if r["text"] < 300:
            bad.append(f"{page}: article has {r['text']} characters")
        if r["header"] != "sticky":
            bad.append(f"{page}: the theme's stylesheet did not apply (header position {r['header']})")
        if r["tabs"] < 5:
            bad.append(f"{page}: {r['tabs']} navigation tabs")
        if r["search"] < 100:
            bad.append(f"{page}: no search box ({r['search']} px wide)")
        if r["code"] and r["copy"] < 1:
            bad.append(f"{page}: {r['code']} code blocks but no copy button (the theme's JavaScript did not run)")
    assert not bad, "\n".join(bad)
    assert results["index.html"]["h1"] == "imgbench"


@needs_mkdocs
@needs_chromium
def test_a_page_opened_from_a_file_shows_the_theme(site, tmp_path):
    from PIL import Image

    shot = tmp_path / "performance.png"
    proc = chromium(tmp_path / "profile", "--hide-scrollbars", "--virtual-time-budget=3000",
                    f"--screenshot={shot}", "--window-size=1280,900", (site / "performance.html").as_uri())
    assert proc.returncode == 0 and shot.exists(), proc.stderr[-2000:]
    with Image.open(shot) as im:
        rgb = im.convert("RGB")
        header = [rgb.getpixel((x, 10)) for x in range(0, 1280, 16)]
    indigo = sum(1 for r, g, b in header if abs(r - 63) < 20 and abs(g - 81) < 20 and abs(b - 181) < 25)
    assert indigo > len(header) // 2, header[:10]  # Material's indigo header, not an unstyled page


# ------------------------------------------------------------------------------- README
def test_readme_links_name_files_that_exist():
    """Relative links in README.md must work on GitHub: each names a file of the repository."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    links = re.findall(r"\]\(([^)\s]+)\)", text)
    relative = [link for link in links if not urlsplit(link).scheme and not link.startswith("#")]
    assert len(relative) >= 15, relative
    missing = [link for link in relative if not (ROOT / unquote(urlsplit(link).path)).exists()]
    assert not missing, f"README links to missing files: {missing}"
    assert len(text.splitlines()) < 200


# ------------------------------------------------------------------ tests the docs name
_TEST_REF = re.compile(r"`(?:(tests/[\w/]+\.py)(?:::(test_\w+))?|::(test_\w+)|(test_\w+)(?:\[[^`]*\])?)`")


def test_tests_the_docs_name_exist():
    """The guarantees name the test behind each promise: every test a page names must exist.

    `tests/x.py` must be a file, `tests/x.py::test_y` a test in it, `::test_y` a test in the file
    named last in the same paragraph, a bare `test_y` (or `test_y[...]`) a test somewhere in tests/."""
    sources = {p: p.read_text(encoding="utf-8") for p in (ROOT / "tests").rglob("*.py")}
    defined = lambda name, text: re.search(rf"def {name}\b", text) is not None  # noqa: E731
    missing = []
    for page in sorted((ROOT / "docs").rglob("*.md")):
        current = None
        for number, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                current = None  # a new paragraph
            for match in _TEST_REF.finditer(line):
                path, name, continued, bare = match.groups()
                where = f"{page.relative_to(ROOT)}:{number}"
                if path:
                    current = ROOT / path
                    if current not in sources:
                        missing.append(f"{where}: no file {path}")
                        current = None
                    elif name and not defined(name, sources[current]):
                        missing.append(f"{where}: no test {path}::{name}")
                elif continued:
                    if current is None or not defined(continued, sources[current]):
                        missing.append(f"{where}: no test ::{continued} in the file named before it")
                elif not any(defined(bare, text) for text in sources.values()):
                    missing.append(f"{where}: no test {bare} anywhere in tests/")
    assert not missing, "the docs name tests that do not exist:\n" + "\n".join(missing)

"""``imgbench dashboard``: the asv HTML dashboard from committed results, viewable offline.

:func:`build` runs ``asv publish`` on ``results/`` into ``out``, then makes the pages
work with no network: the stock asv ``index.html`` loads jQuery, flot (+ plugins),
bootstrap, blueimp-md5 and stupid-table from public CDNs (and shows an error page
when they fail). Those libraries are vendored in ``imgbench/_vendor/asv_dashboard``
(from the npm registry, with their licenses); they are copied to ``out/vendor/``
and the tags are rewritten to point there. It also writes ``compare.html``, the
backend-vs-backend page (:mod:`imgbench.present.asv_compare_view`), and links it from the
dashboard's navigation bar.

:func:`serve` serves a built dashboard with :mod:`http.server` bound to 127.0.0.1
only (``asv preview`` binds every interface).
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from imgbench.core import transport
from imgbench.core.errors import ImgbenchError
from imgbench.present import asv_compare_view

__all__ = ["VENDOR_DIR", "DashboardError", "build", "serve"]

VENDOR_DIR = Path(__file__).resolve().parents[1] / "_vendor" / "asv_dashboard"

#: CDN URL pattern (as in asv 0.6's index.html) -> vendored file
_CDN_FILES: list[tuple[str, str]] = [
    (r"code\.jquery\.com/jquery-3\.3\.1\.min\.js", "jquery-3.3.1.min.js"),
    (r"/flot/0\.8\.3/jquery\.flot\.min\.js", "jquery.flot.js"),
    (r"/flot/0\.8\.3/jquery\.flot\.time\.min\.js", "jquery.flot.time.js"),
    (r"/flot/0\.8\.3/jquery\.flot\.selection\.min\.js", "jquery.flot.selection.js"),
    (r"/flot/0\.8\.3/jquery\.flot\.categories\.min\.js", "jquery.flot.categories.js"),
    (r"flot-orderbars@1\.0\.0/js/jquery\.flot\.orderBars\.js", "jquery.flot.orderBars.js"),
    (r"/stupidtable/[0-9.]+/stupidtable\.min\.js", "stupidtable.min.js"),
    (r"/blueimp-md5/[0-9.]+/js/md5\.min\.js", "md5.min.js"),
    (r"bootstrap@3\.[0-9.]+/dist/js/bootstrap\.min\.js", "bootstrap.min.js"),
    (r"bootstrap@3\.[0-9.]+/dist/css/bootstrap\.min\.css", "bootstrap.min.css"),
]

_TAG = re.compile(r"<(script|link)\b[^>]*?(?:src|href)=\"(https?://[^\"]+)\"[^>]*>", re.IGNORECASE)
_NAV_LINK = '<li id="nav-li-imgbench-compare"><a href="compare.html">Backends side by side</a></li>'


class DashboardError(ImgbenchError):
    """The dashboard could not be built (asv missing, no results, unknown CDN library)."""


def _project_root(start: Path | None = None) -> Path:
    """The directory holding asv.conf.json: from ``start`` or the cwd upwards, else the source checkout."""
    candidates = []
    for base in (start, Path.cwd(), Path(__file__).resolve().parent.parent):
        if base is None:
            continue
        base = Path(base).resolve()
        candidates.extend([base, *base.parents])
    for c in candidates:
        if (c / "asv.conf.json").is_file():
            return c
    raise DashboardError("no asv.conf.json found here or above: pass --results DIR (an asv results folder), "
                         "or --config FILE, or run from the imgbench repository")


def _find_conf(start: Path | None = None) -> Path | None:
    """asv.conf.json from ``start`` upwards, then the cwd upwards, then the source checkout; None if none."""
    try:
        return _project_root(start) / "asv.conf.json"
    except DashboardError:
        return None


#: the configuration used with ``--results`` when no asv.conf.json is found: no repository is needed
_STANDALONE_CONF = {"version": 1, "project": "imgbench", "branches": ["main"], "dvcs": "imgbench-results-only",
                    "benchmark_dir": "benchmarks"}



def _load_conf(path: Path) -> dict:
    try:
        from asv.util import load_json  # accepts asv.conf.json's // comments
    except ImportError:
        raise DashboardError("asv is not installed: pip install asv (the dashboard runs `asv publish`)") from None
    return load_json(str(path), js_comments=True)


def _rewrite_cdn(page: str) -> str:
    """Point every CDN <script>/<link> at the vendored copy; error on one we do not vendor."""

    def repl(m: re.Match) -> str:
        tag, url = m.group(0), m.group(2)
        for pattern, name in _CDN_FILES:
            if re.search(pattern, url):
                local = f"vendor/{name}"
                tag = tag.replace(url, local)
                tag = re.sub(r'\s(integrity|crossorigin|referrerpolicy)="[^"]*"', "", tag)
                return tag
        if m.group(1).lower() == "link" and 'rel="alternate"' in tag:
            return tag
        raise DashboardError(f"asv page loads {url}, which is not vendored in {VENDOR_DIR}")

    return _TAG.sub(repl, page)


def _add_nav_link(page: str) -> str:
    if "compare.html" in page:
        return page
    anchor = '<li id="nav-li-regressions">'
    if anchor in page:
        end = page.index("</li>", page.index(anchor)) + len("</li>")
        return page[:end] + "\n\t" + _NAV_LINK + page[end:]
    return page.replace("<body>", '<body><p><a href="compare.html">Backends side by side</a></p>', 1)


def build(
    out: str | os.PathLike,
    results: str | os.PathLike | None = None,
    *,
    config: str | os.PathLike | None = None,
    serve: bool = False,
    port: int = 8080,
    quiet: bool = False,
) -> Path:
    """Publish the asv dashboard for ``results`` into ``out`` and make it work offline.

    ``results``: an asv results directory (default: the config's ``results_dir``,
    ``results/`` of the repository). Results from several machines in it become
    one dashboard (asv's machine selector). ``config``: the asv.conf.json (default:
    found from the cwd upwards). ``serve=True`` then serves ``out`` on
    ``127.0.0.1:port`` until interrupted. Returns ``out``.
    """
    transport.local_destination(out, "dashboard folder (--out)")
    if config:
        conf_path: Path | None = Path(config).resolve()
    elif results:
        conf_path = _find_conf(Path(results))
    else:
        conf_path = _project_root() / "asv.conf.json"
    if conf_path is not None and not conf_path.is_file():
        raise DashboardError(f"no asv configuration at {conf_path}: pass --config FILE (an asv.conf.json)")
    standalone = conf_path is None  # --results outside any repository: publish from the results alone
    root = conf_path.parent if conf_path is not None else Path(results).resolve()
    conf = dict(_STANDALONE_CONF) if standalone else _load_conf(conf_path)
    if standalone:
        try:
            import asv
        except ImportError:
            raise DashboardError("asv is not installed: pip install asv (the dashboard runs `asv publish`)") from None
    results_dir = Path(results).resolve() if results else (root / conf.get("results_dir", "results")).resolve()
    if not (results_dir / "benchmarks.json").is_file():
        raise DashboardError(f"no asv results in {results_dir} (expected benchmarks.json): run `asv run` first")
    if serve:
        _check_port(port)
    out = Path(out).resolve()
    if out.exists() and not out.is_dir():
        raise DashboardError(f"{out} exists and is not a directory")

    conf["results_dir"] = str(results_dir)
    conf["html_dir"] = str(out)
    with tempfile.TemporaryDirectory(prefix="imgbench-dashboard-") as tmp:
        # Always from the results alone (their commits and dates), in a checkout too: asv's git
        # repository puts on the "main" graphs only main's first-parent commits, and branches
        # merged with --no-ff carry their results on commits off that line (issue 16).
        conf["dvcs"] = _STANDALONE_CONF["dvcs"]
        conf["repo"] = str(results_dir)
        conf["env_dir"] = str(Path(tmp) / "env")
        conf["benchmark_dir"] = str(Path(tmp) / "benchmarks")
        asv = [sys.executable, "-m", "imgbench.present.asv_results_only"]
        tmp_conf = Path(tmp) / "asv.conf.json"
        tmp_conf.write_text(json.dumps(conf))
        cmd = [*asv, "publish", "--no-pull", "--config", str(tmp_conf)]
        proc = subprocess.run(cmd, cwd=tmp if standalone else root, capture_output=True, text=True)
    if proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip().splitlines()
        raise DashboardError(f"asv publish failed: {detail[-1] if detail else proc.returncode}")

    vendor_out = out / "vendor"
    if vendor_out.exists():
        shutil.rmtree(vendor_out)
    shutil.copytree(VENDOR_DIR, vendor_out)
    for page in sorted(out.glob("*.html")):
        text = page.read_text(encoding="utf-8")
        new = _rewrite_cdn(text)
        if page.name == "index.html":
            new = _add_nav_link(new)
        if new != text:
            page.write_text(new, encoding="utf-8")
    asv_compare_view.write(results_dir, out / "compare.html")
    if not quiet:
        print(f"dashboard written to {out / 'index.html'} (backends side by side: {out / 'compare.html'})")
    if serve:
        _serve(out, port=port)
    return out


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):
        pass


def _check_port(port: int) -> None:
    if not isinstance(port, int) or not 0 <= port <= 65535:
        raise DashboardError(f"port must be an integer from 0 to 65535, not {port!r}")


def make_server(directory: str | os.PathLike, port: int = 8080) -> http.server.ThreadingHTTPServer:
    """An HTTP server for ``directory`` bound to 127.0.0.1 (``port=0``: any free port)."""
    _check_port(port)
    handler = functools.partial(_QuietHandler, directory=str(directory))
    return http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)


def _serve(directory: str | os.PathLike, port: int = 8080) -> None:
    """Serve a built dashboard on http://127.0.0.1:port/ until Ctrl-C."""
    directory = Path(directory)
    if not (directory / "index.html").is_file():
        raise DashboardError(f"no dashboard in {directory}: build it first")
    try:
        server = make_server(directory, port)
    except OSError as exc:
        raise DashboardError(f"cannot listen on 127.0.0.1:{port}: {exc.strerror or exc}") from None
    print(f"serving {directory} on http://127.0.0.1:{server.server_address[1]}/ (Ctrl-C stops)")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


serve = _serve

"""Command line: parses arguments and calls library functions; no logic lives here."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from imgbench import __version__


def _cmd_demo(args: argparse.Namespace) -> int:
    from imgbench.measure.demo import run

    rows = run(args.out, count=args.count, dataset=args.dataset)
    print(f"{args.count} built-in '{args.dataset}' images, written and read back by every backend (in {args.out}):")
    print(f"{'backend':8} {'compression':11} {'write s':>8} {'read s':>8} {'MB on disk':>10} {'files':>6}  exact")
    for r in rows:
        print(
            f"{r['backend']:8} {r['compression']:11} {r['write_s']:8.3f} {r['read_s']:8.3f} "
            f"{r['bytes'] / 1e6:10.2f} {r['files']:6d}  {'yes' if r['exact'] else 'NO'}"
        )
    return 0 if all(r["exact"] for r in rows) else 1


def _cmd_info(args: argparse.Namespace) -> int:
    from imgbench.adapters.integrity import describe, format_info

    info = describe(args.path, remote_timeout=args.remote_timeout)
    print(json.dumps(info, indent=2) if args.json else "\n".join(format_info(info)))
    return 0


def _cmd_verify(args: argparse.Namespace) -> int:
    from imgbench.adapters.integrity import verify

    report = verify(args.path, progress=not args.quiet, isolate=True, remote_timeout=args.remote_timeout)
    for problem in report.problems:
        print(f"damaged: {problem}")
    for index, reason in sorted(report.damaged.items()):
        print(f"damaged image {index}: {reason}")
    if report.ok:
        how = "checked against their checksums" if report.checksummed else (
            "read back whole (this store has no per-image checksums: only damage its format detects was checked)")
        print(f"ok: {report.images} images {how}")
        return 0
    print(f"{len(report.damaged)} of {report.images} images damaged" if report.damaged else "store is damaged")
    return 1


def _cmd_compare(args: argparse.Namespace) -> int:
    from imgbench.measure import compare, harness
    from imgbench.present import report, terminal

    plan = compare.make_plan(
        out=args.out, source=args.source, datasets_=args.datasets, counts=args.counts, backends=args.backends,
        compressions=args.compressions, repeats=args.repeats, cache=args.cache, quick=args.quick,
        random_reads=args.random_reads, workdir=args.workdir, parallel_workers=args.parallel_workers,
        max_image_pixels=args.max_image_pixels,
        peers=args.peers,
    )
    with harness.progress_bar(plan.steps(), enabled=not args.quiet) as progress:
        early = terminal.DatasetPrinter(pause=progress.paused)
        results = compare.run(plan, progress, on_dataset=early)
    results["command"] = ["imgbench", *sys.argv[1:]] if args.argv is None else ["imgbench", *args.argv]
    report.write(results, args.out)
    terminal.print_summary(results, console=early.console, out_dir=args.out, shown=early.shown)
    if not compare.all_exact(results):
        print("imgbench: error: some stores did not read back what was written (see the report)", file=sys.stderr)
        return 1
    return 0


def _cmd_convert(args: argparse.Namespace) -> int:
    from imgbench.adapters import convert
    from imgbench.measure import harness

    with harness.progress_bar(None, "converting", enabled=not args.quiet) as bar:
        done = convert.convert(
            args.src, args.dst, backend=args.backend, compression=args.compression, level=args.level,
            overwrite=args.overwrite, progress=bar.advance, total=bar.set_total, images_per_shard=args.images_per_shard,
            bytes_per_shard=args.bytes_per_shard, shards=args.shards, workers=args.workers, scheduler=args.scheduler,
            max_image_pixels=args.max_image_pixels,
        )
    for warning in done.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    for note in done.notes:
        print(f"note: {note}", file=sys.stderr)
    classes = f", {len(done.classes)} classes" if done.classes else ""
    shards = f"; {done.shards} shards" if done.shards is not None else ""
    print(f"wrote {done.images} images{classes} to {done.dst} ({done.backend}, {done.compression}{shards})")
    return 0


def _cmd_dashboard(args: argparse.Namespace) -> int:
    from imgbench.present.dashboard import build

    build(args.out, Path(args.results) if args.results else None,
          config=args.config, serve=args.serve, port=args.port)
    return 0


def _cmd_targets(args: argparse.Namespace) -> int:
    from imgbench.measure import harness, targets

    cfg = targets.make_config(quick=args.quick, repeat=args.repeat, cold=args.cold, workdir=args.dir,
                              tiny=args.tiny)
    if args.readme:
        targets.readme_parts(args.readme)  # fail now, not after the measurements
    with harness.progress_bar(targets.total_steps(cfg), enabled=not args.quiet) as progress:
        results = targets.run(cfg, progress, command=["imgbench", *(sys.argv[1:] if args.argv is None else args.argv)])
    print(targets.format_table(results, markdown=args.markdown))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2), encoding="utf-8")
    if args.readme:
        targets.update_readme(args.readme, results)
    return targets.exit_code(results)


def _cmd_png_levels(args: argparse.Namespace) -> int:
    from imgbench.core.transport import local_destination
    from imgbench.measure import sections, tradeoff

    counts = {"cifar": 100, "ct": 1} if args.quick else None
    out = local_destination(args.out, "--out folder") if args.out else None  # fail now, not after measuring
    if args.readme:
        sections.parts(args.readme, tradeoff.README_SECTION, "imgbench png-levels")  # fail now, not after measuring
    levels, threads = tradeoff.measure(counts=counts, repeat=args.repeat,
                                       progress=None if args.quiet else lambda m: print(m, file=sys.stderr))
    print(tradeoff.markdown(levels, threads))
    if args.readme:
        ran = " ".join(["imgbench", *(sys.argv[1:] if args.argv is None else args.argv)])
        tradeoff.update_readme(args.readme, ran, levels, threads)
    if out is not None:
        print(f"plot: {tradeoff.plot(levels, out / 'png_levels.png')}")
        (out / "png_levels.json").write_text(json.dumps(tradeoff.as_json(levels, threads), indent=2))
    return 0


def _cmd_codecs(args: argparse.Namespace) -> int:
    from imgbench.measure import codec_bench, sections
    from imgbench.present import codec_view

    if args.readme:
        sections.parts(args.readme, codec_bench.SECTION, codec_bench.COMMAND)  # fail now, not after measuring
    found = codec_bench.load(args.source, args.datasets, args.count, quick=args.quick)
    result = codec_bench.measure(found, repeats=args.repeat, threads=args.threads,
                                 progress=None if args.quiet else lambda m: print(m, file=sys.stderr))
    codec_view.print_table(result)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        print(f"plot: {codec_view.plot(result, out / 'codecs.png')}")
        (out / "codecs.json").write_text(json.dumps(codec_bench.as_json(result), indent=2))
    if args.readme:
        ran = " ".join(["imgbench", *(sys.argv[1:] if args.argv is None else args.argv)])
        codec_bench.update_docs(args.readme, ran, result)
    if not all(r.exact for r in result.rows):
        print("imgbench: error: a codec did not give back the exact images (see the exact column)", file=sys.stderr)
        return 1
    return 0


def _size(text: str) -> int:
    from imgbench.adapters.convert import parse_size
    from imgbench.core.errors import UnsupportedError

    try:
        return parse_size(text)
    except UnsupportedError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _seconds(text: str) -> float:
    from imgbench.core import transport
    from imgbench.core.errors import UnsupportedError

    try:
        return transport.deadline(float(text))
    except (ValueError, UnsupportedError):
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number of seconds") from None


def _remote_timeout(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--remote-timeout", type=_seconds, metavar="SECONDS",
                        help="for a URL (s3://...): seconds each request to the server may take, retries included "
                             "(default: $IMGBENCH_REMOTE_TIMEOUT, else 60)")


def _backend_choices() -> tuple[list[str], dict[str, tuple[str, ...]], dict[str, tuple[str, ...]]]:
    """Registered backends, the suffixes naming each, and the compressions each offers (default first)."""
    import imgbench
    from imgbench.storage import registry

    names = list(imgbench.backends())
    return names, {n: registry.suffixes(n) for n in names}, {n: tuple(registry.get(n).compressions) for n in names}


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad option is one line (no usage block), like every other error."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see: {self.prog} --help)\n")


_MAX_PIXELS_HELP = ("skip source images declaring more than N pixels (height x width), before decoding them "
                    "(default: Pillow's decompression-bomb limit, PIL.Image.MAX_IMAGE_PIXELS)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="imgbench", description="Store many images fast and safely; measure how.")
    parser.add_argument("--version", action="version", version=f"imgbench {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    demo = sub.add_parser("demo", help="write built-in images with every backend, read them back, compare sizes")
    demo.add_argument("--out", default="imgbench-demo", help="folder for the stores (default: %(default)s)")
    demo.add_argument("--count", type=int, default=2000, help="images per store (default: %(default)s)")
    demo.add_argument("--dataset", default="cifar", choices=["cifar", "ct"], help="built-in images")
    demo.set_defaults(func=_cmd_demo)

    cmp_ = sub.add_parser(
        "compare",
        help="measure every backend on built-in or your own images; write report.html and results.json",
        description="Write, read all and read at random with every backend and setting, at growing image "
        "counts; check every read; print tables and write OUT/report.html and OUT/results.json.",
    )
    cmp_.add_argument("--source", metavar="DIR", help="your own images (PNG, JPEG, TIFF, DICOM) instead of built-in")
    cmp_.add_argument("--out", metavar="DIR", default="imgbench-report",
                      help="folder for report.html and results.json (default: %(default)s)")
    cmp_.add_argument("--backends", nargs="+", metavar="NAME", help="backends to compare (default: all)")
    cmp_.add_argument("--compressions", nargs="+", metavar="NAME",
                      help="compressions to use where a backend offers them; 'default' = each backend's default "
                      "(default: each backend's default and one compressed setting)")
    cmp_.add_argument("--counts", nargs="+", metavar="N", help="image counts (default: 10, 100, ... within a budget)")
    cmp_.add_argument("--datasets", "--shapes", dest="datasets", nargs="+", metavar="NAME[:HxW[xC]]",
                      help="built-in datasets, e.g. cifar ct ct:256x256 cifar:64x64x3 (default: cifar ct)")
    cmp_.add_argument("--repeats", type=int,
                      help="timed repeats per measurement (default: 5, parallel reads 3; 1 with --quick)")
    cmp_.add_argument("--cache", choices=["warm", "cold"], default="warm",
                      help="read with the page cache warm, or evicted first (default: %(default)s)")
    cmp_.add_argument("--random-reads", type=int, metavar="N", help="random reads per store (default: 1000)")
    cmp_.add_argument("--workdir", metavar="DIR", help="where stores are written while measuring (default: --out)")
    cmp_.add_argument("--parallel-workers", nargs="+", metavar="N",
                      help="also read a sharded copy of each dataset with N worker processes at once, for each N "
                      "(aggregate images/s and speed-up); 0 skips it (default: 1 2 ... up to the core count)")
    cmp_.add_argument("--max-image-pixels", type=int, metavar="N", help=_MAX_PIXELS_HELP)
    cmp_.add_argument("--peers", nargs="+", metavar="NAME",
                      help="also measure other formats with their own writers and readers: litdata mds webdataset "
                      "(pip install 'imgbench[peers]'; a missing one is skipped with a note)")
    cmp_.add_argument("--quick", action="store_true", help="small counts, one repeat: a smoke test in seconds")
    cmp_.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    cmp_.set_defaults(func=_cmd_compare)

    conv = sub.add_parser("convert", help="copy a folder of images (or another store) into a store")
    conv.add_argument("src", help="folder of images (sub-folders = classes) or an existing store")
    names, suffixes, offered = _backend_choices()
    conv.add_argument("dst", help="new store; the suffix may name the backend: " + ", ".join(
        f"{s} ({n})" for n in names for s in suffixes[n]))
    conv.add_argument("--backend", choices=names, metavar="NAME",
                      help=f"backend of the new store, one of: {', '.join(names)} (needed unless DST's suffix "
                      "says it)")
    conv.add_argument("--compression", choices=sorted({c for cs in offered.values() for c in cs}), metavar="NAME",
                      help="compression of the new store (default: the backend's, listed first): "
                      + "; ".join(f"{n}: {', '.join(offered[n])}" for n in names))
    conv.add_argument("--level", type=int, help="compression level, where the compression has one")
    conv.add_argument("--overwrite", action="store_true", help="replace DST if it is an imgbench store")
    conv.add_argument("--max-image-pixels", type=int, metavar="N", help=_MAX_PIXELS_HELP)
    shard = conv.add_argument_group(
        "sharded dataset", "DST becomes a directory of shard stores plus imgbench-shards.json; give one limit")
    shard.add_argument("--images-per-shard", type=int, metavar="N", help="N source files (images) per shard")
    shard.add_argument("--bytes-per-shard", type=_size, metavar="SIZE",
                       help="about SIZE source bytes per shard, e.g. 256M (default with --workers: 256M)")
    shard.add_argument("--shards", type=int, metavar="N", help="N shards of near-equal size")
    shard.add_argument("--workers", type=int, metavar="N",
                       help="write shards in parallel on a local Dask cluster of N processes (pip install 'imgbench[dask]')")
    shard.add_argument("--scheduler", metavar="ADDRESS",
                       help="write shards on an existing Dask cluster, e.g. tcp://host:8786 (workers must see SRC and DST)")
    conv.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    conv.set_defaults(func=_cmd_convert)

    dash = sub.add_parser(
        "dashboard",
        help="build the asv dashboard from results/ (opens with no network); --serve shows it on 127.0.0.1",
        description="Run `asv publish` on the committed asv results into DIR, vendor the JavaScript/CSS the asv "
        "pages load from CDNs so they open with no network, and add DIR/compare.html (backends side by side).",
    )
    dash.add_argument("--out", metavar="DIR", required=True, help="folder for the dashboard (index.html, compare.html)")
    dash.add_argument("--results", metavar="DIR", help="asv results folder (default: the repository's results/)")
    dash.add_argument("--config", metavar="FILE", help="asv.conf.json (default: found from the current folder upwards)")
    dash.add_argument("--serve", action="store_true", help="then serve it on http://127.0.0.1:PORT/ until Ctrl-C")
    dash.add_argument("--port", type=int, default=8080, help="port for --serve (default: %(default)s)")
    dash.set_defaults(func=_cmd_dashboard)

    tgt = sub.add_parser(
        "targets",
        help="measure the performance targets of docs/design.md as ratios to a raw .npy bound; exit 1 if any fails",
        description="Measure every performance target (hdf5/lmdb read all and write against raw .npy, disk png "
        "against a 1-thread Pillow loop, random-read latency of lmdb/hdf5) in one process, on the same images, "
        "as medians of interleaved repeats. Stores go under --dir (default: $TMPDIR): results depend on that disk.",
    )
    tgt.add_argument("--quick", action="store_true",
                     help="10,000 CIFAR (not 100,000), 48 CT slices, a 20,000-image random store, 3 repeats (CI)")
    tgt.add_argument("--cold", action="store_true", help="also report reads with the page cache evicted first")
    tgt.add_argument("--repeat", type=int, metavar="N", help="timed repeats per figure (default: 5; 3 with --quick)")
    tgt.add_argument("--dir", metavar="DIR", help="where the temporary stores are written (default: $TMPDIR)")
    tgt.add_argument("--markdown", action="store_true", help="print the table as GitHub markdown")
    tgt.add_argument("--json", metavar="FILE", help="also write every sample and the machine details as JSON")
    tgt.add_argument("--readme", metavar="FILE",
                     help="also write the markdown table into FILE between its targets-table markers (docs/performance.md)")
    tgt.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    tgt.add_argument("--tiny", action="store_true", help=argparse.SUPPRESS)  # tests: seconds, meaningless figures
    tgt.set_defaults(func=_cmd_targets)

    png = sub.add_parser(
        "png-levels",
        help="PNG level vs bytes vs time, and speed-up per thread, on the built-in images",
        description="The measurement behind the disk backend's PNG defaults (level 1, every core): bytes and "
        "encode/decode time per zlib level on one thread, then the speed-up of level 1 with more threads.",
    )
    png.add_argument("--out", metavar="DIR", help="also write png_levels.png (plot) and png_levels.json here")
    png.add_argument("--repeat", type=int, default=3, metavar="N", help="timed repeats, median kept (default: 3)")
    png.add_argument("--quick", action="store_true", help="few images: seconds, rough figures")
    png.add_argument("--readme", metavar="FILE",
                     help="also write the tables into FILE between its png-levels markers (docs/performance.md)")
    png.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    png.set_defaults(func=_cmd_png_levels)

    cdc = sub.add_parser(
        "codecs",
        help="every lossless codec and level on your images: bytes, encode/decode time, exactness",
        description="Bytes / raw and encode and decode time per image (one thread and all threads, median and "
        "spread of the repeats) of png, zstd, jpegls, htj2k, jpegxl and lerc on your images (--source) or the "
        "built-in CIFAR-like and CT-like images; every image is checked to decode exactly.",
    )
    where = cdc.add_mutually_exclusive_group()
    where.add_argument("--source", metavar="DIR", help="your own images (PNG, JPEG, TIFF, DICOM) instead of built-in")
    where.add_argument("--datasets", nargs="+", metavar="NAME[:HxW[xC]]",
                       help="built-in datasets, e.g. cifar ct ct:256x256 (default: cifar ct)")
    cdc.add_argument("--count", type=int, metavar="N", help="images per dataset (default: 500 cifar, 8 ct)")
    cdc.add_argument("--out", metavar="DIR", help="also write codecs.png (plot) and codecs.json here")
    cdc.add_argument("--repeat", type=int, default=3, metavar="N", help="timed repeats, median kept (default: 3)")
    cdc.add_argument("--threads", type=int, metavar="N", help="the 'all threads' column's count (default: all cores)")
    cdc.add_argument("--quick", action="store_true", help="few images: seconds, rough figures")
    cdc.add_argument("--readme", metavar="FILE",
                     help="also write the table into FILE between its codecs-table markers (docs/guide/codecs.md)")
    cdc.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    cdc.set_defaults(func=_cmd_codecs)

    info = sub.add_parser("info", help="describe a store")
    info.add_argument("path")
    info.add_argument("--json", action="store_true", help="print JSON")
    _remote_timeout(info)
    info.set_defaults(func=_cmd_info)

    verify = sub.add_parser("verify", help="read every image; exit 1 when any is damaged")
    verify.add_argument("path")
    verify.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    _remote_timeout(verify)
    verify.set_defaults(func=_cmd_verify)
    return parser


def main(argv: list[str] | None = None) -> int:
    from imgbench.core.errors import ImgbenchError

    args = build_parser().parse_args(argv)
    args.argv = argv
    try:
        return args.func(args)
    except ImgbenchError as exc:
        print(f"imgbench: error: {exc.for_cli()}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"imgbench: error: {exc.strerror or exc}: {exc.filename or ''}".rstrip(": "), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        import warnings

        # What the interrupt cut short may warn as it is collected (a never-awaited fsspec coroutine);
        # after Ctrl-C the one line below is all the user asked for.
        warnings.simplefilter("ignore")
        print("imgbench: interrupted", file=sys.stderr)
        return 130


def run() -> None:
    """The console script. After Ctrl-C (exit 130) the process leaves at once instead of joining
    idle worker threads at interpreter shutdown, which can hang when the interrupt landed while a
    thread pool was starting; the writer's abort has already removed its temporary by then. A Ctrl-C
    that Python can only report as "Exception ignored in ..." (it landed in a destructor or a weakref
    callback) is not printed: the command goes on, or the next Ctrl-C stops it."""
    default_hook = sys.unraisablehook
    sys.unraisablehook = lambda u: None if isinstance(u.exc_value, KeyboardInterrupt) else default_hook(u)
    code = main()
    if code == 130:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(130)
    sys.exit(code)


if __name__ == "__main__":
    run()

"""Command line: parses arguments and calls library functions; no logic lives here."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from . import __version__


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run

    rows = run(Path(args.out), count=args.count, dataset=args.dataset)
    print(f"{args.count} built-in '{args.dataset}' images, written and read back by every backend (in {args.out}):")
    print(f"{'backend':8} {'compression':11} {'write s':>8} {'read s':>8} {'MB on disk':>10} {'files':>6}  exact")
    for r in rows:
        print(
            f"{r['backend']:8} {r['compression']:11} {r['write_s']:8.3f} {r['read_s']:8.3f} "
            f"{r['bytes'] / 1e6:10.2f} {r['files']:6d}  {'yes' if r['exact'] else 'NO'}"
        )
    return 0 if all(r["exact"] for r in rows) else 1


def _cmd_info(args: argparse.Namespace) -> int:
    from .integrity import describe

    info = describe(args.path)
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    disk = info.pop("disk")
    for key, value in info.items():
        print(f"{key:12} {value}")
    print(f"{'disk':12} {disk['allocated'] / 1e6:.2f} MB allocated, {disk['apparent'] / 1e6:.2f} MB apparent, "
          f"{disk['files']} files")
    return 0


def _cmd_verify(args: argparse.Namespace) -> int:
    from .integrity import verify

    report = verify(args.path, progress=not args.quiet)
    for problem in report.problems:
        print(f"damaged: {problem}")
    for index, reason in sorted(report.damaged.items()):
        print(f"damaged image {index}: {reason}")
    if report.ok:
        print(f"ok: {report.images} images read back whole")
        return 0
    print(f"{len(report.damaged)} of {report.images} images damaged" if report.damaged else "store is damaged")
    return 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="imgbench", description="Store many images fast and safely; measure how.")
    parser.add_argument("--version", action="version", version=f"imgbench {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="write built-in images with every backend, read them back, compare sizes")
    demo.add_argument("--out", default="imgbench-demo", help="folder for the stores (default: %(default)s)")
    demo.add_argument("--count", type=int, default=2000, help="images per store (default: %(default)s)")
    demo.add_argument("--dataset", default="cifar", choices=["cifar", "ct"], help="built-in images")
    demo.set_defaults(func=_cmd_demo)

    info = sub.add_parser("info", help="describe a store")
    info.add_argument("path")
    info.add_argument("--json", action="store_true", help="print JSON")
    info.set_defaults(func=_cmd_info)

    verify = sub.add_parser("verify", help="read every image; exit 1 when any is damaged")
    verify.add_argument("path")
    verify.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    verify.set_defaults(func=_cmd_verify)
    return parser


def main(argv: list[str] | None = None) -> int:
    from .errors import ImgbenchError

    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ImgbenchError as exc:
        print(f"imgbench: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"imgbench: error: {exc.strerror or exc}: {exc.filename or ''}".rstrip(": "), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("imgbench: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

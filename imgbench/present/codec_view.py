"""What ``imgbench codecs`` shows: an 80-column terminal table and a size-versus-decode-speed plot."""

from __future__ import annotations

from pathlib import Path

from imgbench.measure.codec_bench import Result


def table(result: Result):
    """A rich Table readable at 80 columns: one row per dataset and setting, ★ on the Pareto front."""
    from rich.table import Table

    t = Table(title=f"lossless codecs (µs per image; all = {result.threads} threads)", title_justify="left",
              box=None, pad_edge=False)
    for name, justify in (("data", "left"), ("codec", "left"), ("bytes/raw", "right"), ("enc 1", "right"),
                          ("dec 1", "right"), ("enc all", "right"), ("dec all", "right"), ("exact", "center")):
        t.add_column(name, justify=justify, no_wrap=True)
    for r in result.rows:
        t.add_row(r.dataset, r.setting + (" ★" if r.pareto else ""), f"{r.ratio:.3f}",
                  *(f"{v['median']:,.0f}" for v in (r.encode_us_1, r.decode_us_1, r.encode_us_all, r.decode_us_all)),
                  "yes" if r.exact else "[red]NO[/red]")
    return t


def print_table(result: Result, width: int = 80) -> None:
    from rich.console import Console

    Console(width=width).print(table(result))
    for s in result.skipped:
        level = "" if s["level"] is None else f" {s['level']}"
        print(f"skipped {s['codec']}{level} on {s['dataset']}: {s['reason']}")


def plot(result: Result, path: Path) -> Path:
    """Bytes / raw against decode µs per image (one thread, log scale), one panel per dataset; the front joined."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(dict.fromkeys(r.dataset for r in result.rows))
    fig, axes = plt.subplots(1, max(1, len(names)), figsize=(5.2 * max(1, len(names)), 4.2), squeeze=False)
    for ax, name in zip(axes[0], names):
        rows = [r for r in result.rows if r.dataset == name]
        for r in rows:
            ax.scatter(r.decode_us_1["median"], r.ratio, marker="*" if r.pareto else "o",
                       s=110 if r.pareto else 30, color="C3" if r.pareto else "C0", zorder=3)
            ax.annotate(r.setting, (r.decode_us_1["median"], r.ratio), textcoords="offset points",
                        xytext=(4, 3), fontsize=7)
        front = sorted((r for r in rows if r.pareto), key=lambda r: r.decode_us_1["median"])
        ax.plot([r.decode_us_1["median"] for r in front], [r.ratio for r in front], color="C3", lw=1,
                label="Pareto front")
        ax.set_xscale("log")
        ax.set_xlabel("decode µs per image (one thread, log scale)")
        ax.set_ylabel("encoded bytes / raw bytes")
        ax.set_title(name)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path

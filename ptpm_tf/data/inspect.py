"""``ptpm-tf data inspect``: what a dataset looks like before training on it.

Writes ``inspect.json`` (rows, users, items, watch-time and duration quantiles, share of
zero watch times and of full plays, the load report) and ``watch_time_distributions.png``:
(a) the distribution of users' average watch time per view and (b) watch-time CDFs of
user groups (quartiles of that average), the paper's Fig. 2a, and (c) watch-time CDFs of
the largest item categories, its Fig. 2b. Different curves are why one global
discretization of watch time fits nobody well, the motivation for PTPM's personal trees.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import pandas as pd

from ptpm_tf import atomic_io
from ptpm_tf.data.dataset import DURATION, ITEM, LABEL, TIMESTAMP, USER, Dataset, one_line

QUANTILES = (1, 5, 10, 25, 50, 75, 90, 95, 99)
JSON_NAME = "inspect.json"
FIGURE_NAME = "watch_time_distributions.png"
_TOP_GROUPS = 6
_CURVE_POINTS = 400


def _quantiles(x: np.ndarray) -> Optional[dict]:
    x = x[np.isfinite(x)]
    if len(x) == 0:
        return None
    q = np.percentile(x, QUANTILES)
    return {"mean": float(x.mean()), "min": float(x.min()), "max": float(x.max()),
            **{f"p{p}": float(v) for p, v in zip(QUANTILES, q)}}


#: item-side groupings tried first for panel (c), in this order
ITEM_GROUPS = ("category", "tag", "video_tag_id", "upload_type", "video_type", "music_type")


def category_column(ds: Dataset) -> Optional[str]:
    """The item grouping for panel (c): the first of :data:`ITEM_GROUPS` (else any other
    categorical feature) with 2..200 values; else the item id (its top items)."""
    rest = [c for c in ds.categorical if c not in ITEM_GROUPS]
    for c in [*(c for c in ITEM_GROUPS if c in ds.categorical), *rest]:
        if 2 <= ds.frame[c].nunique() <= 200:
            return c
    return ITEM if ITEM in ds.frame.columns else None


def inspect_dataset(ds: Dataset, out_dir) -> dict:
    """Summarise ``ds``, write ``inspect.json`` and the figure into ``out_dir``; return it."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    f = ds.frame
    y = f[LABEL].to_numpy(dtype=np.float64)
    info = {"name": ds.name, "rows": int(len(f)),
            "users": int(f[USER].nunique()) if USER in f.columns else None,
            "items": int(f[ITEM].nunique()) if ITEM in f.columns else None,
            "categorical": list(ds.categorical), "numeric": list(ds.numeric),
            "watch_time": _quantiles(y),
            "share_zero_watch_time": float(np.mean(y == 0)) if len(y) else None,
            "duration": None, "rows_with_duration": 0, "share_full_play": None}
    if DURATION in f.columns:
        d = f[DURATION].to_numpy(dtype=np.float64)
        known = np.isfinite(d)
        info["duration"] = _quantiles(d)
        info["rows_with_duration"] = int(known.sum())
        if known.any():
            info["share_full_play"] = float(np.mean(y[known] >= d[known]))
    if TIMESTAMP in f.columns and len(f):
        t = f[TIMESTAMP].to_numpy(dtype=np.float64)
        info["timestamp"] = {"min": float(np.nanmin(t)), "max": float(np.nanmax(t))}
    info["load_report"] = dataclasses.asdict(ds.report)
    info["figure"] = FIGURE_NAME
    plot_distributions(ds, out / FIGURE_NAME)
    (out / JSON_NAME).write_text(atomic_io.dumps(info, indent=2) + "\n")
    return info


def _cdf(ax, values: np.ndarray, label: str) -> None:
    v = np.sort(values)
    if len(v) == 0:
        return
    idx = np.unique(np.linspace(0, len(v) - 1, min(len(v), _CURVE_POINTS)).astype(int))
    ax.plot(v[idx], (idx + 1) / len(v), label=label)


def plot_distributions(ds: Dataset, path) -> None:
    """The three-panel PNG described in the module doc (matplotlib, Agg, no pyplot)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    f = ds.frame
    y = f[LABEL].to_numpy(dtype=np.float64)
    xmax = float(np.percentile(y, 99)) if len(y) else 1.0
    fig = Figure(figsize=(15, 4.2))
    FigureCanvasAgg(fig)
    ax_u, ax_g, ax_c = fig.subplots(1, 3)
    if USER in f.columns and len(f):
        means = f.groupby(USER, sort=False)[LABEL].mean()
        ax_u.hist(means.to_numpy(), bins=50,
                  range=(0, max(float(np.percentile(means, 99)), 1e-9)))
        ax_u.set_xlabel("user's average watch time per view (s)")
        ax_u.set_ylabel("users")
        groups = pd.qcut(means.rank(method="first"), q=min(4, len(means)), labels=False)
        group_of_row = f[USER].map(pd.Series(groups.to_numpy(), index=means.index))
        for g in range(int(groups.max()) + 1):
            sel = (group_of_row == g).to_numpy()
            lo, hi = means[groups == g].min(), means[groups == g].max()
            _cdf(ax_g, y[sel], f"users Q{g + 1} (mean {lo:.1f}-{hi:.1f} s)")
        ax_g.legend(fontsize=7)
    else:
        for ax in (ax_u, ax_g):
            ax.text(0.5, 0.5, "no user column", ha="center", va="center",
                    transform=ax.transAxes)
    ax_u.set_title("(a) users' average watch time")
    ax_g.set_title("(b) watch-time CDF by user group")
    ax_g.set_xlim(0, xmax)
    ax_g.set_xlabel("watch time (s)")
    col = category_column(ds)
    if col is not None and len(f):
        top = f[col].value_counts().index[:_TOP_GROUPS]
        codes = f[col].to_numpy()
        for value in top:
            sel = codes == value
            _cdf(ax_c, y[sel], f"{col}={value} ({int(sel.sum())} rows)")
        ax_c.legend(fontsize=7)
    else:
        ax_c.text(0.5, 0.5, "no item grouping", ha="center", va="center",
                  transform=ax_c.transAxes)
    ax_c.set_title(f"(c) watch-time CDF by {col or 'category'} (largest)")
    ax_c.set_xlim(0, xmax)
    ax_c.set_xlabel("watch time (s)")
    for ax in (ax_g, ax_c):
        ax.set_ylabel("share of views")
        ax.grid(alpha=0.3)
    fig.suptitle(f"{ds.name}: watch-time distributions ({len(f)} rows)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def summary_text(info: dict, out_dir) -> str:
    """A readable multi-line summary of :func:`inspect_dataset`'s result."""
    def fmt(n):
        return "n/a" if n is None else f"{n:,}"

    lines = [f"dataset {info['name']}: {fmt(info['rows'])} rows, {fmt(info['users'])} users, "
             f"{fmt(info['items'])} items"]
    rep = info["load_report"]
    dropped = sum(rep["dropped"].values())
    lines.append(f"  load: {rep['rows_read']:,} rows read, {dropped:,} dropped"
                 + "".join(f"\n    dropped {n:,}: {r}" + (f"\n      first: {rep['examples'][r]}"
                                                           if r in rep["examples"] else "")
                           for r, n in sorted(rep["dropped"].items()))
                 + "".join(f"\n    note {n:,} rows {w}" for w, n in sorted(rep["notes"].items())))
    for key in ("watch_time", "duration"):
        q = info.get(key)
        if q:
            lines.append(f"  {key} (s): " + "  ".join(f"p{p} {q[f'p{p}']:.3g}"
                                                     for p in QUANTILES)
                         + f"  mean {q['mean']:.3g}")
    if info["share_zero_watch_time"] is not None:
        lines.append(f"  zero watch time: {100 * info['share_zero_watch_time']:.1f}% of rows")
    if info["share_full_play"] is not None:
        lines.append(f"  full plays (watch_time >= duration): "
                     f"{100 * info['share_full_play']:.1f}% of "
                     f"{info['rows_with_duration']:,} rows with a duration")
    else:
        lines.append("  full plays: n/a (no duration)")
    lines.append(f"  features: {len(info['categorical'])} categorical, "
                 f"{len(info['numeric'])} numeric")
    lines.append(f"  wrote {Path(out_dir) / JSON_NAME} and {Path(out_dir) / FIGURE_NAME}")
    return "\n".join(lines)


def run(dataset: str, data_dir=None, spec=None, out=None, rows: Optional[int] = None,
        strict: bool = False) -> int:
    """Entry for ``ptpm-tf data inspect``: load, inspect, print; 0. Bad input raises
    (:class:`DataError`, ``OSError``): the caller reports it in one line with status 2."""
    from ptpm_tf.data.registry import load_dataset

    out = Path(out) if out is not None else Path("runs") / "inspect" / dataset
    ds = load_dataset(dataset, data_dir=data_dir, spec=spec, rows=rows, strict=strict)
    info = inspect_dataset(ds, out)
    print(summary_text(info, out))
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m ptpm_tf.data.inspect",
                                 description="Summarise a dataset and plot its watch times.")
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--data-dir")
    ap.add_argument("--spec")
    ap.add_argument("--out")
    ap.add_argument("--rows", type=int)
    ap.add_argument("--strict", action="store_true")
    a = ap.parse_args(argv)
    try:
        return run(a.dataset, a.data_dir, a.spec, a.out, a.rows, a.strict)
    except (ValueError, OSError) as e:
        print(f"{ap.prog}: error: {one_line(str(e))}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

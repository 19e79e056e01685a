"""The benchmark's figures (paper Figs. 6-8) as PNGs, from the results dictionary of
:func:`ptpm_tf.benchmarks.suite.summarize` (matplotlib, Agg backend: no display needed).

- ``fig6_cost_<ds>.png`` (Fig. 6 left): trainable parameters and FLOPs per sample of every
  model, PTPM and TPM highlighted.
- ``fig6_curves_<ds>.png`` (Fig. 6 right): validation XAUC and MAE of PTPM and TPM during
  training (mean over seeds; x = epochs).
- ``fig7_ucl_<ds>.png`` (Fig. 7): per-leaf prior/posterior ratio with UCL (PTPM) and without
  (PTPM w/o UCL, TPM), ideal 1.0, and the mean AUC of the node classifiers.
- ``fig8_depth_<ds>.png`` (Fig. 8): MAE, XAUC and the average learned tree depth against the
  global depth, PTPM and PTPM w/o TSL.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List

import numpy as np

from ptpm_tf.benchmarks.variants import LABELS, TABLE2_ORDER, TABLE3_ORDER

COLORS = {"ptpm": "#d62728", "tpm": "#1f77b4", "ptpm-no-ucl": "#ff7f0e",
          "ptpm-no-tsl": "#2ca02c"}


def _plt():
    import matplotlib
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    return plt


def write_figures(results: Dict[str, Any], out: Path) -> List[str]:
    """Write every figure the results allow; return the file names written."""
    plt = _plt()
    written: List[str] = []
    for ds, r in results["datasets"].items():
        for name, fn in (("fig6_cost", _fig6_cost), ("fig6_curves", _fig6_curves),
                         ("fig7_ucl", _fig7_ucl), ("fig8_depth", _fig8_depth)):
            fig = fn(plt, r, ds, LABELS)
            if fig is None:
                continue
            path = Path(out) / f"{name}_{ds}.png"
            fig.savefig(path, dpi=110, bbox_inches="tight")
            plt.close(fig)
            written.append(path.name)
    return written


def _fig6_cost(plt, r, ds, labels):
    ms = r["models"]
    order = list(dict.fromkeys((*TABLE2_ORDER, *TABLE3_ORDER, *ms)))
    names = [v for v in order if v in ms and ms[v].get("cost")]
    if not names:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for ax, key, title in ((axes[0], "params", "trainable parameters"),
                           (axes[1], "flops", "FLOPs per sample (profiler)")):
        vals = [ms[v]["cost"].get(key) or 0 for v in names]
        colors = [COLORS.get(v, "#999999") for v in names]
        ax.bar([labels.get(v, v) for v in names], vals, color=colors)
        ax.set_title(title)
        ax.tick_params(axis="x", rotation=45)
        for i, v in enumerate(vals):
            ax.annotate(f"{v / 1e3:.0f}k", (i, v), ha="center", va="bottom", fontsize=7)
    fig.suptitle(f"Model size and FLOPs ({ds}; Fig. 6 left)")
    return fig


def _fig6_curves(plt, r, ds, labels):
    ms = r["models"]
    have = [v for v in ("ptpm", "tpm") if ms.get(v, {}).get("curve")]
    if not have:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for v in have:
        curves = ms[v]["curve"]["per_seed"]
        spe = ms[v]["curve"].get("steps_per_epoch") or 1
        n = min(len(c) for c in curves)  # early stopping ends seeds at different steps
        steps = np.asarray([p["step"] for p in curves[0][:n]], float) / spe
        for ax, key in ((axes[0], "xauc"), (axes[1], "mae")):
            vals = np.asarray([[p[key] for p in c[:n]] for c in curves], float)
            ax.plot(steps, vals.mean(0), label=labels.get(v, v), color=COLORS.get(v))
            if len(curves) > 1:
                ax.fill_between(steps, vals.min(0), vals.max(0), color=COLORS.get(v), alpha=0.15)
    axes[0].set_ylabel("validation XAUC")
    axes[1].set_ylabel("validation MAE (s)")
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.legend()
        ax.grid(alpha=0.3)
    fig.suptitle(f"Training curves ({ds}; Fig. 6 right; band = min-max over seeds)")
    return fig


def _fig7_ucl(plt, r, ds, labels):
    ms = r["models"]
    have = [v for v in ("ptpm", "ptpm-no-ucl", "tpm") if ms.get(v, {}).get("leaf_prior_posterior_ratio")]
    if not have:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6), gridspec_kw={"width_ratios": [3, 1]})
    for v in have:
        ratio = np.asarray(ms[v]["leaf_prior_posterior_ratio"], float)
        name = labels.get(v, v) + (" (UCL)" if v == "ptpm" else "")
        axes[0].plot(np.arange(len(ratio)), ratio, marker=".", label=name, color=COLORS.get(v))
    axes[0].axhline(1.0, color="black", lw=0.8, ls="--")
    axes[0].set_xlabel("leaf (short -> long watch time)")
    axes[0].set_ylabel("prior / posterior")
    axes[0].legend()
    axes[0].grid(alpha=0.3)
    aucs = [(v, ms[v]["mean_node_auc"]["mean"]) for v in have if ms[v].get("mean_node_auc")]
    if aucs:
        axes[1].bar([labels.get(v, v) for v, _ in aucs], [a for _, a in aucs],
                    color=[COLORS.get(v) for v, _ in aucs])
        lo = min(a for _, a in aucs)
        axes[1].set_ylim(max(0.5, lo - 0.02), max(a for _, a in aucs) + 0.01)
        axes[1].set_title("mean node-classifier AUC")
        axes[1].tick_params(axis="x", rotation=30)
    fig.suptitle(f"Unbiased conditional learning ({ds}; Fig. 7)")
    return fig


def _fig8_depth(plt, r, ds, labels):
    sweep = r.get("depth_sweep") or {}
    if not sweep or max(len(v) for v in sweep.values()) < 2:
        return None
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    for v, rows in sweep.items():
        depths = sorted(int(d) for d in rows)
        get = lambda k: np.asarray([rows[d][k]["mean"] for d in depths], float)
        axes[0].plot(depths, get("mae"), marker="o", label=labels.get(v, v), color=COLORS.get(v))
        axes[1].plot(depths, get("xauc"), marker="o", label=labels.get(v, v), color=COLORS.get(v))
        if v == "ptpm":
            axes[2].plot(depths, get("avg_tree_depth"), marker="o", color=COLORS["ptpm"],
                         label="PTPM learned")
            axes[2].plot(depths, depths, ls="--", color="gray", label="global depth")
    for ax, title in zip(axes, ("MAE (s)", "XAUC", "average learned depth")):
        ax.set_xlabel("global tree depth d(T_g)")
        ax.set_title(title)
        ax.legend()
        ax.grid(alpha=0.3)
    fig.suptitle(f"Global tree depth ({ds}; Fig. 8)")
    return fig

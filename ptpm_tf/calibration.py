"""Calibration of the tree's predictive distribution (issue 7): is its ``q``-quantile
exceeded by a share ``1 - q`` of the labels?

:func:`calibration_report` decodes, for every row of a split, the quantiles of the
personalised tree's and the global tree's distributions (:mod:`ptpm_tf.heads.tree.decoding`) at
``levels`` and reports, per level, the **coverage** (share of labels at or below the
predicted quantile; the reliability curve, ideally equal to the level) and the **pinball
loss** (the proper scoring rule of a quantile). Where the duration is known, it also bins
the completion probability ``p_complete = P(W > duration)`` against the observed rate of
``watch_time >= duration``. On simulator data the oracle (the exact conditional
distribution of every row) is scored the same way: its pinball loss is the floor.
:func:`write_calibration` writes the JSON and the reliability plot (PNG).

The completion map that recalibrates ``p_complete`` is the tree head's
(:mod:`ptpm_tf.heads.tree.completion`).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, Optional, Sequence

import numpy as np
import pandas as pd
import tensorflow as tf

from ptpm_tf import metrics as M
from ptpm_tf.data.dataset import DURATION, LABEL, Dataset
from ptpm_tf.data.pipeline import feature_batches

#: levels of the reliability plot (the served ``quantiles`` levels are among them)
CALIBRATION_LEVELS = tuple(np.round(np.arange(0.05, 0.951, 0.05), 2).tolist())
COMPLETION_BINS = 10
#: completion bins with fewer rows are left out of the plot (they stay in the JSON)
MIN_BIN_ROWS = 20


def predict_quantiles(model, frame: pd.DataFrame, levels: Sequence[float],
                      batch_size: int = 8192) -> Dict[str, np.ndarray]:
    """[n, Q] quantiles of the personalised (``tree``) and global (``global``) tree's
    distributions at ``levels``, plus [n] ``p_complete`` of the personalised tree (as
    served, and ``p_complete_raw`` before recalibration) when the frame has a duration."""
    head = model.head
    if not head.distributional:
        raise ValueError("calibration needs a tree model (a head with a leaf distribution)")
    levels = tf.constant(list(levels), tf.float32)
    with_duration = DURATION in model.encoder.numeric

    @tf.function
    def step(features):
        outputs = model.raw_outputs(features)
        out = {"tree": head.quantile(outputs, levels, features=features),
               "global": head.quantile(outputs, levels, global_tree=True, features=features)}
        if with_duration:
            out.update(p_complete_raw=head.completion(outputs, features, recalibrated=False),
                       p_complete=head.completion(outputs, features))
        return out

    parts = [step(batch) for batch in
             feature_batches(model.encoder.compact_arrays(frame), batch_size)]
    return {k: np.concatenate([p[k].numpy() for p in parts]) for k in parts[0]}


def mixture_quantiles(mix, levels: Sequence[float], iterations: int = 40) -> np.ndarray:
    """[n, Q] exact quantiles ``inf{w : F(w) >= q}`` of the simulator's per-row mixtures
    (:class:`ptpm_tf.data.simulator.Mixture`), as its ``median`` computes the median: the
    duration where ``q`` falls in the completion spike, the replay tail in closed form,
    bisection on ``w / duration`` below the duration."""
    d = mix.duration
    below = mix.p_skip + mix.p_partial
    out = np.empty((len(d), len(levels)))
    for i, q in enumerate(levels):
        res = d.copy()
        tail = below + mix.p_complete < q
        if tail.any():
            r = np.clip((q - below[tail] - mix.p_complete[tail]) / mix.p_replay[tail], 0, 1 - 1e-12)
            res[tail] = d[tail] * (1.0 - mix.replay_mean[tail] * np.log1p(-r))
        head = np.flatnonzero(below >= q)
        if head.size:
            sub = mix.take(head)
            lo, hi = np.zeros(head.size), np.ones(head.size)
            for _ in range(iterations):
                mid = 0.5 * (lo + hi)
                ok = sub._cdf_below(mid) >= q
                hi, lo = np.where(ok, mid, hi), np.where(ok, lo, mid)
            res[head] = sub.duration * hi
        out[:, i] = res
    return out


def _simulator_truth(config, frame: pd.DataFrame):
    """The exact mixtures of ``frame``'s rows when it is simulator data that can be
    regenerated from the run's config (same rows and seed), else None."""
    if config is None or config.data.dataset != "simulator":
        return None
    from ptpm_tf.data.simulator import DEFAULT_ROWS, simulate_with_truth
    sim = simulate_with_truth(rows=config.data.rows or DEFAULT_ROWS, seed=config.seed)
    full = sim.dataset.frame
    idx = frame.index.to_numpy()
    if len(full) <= idx.max() or not np.array_equal(full[LABEL].to_numpy()[idx],
                                                     frame[LABEL].to_numpy()):
        return None
    return sim.mixture.take(idx)


def _completion_bins(p: np.ndarray, done: np.ndarray, bins: int) -> Dict[str, Any]:
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(p, edges[1:-1]), 0, bins - 1)
    count = np.bincount(which, minlength=bins)
    mean_p = np.bincount(which, weights=p, minlength=bins)
    rate = np.bincount(which, weights=done, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        return {"edges": edges.tolist(), "count": count.tolist(),
                "mean_predicted": (mean_p / count).tolist(),
                "observed_rate": (rate / count).tolist()}


def calibration_report(model, frame: pd.DataFrame, dataset: Dataset, *, config=None,
                       levels: Sequence[float] = CALIBRATION_LEVELS,
                       mixture=None) -> Dict[str, Any]:
    """Coverage and pinball loss per quantile level for the personalised tree, the global
    tree and (simulator) the oracle, plus the completion-probability reliability. Pass
    the simulator's ``mixture`` for ``frame``'s rows, or the run's ``config`` to
    regenerate it."""
    levels = [float(q) for q in levels]
    y = frame[LABEL].to_numpy(np.float64)
    pred = predict_quantiles(model, frame, levels)
    lev = np.asarray(levels)
    report: Dict[str, Any] = {"dataset": dataset.name, "n": int(len(frame)),
                              "levels": levels, "decode": model.head.decoder}
    for name in ("tree", "global"):
        q = pred[name].astype(np.float64)
        report[name] = {"coverage": M.quantile_coverage(y, q).tolist(),
                        "pinball": M.pinball_loss(y, q, lev).tolist()}
    if mixture is None:
        mixture = _simulator_truth(config, frame)
    if mixture is not None:
        oq = mixture_quantiles(mixture, levels)
        report["oracle"] = {"coverage": M.quantile_coverage(y, oq).tolist(),
                            "pinball": M.pinball_loss(y, oq, lev).tolist()}
    if "p_complete" in pred and DURATION in frame:
        d = frame[DURATION].to_numpy(np.float64)
        ok = np.isfinite(d) & np.isfinite(pred["p_complete"])
        done = (y[ok] >= d[ok]).astype(np.float64)
        comp = {"rows": int(ok.sum()), "observed_rate": float(done.mean())}
        for key, name in (("p_complete", ""), ("p_complete_raw", "raw_")):
            p = pred[key][ok].astype(np.float64)
            comp.update({f"{name}mean_predicted": float(p.mean()),
                         f"{name}brier": float(np.mean((p - done) ** 2)),
                         f"{name}auc": float(M.roc_auc(done, p)),
                         f"{name}bins": _completion_bins(p, done, COMPLETION_BINS)})
        if mixture is not None:
            po = (mixture.p_complete + mixture.p_replay)[ok]
            comp.update(oracle_mean_predicted=float(po.mean()),
                        oracle_brier=float(np.mean((po - done) ** 2)),
                        oracle_auc=float(M.roc_auc(done, po)),
                        oracle_bins=_completion_bins(po, done, COMPLETION_BINS))
        report["completion"] = comp
    for name in ("tree", "global", "oracle"):
        if name in report:
            cov = np.asarray(report[name]["coverage"])
            report[name]["max_abs_coverage_error"] = float(np.max(np.abs(cov - lev)))
            report[name]["mean_pinball"] = float(np.mean(report[name]["pinball"]))
    return report


def write_calibration(report: Dict[str, Any], out_dir: Path,
                      title: Optional[str] = None) -> list:
    """Write ``calibration.json`` and ``reliability.png`` into ``out_dir``; return paths."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, png_path = out_dir / "calibration.json", out_dir / "reliability.png"
    json_path.write_text(json.dumps(report, indent=2))

    lev = np.asarray(report["levels"])
    panels = 3 if "completion" in report else 2
    fig, axes = plt.subplots(1, panels, figsize=(5.2 * panels, 4.6))
    styles = {"tree": ("personalised tree", "C0", "o"), "global": ("global tree", "C1", "s"),
              "oracle": ("oracle", "k", "^")}
    ax = axes[0]
    ax.plot([0, 1], [0, 1], color="0.7", lw=1, ls="--", label="calibrated")
    for name, (label, color, marker) in styles.items():
        if name in report:
            ax.plot(lev, report[name]["coverage"], marker=marker, ms=4, color=color,
                    label=f"{label} (max |err| {report[name]['max_abs_coverage_error']:.3f})")
    ax.set(xlabel="quantile level q", ylabel="share of labels <= predicted q-quantile",
           title="Quantile reliability", xlim=(0, 1), ylim=(0, 1))
    ax.legend(fontsize=8, loc="upper left")
    ax = axes[1]
    for name, (label, color, marker) in styles.items():
        if name in report:
            ax.plot(lev, report[name]["pinball"], marker=marker, ms=4, color=color,
                    label=f"{label} (mean {report[name]['mean_pinball']:.3f})")
    ax.set(xlabel="quantile level q", ylabel="pinball loss (s)", title="Pinball loss per level")
    ax.legend(fontsize=8)
    if panels == 3:
        comp, ax = report["completion"], axes[2]
        ax.plot([0, 1], [0, 1], color="0.7", lw=1, ls="--")

        def curve(bins):
            keep = np.asarray(bins["count"]) >= MIN_BIN_ROWS
            return (np.asarray(bins["mean_predicted"])[keep],
                    np.asarray(bins["observed_rate"])[keep])

        ax.plot(*curve(comp["bins"]), marker="o", color="C0",
                label=f"p_complete, served (Brier {comp['brier']:.3f})")
        ax.plot(*curve(comp["raw_bins"]), marker="s", ms=4, color="C0", alpha=0.45, ls=":",
                label=f"tree before recalibration (Brier {comp['raw_brier']:.3f})")
        if "oracle_bins" in comp:
            ax.plot(*curve(comp["oracle_bins"]), marker="^", color="k",
                    label=f"oracle (Brier {comp['oracle_brier']:.3f})")
        ax.set(xlabel="predicted P(watch time > duration)", ylabel="observed completion rate",
               title="Completion probability", xlim=(0, 1), ylim=(0, 1))
        ax.legend(fontsize=8, loc="upper left")
    fig.suptitle(title or f"{report['dataset']}: {report['n']} rows")
    fig.tight_layout()
    fig.savefig(png_path, dpi=110)
    plt.close(fig)
    return [json_path, png_path]

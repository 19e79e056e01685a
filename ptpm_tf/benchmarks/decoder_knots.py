"""How much the within-leaf interpolation matters (issue 7): decode one trained tree run's
test predictions with ``K`` within-leaf knots fitted on its training labels, for several
``K``, plus the minimal linear interpolation between each leaf's bounds, and report the
median decoder's MAE / XAUC and the mean pinball loss over levels 0.05..0.95. The knots
are fitted in the run's label space (seconds, or watch time / duration for a ratio tree,
the ``best`` preset) and the quantiles turned into seconds as the head does.

    python -m ptpm_tf.benchmarks.decoder_knots --run runs/exp/tpm-s0 [--knots 1,2,4,8,16,32]
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

import ptpm_tf  # noqa: F401
import tensorflow as tf

from ptpm_tf.heads.tree import decoding
from ptpm_tf import metrics as M
from ptpm_tf.calibration import CALIBRATION_LEVELS
from ptpm_tf.data.dataset import DURATION, LABEL
from ptpm_tf.evaluate import predict_frame
from ptpm_tf.training import load_run
from ptpm_tf.heads.tree.geometry import fit_global_tree


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", required=True)
    ap.add_argument("--knots", default="1,2,4,8,16,32")
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    config, model, dataset, split = load_run(Path(args.run))
    head = model.head
    # seconds per unit of the tree's label (the duration in ratio space), in float64 as the
    # head's adapt divides: a float32 duration moves the complete plays off the atom at 1
    unit = lambda frame: (head._unit_np(frame[DURATION].to_numpy(np.float64)) if head.ratio
                          else 1.0)
    y_train = split.train[LABEL].to_numpy(np.float64) / unit(split.train)
    tree = fit_global_tree(y_train, head.depth, leaf_values=head.leaf_values, seed=head.seed,
                           atoms=head.ratio)
    pred = predict_frame(model, split.test)
    tree_p = tf.constant(pred["leaf_prob"] @ head.spread.numpy())
    y = split.test[LABEL].to_numpy(np.float64)
    unit_test = np.reshape(unit(split.test), (-1, 1))
    lev = np.asarray(CALIBRATION_LEVELS)
    variants = {"linear (bounds only)": decoding.linear_leaf_knots(tree.leaf_bounds, 1)}
    for k in (int(x) for x in args.knots.split(",")):
        variants[f"K={k}"] = decoding.fit_leaf_knots(y_train, tree.train_leaf, tree.leaf_bounds, k)
    rows = {}
    for name, kn in variants.items():
        q = unit_test * decoding.quantiles(tree_p, tf.constant(decoding.knot_grid(kn)),
                                           lev).numpy()
        med = q[:, list(lev).index(0.5)].astype(np.float64)
        rows[name] = {"mae_median": M.mae(y, med), "xauc_median": M.xauc(y, med),
                      "mean_pinball": float(np.mean(M.pinball_loss(y, q, lev)))}
        print(f"{name:22s} MAE {rows[name]['mae_median']:.3f}  XAUC {rows[name]['xauc_median']:.4f}"
              f"  mean pinball {rows[name]['mean_pinball']:.4f}", flush=True)
    print(f"{'mean decoder (Eq. 2)':22s} MAE {M.mae(y, pred['watch_time_mean']):.3f}  "
          f"XAUC {M.xauc(y, pred['watch_time_mean'].astype(np.float64)):.4f}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()

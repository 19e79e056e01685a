"""How much could pruning help a trained tree model? (the "why" behind a TSL that stays idle)

Trains a TPM with mean leaf values (PTPM without TSL and UCL) on the simulator, then on the
VALIDATION split prunes one non-root internal node at a time for every sample and reports,
per node, the share of samples whose squared error drops and the mean change of the
normalised squared error, MAE and XAUC. Pruning node n replaces the classifiers'
distribution inside n by the training labels' distribution there (the value v(n)), so it
can only pay where the classifiers below n are worse than that prior for some x.

The last line is a label-aware bound (each sample keeps whichever single prune is best for
its own label): no pruning model can reach it, it only shows the room per-sample choices
would have if they could be predicted from the features.

    python -m ptpm_tf.benchmarks.pruning_headroom --rows 100000 --depth 6 --seed 0
"""
from __future__ import annotations

import argparse

import numpy as np

import ptpm_tf  # noqa: F401
import tensorflow as tf

from ptpm_tf.evaluate import predict_frame
from ptpm_tf.metrics import mae, xauc
from ptpm_tf.config import ExperimentConfig
from ptpm_tf.training import train


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=100_000)
    p.add_argument("--depth", type=int, default=6)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--top", type=int, default=8, help="nodes to list, most helpful first")
    args = p.parse_args(argv)

    # the paper's tree over seconds, decoded by its mean: the node values are in seconds
    config = ExperimentConfig.from_flat(model="ptpm", preset="paper", rows=args.rows,
                                        depth=args.depth, seed=args.seed, epochs=args.epochs,
                                        tsl=False, ucl=False)
    run = train(config, verbose=0)
    head, frame = run.model.head, run.split.validation
    pred = predict_frame(run.model, frame)
    y = frame["watch_time"].to_numpy(np.float64)
    reach = np.exp(head.ops.log_reach(tf.constant(pred["cls_logits"])).numpy())
    value = head.node_value.numpy().astype(np.float64)
    scale = float(head.label_scale.numpy())
    e_g = pred["watch_time_mean"] if "watch_time_mean" in pred else pred["watch_time"]
    e_g = e_g.astype(np.float64)
    n_int = head.geometry.n_internal
    print(f"validation rows {len(y)}; global tree: MAE {mae(y, e_g):.3f}  XAUC {xauc(y, e_g):.4f}")

    rows, best_err, best_pred = [], (e_g - y) ** 2, e_g.copy()
    for node in range(1, n_int):
        actions = np.zeros((len(y), n_int - 1), np.float32)
        actions[:, node - 1] = 1.0
        mask = head.ops.pruned_leaves(tf.constant(actions)).numpy()
        e_t = (reach * mask) @ value
        d_sq = ((e_t - y) ** 2 - (e_g - y) ** 2) / scale ** 2
        rows.append((node, int(head.geometry.node_depth[node]), float((d_sq < 0).mean()),
                     float(d_sq.mean()), mae(y, e_t) - mae(y, e_g), xauc(y, e_t) - xauc(y, e_g)))
        better = (e_t - y) ** 2 < best_err
        best_pred = np.where(better, e_t, best_pred)
        best_err = np.minimum(best_err, (e_t - y) ** 2)
    rows.sort(key=lambda r: r[3])
    print("node level  share_better  mean_d_sq_err(norm)   d_MAE    d_XAUC")
    for r in rows[: args.top]:
        print(f"{r[0]:4d} {r[1]:5d}  {r[2]:12.3f}  {r[3]:+19.5f}  {r[4]:+7.4f}  {r[5]:+8.4f}")
    print(f"best single prune for everyone: mean normalised squared error "
          f"{min(r[3] for r in rows):+.5f}, MAE {min(r[4] for r in rows):+.4f} s, "
          f"XAUC {max(r[5] for r in rows):+.4f} (over {len(rows)} nodes)")
    print(f"label-aware bound (not reachable by any pruner): MAE {mae(y, best_pred):.3f}  "
          f"XAUC {xauc(y, best_pred):.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

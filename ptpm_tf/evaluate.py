"""Evaluation of a trained model on a split: exact MAE / XAUC / per-user XAUC in seconds,
tree diagnostics, and the oracle row on simulator data (DESIGN.md section 4)."""
from __future__ import annotations

from typing import Any, Dict

import numpy as np
import pandas as pd
import tensorflow as tf

from ptpm_tf import metrics as M
from ptpm_tf.data.dataset import LABEL, ORACLE_MEAN, ORACLE_MEDIAN, USER, Dataset
from ptpm_tf.data.pipeline import feature_batches
from ptpm_tf.decoding import DECODERS
from ptpm_tf.heads import TreeHead
from ptpm_tf.model import WatchTimeModel


def predict_frame(model: WatchTimeModel, frame: pd.DataFrame,
                  batch_size: int = 8192) -> Dict[str, np.ndarray]:
    """The model's decoded predictions plus its raw head outputs for every row of
    ``frame``, as NumPy arrays (batched; no per-row Python work). Heads with a
    ``decode_all`` (the tree head) return their evaluation outputs too (every decoder)."""
    decode = getattr(model.head, "decode_all", model.head.decode)

    @tf.function(reduce_retracing=True)
    def step(features):
        raw = model.raw_outputs(features)
        return {**raw, **decode(raw, features)}

    parts = [step(batch) for batch in
             feature_batches(model.encoder.compact_arrays(frame), batch_size)]
    return {k: np.concatenate([p[k].numpy() for p in parts]) for k in parts[0]}


def evaluate_frame(model: WatchTimeModel, frame: pd.DataFrame, dataset: Dataset,
                   model_name: str, diagnostics: bool = True) -> Dict[str, Any]:
    """Metrics of ``model`` on ``frame`` (``metrics.json`` content)."""
    pred = predict_frame(model, frame)
    y = frame[LABEL].to_numpy(np.float64)
    p = pred["watch_time"].astype(np.float64)
    out: Dict[str, Any] = {
        "model": model_name, "dataset": dataset.name, "n_test": int(len(frame)),
        "mae": M.mae(y, p), "rmse": M.rmse(y, p), "xauc": M.xauc(y, p),
        "user_xauc": M.user_xauc(y, p, frame[USER].to_numpy()),
    }
    if isinstance(model.head, TreeHead):
        head = model.head
        out["decode"] = head.decoder
        out["avg_tree_depth"] = float(pred["tree_depth"].mean())
        # the deepest leaf hides pruning elsewhere in the tree: also report how many
        # requests have any node pruned, and the expected depth of the leaf a request
        # lands in (how many classifiers its prediction actually uses)
        out["pruned_share"] = float(pred["prune_mask"].any(axis=1).mean())
        out["avg_path_depth"] = float((pred["leaf_prob"] * head.geometry.node_depth).sum(1).mean())
        p_g = pred["watch_time_global"].astype(np.float64)
        out["mae_global_tree"] = M.mae(y, p_g)
        out["xauc_global_tree"] = M.xauc(y, p_g)
        users = frame[USER].to_numpy()
        for dec in DECODERS:  # every decoder of the same trained tree (issue 7)
            p_t = pred[f"watch_time_{dec}"].astype(np.float64)
            p_gt = pred[f"watch_time_global_{dec}"].astype(np.float64)
            out.update({f"mae_{dec}": M.mae(y, p_t), f"rmse_{dec}": M.rmse(y, p_t),
                        f"xauc_{dec}": M.xauc(y, p_t),
                        f"user_xauc_{dec}": M.user_xauc(y, p_t, users),
                        f"mae_global_tree_{dec}": M.mae(y, p_gt),
                        f"xauc_global_tree_{dec}": M.xauc(y, p_gt)})
        if diagnostics:
            leaf = head.targets(frame)["leaf"]
            logits = pred["cls_logits"]
            reach = np.exp(head.ops.log_reach(tf.constant(logits)).numpy())
            leaf_prob = reach[:, head.geometry.n_internal:]
            out["leaf_prior_posterior_ratio"] = M.leaf_prior_posterior_ratio(leaf_prob, leaf).tolist()
            node_auc = M.node_auc(1.0 / (1.0 + np.exp(-logits)), leaf, head.depth)
            out["node_auc"] = node_auc.tolist()
            out["mean_node_auc"] = float(np.nanmean(node_auc))
    if dataset.has_oracle:
        out["oracle_mae"] = M.mae(y, frame[ORACLE_MEDIAN].to_numpy(np.float64))
        out["oracle_xauc"] = M.xauc(y, frame[ORACLE_MEAN].to_numpy(np.float64))
    return {k: (float(v) if isinstance(v, (np.floating, float)) else v) for k, v in out.items()}


TABLE_COLUMNS = (("model", "model", "{}"), ("mae", "MAE (s)", "{:.3f}"),
                 ("xauc", "XAUC", "{:.4f}"), ("user_xauc", "user XAUC", "{:.4f}"),
                 ("avg_tree_depth", "avg depth", "{:.2f}"))


def format_table(rows, oracle: Dict[str, float] | None = None) -> str:
    """A plain-text table of metrics rows (one per model), plus the oracle's row."""
    header = [title for _, title, _ in TABLE_COLUMNS]
    body = [[fmt.format(r[key]) if r.get(key) is not None else "-"
             for key, _, fmt in TABLE_COLUMNS] for r in rows]
    if oracle is not None:
        body.append(["oracle", f"{oracle['oracle_mae']:.3f}", f"{oracle['oracle_xauc']:.4f}",
                     "-", "-"])
    widths = [max(len(h), *(len(b[i]) for b in body)) for i, h in enumerate(header)]
    line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths))
    return "\n".join([line(header), line(["-" * w for w in widths]), *map(line, body)])


def decoder_rows(rows):
    """Table rows with each tree model's row split into one row per decoder (issue 7):
    model ``ptpm`` becomes ``ptpm/mean`` and ``ptpm/median`` with those decoders' MAE,
    XAUC and user XAUC; the decoder the model serves is marked with ``*``. Rows without
    per-decoder metrics pass through unchanged."""
    out = []
    for r in rows:
        if not all(f"mae_{dec}" in r for dec in DECODERS):
            out.append(r)
            continue
        for dec in DECODERS:
            mark = "*" if r.get("decode") == dec else ""
            out.append({**r, "model": f"{r['model']}/{dec}{mark}", "mae": r[f"mae_{dec}"],
                        "xauc": r[f"xauc_{dec}"], "user_xauc": r.get(f"user_xauc_{dec}")})
    return out

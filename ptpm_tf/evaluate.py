"""Evaluation of a trained model on a split: exact MAE / XAUC / per-user XAUC in seconds,
tree diagnostics, and the oracle row on simulator data (docs/design.md section 4)."""
from __future__ import annotations

from typing import Any, Dict

import numpy as np
import pandas as pd
import tensorflow as tf

from ptpm_tf import metrics as M
from ptpm_tf.data.dataset import DURATION, LABEL, ORACLE_MEAN, ORACLE_MEDIAN, USER, Dataset
from ptpm_tf.data.pipeline import feature_batches
from ptpm_tf.model import WatchTimeModel


def predict_frame(model: WatchTimeModel, frame: pd.DataFrame,
                  batch_size: int = 8192) -> Dict[str, np.ndarray]:
    """The model's decoded predictions plus its raw head outputs for every row of
    ``frame``, as NumPy arrays (batched; no per-row Python work): the head's
    ``evaluation_outputs`` (for the tree head, every decoder)."""
    step = _evaluation_step(model)

    parts = [step(batch) for batch in
             feature_batches(model.encoder.compact_arrays(frame), batch_size)]
    return {k: np.concatenate([p[k].numpy() for p in parts]) for k in parts[0]}


def _evaluation_step(model: WatchTimeModel):
    """features -> raw outputs and the head's ``evaluation_outputs``, one traced graph."""
    head = model.head

    @tf.function(reduce_retracing=True)
    def step(features):
        raw = model.raw_outputs(features)
        return {**raw, **head.evaluation_outputs(raw, features)}
    return step


def evaluate_frame(model: WatchTimeModel, frame: pd.DataFrame, dataset: Dataset,
                   model_name: str, diagnostics: bool = True) -> Dict[str, Any]:
    """Metrics of ``model`` on ``frame`` (``metrics.json`` content)."""
    pred = predict_frame(model, frame)
    diag = model.head.diagnostic_inputs(pred, frame) if diagnostics else None
    oracle = ((frame[ORACLE_MEDIAN].to_numpy(np.float64), frame[ORACLE_MEAN].to_numpy(np.float64))
              if dataset.has_oracle else None)
    return prediction_metrics(model, model.head.per_row(pred),
                              frame[LABEL].to_numpy(np.float64), frame[USER].to_numpy(),
                              dataset_name=dataset.name, model_name=model_name, oracle=oracle,
                              diagnostics=diag)


def evaluate_prepared(model: WatchTimeModel, prepared, part: str, model_name: str,
                      diagnostics: bool = True, batch_size: int = 8192,
                      diagnostic_rows: int = 200_000) -> Dict[str, Any]:
    """:func:`evaluate_frame` on a split of a prepared directory, streamed: the model runs
    batch by batch and only the per-row outputs the metrics need are kept (a few floats
    per row), so MAE, XAUC and per-user XAUC are exact over the whole split. The tree
    diagnostics (per-node AUC, leaf prior/posterior) use every k-th row, at most
    ``diagnostic_rows`` rows (``diagnostic_stride`` in the result)."""
    from ptpm_tf.data.prepared import ROW

    head = model.head
    step = _evaluation_step(model)

    n = prepared.rows(part)
    stride = max(1, -(-n // diagnostic_rows))
    cols = [*prepared.features, *prepared.meta["labels"], ROW]
    if USER not in cols:
        cols.append(USER)
    kept: Dict[str, list] = {}
    diag_parts: Dict[str, list] = {}
    for batch in prepared.batches(part, batch_size, columns=list(dict.fromkeys(cols))):
        pred = {k: v.numpy() for k, v in step(batch).items()}
        y = batch[LABEL].numpy()
        one = {**head.per_row(pred), "y": y, "user": batch[USER].numpy()}
        if prepared.has_oracle:
            one["oracle_median"] = batch[ORACLE_MEDIAN].numpy()
            one["oracle_mean"] = batch[ORACLE_MEAN].numpy()
        for k, v in one.items():
            kept.setdefault(k, []).append(v)
        if diagnostics:
            pick = batch[ROW].numpy() % stride == 0
            labels = pd.DataFrame({c: batch[c].numpy()[pick] for c in (LABEL, DURATION)
                                   if c in batch})
            inputs = head.diagnostic_inputs({k: v[pick] for k, v in pred.items()}, labels)
            if inputs is None:  # a head without diagnostics: stop subsampling for them
                diagnostics = False
            for k, v in (inputs or {}).items():
                diag_parts.setdefault(k, []).append(v)
    cat = {k: np.concatenate(v) for k, v in kept.items()}
    y, users = cat.pop("y"), cat.pop("user")
    oracle = (cat.pop("oracle_median"), cat.pop("oracle_mean")) if prepared.has_oracle else None
    diag = {k: np.concatenate(v) for k, v in diag_parts.items()} or None
    out = prediction_metrics(model, cat, y, users, dataset_name=prepared.name,
                             model_name=model_name, oracle=oracle, diagnostics=diag)
    if diag is not None:
        out["diagnostic_stride"] = stride
    return out


def prediction_metrics(model: WatchTimeModel, pred: Dict[str, np.ndarray], y: np.ndarray,
                       users: np.ndarray, *, dataset_name: str, model_name: str,
                       oracle=None, diagnostics=None) -> Dict[str, Any]:
    """Metrics from per-row predictions (``Head.per_row``), labels and user ids, plus the
    head's own (``Head.evaluation_metrics``). ``oracle``: (median, mean) per row;
    ``diagnostics``: the head's concatenated ``diagnostic_inputs``."""
    p = pred["watch_time"].astype(np.float64)
    out: Dict[str, Any] = {
        "model": model_name, "dataset": dataset_name, "n_test": int(len(y)),
        "mae": M.mae(y, p), "rmse": M.rmse(y, p), "xauc": M.xauc(y, p),
        "user_xauc": M.user_xauc(y, p, users),
    }
    out.update(model.head.evaluation_metrics(pred, y, users, diagnostics))
    if oracle is not None:
        out["oracle_mae"] = M.mae(y, oracle[0])
        out["oracle_xauc"] = M.xauc(y, oracle[1])
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
        decoders = r.get("decoders") or ()
        if not decoders:
            out.append(r)
            continue
        for dec in decoders:
            mark = "*" if r.get("decode") == dec else ""
            out.append({**r, "model": f"{r['model']}/{dec}{mark}", "mae": r[f"mae_{dec}"],
                        "xauc": r[f"xauc_{dec}"], "user_xauc": r.get(f"user_xauc_{dec}")})
    return out

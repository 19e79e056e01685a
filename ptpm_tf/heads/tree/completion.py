"""The completion map: a monotone recalibration of the tree's ``p_complete``.

**Recalibrating the completion probability.** The tree's leaves are in absolute seconds,
so each item's completion spike (a point mass at exactly its duration) is smeared over the
leaf that holds the duration: ``P(W > duration)`` read off the leaf distribution is biased
low (by 0.05-0.09 on the simulator; ``docs/benchmarks-decoders.md``).
:func:`fit_completion_map` fits a monotone map from that raw probability to the observed
completion rate on the **validation** split (binned isotonic regression); the tree head
stores it as the constant ``completion_map`` and serves ``p_complete`` through it
(:func:`ptpm_tf.heads.tree.decoding.monotone_map`). Being monotone it keeps the ranking of the raw
probability and only corrects its level.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import tensorflow as tf

from ptpm_tf.data.pipeline import feature_batches
from ptpm_tf.heads.tree import decoding

#: equal-count bins of the raw completion probability that the recalibration map is fitted
#: on, and the fewest validation rows it is fitted from (else the map stays the identity)
COMPLETION_FIT_BINS = 20
COMPLETION_FIT_MIN_ROWS = 200


def raw_completion(model, frame: pd.DataFrame, batch_size: int = 8192) -> np.ndarray:
    """[n] the personalised tree's ``p_complete`` before any recalibration."""
    head = model.head

    @tf.function
    def step(features):
        return head.completion(model.raw_outputs(features), features, recalibrated=False)

    return np.concatenate([step(b).numpy() for b in
                           feature_batches(model.encoder.compact_arrays(frame), batch_size)])


def isotonic(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """The non-decreasing sequence closest to ``values`` in weighted least squares (pool
    adjacent violators; a loop over the few bins, never over rows)."""
    blocks = []  # [mean, weight, count]
    for v, w in zip(np.asarray(values, np.float64), np.asarray(weights, np.float64)):
        blocks.append([v, w, 1])
        while len(blocks) > 1 and blocks[-2][0] > blocks[-1][0]:
            v2, w2, c2 = blocks.pop()
            v1, w1, c1 = blocks[-1]
            blocks[-1] = [(v1 * w1 + v2 * w2) / (w1 + w2), w1 + w2, c1 + c2]
    return np.concatenate([np.full(c, v) for v, _, c in blocks])


def fit_completion_map(raw: np.ndarray, done: np.ndarray,
                       grid: int = decoding.COMPLETION_GRID,
                       bins: int = COMPLETION_FIT_BINS,
                       min_rows: int = COMPLETION_FIT_MIN_ROWS) -> np.ndarray:
    """[grid + 1] values at ``j / grid`` of the monotone map from the raw completion
    probability to the completion rate.

    The rows (NaN ones dropped) are sorted by ``raw`` and cut into ``bins`` equal-count
    bins; each bin gives a point (its mean raw probability, its completion rate), the
    rates are made non-decreasing (:func:`isotonic`, weighted by the bins' sizes) and the
    map interpolates linearly between the points, flat beyond the first and the last.
    With fewer than ``min_rows`` rows it is the identity.
    """
    raw = np.asarray(raw, np.float64)
    done = np.asarray(done, np.float64)
    ok = np.isfinite(raw) & np.isfinite(done)
    at = np.linspace(0.0, 1.0, grid + 1)
    if ok.sum() < max(min_rows, bins):
        return at.astype(np.float32)
    raw, done = raw[ok], done[ok]
    order = np.argsort(raw, kind="stable")
    which = np.arange(len(raw)) * bins // len(raw)  # equal-count bin of each sorted row
    count = np.bincount(which, minlength=bins).astype(np.float64)
    x = np.bincount(which, weights=raw[order], minlength=bins) / count
    rate = isotonic(np.bincount(which, weights=done[order], minlength=bins) / count, count)
    return np.clip(np.interp(at, x, rate), 0.0, 1.0).astype(np.float32)

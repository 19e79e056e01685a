"""Distributional decoding of the tree: the full predictive distribution of the watch time,
its quantiles (median included) and its survival function ``P(W > t)``, as graph ops.

The tree gives every request a categorical distribution over its leaves; this module turns
it into a continuous distribution in seconds and decodes it (issue 7; DESIGN.md section 2).

**From a (pruned) tree to the global leaves.** A leaf ``n`` of a pruned tree ``T`` may be an
internal node of the global tree; its interval is the union of the intervals of the global
leaves below it. Its probability ``P(n)`` is spread over those leaves in proportion to
their training mass, i.e. the label distribution inside ``n`` is the training labels'
distribution inside ``n``: the same assumption that makes ``v(n)``, the node's training
mean, its value in Eq. 2. The global leaves are equal-frequency (their training counts
differ by at most one row), so this is a uniform spread in quantile space::

    p_k = sum_{n leaf of T, k below n} P(n) / |leaves below n|          (k = 0..L-1)

a constant ``[N, L]`` matrix applied to the masked reach probabilities
(:func:`spread_matrix`, :func:`leaf_distribution`). For the unpruned global tree it is the
identity on the leaves. With ``leaf_values='mean'`` the mean of this distribution over the
leaves' training means is exactly ``E_T`` of Eq. 2.

**Inside a global leaf.** Leaf ``k`` covers ``[b_k, b_{k+1}]`` (the tree's
``leaf_bounds``). Its within-leaf CDF is the piecewise-linear interpolation of the
training labels' empirical CDF in that leaf through ``K + 1`` knots
``x_{k,0} = b_k <= x_{k,1} <= ... <= x_{k,K} = b_{k+1}``, where ``x_{k,j}`` (0 < j < K) is
the ``j/K`` quantile of the training labels in leaf ``k`` (:func:`fit_leaf_knots`; stored
in the model as the ``[L, K+1]`` constant ``leaf_knots``). ``K = 1`` is plain linear
interpolation between the leaf's bounds. So the predictive CDF is::

    F(t) = sum_{k' < k} p_k' + p_k * G_k(t),    b_k <= t < b_{k+1},
    G_k(t) = (j + (t - x_{k,j}) / (x_{k,j+1} - x_{k,j})) / K,   x_{k,j} <= t < x_{k,j+1}

continuous and piecewise linear; ``F = 0`` below ``b_0`` and ``F = 1`` from ``b_L`` on.

**Decoders.** The quantile at level ``q`` is ``F^{-1}(q) = inf{t : F(t) >= q}``: the leaf
``k`` where the cumulative mass reaches ``q``, then the within-leaf level
``r = (q - C_k) / p_k`` read off the leaf's knots by linear interpolation
(:func:`quantiles`). The median is ``q = 1/2``; it minimises the expected absolute error
under this distribution, as the mean (Eq. 2) minimises the squared error. ``P(W > t)`` is
``1 - F(t)`` (:func:`survival`); at the item's duration it is the completion probability.

Everything is dense and vectorised over the batch, the leaves and the levels: gathers, a
cumulative sum and comparisons against ``L`` cumulative masses; no Python loops over
samples, no data-dependent shapes, only stock TF ops (TF Serving can run them).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import tensorflow as tf

from ptpm_tf.tree import TreeGeometry

#: the quantile levels the serving signature returns (``quantiles`` output, [B, 5])
QUANTILE_LEVELS = (0.1, 0.25, 0.5, 0.75, 0.9)
#: default number of within-leaf interpolation pieces ``K`` (``leaf_knots`` is [L, K+1])
LEAF_KNOTS = 8
DECODERS = ("mean", "median")


# ------------------------------------------------------------------ constants (NumPy)


def spread_matrix(geometry: TreeGeometry) -> np.ndarray:
    """[N, L] ``S[n, k] = 1 / |leaves below n|`` if global leaf ``k`` lies below (or is)
    node ``n``, else 0: spreads a node's probability uniformly over its global leaves,
    i.e. by their (equal) training mass. Rows sum to 1; leaf rows are one-hot."""
    sub = geometry.subtree_leaves.astype(np.float64)
    return (sub / sub.sum(axis=1, keepdims=True)).astype(np.float32)


def fit_leaf_knots(y: np.ndarray, train_leaf: np.ndarray, leaf_bounds: np.ndarray,
                   knots: int = LEAF_KNOTS) -> np.ndarray:
    """[L, K+1] within-leaf quantile knots of the training labels (see the module doc).

    ``train_leaf`` is each training label's global leaf (``GlobalTree.train_leaf``) and
    ``leaf_bounds`` [L+1] the leaves' edges. Knot ``j`` of leaf ``k`` is the ``j/K``
    quantile (linear interpolation between order statistics) of the labels in leaf ``k``,
    with the ends pinned to the leaf's bounds so that the CDF is continuous; an empty leaf
    (only with fewer rows than leaves) interpolates linearly between its bounds. The
    result is non-decreasing in ``(k, j)`` order.
    """
    if knots < 1:
        raise ValueError(f"leaf_knots must be >= 1, got {knots}")
    y = np.asarray(y, np.float64)
    leaf = np.asarray(train_leaf, np.int64)
    bounds = np.asarray(leaf_bounds, np.float64)
    n_leaves = len(bounds) - 1
    order = np.lexsort((y, leaf))
    ys = y[order]
    counts = np.bincount(leaf, minlength=n_leaves)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    level = np.arange(knots + 1) / knots
    pos = starts[:, None] + level[None, :] * np.maximum(counts - 1, 0)[:, None]
    lo = np.floor(pos).astype(np.int64)
    frac = pos - lo
    lo = np.clip(lo, 0, max(len(ys) - 1, 0))
    hi = np.clip(lo + 1, 0, max(len(ys) - 1, 0))
    within = ys[lo] + frac * (ys[hi] - ys[lo])
    linear = bounds[:-1, None] + level[None, :] * (bounds[1:] - bounds[:-1])[:, None]
    out = np.where(counts[:, None] > 0, within, linear)
    out[:, 0], out[:, -1] = bounds[:-1], bounds[1:]
    out = np.clip(out, bounds[:-1, None], bounds[1:, None])
    out = np.maximum.accumulate(out.ravel()).reshape(out.shape)
    return out.astype(np.float32)


def linear_leaf_knots(leaf_bounds: np.ndarray, knots: int = LEAF_KNOTS) -> np.ndarray:
    """[L, K+1] knots of the minimal interpolation: linear between each leaf's bounds."""
    b = np.asarray(leaf_bounds, np.float64)
    level = np.arange(knots + 1) / knots
    return (b[:-1, None] + level[None, :] * (b[1:] - b[:-1])[:, None]).astype(np.float32)


# ---------------------------------------------------------------------- graph ops (TF)


def leaf_distribution(node_prob: tf.Tensor, leaf_mask: tf.Tensor,
                      spread: tf.Tensor) -> tf.Tensor:
    """[B, N] reach probabilities and [B, N] leaf-of-T indicator -> [B, L] probabilities
    of the global leaves (``spread`` from :func:`spread_matrix`)."""
    return tf.matmul(node_prob * leaf_mask, spread)


def _normalise(leaf_prob: tf.Tensor) -> tuple:
    """Probabilities renormalised to sum to 1, and [B, L+1] cumulative masses
    ``C_0 = 0, ..., C_L = 1``."""
    p = tf.math.divide_no_nan(leaf_prob, tf.reduce_sum(leaf_prob, axis=1, keepdims=True))
    c = tf.cumsum(p, axis=1)
    c = tf.concat([tf.zeros_like(c[:, :1]), c[:, :-1], tf.ones_like(c[:, :1])], axis=1)
    return p, c


def quantiles(leaf_prob: tf.Tensor, leaf_knots: tf.Tensor,
              levels: Sequence[float] | tf.Tensor) -> tf.Tensor:
    """[B, L] leaf probabilities, [L, K+1] knots, [Q] (or [B, Q]) levels in (0, 1) ->
    [B, Q] quantiles ``inf{t : F(t) >= q}`` of the interpolated distribution."""
    p, c = _normalise(leaf_prob)
    n_leaves = tf.shape(p)[1]
    k_pieces = tf.shape(leaf_knots)[1] - 1
    q = tf.convert_to_tensor(levels, tf.float32)
    if q.shape.rank == 1:
        q = tf.broadcast_to(q[None, :], [tf.shape(p)[0], tf.shape(q)[0]])
    # leaf holding level q: the number of leaves whose cumulative upper mass is below q
    k = tf.reduce_sum(tf.cast(c[:, None, 1:] < q[:, :, None], tf.int32), axis=2)
    k = tf.minimum(k, n_leaves - 1)
    c_lo = tf.gather(c, k, batch_dims=1)
    p_k = tf.gather(p, k, batch_dims=1)
    r = tf.clip_by_value(tf.math.divide_no_nan(q - c_lo, p_k), 0.0, 1.0)
    pos = r * tf.cast(k_pieces, tf.float32)
    j = tf.minimum(tf.cast(tf.floor(pos), tf.int32), k_pieces - 1)
    frac = pos - tf.cast(j, tf.float32)
    flat = tf.reshape(leaf_knots, [-1])
    base = k * (k_pieces + 1) + j
    x0, x1 = tf.gather(flat, base), tf.gather(flat, base + 1)
    return x0 + frac * (x1 - x0)


def cdf(leaf_prob: tf.Tensor, leaf_knots: tf.Tensor, t: tf.Tensor) -> tf.Tensor:
    """[B, L] leaf probabilities, [L, K+1] knots, [B] thresholds -> [B] ``F(t) = P(W <= t)``
    (NaN where ``t`` is NaN)."""
    p, c = _normalise(leaf_prob)
    n_leaves = tf.shape(p)[1]
    k_pieces = tf.shape(leaf_knots)[1] - 1
    t = tf.cast(t, tf.float32)
    upper = leaf_knots[:, -1]
    # leaves entirely at or below t (right-continuous: a leaf ending at t counts whole)
    k = tf.reduce_sum(tf.cast(upper[None, :] <= t[:, None], tf.int32), axis=1)
    below = tf.gather(c, k, batch_dims=1)
    kc = tf.minimum(k, n_leaves - 1)
    kn = tf.gather(leaf_knots, kc)  # [B, K+1]
    j = tf.reduce_sum(tf.cast(kn[:, 1:] <= t[:, None], tf.int32), axis=1)
    j = tf.minimum(j, k_pieces - 1)
    x0 = tf.gather(kn, j, batch_dims=1)
    x1 = tf.gather(kn, j + 1, batch_dims=1)
    g = (tf.cast(j, tf.float32) + tf.clip_by_value(tf.math.divide_no_nan(t - x0, x1 - x0),
                                                    0.0, 1.0)) / tf.cast(k_pieces, tf.float32)
    g = tf.where(t < kn[:, 0], tf.zeros_like(g), g)
    inside = tf.where(k < n_leaves, tf.gather(p, kc, batch_dims=1) * g, tf.zeros_like(g))
    f = tf.clip_by_value(below + inside, 0.0, 1.0)
    return tf.where(tf.math.is_nan(t), tf.fill(tf.shape(f), np.nan), f)


def survival(leaf_prob: tf.Tensor, leaf_knots: tf.Tensor, t: tf.Tensor) -> tf.Tensor:
    """[B] ``P(W > t) = 1 - F(t)``; at the item's duration, the completion probability."""
    return 1.0 - cdf(leaf_prob, leaf_knots, t)

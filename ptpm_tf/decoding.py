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
leaves' training means is ``E_T`` of Eq. 2 (up to the at most one-row differences between
the leaves' training counts).

**Inside a global leaf.** Leaf ``k`` covers ``[b_k, b_{k+1}]`` (the tree's
``leaf_bounds``). Its within-leaf CDF is the piecewise-linear interpolation of the
training labels' empirical CDF in that leaf through ``K + 1`` knots
``x_{k,0} = b_k <= x_{k,1} <= ... <= x_{k,K} = b_{k+1}``, where ``x_{k,j}`` (0 < j < K) is
the ``j/K`` quantile of the training labels in leaf ``k`` (:func:`fit_leaf_knots`). The
leaves share their ends, so the model stores them as one non-decreasing grid of
``L*K + 1`` knots (:func:`knot_grid`; the constant ``leaf_knots``), knot ``kK + j`` being
``x_{k,j}``. ``K = 1`` is plain linear interpolation between the leaves' bounds. So the
predictive CDF is::

    F(t) = sum_{k' < k} p_k' + p_k * G_k(t),    b_k <= t < b_{k+1},
    G_k(t) = (j + (t - x_{k,j}) / (x_{k,j+1} - x_{k,j})) / K,   x_{k,j} <= t < x_{k,j+1}

continuous and piecewise linear; ``F = 0`` below ``b_0`` and ``F = 1`` from ``b_L`` on.

**Decoders.** The quantile at level ``q`` is ``F^{-1}(q) = inf{t : F(t) >= q}``: the leaf
``k`` where the cumulative mass reaches ``q``, then the within-leaf level
``r = (q - C_k) / p_k`` read off the leaf's knots by linear interpolation
(:func:`quantiles`). The median is ``q = 1/2``; it minimises the expected absolute error
under this distribution, as the mean (Eq. 2) minimises the squared error. ``P(W > t)`` is
``1 - F(t)`` (:func:`survival`); at the item's duration it is the completion probability.

Both directions go through the leaf-rank coordinate ``s in [0, L]`` (``s = k + G_k(t)``):
the map between ``s`` and seconds is the same for every request (the knot grid, knot
``kK + j`` at ``s = k + j/K``), only the map between ``s`` and probability is per request
(``F = C_k + p_k (s - k)``). Everything is dense and vectorised over the batch, the leaves
and the levels: a cumulative sum, a binary search (``tf.searchsorted``) and a few
gathers; no Python loops over samples, no data-dependent shapes, only stock TF ops (TF
Serving can run them).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import tensorflow as tf

from ptpm_tf.tree import TreeGeometry

#: the quantile levels the serving signature returns (``quantiles`` output, [B, 5])
QUANTILE_LEVELS = (0.1, 0.25, 0.5, 0.75, 0.9)
#: default number of within-leaf interpolation pieces ``K`` (``leaf_knots`` is [L*K+1])
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


def knot_grid(leaf_knots: np.ndarray) -> np.ndarray:
    """[L, K+1] per-leaf knots (ends shared: ``x_{k,K} = x_{k+1,0}``) -> the [L*K+1] knot
    grid the graph ops take: knot ``k K + j`` is ``x_{k,j}``."""
    kn = np.asarray(leaf_knots, np.float32)
    if not np.allclose(kn[1:, 0], kn[:-1, -1]):
        raise ValueError("leaf knots must share their ends (x[k, K] == x[k+1, 0])")
    return np.concatenate([kn[:, :-1].ravel(), kn[-1:, -1]]).astype(np.float32)


def linear_leaf_knots(leaf_bounds: np.ndarray, knots: int = LEAF_KNOTS) -> np.ndarray:
    """[L, K+1] knots of the minimal interpolation: linear between each leaf's bounds."""
    b = np.asarray(leaf_bounds, np.float64)
    level = np.arange(knots + 1) / knots
    return (b[:-1, None] + level[None, :] * (b[1:] - b[:-1])[:, None]).astype(np.float32)


# ---------------------------------------------------------------------- graph ops (TF)


def leaf_distribution(leaf_prob: tf.Tensor, spread: tf.Tensor) -> tf.Tensor:
    """[B, N] probabilities of the leaves of T (reach probabilities times T's leaf
    indicator) -> [B, L] probabilities of the global leaves (``spread`` from
    :func:`spread_matrix`)."""
    return tf.matmul(leaf_prob, spread)


def _sizes(leaf_prob: tf.Tensor, knots: tf.Tensor) -> tuple:
    """(L, K, M = L*K) as Python ints when the shapes are static (they are in the model:
    both come from constants), else as scalar tensors."""
    n_leaves = leaf_prob.shape[1]
    m = knots.shape[0]
    if n_leaves is None or m is None:
        n_leaves, m = tf.shape(leaf_prob)[1], tf.shape(knots)[0]
    m = m - 1
    return n_leaves, m // n_leaves, m


def _cumulative(leaf_prob: tf.Tensor, n_leaves) -> tf.Tensor:
    """[B, L] inclusive cumulative masses. With a static ``L`` this is a matmul by a
    constant upper-triangular matrix: on CPU, TF's ``cumsum`` kernel is ~10x slower than
    that matmul at [512, 64] (measured)."""
    if isinstance(n_leaves, int):
        return tf.matmul(leaf_prob, tf.constant(np.triu(np.ones((n_leaves, n_leaves),
                                                                np.float32))))
    return tf.cumsum(leaf_prob, axis=1)


def quantiles(leaf_prob: tf.Tensor, knots: tf.Tensor, levels: Sequence[float] | tf.Tensor,
              normalized: bool = False) -> tf.Tensor:
    """[B, L] leaf probabilities, [L*K+1] knot grid (:func:`knot_grid`), [Q] (or [B, Q])
    levels in (0, 1) -> [B, Q] quantiles ``inf{t : F(t) >= q}``.

    Two steps: the level ``q`` is mapped to the leaf-rank coordinate
    ``s = k + (q - C_k) / p_k`` (``k`` the leaf where the cumulative mass reaches ``q``),
    then ``s`` to seconds by the constant piecewise-linear map through the knots, knot
    ``k K + j`` sitting at ``s = k + j / K``. The probabilities need not be normalised
    unless ``normalized`` says they are (a tree's are, up to rounding; it saves two ops).
    """
    n_leaves, k_pieces, m = _sizes(leaf_prob, knots)
    c = _cumulative(leaf_prob, n_leaves)
    q = tf.convert_to_tensor(levels, tf.float32)
    if q.shape.rank == 1:
        q = q[None, :]
    if not normalized:
        q = q * c[:, -1:]  # [B, Q]: the levels on the scale of the (unnormalised) masses
    else:
        q = tf.broadcast_to(q, [tf.shape(c)[0], tf.shape(q)[1]])
    k = tf.minimum(tf.searchsorted(c, q, side="left", out_type=tf.int32), n_leaves - 1)
    c_hi = tf.gather(c, k, batch_dims=1)
    p_k = tf.gather(leaf_prob, k, batch_dims=1)
    r = tf.clip_by_value(tf.math.divide_no_nan(q - c_hi + p_k, p_k), 0.0, 1.0)
    # leaf-rank coordinate -> knot position u = s K in [0, M] -> seconds
    u = (tf.cast(k, tf.float32) + r) * float(k_pieces) if isinstance(k_pieces, int) else (
        (tf.cast(k, tf.float32) + r) * tf.cast(k_pieces, tf.float32))
    i = tf.minimum(tf.cast(u, tf.int32), m - 1)  # u >= 0: the cast floors
    x0, x1 = tf.gather(knots, i), tf.gather(knots, i + 1)
    return x0 + (u - tf.cast(i, tf.float32)) * (x1 - x0)


def cdf(leaf_prob: tf.Tensor, knots: tf.Tensor, t: tf.Tensor,
        normalized: bool = False) -> tf.Tensor:
    """[B, L] leaf probabilities, [L*K+1] knot grid, [B] thresholds -> [B]
    ``F(t) = P(W <= t)`` (right-continuous; NaN where ``t`` is NaN).

    The inverse of :func:`quantiles`' two steps: ``t`` to the knot position ``u`` (a
    binary search in the constant grid; ``s = u / K``), then
    ``F = sum_k p_k clip(s - k, 0, 1)`` (= ``C_k + p_k (s - k)``, dense over the leaves),
    divided by the total mass (unless ``normalized``)."""
    n_leaves, k_pieces, m = _sizes(leaf_prob, knots)
    t = tf.cast(t, tf.float32)
    # number of knots <= t (0 .. M+1); t lies in [x_i, x_{i+1}) with i = that - 1
    n_le = tf.searchsorted(knots[None, :], t[None, :], side="right", out_type=tf.int32)[0]
    i = tf.clip_by_value(n_le - 1, 0, m - 1)
    x0, x1 = tf.gather(knots, i), tf.gather(knots, i + 1)
    frac = tf.clip_by_value(tf.math.divide_no_nan(t - x0, x1 - x0), 0.0, 1.0)
    u = tf.where(n_le > m, float(m) if isinstance(m, int) else tf.cast(m, tf.float32),
                 tf.cast(i, tf.float32) + frac)
    edges = tf.range(n_leaves, dtype=tf.float32) * (
        float(k_pieces) if isinstance(k_pieces, int) else tf.cast(k_pieces, tf.float32))
    scale = 1.0 / k_pieces if isinstance(k_pieces, int) else 1.0 / tf.cast(k_pieces, tf.float32)
    inside = tf.clip_by_value((u[:, None] - edges[None, :]) * scale, 0.0, 1.0)  # [B, L]
    f = tf.reduce_sum(leaf_prob * inside, axis=1)
    if not normalized:
        f = tf.math.divide_no_nan(f, tf.reduce_sum(leaf_prob, axis=1))
    return tf.where(tf.math.is_nan(t), t, f)


def survival(leaf_prob: tf.Tensor, knots: tf.Tensor, t: tf.Tensor,
             normalized: bool = False) -> tf.Tensor:
    """[B] ``P(W > t) = 1 - F(t)``; at the item's duration, the completion probability."""
    return 1.0 - cdf(leaf_prob, knots, t, normalized)

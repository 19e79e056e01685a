"""Distributional decoding of the tree: the full predictive distribution of the watch time,
its quantiles (median included) and its survival function ``P(W > t)``, as graph ops.

The tree gives every request a categorical distribution over its leaves; this module turns
it into a continuous distribution in seconds and decodes it (issue 7; docs/design.md section 2).

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
and the levels: a cumulative sum (a matmul), a binary search (the ``LowerBound`` /
``UpperBound`` kernels behind ``tf.searchsorted``, called directly because the wrapper
adds reshapes) and a few gathers; no Python loops over samples, no data-dependent shapes,
only stock TF ops (TF Serving can run them). On the serving path each op costs about half
a microsecond whatever its size up to ~64 candidates, so the formulas avoid ops that
rounding analysis shows are no-ops (clips of values already in range, renormalisations).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import tensorflow as tf

from ptpm_tf.heads.tree.config import LEAF_KNOTS
from ptpm_tf.heads.tree.geometry import TreeGeometry
from ptpm_tf.sorting import lexsort

#: steps ``J`` of the completion probability's recalibration map (``completion_map`` is
#: its values at ``j / J``, j = 0..J)
COMPLETION_GRID = 50


# ------------------------------------------------------------------ constants (NumPy)


def spread_matrix(geometry: TreeGeometry, leaf_mass: np.ndarray | None = None) -> np.ndarray:
    """[N, L] ``S[n, k] = m_k / sum_{k' below n} m_k'`` if global leaf ``k`` lies below (or
    is) node ``n``, else 0: spreads a node's probability over its global leaves by their
    training mass ``m`` (``leaf_mass``; uniform when omitted, as for equal-frequency
    leaves). Rows sum to 1; leaf rows are one-hot."""
    sub = geometry.subtree_leaves.astype(np.float64)
    if leaf_mass is not None:
        mass = np.asarray(leaf_mass, np.float64)
        sub = sub * (mass if mass.sum() > 0 else 1.0)
    total = sub.sum(axis=1, keepdims=True)
    return np.divide(sub, total, out=np.zeros_like(sub), where=total > 0).astype(np.float32)


def share_at_or_above(knot_grid_values: np.ndarray, t: float, n_leaves: int) -> np.ndarray:
    """[L] the share of each global leaf's mass at or above ``t`` under the within-leaf
    interpolation (see the module doc): ``P(W >= t) = sum_k p_k share_k``. An atom at
    exactly ``t`` (zero-width leaves there) counts as at or above ``t``: the ratio tree's
    completion probability is this at ``t = 1``."""
    x = np.asarray(knot_grid_values, np.float64)
    m = len(x) - 1
    k_pieces = m // n_leaves
    below = int(np.sum(x < t))  # knots strictly below t; t lies in (x[i], x[i + 1]]
    if below == 0:
        u = 0.0
    elif below > m:
        u = float(m)
    else:
        i = below - 1
        width = x[i + 1] - x[i]
        u = i + (min(max((t - x[i]) / width, 0.0), 1.0) if width > 0 else 1.0)
    lower = np.arange(n_leaves) * k_pieces
    return np.clip((lower + k_pieces - u) / k_pieces, 0.0, 1.0).astype(np.float32)


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
    order = lexsort((y, leaf))  # np.lexsort's order, by packed SIMD sorts
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


def _sizes(n_leaves: int | None, knots: tf.Tensor) -> tuple:
    """(L, K, M = L*K) as Python ints. Both come from constants in the model; the serving
    path needs them static (no shape ops per request)."""
    m = knots.shape[0]
    if n_leaves is None or m is None:
        raise ValueError("decoding needs static shapes: leaf_prob [B, L] and knots [L*K+1]")
    m -= 1
    if m % n_leaves:
        raise ValueError(f"knot grid of {m + 1} knots does not fit {n_leaves} leaves")
    return n_leaves, m // n_leaves, m


def cumulative_matrix(n_leaves: int) -> np.ndarray:
    """[L, L+1] ``T[k, j] = 1`` iff ``k < j``: leaf probabilities times it are the
    cumulative masses with a leading 0, ``C[:, j] = sum_{k < j} p_k`` (one matmul by a
    constant: on CPU, TF's ``cumsum`` kernel is ~10x slower than that matmul at [512, 64],
    measured). A matrix applied before it (the spread of a pruned tree) folds into it."""
    return np.triu(np.ones((n_leaves, n_leaves + 1), np.float32), k=1)


def _knot_at(knots: tf.Tensor, u: tf.Tensor, m: int) -> tf.Tensor:
    """Seconds at knot position ``u`` in ``[0, M]`` (linear between knots ``floor(u)`` and
    ``floor(u) + 1``). A NaN ``u`` (NaN leaf probabilities) gives NaN, not an
    out-of-range gather: its cast to int32 is clipped into range."""
    i = tf.clip_by_value(tf.cast(u, tf.int32), 0, m - 1)  # u >= 0: the cast floors
    x0 = tf.gather(knots, i)
    return x0 + (u - tf.cast(i, tf.float32)) * (tf.gather(knots, i + 1) - x0)


def quantiles(leaf_prob: tf.Tensor, knots: tf.Tensor,
              levels: Sequence[float] | tf.Tensor) -> tf.Tensor:
    """[B, L] leaf probabilities, [L*K+1] knot grid (:func:`knot_grid`), [Q] (or [B, Q])
    levels in (0, 1) -> [B, Q] quantiles ``inf{t : F(t) >= q}``
    (:func:`quantiles_from_cumulative` of their cumulative masses)."""
    n_leaves, _, _ = _sizes(leaf_prob.shape[1], knots)
    cum = tf.matmul(leaf_prob, tf.constant(cumulative_matrix(n_leaves)))
    return quantiles_from_cumulative(cum, knots, levels)


def quantiles_from_cumulative(cum: tf.Tensor, knots: tf.Tensor,
                              levels: Sequence[float] | tf.Tensor) -> tf.Tensor:
    """[B, L+1] cumulative leaf masses with a leading 0 (``p @`` :func:`cumulative_matrix`),
    [L*K+1] knot grid, [Q] (or [B, Q]) levels in (0, 1) -> [B, Q] quantiles.

    Two steps: the level ``q`` (scaled by the total mass, so the probabilities need not
    be normalised) is mapped to the leaf-rank coordinate ``s = j - (C_j - q) / p_{j-1}``,
    ``j`` the first column whose cumulative mass ``C_j`` reaches ``q`` (leaf ``j - 1``,
    ``p_{j-1} = C_j - C_{j-1}``), then ``s`` to seconds by the constant piecewise-linear
    map through the knots, knot ``k K + j`` sitting at ``s = k + j / K``. About twenty
    ops whatever ``B`` and ``Q``: the serving path pays per op (issue 7)."""
    n_leaves, k_pieces, m = _sizes(cum.shape[1] - 1 if cum.shape[1] else None, knots)
    q = cum[:, -1:] * tf.cast(levels, tf.float32)  # [B, Q] on the scale of the masses
    # C_0 = 0 < q unless the masses are all 0 (then j = 0 -> 1: s = 1, no bad index);
    # C_L >= q (levels < 1), so 1 <= j <= L and 0 <= r <= 1 up to rounding: no clips
    j = tf.maximum(tf.raw_ops.LowerBound(sorted_inputs=cum, values=q, out_type=tf.int32), 1)
    hi = tf.gather(cum, j, batch_dims=1)
    r = tf.math.divide_no_nan(hi - q, hi - tf.gather(cum, j - 1, batch_dims=1))
    return _knot_at(knots, (tf.cast(j, tf.float32) - r) * float(k_pieces), m)


def _position(knots: tf.Tensor, t: tf.Tensor, m: int) -> tf.Tensor:
    """[B] seconds -> [B] knot positions ``u`` in ``[0, M]`` (``s = u / K``): a binary
    search in the constant grid, then linear between the two knots around ``t``. NaN
    stays NaN (TF's min and max propagate it)."""
    t = tf.cast(t, tf.float32)
    # number of knots <= t (0 .. M+1); t lies in [x_i, x_{i+1}) with i = that - 1
    n_le = tf.reshape(tf.raw_ops.UpperBound(sorted_inputs=tf.reshape(knots, [1, -1]),
                                            values=tf.reshape(t, [1, -1]),
                                            out_type=tf.int32), [-1])
    i = tf.clip_by_value(n_le - 1, 0, m - 1)
    x0 = tf.gather(knots, i)
    frac = tf.clip_by_value(tf.math.divide_no_nan(t - x0, tf.gather(knots, i + 1) - x0),
                            0.0, 1.0)  # 0 below the first knot
    # M from the last knot on; NaN fails the comparison and stays NaN through the rest
    return tf.where(t >= knots[-1], float(m), tf.cast(i, tf.float32) + frac)


def _mass(leaf_prob: tf.Tensor, knots: tf.Tensor, t: tf.Tensor, normalized: bool,
          above: bool) -> tf.Tensor:
    """[B] ``P(W <= t)`` (or, with ``above``, ``P(W > t)``) from each leaf's share of its
    mass below (above) ``t``: ``sum_k p_k clip(s - k, 0, 1)`` (``clip(k + 1 - s, 0, 1)``),
    dense over the leaves."""
    n_leaves, k_pieces, m = _sizes(leaf_prob.shape[1], knots)
    u = _position(knots, t, m)[:, None]
    lower = np.arange(n_leaves, dtype=np.float32) * k_pieces
    share = (tf.constant(lower + k_pieces) - u) if above else (u - tf.constant(lower))
    f = tf.reduce_sum(leaf_prob * tf.clip_by_value(share * (1.0 / k_pieces), 0.0, 1.0), 1)
    if not normalized:
        f = tf.math.divide_no_nan(f, tf.reduce_sum(leaf_prob, axis=1))
    return f


def cdf(leaf_prob: tf.Tensor, knots: tf.Tensor, t: tf.Tensor,
        normalized: bool = False) -> tf.Tensor:
    """[B, L] leaf probabilities, [L*K+1] knot grid, [B] thresholds -> [B]
    ``F(t) = P(W <= t)`` (right-continuous; NaN where ``t`` is NaN).

    The inverse of :func:`quantiles`' two steps: ``t`` to the knot position ``u`` (a
    binary search in the constant grid; ``s = u / K``), then
    ``F = sum_k p_k clip(s - k, 0, 1)`` (= ``C_k + p_k (s - k)``, dense over the leaves),
    divided by the total mass (unless ``normalized``)."""
    return _mass(leaf_prob, knots, t, normalized, above=False)


def survival(leaf_prob: tf.Tensor, knots: tf.Tensor, t: tf.Tensor,
             normalized: bool = False) -> tf.Tensor:
    """[B] ``P(W > t) = 1 - F(t)`` (computed as the mass above ``t``, one op fewer on the
    serving path); at the item's duration, the completion probability."""
    return _mass(leaf_prob, knots, t, normalized, above=True)


def monotone_map(p: tf.Tensor, values: tf.Tensor) -> tf.Tensor:
    """[B] probabilities in [0, 1], [J+1] ``values`` at the grid ``j / J`` -> [B] the
    piecewise-linear map through ``(j / J, values[j])``: the completion probability's
    recalibration (:func:`ptpm_tf.heads.tree.completion.fit_completion_map`). A sum of tent
    functions ``max(0, 1 - |p J - j|)`` (they sum to 1 on [0, 1]): dense over the grid,
    so NaN stays NaN, no index can leave the grid, and few ops."""
    n = values.shape[0] - 1
    grid = tf.constant(np.arange(n + 1, dtype=np.float32))
    tent = tf.maximum(1.0 - tf.abs(p[:, None] * float(n) - grid), 0.0)  # [B, J+1]
    return tf.reduce_sum(tent * values, axis=1)

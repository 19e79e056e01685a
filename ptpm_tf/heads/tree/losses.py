"""The tree losses of PTPM (paper Eq. 4, 11-12, 17) as batched TF functions.

- :func:`ucl_weights` and :func:`path_cross_entropy`: ``L_ce`` with unbiased conditional
  learning (inverse propensity of reaching each classifier's node, Eq. 15-17).
- :func:`batch_advantage` and :func:`sample_advantage`: the self-critical reward
  ``R_T - R_{T_g}`` with ``R = XAUC - MSE`` (Eq. 11), per batch as in the paper or
  decomposed per sample (with the same batch mean), the latter exactly in O(B log^2 B) by
  counting on sorted ranks instead of comparing all pairs.
- :func:`reinforce_loss`: the REINFORCE surrogate whose gradient is Eq. 12.

Split over several replicas (:mod:`ptpm_tf.distribute`), the batch statistics here are those
of the **global** batch, exactly as one device would compute them on it: the UCL
self-normalisation means, the concordance of the rewards (each local sample against every
sample of the global batch) and the batch reward's XAUC and MSE. Per-sample values
(:func:`path_cross_entropy`, :func:`sample_advantage`) are returned for the local rows and
the means of :func:`reinforce_loss` are local; the model weights them into global means.
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from ptpm_tf import distribute


def ucl_weights(log_reach: tf.Tensor, on_path: tf.Tensor, max_weight: float,
                self_normalize: bool) -> tf.Tensor:
    """[B, I] weights ``1 / P(reach node | x)`` (stop-gradient) for the classifiers on each
    sample's path (Eq. 17); the root's is 1.

    The propensity of the classifier at level ``j - 1`` of the path is the probability of
    reaching its node, the product of the path's branch probabilities for ``1 <= l <= j - 1``
    (``exp`` of the node's ``log_reach``). Eq. 14 as printed stops the product at
    ``l <= j - 2``, one factor short of the node that Eq. 15 and 17 condition on; this is
    a correction of the printed index.

    Raw inverse propensities explode for unlikely nodes, so they are clipped at
    ``max_weight`` (``<= 0`` disables clipping) and, with ``self_normalize``, divided per
    node by their mean over the batch's samples on that node (the self-normalised IPS
    estimator), which keeps each classifier's loss on its unweighted scale. The mean is
    over the global batch when it is split over replicas.

    ``-log_reach`` is capped at 80 before the ``exp`` and nodes off the path get 0 by
    selection, not by multiplication: a node a sample almost never reaches
    (``log_reach < -88.7``) overflowed ``exp`` to ``inf``, and ``inf * 0`` made its
    column's batch mean, hence every weight of that classifier, NaN (seen at depth 8).
    Any clip below ``e^80`` gives the same weights as clipping the uncapped ``exp``.
    """
    w = tf.exp(tf.minimum(-tf.stop_gradient(log_reach), 80.0))
    if max_weight > 0:
        w = tf.minimum(w, max_weight)
    w = tf.where(on_path > 0.0, w, 0.0)
    if self_normalize:
        total, count = distribute.global_sum((tf.reduce_sum(w, 0), tf.reduce_sum(on_path, 0)))
        mean_w = tf.math.divide_no_nan(total, count)
        w = tf.math.divide_no_nan(w, mean_w[None, :])
    return tf.stop_gradient(w)


def path_cross_entropy(logits: tf.Tensor, on_path: tf.Tensor, went_right: tf.Tensor,
                       weights: tf.Tensor | None = None) -> tf.Tensor:
    """[B] ``-log p(y in leaf | x)`` as the sum of the binary cross-entropies of the
    classifiers on the true root-to-leaf path (Eq. 1, 4), optionally weighted (Eq. 17)."""
    bce = tf.nn.sigmoid_cross_entropy_with_logits(labels=went_right, logits=logits) * on_path
    if weights is not None:
        bce = bce * weights
    return tf.reduce_sum(bce, axis=1)


def _concordance(y: tf.Tensor, pred_row: tf.Tensor, pred_col: tf.Tensor) -> tuple:
    """([B, B'] concordance of row i's prediction against column j's, ties 1/2;
    [B, B'] mask of pairs with different labels). Rows are the local samples, columns the
    global batch (``B' = B`` on one replica)."""
    y_col, pred_col = distribute.global_batch((y, pred_col))
    dy = y[:, None] - y_col[None, :]
    dp = pred_row[:, None] - pred_col[None, :]
    valid = tf.cast(tf.not_equal(dy, 0.0), tf.float32)
    conc = 0.5 * (1.0 + tf.sign(dy) * tf.sign(dp))
    return conc * valid, valid


def batch_xauc(y: tf.Tensor, pred: tf.Tensor) -> tf.Tensor:
    """Exact XAUC of one batch (pairs with different labels, prediction ties 1/2)."""
    conc, valid = _concordance(y, pred, pred)
    n_conc, n_valid = distribute.global_sum((tf.reduce_sum(conc), tf.reduce_sum(valid)))
    return tf.math.divide_no_nan(n_conc, n_valid)


def _error(pred: tf.Tensor, y: tf.Tensor, scale: tf.Tensor, error: str) -> tf.Tensor:
    """Per-sample error on the normalised scale: squared (the paper's MSE) or absolute
    (the error the median minimises)."""
    if error == "squared":
        return tf.square((pred - y) / scale)
    if error == "absolute":
        return tf.abs(pred - y) / scale
    raise ValueError(f"error must be 'squared' or 'absolute', got {error!r}")


def batch_advantage(y: tf.Tensor, pred_tree: tf.Tensor, pred_global: tf.Tensor,
                    scale: tf.Tensor, error: str = "squared") -> tf.Tensor:
    """Paper-literal self-critical reward (Eq. 11): one scalar ``R_T - R_{T_g}`` for the
    batch, ``R = XAUC - MSE`` with MSE on the normalised label scale (``error='absolute'``:
    ``R = XAUC - MAE``)."""
    def reward(pred):
        return batch_xauc(y, pred) - distribute.global_mean(_error(pred, y, scale, error))
    return reward(pred_tree) - reward(pred_global)


def _dominance_counts(pos: tf.Tensor, rank: tf.Tensor, p: tf.Tensor, r: tf.Tensor) -> tf.Tensor:
    """[Q] ``#{j : pos_j < p_q and rank_j < r_q}`` for [N] ``pos`` and ``rank`` (two
    permutations of ``0..N-1``) and [Q] bounds ``p``, ``r`` in ``0..N`` (all float64,
    integer-valued: exact), in O((N + Q) log^2 N) with stock ops.

    Merge-sort-tree decomposition: ``[0, p)`` is the union, over the set bits ``l`` of
    ``p``, of block ``(p >> l) - 1`` of level ``l`` (``2^l`` consecutive positions), and
    the blocks before it are full. Sorting the keys ``(pos_j >> l) N + rank_j`` orders the
    points by block, then by rank, so one binary search for ``k N + r`` counts the
    ``k 2^l`` points of the earlier blocks plus block ``k``'s points of rank below ``r``.
    All levels at once: one [levels, N] sort and one [levels, Q] search."""
    n = tf.cast(tf.size(pos), tf.float64)
    # levels 0 .. floor(log2 N) cover every bit of p <= N; one more row for the bit test
    n_levels = tf.cast(tf.math.floor(tf.math.log(n) / np.log(2.0) + 1e-6), tf.int32) + 1
    inv_width = tf.pow(tf.constant(0.5, tf.float64), tf.range(n_levels + 1, dtype=tf.float64))
    shifted = tf.floor(p[None, :] * inv_width[:, None])  # [levels + 1, Q]: p >> l
    block, bit = shifted[:-1], shifted[:-1] - 2.0 * shifted[1:]
    width = 1.0 / inv_width[:-1, None]
    keys = tf.sort(tf.floor(pos[None, :] * inv_width[:-1, None]) * n + rank[None, :], axis=1)
    start = block - 1.0
    found = tf.searchsorted(keys, start * n + r[None, :], side="left", out_type=tf.int32)
    return tf.reduce_sum((tf.cast(found, tf.float64) - start * width) * bit, axis=0)


def _sorted_ranks(x: tf.Tensor) -> tuple:
    """(``x`` sorted ascending, [N] float64 position of each element in that order: a
    permutation of ``0..N-1``, ties in any order)."""
    order = tf.argsort(x, stable=True)
    return tf.gather(x, order), tf.cast(tf.math.invert_permutation(order), tf.float64)


def _count(sorted_keys: tf.Tensor, queries: tf.Tensor) -> tf.Tensor:
    """Number of keys strictly below each query (float64)."""
    return tf.cast(tf.searchsorted(sorted_keys, queries, side="left", out_type=tf.int32),
                   tf.float64)


def _signed_concordance(y: tf.Tensor, a: tf.Tensor, y_points: tf.Tensor,
                        c_points: tf.Tensor) -> tf.Tensor:
    """[Q] ``sum_j sign(y_q - y_j) sign(a_q - c_j)`` over the [N] points ``(y_j, c_j)``, less
    the terms that do not depend on ``a`` (float64, exact), in O((N + Q) log^2 N).

    With ``sign(u - v) = 2 [v < u] + [v = u] - 1`` in both factors, the sum is
    ``4 A + 2 E_c + 2 E_y + F - (2 #{c_j < a} + #{c_j = a})`` plus terms in ``y`` alone:
    ``A = #{y_j < y, c_j < a}`` is a 2-D dominance count (:func:`_dominance_counts` on the
    points' ranks in y and in c), the tie counts ``E_c = #{y_j < y, c_j = a}``,
    ``E_y = #{y_j = y, c_j < a}`` and ``F = #{y_j = y, c_j = a}`` binary searches in the
    points sorted by (c, y) and by (y, c). ``y`` and ``a`` must be values of the points'
    ``y`` and ``c`` (each query is one of the points), so that a tie group's index is
    ``#{values below}``."""
    n = tf.cast(tf.size(y_points), tf.float64)
    y_sorted, pos = _sorted_ranks(y_points)
    c_sorted, rank = _sorted_ranks(c_points)
    # a value's group index is the number of points strictly below it
    y_lo, y_group = _count(y_sorted, y), _count(y_sorted, y_points)
    c_lo, c_group = _count(c_sorted, a), _count(c_sorted, c_points)
    c_hi = tf.cast(tf.searchsorted(c_sorted, a, side="right", out_type=tf.int32), tf.float64)
    stride = n + 1.0  # (group, group) as one exact float64 key
    by_yc = tf.sort(y_group * stride + c_group)
    by_cy = tf.sort(c_group * stride + y_group)
    yc_query = y_lo * stride + c_lo
    below_yc = _count(by_yc, tf.concat([yc_query, yc_query + 1.0], 0))
    e_y_and_before, e_y_f_and_before = tf.split(below_yc, 2)
    e_y = e_y_and_before - y_lo  # the keys before group y_lo are the y_lo points y_j < y
    f = e_y_f_and_before - e_y_and_before
    e_c = _count(by_cy, c_lo * stride + y_lo) - c_lo
    a_count = _dominance_counts(pos, rank, y_lo, c_lo)
    return 4.0 * a_count + 2.0 * e_c + 2.0 * e_y + f - (c_lo + c_hi)


def _sampled_share(y, pred_tree, pred_global, y_col, pg_col, pt_col, partners: int):
    """[B] unbiased estimate of each sample's summed Shapley share
    ``1/4 sum_j s_ij (sign(T_i - g_j) + sign(T_i - T_j) - sign(g_i - g_j) - sign(g_i - T_j))``
    over the ``n`` samples of the global batch (``*_col``) from ``partners`` of them drawn
    uniformly with replacement, times ``n / partners``: dense [B, K] comparisons. Its
    variance is ``n^2 / K`` times the variance of ``share_i(j)`` over ``j`` (one draw)."""
    n = tf.size(y_col)
    u = distribute.uniform([tf.shape(y)[0], partners])
    j = tf.minimum(tf.cast(u * tf.cast(n, tf.float32), tf.int32), n - 1)
    g_j, t_j = tf.gather(pg_col, j), tf.gather(pt_col, j)
    t_i, g_i = pred_tree[:, None], pred_global[:, None]
    moved = (tf.sign(t_i - g_j) + tf.sign(t_i - t_j)) - (tf.sign(g_i - g_j) + tf.sign(g_i - t_j))
    total = tf.reduce_sum(tf.sign(y[:, None] - tf.gather(y_col, j)) * moved, axis=1)
    return total * (0.25 * tf.cast(n, tf.float32) / partners)


def sample_advantage(y: tf.Tensor, pred_tree: tf.Tensor, pred_global: tf.Tensor,
                     scale: tf.Tensor, error: str = "squared", partners: int = 0) -> tf.Tensor:
    """[B] per-sample decomposition of ``R_T - R_{T_g}`` (Eq. 11) whose batch mean is the
    batch reward exactly, so the XAUC and error terms keep the paper's relative scale.

    Error term: the change of sample ``i``'s own error. XAUC term: the change of every
    pair's concordance when both samples move from the global to the pruned tree,
    ``D_ij = c(T_i, T_j) - c(g_i, g_j)``, is split between the two samples by their
    Shapley values (``i`` gets the mean of its own move's effect with ``j`` at ``g_j`` and
    at ``T_j``; the two shares sum to ``D_ij``), and the shares are divided by the
    number of pairs with different labels, ``P``, times ``B``. So ``mean_i d_xauc_i =
    sum_{i<j} D_ij / P``, the batch XAUC change. ``error='absolute'`` uses the absolute
    instead of the squared error.

    Computed exactly in O(B log^2 B) instead of B x 2B pair comparisons: with
    ``c(a_i, b_j) = 1/2 (1 + s_ij sign(a_i - b_j))``, ``s_ij = sign(y_i - y_j)`` (0 on label
    ties), i's share summed over j is ``1/4 (S(y_i, T_i) - S(y_i, g_i))``, ``S(y, a) =
    sum_j sign(y - y_j) sign(a - c_j)`` over the 2B points ``(y_j, g_j)`` and ``(y_j, T_j)``
    (:func:`_signed_concordance`: counts and binary searches on sorted ranks). The counts
    are integers, so the result is the pairwise sum's, ties included.

    With ``partners = K > 0``, i's share is estimated from ``K`` partners drawn uniformly
    (with replacement) from the batch instead (:func:`_sampled_share`): unbiased, so the
    expected batch mean is still the batch reward."""
    y_col, pg_col, pt_col = distribute.global_batch((y, pred_global, pred_tree))
    if partners:
        share = _sampled_share(y, pred_tree, pred_global, y_col, pg_col, pt_col, partners)
    else:
        s = _signed_concordance(tf.concat([y, y], 0), tf.concat([pred_tree, pred_global], 0),
                                tf.concat([y_col, y_col], 0), tf.concat([pg_col, pt_col], 0))
        s_tree, s_global = tf.split(s, 2)
        share = 0.25 * tf.cast(s_tree - s_global, tf.float32)
    # pairs with a different label, P = n_pairs / 2 (pairs i < j); the shares sum to
    # sum_{i<j} D_ij
    y_sorted = tf.sort(y_col)
    same_label = (tf.searchsorted(y_sorted, y, side="right")
                  - tf.searchsorted(y_sorted, y, side="left"))
    n_pairs, n_rows = distribute.global_sum(
        (tf.cast(tf.size(y_col) * tf.size(y) - tf.reduce_sum(same_label), tf.float32),
         tf.cast(tf.shape(y)[0], tf.float32)))
    d_xauc = tf.math.divide_no_nan(share * n_rows, 0.5 * n_pairs)
    d_err = _error(pred_tree, y, scale, error) - _error(pred_global, y, scale, error)
    return d_xauc - d_err


def reinforce_loss(prune_logits: tf.Tensor, actions: tf.Tensor, live: tf.Tensor,
                   advantage: tf.Tensor) -> tf.Tensor:
    """REINFORCE surrogate ``-mean(A * log P(T | pi))`` (Eq. 12), ``log P(T)`` summed over
    the live decisions (those not under a pruned node; the others do not change ``T``).
    ``advantage`` is a scalar or [B] and is treated as a constant."""
    # a in {0, 1}: a log sig(z) + (1 - a) log sig(-z) = log sig((2a - 1) z), one softplus
    sign = 2.0 * tf.stop_gradient(actions) - 1.0
    log_p = -tf.math.softplus(-sign * prune_logits)
    log_tree = tf.reduce_sum(log_p * tf.stop_gradient(live), axis=1)
    return -tf.reduce_mean(tf.stop_gradient(advantage) * log_tree)

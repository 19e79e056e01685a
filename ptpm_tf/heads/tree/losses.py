"""The tree losses of PTPM (paper Eq. 4, 11-12, 17) as batched TF functions.

- :func:`ucl_weights` and :func:`path_cross_entropy`: ``L_ce`` with unbiased conditional
  learning (inverse propensity of reaching each classifier's node, Eq. 15-17).
- :func:`batch_advantage` and :func:`sample_advantage`: the self-critical reward
  ``R_T - R_{T_g}`` with ``R = XAUC - MSE`` (Eq. 11), per batch as in the paper or
  decomposed per sample (with the same batch mean).
- :func:`reinforce_loss`: the REINFORCE surrogate whose gradient is Eq. 12.

Split over several replicas (:mod:`ptpm_tf.distribute`), the batch statistics here are those
of the **global** batch, exactly as one device would compute them on it: the UCL
self-normalisation means, the concordance of the rewards (each local sample against every
sample of the global batch) and the batch reward's XAUC and MSE. Per-sample values
(:func:`path_cross_entropy`, :func:`sample_advantage`) are returned for the local rows and
the means of :func:`reinforce_loss` are local; the model weights them into global means.
"""
from __future__ import annotations

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
    """
    w = tf.exp(-tf.stop_gradient(log_reach)) * on_path
    if max_weight > 0:
        w = tf.minimum(w, max_weight)
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


def sample_advantage(y: tf.Tensor, pred_tree: tf.Tensor, pred_global: tf.Tensor,
                     scale: tf.Tensor, error: str = "squared") -> tf.Tensor:
    """[B] per-sample decomposition of ``R_T - R_{T_g}`` (Eq. 11) whose batch mean is the
    batch reward exactly, so the XAUC and error terms keep the paper's relative scale.

    Error term: the change of sample ``i``'s own error. XAUC term: the change of every
    pair's concordance when both samples move from the global to the pruned tree,
    ``D_ij = c(T_i, T_j) - c(g_i, g_j)``, is split between the two samples by their
    Shapley values (``i`` gets the mean of its own move's effect with ``j`` at ``g_j`` and
    at ``T_j``; the two shares sum to ``D_ij``), and the shares are divided by the
    number of pairs with different labels, ``P``, times ``B``. So ``mean_i d_xauc_i =
    sum_{i<j} D_ij / P``, the batch XAUC change. ``error='absolute'`` uses the absolute
    instead of the squared error."""
    # c(a_i, b_j) = 1/2 (1 + s_ij sign(a_i - b_j)), s_ij = sign(y_i - y_j), 0 on label ties
    # (so s is also the pair mask). i's share of D_ij:
    # 1/4 s_ij [sign(T_i - g_j) + sign(T_i - T_j) - sign(g_i - g_j) - sign(g_i - T_j)]
    y_col, pg_col, pt_col = distribute.global_batch((y, pred_global, pred_tree))
    sign_dy = tf.sign(y[:, None] - y_col[None, :])
    cols = tf.concat([pg_col, pt_col], 0)[None, :]  # [1, 2B']: g_j, then T_j
    swing = tf.sign(pred_tree[:, None] - cols) - tf.sign(pred_global[:, None] - cols)
    share = 0.25 * tf.reduce_sum(tf.concat([sign_dy, sign_dy], 1) * swing, axis=1)
    n_pairs, n_rows = distribute.global_sum(
        (tf.reduce_sum(tf.abs(sign_dy)), tf.cast(tf.shape(y)[0], tf.float32)))
    # the shares sum to sum_{i<j} D_ij, and there are P = n_pairs / 2 pairs i < j
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

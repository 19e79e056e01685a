"""Evaluation metrics for watch-time prediction, in pure NumPy (docs/design.md section 4).

The paper (section 5.1.3) reports MAE and XAUC, and analyses the tree (Fig. 7) with the
per-leaf prior/posterior ratio and the AUC of the node classifiers. Everything here is
exact: XAUC is counted over all pairs in O(n log n), never estimated from sampled pairs,
so results are comparable across runs and with other codebases (whose conventions for
tied labels differ: see :func:`xauc`).

Tree layout used by the tree diagnostics: a full binary tree of depth ``D`` in heap
order, root 0, children of node ``m`` are ``2m+1`` (left) and ``2m+2`` (right);
internal nodes ``0 .. 2**D - 2``, leaf ``k`` (``0 .. 2**D - 1``, left to right) is node
``2**D - 1 + k``. On leaf ``k``'s path the internal node at level ``j`` is
``(2**j - 1) + (k >> (D - j))`` and the direction taken there is
``(k >> (D - j - 1)) & 1`` (1 = right).
"""
from __future__ import annotations

from typing import NamedTuple, Tuple

import numpy as np

LABEL_TIES = ("exclude", "fail", "success")
PRED_TIES = ("half", "fail")


# --------------------------------------------------------------------------- regression


def mae(y_true, y_pred) -> float:
    """Mean absolute error (paper section 5.1.3), in the unit of the labels; NaN if empty."""
    y, p = _check_pair(y_true, y_pred)
    return float(np.mean(np.abs(p - y))) if y.size else float("nan")


def rmse(y_true, y_pred) -> float:
    """Root mean squared error, in the unit of the labels; NaN if empty."""
    y, p = _check_pair(y_true, y_pred)
    return float(np.sqrt(np.mean(np.square(p - y)))) if y.size else float("nan")


def pinball_loss(y_true, q_pred, level):
    """Mean pinball (quantile) loss of predicted ``level``-quantiles:
    ``mean(max(level (y - q), (level - 1) (y - q)))``, minimised in expectation by the true
    conditional ``level``-quantile (at ``level = 0.5`` it is half the MAE).

    ``q_pred`` is [n] with a scalar ``level``, or [n, Q] with ``level`` of length Q
    (then a length-Q array is returned, one loss per level).
    """
    y = _check_vector("y_true", y_true)
    q, lev = _check_quantile_pred(y, q_pred, level)
    diff = y[:, None] - q
    loss = np.mean(np.maximum(lev * diff, (lev - 1.0) * diff), axis=0) if y.size else (
        np.full(q.shape[1], np.nan))
    return float(loss[0]) if np.ndim(q_pred) == 1 else loss


def quantile_coverage(y_true, q_pred):
    """Share of labels at or below each predicted quantile, ``mean(y <= q)``: for a
    calibrated ``level``-quantile it is ``level`` (the reliability curve). ``q_pred`` [n]
    gives a float, [n, Q] an array of Q shares."""
    y = _check_vector("y_true", y_true)
    q, _ = _check_quantile_pred(y, q_pred, np.zeros(np.shape(q_pred)[1:] or (1,)))
    cover = np.mean(y[:, None] <= q, axis=0) if y.size else np.full(q.shape[1], np.nan)
    return float(cover[0]) if np.ndim(q_pred) == 1 else cover


def _check_quantile_pred(y: np.ndarray, q_pred, level) -> Tuple[np.ndarray, np.ndarray]:
    q = np.asarray(q_pred, dtype=np.float64)
    if q.ndim not in (1, 2) or q.shape[0] != y.size:
        raise ValueError(f"q_pred must be [n] or [n, Q] with n = {y.size}, got shape {q.shape}")
    q = q.reshape(y.size, -1)
    _check_finite("q_pred", q)
    lev = np.atleast_1d(np.asarray(level, dtype=np.float64))
    if lev.shape != (q.shape[1],) or np.any((lev < 0) | (lev > 1)):
        raise ValueError(f"level must hold {q.shape[1]} value(s) in [0, 1], got {level!r}")
    return q, lev


# --------------------------------------------------------------------------------- XAUC


def xauc(y_true, y_pred, label_ties: str = "exclude", pred_ties: str = "half") -> float:
    """Exact XAUC: the share of pairs that the prediction orders like the label.

    The paper (section 5.1.3, after its ref. [16]) defines
    ``XAUC = sum I((ŷi - ŷj)(yi - yj) > 0) / N_pair``. By default (docs/design.md section 4)
    the pairs are the unordered pairs with ``yi != yj`` and a tie in the prediction counts
    1/2, so that a constant prediction scores 0.5, as an AUC does.

    ``label_ties`` says what pairs with equal labels do: ``"exclude"`` (default) leaves
    them out; ``"fail"`` keeps them in the denominator with credit 0, which is the paper's
    formula taken literally over all ``n(n-1)/2`` pairs; ``"success"`` gives them credit 1.
    ``pred_ties`` says what pairs with distinct labels but equal predictions get:
    ``"half"`` (default) or ``"fail"`` (0).

    Counting is O(n log n) and uses int64 (see :func:`_pair_counts`). Returns NaN when
    there is no pair to count (fewer than two rows, or all labels equal under
    ``"exclude"``). Raises ValueError on inputs that are not 1-D, finite and of equal
    length.
    """
    _check_options(label_ties, pred_ties)
    y, p = _check_pair(y_true, y_pred)
    counts = _pair_counts(y, p, np.zeros(y.size, dtype=np.int64), 1)
    return float(_xauc_from_counts(counts, label_ties, pred_ties, per_group=False)[0])


def per_group_xauc(y_true, y_pred, groups, label_ties: str = "exclude",
                   pred_ties: str = "half") -> Tuple[np.ndarray, np.ndarray]:
    """XAUC within each group (e.g. user), counting only pairs inside a group.

    Returns ``(group_ids, values)``: the sorted distinct ``groups`` and, for each, the
    XAUC of its rows with the options of :func:`xauc`; NaN for groups with fewer than two
    distinct labels, whatever ``label_ties`` is, since no pair there says anything about
    ordering. All groups are counted in one pass (no loop over groups).
    """
    _check_options(label_ties, pred_ties)
    y, p = _check_pair(y_true, y_pred)
    g = np.asarray(groups)
    if g.ndim != 1 or g.size != y.size:
        raise ValueError(
            f"groups must be 1-D with one entry per row ({y.size}), got shape {g.shape}")
    group_ids, g_index = np.unique(g, return_inverse=True)
    counts = _pair_counts(y, p, g_index.astype(np.int64, copy=False), group_ids.size)
    return group_ids, _xauc_from_counts(counts, label_ties, pred_ties, per_group=True)


def user_xauc(y_true, y_pred, groups, label_ties: str = "exclude",
              pred_ties: str = "half") -> float:
    """Mean over users (``groups``) with at least two distinct labels of their XAUC.

    Measures how well the model ranks videos for one user, which the global XAUC mixes
    with how well it ranks users against each other. NaN if no user qualifies.
    """
    _, values = per_group_xauc(y_true, y_pred, groups, label_ties, pred_ties)
    values = values[~np.isnan(values)]
    return float(values.mean()) if values.size else float("nan")


class _PairCounts(NamedTuple):
    """Per-group pair counts (int64 arrays) from which every XAUC variant follows."""

    pairs: np.ndarray          # all unordered pairs, n(n-1)/2
    equal_label: np.ndarray    # pairs with yi == yj
    tied_pred: np.ndarray      # pairs with yi != yj and ŷi == ŷj
    discordant: np.ndarray     # pairs with (ŷi - ŷj)(yi - yj) < 0


def _pair_counts(y: np.ndarray, p: np.ndarray, g: np.ndarray, n_groups: int) -> _PairCounts:
    """Count pairs by kind inside each group, exactly, in O(n log n).

    Rows are sorted by (group, y, ŷ). Ties are counted from run lengths of equal keys:
    ``equal_label`` from runs of (group, y), ``tied_pred`` as the pairs equal in
    (group, ŷ) minus those equal in (group, y, ŷ). Discordant pairs are the strict
    inversions of the rank of (group, ŷ) along that order: ŷ ascends inside an equal-y
    run and the group rank ascends from group to group, so an inversion is exactly a pair
    of one group with yi < yj and ŷi > ŷj. Concordant pairs are the rest of the
    distinct-label pairs.
    """
    sizes = np.bincount(g, minlength=n_groups).astype(np.int64)
    zeros = np.zeros(n_groups, dtype=np.int64)
    if y.size < 2:
        return _PairCounts(sizes * (sizes - 1) // 2, zeros, zeros, zeros.copy())
    _, y_rank, _ = _dense_rank(y)
    _, p_rank, p_counts = _dense_rank(p)
    n_p = np.int64(p_counts.size)
    if n_groups == 1:
        gy_rank = y_rank
        gp_rank, gp_counts, gp_group = p_rank, p_counts, np.zeros(n_p, dtype=np.int64)
    else:
        _, gy_rank, _ = _dense_rank(g * np.int64(y_rank.max() + 1) + y_rank)
        gp_key, gp_rank, gp_counts = _dense_rank(g * n_p + p_rank)
        gp_group = gp_key // n_p

    gyp_key = gy_rank * n_p + p_rank
    order = np.argsort(gyp_key)
    g_sorted = g[order]
    group_start = np.concatenate(([0], np.cumsum(sizes)[:-1]))

    equal_label = _pairs_in_runs(gy_rank[order], g_sorted, n_groups)
    equal_label_pred = _pairs_in_runs(gyp_key[order], g_sorted, n_groups)
    equal_pred = _sum_by_group(gp_counts * (gp_counts - 1) // 2, gp_group, n_groups)

    inversions = _inversions_per_slot(gp_rank[order])
    discordant = np.add.reduceat(inversions, group_start)
    return _PairCounts(sizes * (sizes - 1) // 2, equal_label,
                       equal_pred - equal_label_pred, discordant)


def _xauc_from_counts(c: _PairCounts, label_ties: str, pred_ties: str,
                      per_group: bool) -> np.ndarray:
    """XAUC per group from pair counts; NaN where the denominator is 0, and, per group,
    also where the group has fewer than two distinct labels."""
    distinct = c.pairs - c.equal_label
    concordant = distinct - c.tied_pred - c.discordant
    twice_credit = 2 * concordant + (c.tied_pred if pred_ties == "half" else 0)
    if label_ties == "exclude":
        denominator = distinct
    else:
        denominator = c.pairs
        if label_ties == "success":
            twice_credit = twice_credit + 2 * c.equal_label
    valid = denominator > 0
    if per_group:
        valid &= distinct > 0
    out = np.full(distinct.shape, np.nan)
    out[valid] = twice_credit[valid] / (2.0 * denominator[valid])
    return out


def _inversions_per_slot(v: np.ndarray) -> np.ndarray:
    """Strict inversions (i < j, v[i] > v[j]) of ``v`` by bottom-up merge sort.

    At the level that merges sorted blocks of width ``w`` pairwise, a stable sort of
    (block pair, value) moves each element of a right block left by exactly the number
    of elements of its left block that are strictly greater, and moves no left-block
    element left. Summing those leftward moves over the log2(n) levels counts every
    inversion once. The moves are returned per final slot (int64); since ``v`` here is
    group-major, each group keeps its range of slots at every level, so summing a
    group's slot range gives that group's inversions.
    """
    n = v.size
    moved_left = np.zeros(n, dtype=np.int64)
    slots = np.arange(n, dtype=np.int64)
    span = np.int64(v.max() + 1) if n else np.int64(1)
    width = 1
    while width < n:
        perm = np.argsort((slots // (2 * width)) * span + v, kind="stable")
        moved_left += np.maximum(perm - slots, 0)
        v = v[perm]
        width *= 2
    return moved_left


# ----------------------------------------------------------------------------- ROC AUC


def roc_auc(labels, scores) -> float:
    """Exact ROC AUC of ``scores`` for binary ``labels`` (0/1 or bool), ties counting 1/2.

    Mann-Whitney U over ranks, counted in integers. NaN if only one class is present.
    """
    lab, sc = _check_pair(labels, scores, names=("labels", "scores"))
    lab = _check_binary(lab)
    return float(_grouped_auc(np.zeros(lab.size, dtype=np.int64), lab, sc, 1)[0])


def _grouped_auc(g: np.ndarray, labels: np.ndarray, scores: np.ndarray,
                 n_groups: int) -> np.ndarray:
    """ROC AUC inside each group, all groups at once; NaN for groups lacking a class.

    Rows are sorted by (group, score); for each run of equal (group, score), each
    positive beats the negatives of its group in earlier runs and ties the negatives
    of its run, so ``2U = sum(pos * (2 * negatives_before + negatives_in_run))``.
    """
    positives = np.bincount(g[labels == 1], minlength=n_groups).astype(np.int64)
    negatives = np.bincount(g, minlength=n_groups).astype(np.int64) - positives
    out = np.full(n_groups, np.nan)
    if g.size == 0:
        return out
    _, s_rank, s_counts = _dense_rank(scores)
    key = g * np.int64(s_counts.size) + s_rank
    order = np.argsort(key)
    run_start = _run_starts(key[order])
    run_group = g[order][run_start]
    run_pos = np.add.reduceat(labels[order].astype(np.int64), run_start)
    run_neg = np.diff(np.append(run_start, g.size)) - run_pos
    neg_before = np.cumsum(run_neg) - run_neg
    first_run = _run_starts(run_group)
    group_first_run = np.repeat(first_run, np.diff(np.append(first_run, run_group.size)))
    neg_before -= neg_before[group_first_run]
    twice_u = np.zeros(n_groups, dtype=np.int64)
    twice_u[run_group[first_run]] = np.add.reduceat(
        run_pos * (2 * neg_before + run_neg), first_run)
    valid = (positives > 0) & (negatives > 0)
    out[valid] = twice_u[valid] / (2.0 * positives[valid] * negatives[valid])
    return out


# ------------------------------------------------------------------- tree diagnostics


def leaf_prior_posterior_ratio(leaf_prob, true_leaf) -> np.ndarray:
    """Per leaf k: ``sum_i P(leaf k | x_i) / #{i : true_leaf_i = k}`` (paper Fig. 7).

    ``leaf_prob`` is ``[n, L]`` (predicted leaf distribution), ``true_leaf`` ``[n]``
    ints in ``[0, L)``. The ratio is 1.0 for a calibrated model; the paper shows TPM
    below 1 on left (short) leaves and above 1 on right ones, and UCL pulling it to 1.
    Returns ``[L]`` floats, NaN for leaves no sample falls in.
    """
    prob = np.asarray(leaf_prob, dtype=np.float64)
    if prob.ndim != 2:
        raise ValueError(f"leaf_prob must be 2-D [n, L], got shape {prob.shape}")
    _check_finite("leaf_prob", prob)
    leaf = _check_leaf_index(true_leaf, prob.shape[0], prob.shape[1])
    counts = np.bincount(leaf, minlength=prob.shape[1])
    out = np.full(prob.shape[1], np.nan)
    hit = counts > 0
    out[hit] = prob.sum(axis=0)[hit] / counts[hit]
    return out


def node_auc(q_right, true_leaf, depth: int) -> np.ndarray:
    """Per internal node: ROC AUC of its classifier on the samples that reach it.

    ``q_right`` is ``[n, 2**depth - 1]``, the predicted P(go right | at node, x) for
    every node; ``true_leaf`` ``[n]`` the leaf holding each sample's label. For each node
    the AUC (ties 1/2) is taken over the samples whose true path passes through it,
    against the direction that path takes there. This is the classifier quality of paper
    Fig. 7 (whose "average AUC" is the nanmean of this array). Returns ``[2**depth - 1]``
    floats, NaN where a node sees only one direction. One vectorised pass per level.
    """
    if isinstance(depth, bool) or not isinstance(depth, (int, np.integer)) or depth < 1:
        raise ValueError(f"depth must be an int >= 1, got {depth!r}")
    n_internal = 2 ** depth - 1
    q = np.asarray(q_right, dtype=np.float64)
    if q.ndim != 2 or q.shape[1] != n_internal:
        raise ValueError(f"q_right must be [n, 2**depth - 1] = [n, {n_internal}], "
                         f"got shape {q.shape}")
    _check_finite("q_right", q)
    leaf = _check_leaf_index(true_leaf, q.shape[0], n_internal + 1)
    rows = np.arange(q.shape[0])
    out = np.empty(n_internal)
    for level in range(depth):
        node = leaf >> (depth - level)
        direction = (leaf >> (depth - level - 1)) & 1
        first = 2 ** level - 1
        out[first:first + 2 ** level] = _grouped_auc(
            node, direction, q[rows, first + node], 2 ** level)
    return out


# ------------------------------------------------------------------------- helpers


def _check_options(label_ties: str, pred_ties: str) -> None:
    if label_ties not in LABEL_TIES:
        raise ValueError(f"label_ties must be one of {LABEL_TIES}, got {label_ties!r}")
    if pred_ties not in PRED_TIES:
        raise ValueError(f"pred_ties must be one of {PRED_TIES}, got {pred_ties!r}")


def _check_pair(a, b, names=("y_true", "y_pred")) -> Tuple[np.ndarray, np.ndarray]:
    """Two 1-D, numeric, finite arrays of equal length, or ValueError saying which not."""
    a, b = (_check_vector(name, x) for name, x in zip(names, (a, b)))
    if a.size != b.size:
        raise ValueError(f"{names[0]} and {names[1]} differ in length: "
                         f"{a.size} != {b.size}")
    return a, b


def _check_vector(name: str, x) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {x.shape}")
    if x.dtype.kind not in "biuf":
        raise ValueError(f"{name} must be numeric, got dtype {x.dtype}")
    if x.dtype.kind == "b":
        x = x.astype(np.int64)
    _check_finite(name, x)
    return x


def _check_finite(name: str, x: np.ndarray) -> None:
    if x.dtype.kind == "f":
        bad = ~np.isfinite(x)
        if bad.any():
            raise ValueError(f"{name} has {int(bad.sum())} non-finite values "
                             f"(first at flat index {int(np.flatnonzero(bad)[0])})")


def _check_binary(labels: np.ndarray) -> np.ndarray:
    if not np.isin(labels, (0, 1)).all():
        raise ValueError("labels must be 0/1 or bool")
    return labels.astype(np.int64)


def _check_leaf_index(true_leaf, n_rows: int, n_leaves: int) -> np.ndarray:
    leaf = np.asarray(true_leaf)
    if leaf.ndim != 1 or leaf.size != n_rows:
        raise ValueError(f"true_leaf must be 1-D with one entry per row ({n_rows}), "
                         f"got shape {leaf.shape}")
    if leaf.size and leaf.dtype.kind not in "iu":
        raise ValueError(f"true_leaf must hold integers, got dtype {leaf.dtype}")
    leaf = leaf.astype(np.int64)
    if leaf.size and (leaf.min() < 0 or leaf.max() >= n_leaves):
        raise ValueError(f"true_leaf must lie in [0, {n_leaves}), got values in "
                         f"[{leaf.min()}, {leaf.max()}]")
    return leaf


def _dense_rank(x: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sorted distinct values, each entry's 0-based rank among them (int64), their counts.

    One argsort and a scatter (``np.unique(return_inverse=True)`` does about twice the
    work); ``-0.0`` and ``0.0`` are one value, as there."""
    x = np.asarray(x).reshape(-1)
    if x.size == 0:
        return x[:0], np.zeros(0, np.int64), np.zeros(0, np.int64)
    order = np.argsort(x)
    s = x[order]
    new = np.empty(x.size, dtype=bool)
    new[0] = True
    np.not_equal(s[1:], s[:-1], out=new[1:])
    rank = np.empty(x.size, dtype=np.int64)
    rank[order] = np.cumsum(new) - 1
    starts = np.flatnonzero(new)
    return s[starts], rank, np.diff(np.append(starts, x.size)).astype(np.int64)


def _run_starts(sorted_keys: np.ndarray) -> np.ndarray:
    """Indices where a run of equal values starts in a sorted, non-empty array."""
    return np.flatnonzero(np.concatenate(([True], sorted_keys[1:] != sorted_keys[:-1])))


def _pairs_in_runs(sorted_keys: np.ndarray, sorted_group: np.ndarray,
                   n_groups: int) -> np.ndarray:
    """Per group, the pairs of rows sharing a key; keys sorted and group-major."""
    start = _run_starts(sorted_keys)
    length = np.diff(np.append(start, sorted_keys.size))
    return _sum_by_group(length * (length - 1) // 2, sorted_group[start], n_groups)


def _sum_by_group(values: np.ndarray, group: np.ndarray, n_groups: int) -> np.ndarray:
    """Exact int64 sums of ``values`` per group, ``group`` sorted (groups may be absent)."""
    out = np.zeros(n_groups, dtype=np.int64)
    if values.size:
        first = _run_starts(group)
        out[group[first]] = np.add.reduceat(values, first)
    return out

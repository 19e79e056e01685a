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

from typing import NamedTuple, Optional, Tuple

import numpy as np

from ptpm_tf.sorting import order_by, sorted_ranks, stable_by

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

    Rows are put in (group, y, ŷ) order by stable packed sorts (:mod:`ptpm_tf.sorting`;
    ties keep the input order). Ties are counted from run lengths of
    equal keys: ``equal_label`` from runs of (group, y), ``tied_pred`` as the pairs equal in
    (group, ŷ) minus those equal in (group, y, ŷ). Discordant pairs are the inversions of
    the permutation that takes that order to the (group, ŷ, position) order
    (:func:`_inversions`): a pair is out of order between the two exactly when it lies in
    one group with yi < yj and ŷi > ŷj. Concordant pairs are the rest of the distinct-label
    pairs.
    """
    sizes = np.bincount(g, minlength=n_groups).astype(np.int64)
    zeros = np.zeros(n_groups, dtype=np.int64)
    if y.size < 2:
        return _PairCounts(sizes * (sizes - 1) // 2, zeros, zeros, zeros.copy())
    _, y_rank, y_runs = sorted_ranks(y)
    p_order, p_rank, p_runs = sorted_ranks(p)
    order = stable_by(y_rank, p_order)           # (y, ŷ)
    if n_groups == 1:
        gp_rank = p_rank
        equal_label = np.array([np.sum(y_runs * (y_runs - 1) // 2)])
        equal_pred = np.array([np.sum(p_runs * (p_runs - 1) // 2)])
        g_sorted = None
    else:
        order = stable_by(g, order)               # (group, y, ŷ)
        gp_order = stable_by(g, p_order)          # (group, ŷ)
        g_sorted = g[order]
        gp_new = _new_runs(g[gp_order], p_rank[gp_order])
        gp_rank = np.empty(y.size, dtype=np.int64)
        gp_rank[gp_order] = np.cumsum(gp_new) - 1
        equal_pred = _pairs_in_runs(gp_new, g[gp_order], n_groups)
        equal_label = _pairs_in_runs(_new_runs(g_sorted, y_rank[order]), g_sorted,
                                     n_groups)
    gp_along = gp_rank[order]
    keys = (y_rank[order], gp_along) if g_sorted is None else (g_sorted, y_rank[order], gp_along)
    equal_label_pred = _pairs_in_runs(_new_runs(*keys), g_sorted, n_groups)
    by_pred = order_by(gp_along)
    if n_groups == 1:
        discordant = np.array([_inversions(by_pred)])
    else:
        # inversions credited by value, i.e. by position in (group, y, ŷ) order
        group_start = np.concatenate(([0], np.cumsum(sizes)[:-1]))
        discordant = np.add.reduceat(_inversions(by_pred, per_value=True), group_start)
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


def _inversions(perm: np.ndarray, per_value: bool = False):
    """Inversions (i < j, perm[i] > perm[j]) of a permutation of ``0 .. n-1``, exactly.

    A wavelet-tree count over the bits of the values, high to low, with no sort and no
    random access. Before the level of bit b the rows are in order of ``value >> (b+1)``,
    stable; since the values are a permutation, the group of prefix k is exactly the
    slots ``[k 2^(b+1), (k+1) 2^(b+1))`` and holds ``2^b`` values with bit b clear (fewer
    only in the last, partial group). Every inversion is counted once, at the highest bit
    where its two values differ: a row with bit b clear inverts with each row of its group
    before it that has the bit set, i.e. its offset in the group minus its rank among the
    group's clear rows, so a level's sum needs only how many set rows sit at each offset.
    The rows are then split stably (clear rows first) inside each group with
    ``np.compress``. Below bit 16 (8) the values are cut to uint16 (uint8): only their low
    bits are read from there on. O(n log n) work in a few sequential passes per bit.

    Returns the total (int); with ``per_value``, an int64 array holding, at each value,
    the inversions in which it is the later (smaller) element.
    """
    n = perm.size
    vals = perm.astype(np.int64 if n > 2 ** 31 else np.int32)
    credit = np.zeros(n, dtype=np.int64) if per_value else None
    total = 0
    for b in reversed(range(max(n - 1, 0).bit_length())):
        half = 1 << b
        size = 2 * half
        if not per_value and b < 16 and vals.dtype.itemsize > 2:
            vals = (vals & 0xFFFF).astype(np.uint16)
        if not per_value and b < 8 and vals.dtype.itemsize > 1:
            vals = (vals & 0xFF).astype(np.uint8)
        set_ = (vals & vals.dtype.type(half)).astype(bool)
        full = n // size                      # whole groups; then a tail of t rows
        t = n - full * size
        k = min(half, t)                      # clear rows in the tail
        total += (full * (size * (size - 1) // 2) + t * (t - 1) // 2
                  - _offset_sum(set_, size)
                  - full * (half * (half - 1) // 2) - k * (k - 1) // 2)
        cleared, kept = np.compress(~set_, vals), np.compress(set_, vals)
        if per_value:
            credit[cleared] += (np.flatnonzero(~set_) % size
                                - np.arange(cleared.size) % half)
        new = np.empty_like(vals)
        head = full * half
        rows = new[:full * size].reshape(full, size)
        rows[:, :half] = cleared[:head].reshape(full, half)
        rows[:, half:] = kept[:head].reshape(full, half)
        new[full * size:full * size + k] = cleared[head:]
        new[full * size + k:] = kept[head:]
        vals = new
    return credit if per_value else total


def _offset_sum(mask: np.ndarray, size: int) -> int:
    """Sum of ``i % size`` over the rows ``i`` where ``mask`` is set (``size`` a power of
    two), from column and row counts of the mask seen as a 256-wide uint8 matrix (a
    reduction over 2-wide rows is ~40x slower)."""
    width = 256
    m = mask.size - mask.size % width
    grid = mask[:m].view(np.uint8).reshape(-1, width)
    cols = grid.sum(axis=0, dtype=np.int64)
    if size <= width:
        total = int(cols @ (np.arange(width) % size))
    else:
        rows = grid.sum(axis=1, dtype=np.int64)
        total = int(cols @ np.arange(width)) + width * int(
            rows @ (np.arange(rows.size) % (size // width)))
    return total + int(((np.flatnonzero(mask[m:]) + m) % size).sum())


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


def _new_runs(*sorted_keys: np.ndarray) -> np.ndarray:
    """Boolean flags where a run of equal key tuples starts (keys jointly sorted)."""
    n = sorted_keys[0].size
    new = np.zeros(n, dtype=bool)
    new[:1] = True
    for k in sorted_keys:
        new[1:] |= k[1:] != k[:-1]
    return new


def _dense_rank(x: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sorted distinct values, each entry's 0-based rank among them (int64), their counts;
    ``-0.0`` and ``0.0`` are one value, as in ``np.unique``."""
    x = np.asarray(x).reshape(-1)
    order, rank, counts = sorted_ranks(x)
    starts = np.cumsum(counts) - counts
    return x[order[starts]], rank, counts


def _run_starts(sorted_keys: np.ndarray) -> np.ndarray:
    """Indices where a run of equal values starts in a sorted, non-empty array."""
    return np.flatnonzero(np.concatenate(([True], sorted_keys[1:] != sorted_keys[:-1])))


def _pairs_in_runs(new_run: np.ndarray, sorted_group: Optional[np.ndarray],
                   n_groups: int) -> np.ndarray:
    """Per group, the pairs of rows inside each run (``new_run`` flags run starts; runs
    never cross groups and rows are group-major; ``sorted_group`` None: one group)."""
    start = np.flatnonzero(new_run)
    length = np.diff(np.append(start, new_run.size))
    pairs = length * (length - 1) // 2
    if sorted_group is None:
        return np.array([pairs.sum()], dtype=np.int64)
    return _sum_by_group(pairs, sorted_group[start], n_groups)


def _sum_by_group(values: np.ndarray, group: np.ndarray, n_groups: int) -> np.ndarray:
    """Exact int64 sums of ``values`` per group, ``group`` sorted (groups may be absent)."""
    out = np.zeros(n_groups, dtype=np.int64)
    if values.size:
        first = _run_starts(group)
        out[group[first]] = np.add.reduceat(values, first)
    return out

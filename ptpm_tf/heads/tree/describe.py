"""Reading one request's personalised tree: its leaves, their intervals in the request's
seconds, their probabilities (``ptpm-tf predict --tree`` and the demo print it)."""
from __future__ import annotations

from typing import Mapping, Optional, Sequence

import numpy as np


def _node_leaf_range(node: int, depth: int):
    """(first, last) global leaf index under ``node`` (heap indexing)."""
    level = int(np.floor(np.log2(node + 1)))
    span = 2 ** (depth - level)
    first = (node + 1 - 2 ** level) * span
    return first, first + span - 1


def label_unit(tree: Mapping, duration: Optional[float]) -> float:
    """Seconds per unit of an exported tree's label (``tree``: ``model_info.json``'s
    ``tree``) for a request with this ``duration``: 1 for a seconds tree; for a ratio tree
    the duration, or the training median where it is unknown (as the model does)."""
    if tree.get("label_space", "seconds") != "ratio":
        return 1.0
    d = float("nan") if duration is None else float(duration)
    return d if np.isfinite(d) and d > 0 else float(tree["duration_fallback"])


def describe_tree(prediction: Mapping[str, np.ndarray], depth: int, *,
                  leaf_bounds: Optional[Sequence[float]] = None,
                  node_value: Optional[Sequence[float]] = None,
                  min_prob: float = 0.01, unit: str = "s", scale: float = 1.0) -> str:
    """A readable rendering of one candidate's personalised tree.

    ``prediction``: the serving outputs for ONE candidate (``prune_mask`` [I-1],
    ``leaf_prob`` [N], ``watch_time``, ``watch_time_global``, ``variance``,
    ``tree_depth``; scalars or length-1 arrays). ``depth``: the global tree's depth.
    ``leaf_bounds`` / ``node_value`` (the head's constants, in ``model_info.json`` of an
    export) turn the leaves' quantile intervals into label intervals and values; without
    them intervals are shown in quantile space (leaf k covers u in [k/L, (k+1)/L)).
    ``scale`` turns the tree's label into seconds (:func:`label_unit`: the request's
    duration for a tree over watch time / duration).
    Leaves of the pruned tree below ``min_prob`` are summarised in one line.
    """
    n_int, n_leaves = 2 ** depth - 1, 2 ** depth
    n_nodes = n_int + n_leaves

    def scalar(key):
        v = prediction.get(key)
        return None if v is None else float(np.asarray(v).reshape(-1)[0])

    prune = np.asarray(prediction.get("prune_mask", np.zeros(n_int - 1))).reshape(-1)
    leaf_prob = np.asarray(prediction["leaf_prob"], np.float64).reshape(-1)
    if len(prune) != n_int - 1 or len(leaf_prob) != n_nodes:
        raise ValueError(f"depth {depth} needs prune_mask of {n_int - 1} and leaf_prob of "
                         f"{n_nodes} values, got {len(prune)} and {len(leaf_prob)}")
    pruned_flag = np.concatenate([[0], prune, np.zeros(n_leaves)]) > 0
    # leaves of T: no pruned strict ancestor, and pruned or a global leaf
    blocked = np.zeros(n_nodes, bool)
    for n in range(1, n_nodes):
        parent = (n - 1) // 2
        blocked[n] = blocked[parent] or pruned_flag[parent]
    is_leaf_t = ~blocked & (pruned_flag | (np.arange(n_nodes) >= n_int))
    cut = [n for n in range(n_nodes) if pruned_flag[n] and not blocked[n]]
    leaves = [n for n in range(n_nodes) if is_leaf_t[n]]  # heap order; sort left-to-right
    leaves.sort(key=lambda n: _node_leaf_range(n, depth)[0])

    def interval(n):
        first, last = _node_leaf_range(n, depth)
        if leaf_bounds is not None:
            return (f"[{scale * leaf_bounds[first]:.2f}, "
                    f"{scale * leaf_bounds[last + 1]:.2f}]")
        return f"[{first / n_leaves:.3f}, {(last + 1) / n_leaves:.3f})"

    tree_depth = scalar("tree_depth")
    lines = [f"Personalised tree: {len(leaves)} leaves"
             + (f", depth {tree_depth:.0f}" if tree_depth is not None else "")
             + f" (global tree: depth {depth}, {n_leaves} leaves)"]
    if cut:
        lines.append("  pruned nodes (subtree cut, the node is a leaf of the tree): "
                     + ", ".join(f"{n} (level {int(np.log2(n + 1))})" for n in cut))
    else:
        lines.append("  no node pruned: the personalised tree is the global tree")
    label = f"label interval ({unit})" if leaf_bounds is not None else "quantile interval"
    header = f"  {'node':>5} {'level':>5}  {label:<20}"
    if node_value is not None:
        header += f" {'value':>8}"
    lines.append(header + f" {'P(leaf)':>8}")
    top = max(float(leaf_prob[leaves].max()), 1e-12)
    rest_n, rest_p = 0, 0.0
    for n in leaves:
        p = leaf_prob[n]
        if p < min_prob:
            rest_n, rest_p = rest_n + 1, rest_p + p
            continue
        row = f"  {n:>5} {int(np.log2(n + 1)):>5}  {interval(n):<20}"
        if node_value is not None:
            row += f" {scale * node_value[n]:>8.2f}"
        bar = "#" * int(round(20 * p / top))
        lines.append(row + f" {p:>8.3f}  {bar}" + ("  (pruned node)" if pruned_flag[n] else ""))
    if rest_n:
        lines.append(f"  ... {rest_n} more leaves with P < {min_prob:g}, "
                     f"together {rest_p:.3f}")
    lines.append(f"  sum of leaf probabilities: {leaf_prob[leaves].sum():.4f}")
    wt, wg, var = scalar("watch_time"), scalar("watch_time_global"), scalar("variance")
    mean, median = scalar("watch_time_mean"), scalar("watch_time_median")
    if wt is not None:
        if mean is None or median is None:  # lean outputs: watch_time is all there is
            summary = f"  served watch time {wt:.2f} {unit}"
        else:
            served = "median" if median == wt and mean != wt else "mean E_T"
            summary = (f"  served watch time {wt:.2f} {unit} (the {served}; "
                       f"mean E_T = {mean:.2f}, median {median:.2f} {unit})")
        if var is not None:
            summary += f", std {np.sqrt(max(var, 0.0)):.2f} {unit}"
        if wg is not None:
            summary += f"; global tree {wg:.2f} {unit}"
        lines.append(summary)
    return "\n".join(lines)

"""The global tree: its geometry, its discretisation of the label, and Eq. 1-3 for global
and pruned trees (paper sections 3.2 and 4.1; docs/design.md section 2).

Heap indexing: root 0, children of ``n`` are ``2n+1`` (left) and ``2n+2`` (right). For depth
``D`` there are ``I = 2^D - 1`` internal nodes (``0..I-1``), ``L = 2^D`` leaves
(``I..I+L-1``; leaf ``k`` is node ``I+k``) and ``N = I + L`` nodes.

Everything that depends only on ``D`` (which nodes lie below which, the root-to-leaf paths)
is a constant matrix, so the tree computations are dense batched matmuls: no Python loops
over samples and no data-dependent shapes. What depends on the training labels (leaf
boundaries, node values and second moments) is fitted once by :func:`fit_global_tree` and
stored in the model as non-trainable weights by the tree head.
"""
from __future__ import annotations

import dataclasses
from functools import cached_property

import numpy as np
import tensorflow as tf

from ptpm_tf.sorting import lexsort


@dataclasses.dataclass(frozen=True)
class TreeGeometry:
    """Constant index matrices of a full binary tree of ``depth`` levels."""

    depth: int

    def __post_init__(self):
        if not 1 <= self.depth <= 12:
            raise ValueError(f"tree depth must be in 1..12, got {self.depth}")

    @property
    def n_internal(self) -> int:
        return 2 ** self.depth - 1

    @property
    def n_leaves(self) -> int:
        return 2 ** self.depth

    @property
    def n_nodes(self) -> int:
        return 2 ** (self.depth + 1) - 1

    @cached_property
    def node_depth(self) -> np.ndarray:
        """[N] level of each node (root 0, leaves ``depth``)."""
        return np.floor(np.log2(np.arange(self.n_nodes) + 1)).astype(np.int32)

    @cached_property
    def parent(self) -> np.ndarray:
        """[N] parent of each node (-1 for the root)."""
        p = (np.arange(self.n_nodes) - 1) // 2
        p[0] = -1
        return p

    def _ancestor_at(self, level_of_a: np.ndarray) -> tuple:
        """For every (a, n) pair: is ``a`` a strict ancestor of ``n``, and the 0-based index
        of the ancestor of ``n`` one level below ``a`` (heap shift: the ancestor of node
        ``n`` at level ``d`` is ``((n + 1) >> (depth(n) - d)) - 1``)."""
        n_idx = np.arange(self.n_nodes)
        dn = self.node_depth[None, :]
        da = level_of_a[:, None]
        shift = np.maximum(dn - da, 0)
        is_anc = (dn > da) & (((n_idx[None, :] + 1) >> shift) == np.arange(len(level_of_a))[:, None] + 1)
        below = ((n_idx[None, :] + 1) >> np.maximum(shift - 1, 0)) - 1
        return is_anc, below

    @cached_property
    def strict_ancestor(self) -> np.ndarray:
        """[N, N] ``A[a, n] = 1`` iff ``a`` is a strict ancestor of ``n``."""
        is_anc, _ = self._ancestor_at(self.node_depth)
        return is_anc.astype(np.float32)

    @cached_property
    def branch_matrices(self) -> tuple:
        """([I, N], [I, N]): ``R[a, n] = 1`` iff ``n`` lies in the right (resp. left)
        subtree of internal node ``a``. Then ``log P(n) = log q @ R + log(1-q) @ Lm``."""
        is_anc, child = self._ancestor_at(self.node_depth[: self.n_internal])
        a = np.arange(self.n_internal)[:, None]
        right = is_anc & (child == 2 * a + 2)
        left = is_anc & (child == 2 * a + 1)
        return right.astype(np.float32), left.astype(np.float32)

    @cached_property
    def leaf_paths(self) -> tuple:
        """([L, I] on-path indicator, [L, I] went-right indicator) of each leaf's
        root-to-leaf path: which classifiers a sample of leaf ``k`` trains, and their labels."""
        right, left = self.branch_matrices
        leaves = slice(self.n_internal, self.n_nodes)
        on_path = (right[:, leaves] + left[:, leaves]).T
        return on_path.astype(np.float32), right[:, leaves].T.astype(np.float32)

    @cached_property
    def subtree_leaves(self) -> np.ndarray:
        """[N, L] ``S[n, k] = 1`` iff global leaf ``k`` lies below (or is) node ``n``."""
        s = self.strict_ancestor[:, self.n_internal:].copy()
        s[self.n_internal:] += np.eye(self.n_leaves, dtype=np.float32)
        return s


@dataclasses.dataclass
class GlobalTree:
    """The global tree fitted to training labels (see :func:`fit_global_tree`).

    ``leaf_bounds[k], leaf_bounds[k+1]`` are the label-space edges of leaf ``k``;
    ``leaf_mass[k]`` its share of the training rows (``1/L`` for equal-frequency leaves);
    ``node_value`` / ``node_m2`` are the mean and second moment of the training labels in
    each node (or the interval midpoint for paper-literal TPM).
    """

    depth: int
    leaf_bounds: np.ndarray  # [L+1]
    node_value: np.ndarray  # [N]
    node_m2: np.ndarray  # [N]
    train_leaf: np.ndarray  # [n_train] leaf of every training row
    leaf_mass: np.ndarray  # [L] share of the training rows in each leaf


def _apportion(sizes: np.ndarray, is_atom: np.ndarray, n_leaves: int) -> np.ndarray:
    """Leaves per segment of the sorted labels, proportional to the segment's size (largest
    remainders). An atom (a run of one label value holding at least ``1/L`` of the rows)
    gets at least one leaf; a stretch between atoms gets one while leaves remain, else its
    rows join the next segment's first leaf."""
    quota = sizes * n_leaves / sizes.sum()
    alloc = np.floor(quota).astype(np.int64)  # >= 1 for atoms: their quota is >= 1
    for i in np.argsort(-sizes, kind="stable"):
        if not is_atom[i] and alloc[i] == 0 and alloc.sum() < n_leaves:
            alloc[i] = 1
    while alloc.sum() < n_leaves:
        alloc[np.argmax(quota - alloc)] += 1
    return alloc


def leaf_cuts(sorted_y: np.ndarray, n_leaves: int, atoms: bool) -> np.ndarray:
    """[L+1] rank boundaries ``0 = c_0 <= ... <= c_L = n`` of the leaves over the sorted
    labels: leaf ``k`` holds ranks ``c_k .. c_{k+1}-1``.

    Without ``atoms``: equal frequency (``c_k = k n // L``), ties split across leaves by
    the caller's tie-breaking order. With ``atoms``: a label value holding at least ``1/L``
    of the rows (in the watch ratio, the complete plays at exactly 1) gets whole leaves of
    its own, zero-width leaves whose value is exactly that label; the stretches between
    atoms are cut at equal frequency, and every segment gets leaves in proportion to its
    size, so all leaves still hold about ``1/L`` of the rows.
    """
    n = len(sorted_y)
    even = np.arange(n_leaves + 1) * n // n_leaves
    if not atoms or n == 0:
        return even
    run_start = np.concatenate([[0], np.flatnonzero(np.diff(sorted_y) != 0) + 1])
    run_len = np.diff(np.concatenate([run_start, [n]]))
    is_big = run_len * n_leaves >= n
    if not is_big.any():
        return even
    segments, pos = [], 0  # (start, end, is_atom), at most 2L + 1 of them
    for s, length in zip(run_start[is_big], run_len[is_big]):
        if s > pos:
            segments.append((pos, s, False))
        segments.append((s, s + length, True))
        pos = s + length
    if pos < n:
        segments.append((pos, n, False))
    starts, ends, is_atom = (np.array(x) for x in zip(*segments))
    alloc = _apportion(ends - starts, is_atom.astype(bool), n_leaves)
    cuts = [0]
    for s, e, k in zip(starts, ends, alloc):
        cuts.extend(s + np.arange(1, k + 1) * (e - s) // max(k, 1) if k else [])
    cuts[-1] = n  # a last stretch without a leaf joins the last leaf
    return np.asarray(cuts, np.int64)


def fit_global_tree(y: np.ndarray, depth: int, *, leaf_values: str = "mean",
                    seed: int = 0, atoms: bool = False) -> GlobalTree:
    """Discretise ``y`` into ``2^depth`` leaves in quantile space (:func:`leaf_cuts`), ties
    broken by a seeded random order.

    ``atoms=False`` is TPM's balanced tree: every leaf holds exactly 1/L of the training
    rows (up to rounding), a tie run spread over several leaves. ``atoms=True`` keeps
    each atom of the label (a value holding at least 1/L of the rows) in zero-width leaves
    of its own (the watch-ratio tree, where complete plays sit at exactly 1).

    ``leaf_values='mean'`` sets node values to the mean (and second moment) of the labels in
    the node; ``'midpoint'`` to the midpoint of its label interval (TPM, paper section 3.2).
    """
    y = np.asarray(y, np.float64)
    if y.ndim != 1 or len(y) == 0 or not np.all(np.isfinite(y)):
        raise ValueError("fit_global_tree needs a non-empty 1-D array of finite labels")
    if leaf_values not in ("mean", "midpoint"):
        raise ValueError(f"leaf_values must be 'mean' or 'midpoint', got {leaf_values!r}")
    geom = TreeGeometry(depth)
    n, n_leaves = len(y), geom.n_leaves
    tie_break = np.random.default_rng(seed).random(n)
    order = lexsort((tie_break, y))  # np.lexsort's order, by packed SIMD sorts
    sorted_y = y[order]
    cuts = leaf_cuts(sorted_y, n_leaves, atoms)
    leaf = np.empty(n, np.int32)
    leaf[order] = np.repeat(np.arange(n_leaves, dtype=np.int32), np.diff(cuts))
    first = sorted_y[np.minimum(cuts[:-1], n - 1)]
    bounds = np.concatenate([first, [sorted_y[-1]]])
    if atoms:  # a leaf of one label value ends at it: an atom's leaves have zero width
        last = sorted_y[np.maximum(cuts[1:] - 1, 0)]
        bounds[1:-1] = np.where(first[:-1] == last[:-1], last[:-1], bounds[1:-1])

    counts = np.bincount(leaf, minlength=n_leaves).astype(np.float64)
    s1 = np.bincount(leaf, weights=y, minlength=n_leaves)
    s2 = np.bincount(leaf, weights=y * y, minlength=n_leaves)
    sub = geom.subtree_leaves.astype(np.float64)
    node_n = sub @ counts
    if leaf_values == "mean":
        value = np.divide(sub @ s1, node_n, out=np.zeros(geom.n_nodes), where=node_n > 0)
        m2 = np.divide(sub @ s2, node_n, out=np.zeros(geom.n_nodes), where=node_n > 0)
    else:
        lo = np.argmax(sub > 0, axis=1)
        hi = n_leaves - 1 - np.argmax(sub[:, ::-1] > 0, axis=1)
        value = 0.5 * (bounds[lo] + bounds[hi + 1])
        m2 = value ** 2
    return GlobalTree(depth, bounds.astype(np.float32), value.astype(np.float32),
                      m2.astype(np.float32), leaf, (counts / n).astype(np.float32))


def assign_leaves(y: np.ndarray, leaf_bounds: np.ndarray, seed: int = 0) -> np.ndarray:
    """Leaf of each label for rows outside the training set.

    A label equal to the value of zero-width leaves (an atom, :func:`leaf_cuts`) goes to
    one of them uniformly at random. Otherwise a label strictly inside one leaf's interval
    goes there, and a label equal to one or more boundaries (a tie that the training
    discretisation spread over several leaves) goes to one of those leaves uniformly at
    random (seeded), matching how training ties were split.
    """
    y = np.asarray(y, np.float64)
    b = np.asarray(leaf_bounds, np.float64)
    inner = b[1:-1]
    lo = np.searchsorted(inner, y, side="left")
    hi = np.searchsorted(inner, y, side="right")
    # zero-width leaves at y: lower bound == y == upper bound, i.e. leaves
    # [first with lower == y, last with upper <= y]
    z_lo = np.searchsorted(b[:-1], y, side="left")
    z_hi = np.searchsorted(b[1:], y, side="right")  # leaves whose upper bound is <= y
    atom = (z_hi > z_lo) & (z_lo < len(b) - 1) & (b[np.minimum(z_lo, len(b) - 2)] == y)
    lo, hi = np.where(atom, z_lo, lo), np.where(atom, z_hi - 1, hi)
    u = np.random.default_rng(seed).random(len(y))
    return (lo + np.floor(u * (hi - lo + 1))).astype(np.int32).clip(0, len(inner))


class TreeOps:
    """Eq. 1-3 for the global tree and for pruned trees, on batches, as TF ops.

    Built once per head from a :class:`TreeGeometry`; holds its matrices as graph constants.
    """

    def __init__(self, geometry: TreeGeometry):
        self.geometry = g = geometry
        right, left = g.branch_matrices
        # log_reach = log sig(z) R + log sig(-z) L = -(softplus(-z) (R + L) + z L): one
        # softplus instead of two (the costliest kernel of the serving path at 512
        # candidates, measured), one matmul by this stacked [2I, N] constant (right, left:
        # [I, N] indicators of the nodes below each internal node's right / left child)
        self.reach_map = tf.constant(-np.concatenate([right + left, left]), tf.float32)
        # strict-ancestor relation among the prunable nodes 1..I-1 (the root and the
        # global leaves are never pruned): [I-1, I-1]
        self.prunable_ancestor = tf.constant(
            g.strict_ancestor[1: g.n_internal, 1: g.n_internal], tf.float32)
        # Leaves of a pruned tree as one dense layer. For actions a [B, I-1] (prunable
        # nodes 1..I-1) and leaf_code = E - A[1:I] (E[k, k+1] = 1: node k+1 itself),
        # (a @ leaf_code)[n] = [n is pruned] - (number of pruned strict ancestors of n).
        # Adding 1 for global leaves gives exactly 1 for the leaves of T (pruned with no
        # pruned ancestor, or a global leaf with none) and an integer <= 0 elsewhere, so
        # relu() is the 0/1 mask. MatMul + BiasAdd + Relu is one fused kernel after
        # grappler; small integers, so exact in any float precision.
        leaf_code = -g.strict_ancestor[1: g.n_internal].copy()
        leaf_code[np.arange(g.n_internal - 1), np.arange(1, g.n_internal)] += 1.0
        self.leaf_code = tf.constant(leaf_code, tf.float32)  # [I-1, N]
        on_path, went_right = g.leaf_paths
        self.on_path = tf.constant(on_path)  # [L, I]
        self.went_right = tf.constant(went_right)  # [L, I]
        is_leaf = np.zeros(g.n_nodes, np.float32)
        is_leaf[g.n_internal:] = 1.0
        self.is_global_leaf = tf.constant(is_leaf)  # [N]
        self.node_depth = tf.constant(g.node_depth.astype(np.float32))  # [N]

    def log_reach(self, logits: tf.Tensor) -> tf.Tensor:
        """[B, I] classifier logits (``q = sigmoid(z)`` = P(go right)) -> [B, N]
        log-probability of reaching each node (Eq. 1, in log space)."""
        return tf.matmul(tf.concat([tf.math.softplus(-logits), logits], axis=1),
                         self.reach_map)

    def pruned_leaves(self, actions: tf.Tensor) -> tf.Tensor:
        """[B, I-1] 0/1 actions -> [B, N] indicator of the leaves of the pruned tree ``T``:
        nodes with no pruned strict ancestor that are pruned themselves or global leaves."""
        if self.geometry.n_internal == 1:  # depth 1: nothing to prune (and an empty
            # matmul would reach oneDNN's fused kernel, which rejects K = 0)
            return self.global_leaf_mask(tf.shape(actions)[0])
        code = tf.matmul(tf.cast(actions, tf.float32), self.leaf_code)
        return tf.nn.relu(tf.nn.bias_add(code, self.is_global_leaf))

    def live_internal(self, actions: tf.Tensor) -> tf.Tensor:
        """[B, I-1] 0/1: pruning decisions that shape ``T`` (no pruned strict ancestor).
        Decisions under a pruned node do not change the tree, so P(T) is the product of
        the live decisions' Bernoulli probabilities only."""
        if self.geometry.n_internal == 1:  # depth 1: no decisions (see pruned_leaves)
            return tf.zeros_like(tf.cast(actions, tf.float32))
        blocked = tf.matmul(tf.cast(actions, tf.float32), self.prunable_ancestor)
        return 1.0 - tf.minimum(blocked, 1.0)

    @staticmethod
    def moments(leaf_prob: tf.Tensor, value: tf.Tensor, m2: tf.Tensor) -> tuple:
        """Expectation (Eq. 2) and variance (Eq. 3) of a tree from its leaf probabilities
        [B, N] (reach probabilities times the tree's leaf indicator, zero elsewhere)."""
        mean = tf.linalg.matvec(leaf_prob, value)
        var = tf.nn.relu(tf.linalg.matvec(leaf_prob, m2) - tf.square(mean))
        return mean, var

    def global_leaf_prob(self, reach: tf.Tensor) -> tf.Tensor:
        """[B, N] reach probabilities restricted to the global tree's leaves."""
        return reach * self.is_global_leaf

    def global_leaf_mask(self, batch: tf.Tensor) -> tf.Tensor:
        return tf.tile(self.is_global_leaf[None, :], [batch, 1])

    def tree_depth(self, leaf_mask: tf.Tensor) -> tf.Tensor:
        """[B] depth of each (pruned) tree: the deepest of its leaves."""
        return tf.reduce_max(leaf_mask * self.node_depth, axis=1)

"""The tree math of Eq. 1-3 and section 4.1: geometry, discretisation, pruned trees."""
import numpy as np
import pytest
import tensorflow as tf

import ptpm_tf  # noqa: F401
from ptpm_tf.heads.tree.geometry import TreeGeometry, TreeOps, assign_leaves, fit_global_tree


def _random_logits(rng, batch, geom):
    return tf.constant(rng.normal(0, 2, size=(batch, geom.n_internal)), tf.float32)


@pytest.mark.parametrize("depth", [1, 2, 3, 4, 5, 6, 7])
def test_pruned_tree_leaf_probabilities_sum_to_one(depth):
    rng = np.random.default_rng(depth)
    geom = TreeGeometry(depth)
    ops = TreeOps(geom)
    reach = tf.exp(ops.log_reach(_random_logits(rng, 64, geom)))
    for p_prune in (0.0, 0.1, 0.5, 0.9, 1.0):
        actions = tf.constant(rng.random((64, geom.n_internal - 1)) < p_prune, tf.float32)
        mask = ops.pruned_leaves(actions)
        total = tf.reduce_sum(reach * mask, axis=1).numpy()
        np.testing.assert_allclose(total, 1.0, atol=1e-5)
        # every root-to-leaf path of the global tree crosses exactly one leaf of T
        crossings = mask.numpy()[:, geom.n_internal:] + (mask.numpy() @ geom.strict_ancestor)[:, geom.n_internal:]
        np.testing.assert_array_equal(crossings, 1.0)


def test_unpruned_tree_equals_global_expectation():
    rng = np.random.default_rng(0)
    geom = TreeGeometry(5)
    ops = TreeOps(geom)
    value = tf.constant(rng.uniform(0, 100, geom.n_nodes), tf.float32)
    m2 = value ** 2 + 3.0
    reach = tf.exp(ops.log_reach(_random_logits(rng, 32, geom)))
    none = tf.zeros([32, geom.n_internal - 1])
    e_t, v_t = ops.moments(reach * ops.pruned_leaves(none), value, m2)
    e_g, v_g = ops.moments(ops.global_leaf_prob(reach), value, m2)
    np.testing.assert_allclose(e_t.numpy(), e_g.numpy(), rtol=1e-6)
    np.testing.assert_allclose(v_t.numpy(), v_g.numpy(), rtol=1e-5)
    assert np.all(ops.tree_depth(ops.pruned_leaves(none)).numpy() == 5)


def test_pruning_both_children_of_root_gives_two_leaf_tree_by_hand():
    geom = TreeGeometry(3)
    ops = TreeOps(geom)
    value = tf.constant(np.arange(geom.n_nodes, dtype=np.float32) * 10.0)
    # root: P(right) = 0.3 -> P(node 1) = 0.7, P(node 2) = 0.3
    logits = np.zeros((1, geom.n_internal), np.float32)
    logits[0, 0] = np.log(0.3 / 0.7)
    logits[0, 1:] = np.random.default_rng(1).normal(size=geom.n_internal - 1)
    reach = tf.exp(ops.log_reach(tf.constant(logits)))
    actions = np.zeros((1, geom.n_internal - 1), np.float32)
    actions[0, 0] = actions[0, 1] = 1.0  # prune nodes 1 and 2
    actions[0, 2:] = 1.0  # decisions below pruned nodes change nothing
    mask = ops.pruned_leaves(tf.constant(actions)).numpy()
    assert np.flatnonzero(mask[0]).tolist() == [1, 2]
    e, _ = ops.moments(reach * mask, value, value ** 2)
    assert e.numpy()[0] == pytest.approx(0.7 * 10.0 + 0.3 * 20.0, rel=1e-5)
    assert ops.tree_depth(tf.constant(mask)).numpy()[0] == 1
    # variance of a two-point distribution: p(1-p)(v2-v1)^2
    _, var = ops.moments(reach * mask, value, value ** 2)
    assert var.numpy()[0] == pytest.approx(0.7 * 0.3 * 10.0 ** 2, rel=1e-4)


def test_live_decisions_exclude_nodes_below_pruned_ones():
    ops = TreeOps(TreeGeometry(3))
    actions = np.zeros((1, 6), np.float32)
    actions[0, 0] = 1.0  # prune node 1: its children 3 and 4 are dead decisions
    live = ops.live_internal(tf.constant(actions)).numpy()[0]
    # non-root internal nodes 1..6 -> columns 0..5
    assert live.tolist() == [1, 1, 0, 0, 1, 1]


def test_reach_probabilities_by_hand():
    ops = TreeOps(TreeGeometry(2))
    q = np.array([[0.25, 0.5, 0.8]], np.float32)
    reach = tf.exp(ops.log_reach(tf.constant(np.log(q / (1 - q))))).numpy()[0]
    expected = [1, 0.75, 0.25, 0.375, 0.375, 0.05, 0.2]
    np.testing.assert_allclose(reach, expected, rtol=1e-5)


def test_equal_frequency_leaves_with_heavy_ties():
    rng = np.random.default_rng(0)
    y = np.concatenate([np.zeros(3000), rng.exponential(10, 7000).round()])
    tree = fit_global_tree(y, 4, seed=3)
    counts = np.bincount(tree.train_leaf, minlength=16)
    assert counts.max() - counts.min() <= 1
    assert np.all(np.diff(tree.leaf_bounds) >= 0)
    # node values are the means of the labels they hold
    for k in range(16):
        assert tree.node_value[15 + k] == pytest.approx(y[tree.train_leaf == k].mean(), rel=1e-5)
    assert tree.node_value[0] == pytest.approx(y.mean(), rel=1e-5)
    # seeded: same seed same leaves, other seed other tie-breaking
    np.testing.assert_array_equal(fit_global_tree(y, 4, seed=3).train_leaf, tree.train_leaf)
    assert not np.array_equal(fit_global_tree(y, 4, seed=4).train_leaf, tree.train_leaf)


def test_midpoint_values_and_leaf_assignment():
    y = np.arange(100, dtype=float)
    tree = fit_global_tree(y, 2, leaf_values="midpoint")
    b = tree.leaf_bounds
    assert tree.node_value[3] == pytest.approx((b[0] + b[1]) / 2)
    assert tree.node_value[0] == pytest.approx((b[0] + b[4]) / 2)
    assert tree.node_m2[3] == pytest.approx(tree.node_value[3] ** 2)
    leaves = assign_leaves(np.array([-5.0, 10.0, 60.0, 1e9]), b)
    assert leaves.tolist() == [0, 0, 2, 3]
    # a value equal to a boundary goes to either neighbouring leaf, both seen
    tied = assign_leaves(np.full(1000, b[2]), b, seed=0)
    assert set(np.unique(tied)) == {1, 2}

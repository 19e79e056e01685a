"""Tests for ptpm_tf.metrics: exact values against brute force and hand-computed cases."""
import itertools
import math
import time

import numpy as np
import pytest

from ptpm_tf.metrics import (LABEL_TIES, PRED_TIES, leaf_prior_posterior_ratio, mae,
                             node_auc, per_group_xauc, rmse, roc_auc, user_xauc, xauc)

OPTIONS = list(itertools.product(LABEL_TIES, PRED_TIES))


def brute_xauc(y, p, label_ties="exclude", pred_ties="half"):
    """The definition, pair by pair: O(n^2) double loop."""
    credit = pairs = 0.0
    for i in range(len(y)):
        for j in range(i + 1, len(y)):
            if y[i] == y[j]:
                if label_ties != "exclude":
                    pairs += 1
                    credit += label_ties == "success"
                continue
            pairs += 1
            sign = (y[i] - y[j]) * (p[i] - p[j])
            if sign > 0:
                credit += 1
            elif sign == 0 and pred_ties == "half":
                credit += 0.5
    return credit / pairs if pairs else math.nan


def brute_auc(labels, scores):
    wins = pairs = 0.0
    for a, sa in zip(labels, scores):
        for b, sb in zip(labels, scores):
            if a == 1 and b == 0:
                pairs += 1
                wins += 1.0 if sa > sb else 0.5 if sa == sb else 0.0
    return wins / pairs if pairs else math.nan


def same(a, b):
    return (math.isnan(a) and math.isnan(b)) or a == pytest.approx(b, abs=1e-12)


# ------------------------------------------------------------------------ XAUC


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("n", [2, 3, 7, 40, 150])
def test_xauc_matches_brute_force_with_ties(seed, n):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 4, n).astype(float)          # many label ties
    p = rng.integers(0, 5, n) * 0.25                   # many prediction ties
    for label_ties, pred_ties in OPTIONS:
        got = xauc(y, p, label_ties=label_ties, pred_ties=pred_ties)
        assert same(got, brute_xauc(y, p, label_ties, pred_ties)), (label_ties, pred_ties)


def test_xauc_matches_brute_force_without_ties():
    rng = np.random.default_rng(3)
    y, p = rng.normal(size=120), rng.normal(size=120)
    for label_ties, pred_ties in OPTIONS:
        assert same(xauc(y, p, label_ties, pred_ties), brute_xauc(y, p))


def test_xauc_hand_cases():
    y = [1.0, 2.0, 3.0, 4.0]
    assert xauc(y, [10, 20, 30, 40]) == 1.0
    assert xauc(y, [40, 30, 20, 10]) == 0.0
    # pairs (1,2) tied in prediction -> 1/2; the other 5 concordant.
    assert xauc(y, [5, 5, 6, 7]) == pytest.approx(5.5 / 6)
    assert xauc(y, [5, 5, 6, 7], pred_ties="fail") == pytest.approx(5 / 6)
    # labels 1,1,2: one equal-label pair, two distinct pairs, both concordant.
    assert xauc([1, 1, 2], [0, 1, 2]) == 1.0
    assert xauc([1, 1, 2], [0, 1, 2], label_ties="fail") == pytest.approx(2 / 3)
    assert xauc([1, 1, 2], [0, 1, 2], label_ties="success") == 1.0
    assert xauc([2, 1], [0, 1]) == 0.0


def test_xauc_degenerate_inputs():
    assert math.isnan(xauc([], []))
    assert math.isnan(xauc([3.0], [1.0]))
    assert math.isnan(xauc([2, 2, 2], [1, 2, 3]))                 # no distinct labels
    assert xauc([2, 2, 2], [1, 2, 3], label_ties="fail") == 0.0     # paper's formula
    assert xauc([2, 2, 2], [1, 2, 3], label_ties="success") == 1.0
    assert xauc([1, 2, 3, 4], [7, 7, 7, 7]) == 0.5                  # constant prediction
    assert xauc([1, 2, 3, 4], [7, 7, 7, 7], pred_ties="fail") == 0.0


def test_xauc_accepts_lists_ints_float32_and_bool():
    y = np.array([3, 1, 2, 5, 4])
    p = np.array([0.3, 0.1, 0.25, 0.2, 0.4], dtype=np.float32)
    expected = brute_xauc(y.tolist(), p.tolist())
    assert same(xauc(y.tolist(), p.tolist()), expected)
    assert same(xauc(y, p), expected)
    assert xauc([True, False, True], [0.9, 0.1, 0.8]) == 1.0


@pytest.mark.parametrize("y, p, message", [
    ([1, 2, 3], [1, 2], "differ in length"),
    ([[1, 2]], [[1, 2]], "1-D"),
    ([1, np.nan], [1, 2], "non-finite"),
    ([1, 2], [1, np.inf], "non-finite"),
    (["a", "b"], [1, 2], "numeric"),
])
def test_xauc_rejects_bad_input(y, p, message):
    with pytest.raises(ValueError, match=message):
        xauc(y, p)


def test_xauc_rejects_unknown_options():
    with pytest.raises(ValueError, match="label_ties"):
        xauc([1, 2], [1, 2], label_ties="ignore")
    with pytest.raises(ValueError, match="pred_ties"):
        xauc([1, 2], [1, 2], pred_ties="success")


def test_xauc_one_million_rows_exact_and_fast():
    """Exact at a size whose pair count (5e11) overflows int32, and fast."""
    n = 1_000_000
    half = n // 2
    y = np.arange(n, dtype=np.float64)
    p = np.concatenate([np.arange(half, n), np.arange(half)]).astype(np.float64)
    # every pair across the two halves is discordant, every pair within one concordant
    expected = 1.0 - half * half / (n * (n - 1) / 2)
    shuffle = np.random.default_rng(0).permutation(n)
    start = time.perf_counter()
    got = xauc(y[shuffle], p[shuffle])
    elapsed = time.perf_counter() - start
    assert got == pytest.approx(expected, abs=1e-15)
    assert elapsed < 30, f"xauc on 1M rows took {elapsed:.1f}s"


def test_inversion_count_matches_brute_force():
    """The wavelet count, total and per value, on permutations of every size class
    (powers of two and the partial groups around them)."""
    from ptpm_tf.metrics import _inversions
    rng = np.random.default_rng(5)
    for n in [*range(0, 40), 255, 256, 257, 700]:
        perm = rng.permutation(n)
        later = np.array([np.sum(perm[:j] > perm[j]) for j in range(n)], dtype=np.int64)
        assert _inversions(perm) == later.sum(), n
        per_value = np.zeros(n, dtype=np.int64)
        per_value[perm] = later
        assert (_inversions(perm, per_value=True) == per_value).all(), n


@pytest.mark.parametrize("values", [
    np.round(np.random.default_rng(0).normal(size=3000), 1),       # many ties
    1.0 + np.random.default_rng(1).integers(0, 40, 3000) * 1e-15,  # differ in the last bits
    np.random.default_rng(2).random(3000),
    np.array([0.0, -0.0, 1.0, -1.0, 5e-324, -5e-324, 1e308, -1e308]),
    np.random.default_rng(3).integers(-2 ** 62, 2 ** 62, 3000),
    np.random.default_rng(4).normal(size=3000).astype(np.float32),
])
def test_sorted_ranks_match_numpy(values):
    """The packed-sort ranks equal a stable argsort and np.unique, whatever the keys'
    width (including values that tie in the kept high bits)."""
    from ptpm_tf.sorting import lexsort, sorted_ranks
    order, rank, runs = sorted_ranks(values)
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    assert (order == np.argsort(values, kind="stable")).all()
    assert (rank == inverse).all() and (runs == counts).all()
    leaf = np.random.default_rng(7).integers(0, 8, values.size)
    for keys in ((values, leaf), (leaf, values), (np.random.default_rng(8).random(values.size), values)):
        assert (lexsort(keys) == np.lexsort(keys)).all()


def test_xauc_exact_when_values_differ_only_in_low_bits():
    rng = np.random.default_rng(6)
    y = 1.0 + rng.integers(0, 30, 200) * 1e-15
    p = 2.0 + rng.integers(0, 30, 200) * 1e-15
    for label_ties, pred_ties in OPTIONS:
        assert same(xauc(y, p, label_ties, pred_ties), brute_xauc(y, p, label_ties, pred_ties))


# ---------------------------------------------------------------- per-user XAUC


def _grouped_data(seed, n=400, n_users=30):
    rng = np.random.default_rng(seed)
    users = rng.integers(0, n_users, n)
    y = rng.integers(0, 3, n).astype(float)
    p = rng.integers(0, 4, n).astype(float)
    y[users == 5] = 1.0          # a user with a single distinct label: must be skipped
    return users, y, p


@pytest.mark.parametrize("seed", [0, 1])
def test_user_xauc_is_mean_of_per_user_brute_force(seed):
    users, y, p = _grouped_data(seed)
    for label_ties, pred_ties in OPTIONS:
        brute = {}
        for u in np.unique(users):
            mask = users == u
            if np.unique(y[mask]).size >= 2:
                brute[u] = brute_xauc(y[mask], p[mask], label_ties, pred_ties)
        ids, values = per_group_xauc(y, p, users, label_ties, pred_ties)
        assert ids.tolist() == np.unique(users).tolist()
        for u, v in zip(ids, values):
            assert same(v, brute.get(u, math.nan)), (u, label_ties, pred_ties)
        assert user_xauc(y, p, users, label_ties, pred_ties) == pytest.approx(
            np.mean(list(brute.values())), abs=1e-12)


def test_user_xauc_skips_single_label_users_and_takes_string_ids():
    users = ["b", "b", "a", "a", "a", "c", "c"]
    y = [1, 2, 1, 2, 3, 4, 4]
    p = [2, 1, 1, 2, 3, 0, 9]
    ids, values = per_group_xauc(y, p, users)
    assert ids.tolist() == ["a", "b", "c"]
    assert values[0] == 1.0 and values[1] == 0.0 and math.isnan(values[2])
    assert user_xauc(y, p, users) == 0.5
    assert math.isnan(user_xauc([1, 1], [1, 2], ["u", "u"]))


def test_user_xauc_rejects_misaligned_groups():
    with pytest.raises(ValueError, match="groups"):
        user_xauc([1, 2, 3], [1, 2, 3], [0, 1])


def test_user_xauc_many_users_is_fast():
    rng = np.random.default_rng(0)
    n = 1_000_000
    users = rng.integers(0, 100_000, n)
    y = rng.integers(0, 50, n).astype(float)
    start = time.perf_counter()
    perfect = user_xauc(y, y * 2.0, users)
    assert time.perf_counter() - start < 30
    assert perfect == 1.0


# ---------------------------------------------------------------- regression


def test_mae_and_rmse():
    assert mae([1, 2, 3], [2, 2, 5]) == pytest.approx(1.0)
    assert rmse([1, 2, 3], [2, 2, 5]) == pytest.approx(math.sqrt(5 / 3))
    assert math.isnan(mae([], []))
    with pytest.raises(ValueError, match="differ in length"):
        rmse([1, 2], [1])


# ---------------------------------------------------------------- ROC AUC


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_roc_auc_matches_brute_force_with_ties(seed):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, 80)
    scores = rng.integers(0, 6, 80) / 5
    assert same(roc_auc(labels, scores), brute_auc(labels, scores))
    assert same(roc_auc(labels.astype(bool), scores), brute_auc(labels, scores))


def test_roc_auc_hand_cases():
    assert roc_auc([0, 0, 1, 1], [0.1, 0.2, 0.3, 0.4]) == 1.0
    assert roc_auc([1, 1, 0, 0], [0.1, 0.2, 0.3, 0.4]) == 0.0
    assert roc_auc([0, 1, 0, 1], [0.5, 0.5, 0.1, 0.9]) == pytest.approx(3.5 / 4)
    assert math.isnan(roc_auc([1, 1], [0.1, 0.2]))
    with pytest.raises(ValueError, match="0/1"):
        roc_auc([0, 2], [0.1, 0.2])


# ---------------------------------------------------------------- tree diagnostics


def test_node_auc_hand_built_depth_2():
    # leaves 0..3; node 0 splits {0,1} | {2,3}; node 1 splits 0 | 1; node 2 splits 2 | 3.
    true_leaf = np.array([0, 1, 2, 3, 0, 3])
    q = np.array([
        # node0 node1 node2
        [0.10, 0.50, 0.00],
        [0.40, 0.50, 0.00],
        [0.35, 0.00, 0.30],
        [0.80, 0.00, 0.60],
        [0.20, 0.70, 0.00],
        [0.90, 0.00, 0.30],
    ])
    got = node_auc(q, true_leaf, depth=2)
    # node 0: right {0.35, 0.8, 0.9} vs left {0.1, 0.4, 0.2}: 8 of 9 pairs won.
    # node 1: rows 0,1,4, right {0.5} vs left {0.5, 0.7}: a tie and a loss.
    # node 2: rows 2,3,5, right {0.6, 0.3} vs left {0.3}: a win and a tie.
    np.testing.assert_allclose(got, [8 / 9, 0.25, 0.75])


def test_node_auc_nan_where_a_node_sees_one_direction():
    got = node_auc(np.full((3, 3), 0.5), [0, 1, 3], depth=2)
    assert got[0] == 0.5 and got[1] == 0.5 and math.isnan(got[2])


def test_node_auc_matches_roc_auc_per_node():
    rng = np.random.default_rng(0)
    depth, n = 3, 500
    true_leaf = rng.integers(0, 2 ** depth, n)
    q = rng.integers(0, 10, (n, 2 ** depth - 1)) / 10
    got = node_auc(q, true_leaf, depth)
    for level in range(depth):
        for local in range(2 ** level):
            node = 2 ** level - 1 + local
            mask = (true_leaf >> (depth - level)) == local
            direction = (true_leaf[mask] >> (depth - level - 1)) & 1
            assert same(got[node], roc_auc(direction, q[mask, node]))


def test_node_auc_rejects_bad_shapes():
    with pytest.raises(ValueError, match="q_right"):
        node_auc(np.zeros((2, 4)), [0, 1], depth=2)
    with pytest.raises(ValueError, match="true_leaf"):
        node_auc(np.zeros((2, 3)), [0, 4], depth=2)
    with pytest.raises(ValueError, match="depth"):
        node_auc(np.zeros((2, 3)), [0, 1], depth=0)


def test_leaf_prior_posterior_ratio_hand_built():
    leaf_prob = [[0.5, 0.5, 0.0],
                 [0.2, 0.6, 0.2],
                 [0.1, 0.1, 0.8]]
    got = leaf_prior_posterior_ratio(leaf_prob, [0, 0, 1])
    # sums 0.8, 1.2, 1.0 over counts 2, 1, 0
    np.testing.assert_allclose(got[:2], [0.4, 1.2])
    assert math.isnan(got[2])


def test_leaf_prior_posterior_ratio_is_one_when_calibrated():
    true_leaf = np.repeat(np.arange(4), 25)
    leaf_prob = np.eye(4)[true_leaf]
    np.testing.assert_allclose(leaf_prior_posterior_ratio(leaf_prob, true_leaf), 1.0)


def test_leaf_prior_posterior_ratio_rejects_bad_input():
    with pytest.raises(ValueError, match="true_leaf"):
        leaf_prior_posterior_ratio(np.ones((2, 2)) / 2, [0, 2])
    with pytest.raises(ValueError, match="non-finite"):
        leaf_prior_posterior_ratio([[np.nan, 1.0]], [0])

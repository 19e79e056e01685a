"""UCL weights, the self-critical REINFORCE update and the gradient routing of Eq. 18."""
import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

import ptpm_tf  # noqa: F401
from ptpm_tf.heads.tree import losses
from ptpm_tf.heads.tree.config import TreeConfig
from ptpm_tf.heads import TreeHead
from ptpm_tf.heads.tree.geometry import TreeOps, TreeGeometry


def _logit(p):
    p = np.asarray(p, np.float32)
    return np.log(p / (1 - p))


def test_ucl_weights_are_inverse_reach_probabilities_before_clipping():
    ops = TreeOps(TreeGeometry(2))
    logits = tf.constant(_logit([[0.25, 0.5, 0.8], [0.9, 0.3, 0.6]]))
    log_reach = ops.log_reach(logits)[:, :3]
    # sample 0 in leaf 2 (node 5: path 0 -> 2 -> 5); sample 1 in leaf 1 (node 4: 0 -> 1 -> 4)
    on_path = tf.gather(ops.on_path, [2, 1])
    w = losses.ucl_weights(log_reach, on_path, max_weight=0.0, self_normalize=False).numpy()
    np.testing.assert_allclose(w[0], [1.0, 0.0, 1 / 0.25], rtol=1e-5)
    np.testing.assert_allclose(w[1], [1.0, 1 / 0.1, 0.0], rtol=1e-5)
    clipped = losses.ucl_weights(log_reach, on_path, max_weight=5.0, self_normalize=False).numpy()
    np.testing.assert_allclose(clipped[1], [1.0, 5.0, 0.0], rtol=1e-5)
    normed = losses.ucl_weights(log_reach, on_path, max_weight=0.0, self_normalize=True).numpy()
    # per node, the weights of the samples on it average to 1
    np.testing.assert_allclose(normed[:, 0], [1.0, 1.0], rtol=1e-5)
    np.testing.assert_allclose(normed[0, 2], 1.0, rtol=1e-5)


def test_ucl_weights_stay_finite_for_nodes_a_sample_cannot_reach():
    """A node off a sample's path with reach probability below float32's range (log reach
    < -88.7: exp overflows) must not turn its classifier's weights NaN for the batch."""
    log_reach = tf.constant([[0.0, -200.0, -1.0], [0.0, -1.0, -1.0]])
    on_path = tf.constant([[1.0, 0.0, 1.0], [1.0, 1.0, 0.0]])
    for max_weight in (10.0, 0.0):
        for normalize in (True, False):
            w = losses.ucl_weights(log_reach, on_path, max_weight, normalize).numpy()
            assert np.all(np.isfinite(w)), (max_weight, normalize, w)
            assert w[0, 1] == 0.0 and w[1, 2] == 0.0
    w = losses.ucl_weights(log_reach, on_path, 2.0, False).numpy()
    np.testing.assert_allclose(w, [[1.0, 0.0, 2.0], [1.0, 2.0, 0.0]], rtol=1e-6)


def test_path_cross_entropy_is_minus_log_leaf_probability():
    ops = TreeOps(TreeGeometry(3))
    rng = np.random.default_rng(0)
    logits = tf.constant(rng.normal(size=(5, 7)), tf.float32)
    leaf = np.array([0, 3, 4, 7, 5])
    ce = losses.path_cross_entropy(logits, tf.gather(ops.on_path, leaf),
                                   tf.gather(ops.went_right, leaf)).numpy()
    log_leaf = ops.log_reach(logits).numpy()[:, 7:]
    np.testing.assert_allclose(ce, -log_leaf[np.arange(5), leaf], rtol=1e-5)


def test_batch_xauc_counts_ties_half():
    y = tf.constant([1.0, 2.0, 3.0, 3.0])
    assert losses.batch_xauc(y, tf.constant([1.0, 2.0, 3.0, 0.0])).numpy() == pytest.approx(3 / 5)
    assert losses.batch_xauc(y, tf.constant([5.0, 5.0, 5.0, 5.0])).numpy() == pytest.approx(0.5)


def _toy_head():
    """Depth 2, leaves 3..6 worth 0, 10, 20, 30; node 1 worth 5, node 2 worth 25."""
    head = TreeHead(TreeConfig(depth=2, tsl=True, ucl=False))
    head.node_value.assign([15.0, 5.0, 25.0, 0.0, 10.0, 20.0, 30.0])
    head.node_m2.assign(np.square([15.0, 5.0, 25.0, 0.0, 10.0, 20.0, 30.0]) + 1.0)
    head.label_scale.assign(10.0)
    return head


# Type A (label 5): root surely left, node 1 wrongly sure of leaf 3 -> E_g ~ 1; pruning
# node 1 gives v(1) = 5 = the label. Type B (label 30): root surely right, node 2 rightly
# sure of leaf 6 -> E_g ~ 30; pruning node 2 gives v(2) = 25, worse.
TYPE_A = ([0.001, 0.1, 0.5], 5.0)
TYPE_B = ([0.999, 0.5, 0.999], 30.0)


def _train_pruner(reward, kinds, n=64, steps=80, lr=1.0):
    """A pruning model that is a function of the sample's type (one logit pair per type,
    as a pruning head over features would be), trained by the REINFORCE loss alone.
    Returns pi per type, [n_types, 2]."""
    tf.keras.utils.set_random_seed(0)
    head = _toy_head()
    head.reward = reward
    kind = np.repeat(np.arange(len(kinds)), n)
    q = np.array([kinds[k][0] for k in kind], np.float32)
    y = tf.constant([kinds[k][1] for k in kind], tf.float32)
    reach = tf.exp(head.ops.log_reach(tf.constant(_logit(q))))
    mean_g, _ = head.ops.moments(head.ops.global_leaf_prob(reach), head.node_value,
                                 head.node_m2)
    params = tf.Variable(tf.zeros([len(kinds), 2]))
    opt = tf.keras.optimizers.SGD(lr)
    for _ in range(steps):
        with tf.GradientTape() as tape:
            loss, _, _ = head._tree_loss(tf.gather(params, kind), reach, mean_g, y, training=True)
        opt.apply_gradients([(tape.gradient(loss, params), params)])
    return tf.sigmoid(params).numpy()


# The paper's batch reward gives one scalar for the whole batch, so a sample's action is
# credited only through its 1/B share of it: it needs a small batch and many updates.
@pytest.mark.parametrize("reward, n, steps, lr", [
    ("sample", 64, 80, 1.0), pytest.param("batch", 8, 300, 20.0, marks=pytest.mark.slow)])
def test_reinforce_raises_pruning_where_it_helps_and_lowers_it_where_it_hurts(reward, n, steps, lr):
    pi = _train_pruner(reward, [TYPE_A], n=n, steps=steps, lr=lr)
    assert pi[0, 0] > 0.8, "pruning node 1 helps: its pi must rise"
    pi = _train_pruner(reward, [TYPE_B], n=n, steps=steps, lr=lr)
    assert pi[0, 1] < 0.2, "pruning node 2 hurts: its pi must fall"


def test_per_sample_reward_credits_each_sample_in_a_mixed_batch():
    pi = _train_pruner("sample", [TYPE_A, TYPE_B])
    assert pi[0, 0] > 0.8 and pi[1, 1] < 0.2


@pytest.mark.parametrize("pruner_input", ["features", "features+tree"])
def test_tree_loss_reaches_only_the_pruner_and_tpm_terms_only_the_classifier(pruner_input):
    head = TreeHead(TreeConfig(depth=3, tsl=True, ucl=True, pruner_input=pruner_input))
    frame = pd.DataFrame({"watch_time": np.random.default_rng(0).exponential(10, 256)})
    targets = head.adapt(frame)
    hidden = tf.constant(np.random.default_rng(1).normal(size=(256, 8)), tf.float32)
    with tf.GradientTape(persistent=True) as tape:
        out = head(hidden, training=True)
        _, parts = head.compute_loss(out, {k: tf.constant(v) for k, v in targets.items()},
                                     step=tf.constant(0), training=True)
    g_tree = tape.gradient(parts["tree"], out["cls_logits"])
    assert g_tree is None or np.all(g_tree.numpy() == 0)
    for name in ("ce", "reg", "var"):
        assert tape.gradient(parts[name], out["prune_logits"]) is None
        assert np.any(tape.gradient(parts[name], out["cls_logits"]).numpy() != 0)
    assert np.any(tape.gradient(parts["tree"], out["prune_logits"]).numpy() != 0)
    # the pruner reading the classifiers' probabilities does not train the classifiers
    assert tape.gradient(parts["tree"], head.classifier.kernel) is None
    assert head.pruner.kernel.shape[0] == 8 + (head.geometry.n_internal
                                               if pruner_input == "features+tree" else 0)
    assert TreeHead.from_config(head.get_config()).pruner_input == pruner_input


def test_sample_advantage_equals_its_definition_by_pairs():
    """Sample i's advantage: its Shapley share of every pair's concordance change (the mean
    of its own move's effect with the other sample at its global and at its pruned
    prediction; label ties excluded, prediction ties 1/2), times B / P (P pairs with
    different labels), minus the change of its normalised squared error; brute force."""
    rng = np.random.default_rng(0)
    n = 40
    y = rng.integers(0, 6, n).astype(np.float32)  # many label ties
    pg = rng.integers(0, 5, n).astype(np.float32)  # and prediction ties
    pt = pg + rng.choice([-1.0, 0.0, 1.0], n).astype(np.float32)
    scale = 2.0

    def conc(a, b, dy):
        return 0.5 * (1 + np.sign(dy) * np.sign(a - b))

    n_pairs = sum(y[i] != y[j] for i in range(n) for j in range(i + 1, n))
    expected = np.zeros(n)
    for i in range(n):
        js = [j for j in range(n) if y[j] != y[i]]
        share = sum(0.5 * (conc(pt[i], pg[j], y[i] - y[j]) - conc(pg[i], pg[j], y[i] - y[j])
                           + conc(pt[i], pt[j], y[i] - y[j]) - conc(pg[i], pt[j], y[i] - y[j]))
                    for j in js)
        expected[i] = share * n / n_pairs - (
            ((pt[i] - y[i]) / scale) ** 2 - ((pg[i] - y[i]) / scale) ** 2)
    got = losses.sample_advantage(tf.constant(y), tf.constant(pt), tf.constant(pg),
                                  tf.constant(scale)).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("error", ["squared", "absolute"])
def test_sample_advantage_batch_mean_is_the_batch_reward(error):
    """Eq. 11's scale: the per-sample advantages average to the paper's batch reward
    R_T - R_{T_g} = dXAUC - dMSE on a random batch where many samples move at once."""
    rng = np.random.default_rng(3)
    n = 500
    y = np.round(rng.exponential(10.0, n)).astype(np.float32)  # label ties too
    pg = rng.normal(10.0, 3.0, n).astype(np.float32)
    pt = np.where(rng.random(n) < 0.4, rng.normal(10.0, 3.0, n), pg).astype(np.float32)
    args = (tf.constant(y), tf.constant(pt), tf.constant(pg), tf.constant(4.0), error)
    per_sample = losses.sample_advantage(*args).numpy()
    assert per_sample.mean() == pytest.approx(float(losses.batch_advantage(*args)), abs=1e-6)


def test_sampled_partners_estimate_the_exact_advantage_without_bias():
    """``partners = K``: each sample's XAUC share from K partners drawn from the batch is
    an unbiased estimate of the exact share (label and prediction ties included): over
    many draws its mean is the exact advantage within the draws' standard error, and its
    spread shrinks like 1 / sqrt(K)."""
    rng = np.random.default_rng(5)
    n = 200
    y = rng.integers(0, 8, n).astype(np.float32)
    pg = rng.integers(0, 6, n).astype(np.float32)
    pt = pg + rng.choice([-1.0, 0.0, 1.0], n).astype(np.float32)
    args = (tf.constant(y), tf.constant(pt), tf.constant(pg), tf.constant(3.0))
    exact = losses.sample_advantage(*args).numpy()
    spread = {}
    for k in (8, 32):
        draw = tf.function(lambda: losses.sample_advantage(*args, partners=k))
        tf.random.set_seed(k)
        draws = np.stack([draw().numpy() for _ in range(1500)])
        se = draws.std(0) / np.sqrt(len(draws))
        # z-scores of 200 samples' means: none beyond 4.5 (a biased share would be
        # tens of standard errors off, like dropping ties or the n / K scale)
        assert np.all(np.abs(draws.mean(0) - exact) <= 4.5 * se + 1e-5)
        assert draws.mean() == pytest.approx(exact.mean(), abs=4.5 * draws.mean(1).std()
                                             / np.sqrt(len(draws)) + 1e-6)
        spread[k] = draws.std(0).mean()
    assert spread[32] == pytest.approx(spread[8] / 2.0, rel=0.15)


@pytest.mark.parametrize("n", [1, 2, 5, 64, 300])
def test_dominance_counts_match_brute_force(n):
    """The merge-sort-tree count #{pos_j < p, rank_j < r} behind the O(B log^2 B) reward,
    for sizes that are and are not powers of two and bounds from 0 to N."""
    rng = np.random.default_rng(n)
    pos, rank = rng.permutation(n), rng.permutation(n)
    p, r = rng.integers(0, n + 1, 200), rng.integers(0, n + 1, 200)
    p[:2], r[:2] = [0, n], [n, 0]
    expected = ((pos[None, :] < p[:, None]) & (rank[None, :] < r[:, None])).sum(1)
    got = losses._dominance_counts(*(tf.constant(v, tf.float64) for v in (pos, rank, p, r)))
    np.testing.assert_array_equal(got.numpy(), expected)

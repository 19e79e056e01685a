"""The tree over D2Q's within-duration-group quantile (``label_space='quantile'``): the
label transform, the per-group leaf moments, every output in seconds per row, the losses
in seconds, and a request's tree printed in its seconds."""
import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

import ptpm_tf  # noqa: F401
from ptpm_tf.heads import TreeHead
from ptpm_tf.heads.quantile import fit_duration_quantiles, quantile_rank, quantile_value
from ptpm_tf.heads.tree import decoding, quantile_space
from ptpm_tf.heads.tree.config import QUANTILE_LEVELS, TreeConfig
from ptpm_tf.heads.tree.describe import describe_tree, request_tree


def _frame(n=6000, seed=0):
    """Durations, watch ratios with a spike of complete plays and quick skips."""
    rng = np.random.default_rng(seed)
    d = rng.lognormal(3.0, 0.6, n)
    r = rng.beta(0.8, 1.2, n) * 1.3
    r[rng.random(n) < 0.25] = 1.0
    r[rng.random(n) < 0.05] = 0.0
    frame = pd.DataFrame({"watch_time": r * d, "duration": d})
    frame.loc[:2, "duration"] = [np.nan, 0.0, np.inf]
    return frame


def _head(**kw):
    h = TreeHead(TreeConfig(depth=4, label_space="quantile", **kw))
    return h, h.adapt(_frame())


def _raw(b, seed=1):
    rng = np.random.default_rng(seed)
    return {"cls_logits": tf.constant(rng.normal(size=(b, 15)), tf.float32),
            "prune_logits": tf.constant(rng.normal(size=(b, 14)), tf.float32)}


def test_leaf_moments_integrate_the_quantile_function():
    """E[Q_g(U)] and E[Q_g(U)^2] per leaf, U uniform on each of the leaf's K pieces with
    mass 1/K (a zero-width piece a point mass), against a dense midpoint rule."""
    rng = np.random.default_rng(0)
    y, d = rng.lognormal(2, 1, 5000), rng.lognormal(3, 0.5, 5000)
    tables = fit_duration_quantiles(y, d, 4, 21)
    n_leaves, k = 8, 4
    inner = np.sort(rng.uniform(0, 1, n_leaves * k - 1))
    inner[5] = inner[4]  # one zero-width piece
    grid = np.concatenate([[0.0], inner, [1.0]])
    mean, m2 = quantile_space.leaf_moments(tables, grid, n_leaves)
    assert mean.shape == m2.shape == (5, n_leaves)
    t = (np.arange(4000) + 0.5) / 4000
    for g in range(5):
        piece_m1, piece_m2 = [], []
        for a, b in zip(grid[:-1], grid[1:]):
            u = np.full(1, a) if b == a else a + (b - a) * t
            v = tables.value_at(u, np.full(len(u), g))
            piece_m1.append(v.mean())
            piece_m2.append((v ** 2).mean())
        np.testing.assert_allclose(mean[g], np.reshape(piece_m1, (n_leaves, k)).mean(1),
                                   rtol=1e-5)
        np.testing.assert_allclose(m2[g], np.reshape(piece_m2, (n_leaves, k)).mean(1),
                                   rtol=1e-5)


def test_graph_rank_is_the_tables_quantile_of():
    """F_g in the graph (p_complete's threshold) equals the NumPy label transform,
    including values on a run of equal knots, outside the range, and NaN."""
    h, _ = _head()
    tables = h.group_tables
    rng = np.random.default_rng(3)
    group = rng.integers(0, tables.n_groups + 1, 400)
    knots = tables.knots.astype(np.float64)
    y = np.concatenate([rng.uniform(-5, 150, 300),
                        knots[group[300:350], rng.integers(0, 101, 50)],  # on a knot
                        [-1.0] * 25, [1e6] * 25])
    got = quantile_rank(h.group_knots, tf.constant(y, tf.float32), tf.constant(group)).numpy()
    want = tables.quantile_of(y.astype(np.float32), group)
    np.testing.assert_allclose(got, want, atol=2e-5)
    nan = quantile_rank(h.group_knots, tf.constant([np.nan]), tf.constant([0])).numpy()
    assert np.isnan(nan).all()


def test_quantile_head_decodes_in_seconds_per_row():
    h, targets = _head(tsl=True, decode="median")
    tables = h.group_tables
    frame = _frame()
    group = tables.group(frame["duration"].to_numpy())
    np.testing.assert_array_equal(targets["group"], group)
    assert group[0] == quantile_space.GROUPS  # unknown duration: the all-labels group
    b = 6
    raw = _raw(b)
    d = np.array([10.0, 20.0, 40.0, np.nan, 0.0, 33.0], np.float32)
    g = tables.group(d)
    features = {"duration": tf.constant(d)}
    out = {k: v.numpy() for k, v in h.decode(raw, features, distribution=True).items()}
    tree_p, global_p = (p.numpy() for p in h.leaf_distributions(raw))
    knots = h.leaf_knots
    # quantiles: Q_g of the tree's quantiles of u, exactly (Q_g is monotone)
    q_u = decoding.quantiles(tf.constant(tree_p), knots, QUANTILE_LEVELS).numpy()
    want = np.stack([tables.value_at(q_u[:, j], g) for j in range(q_u.shape[1])], 1)
    np.testing.assert_allclose(out["quantiles"], want, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(out["watch_time"], out["watch_time_median"])
    med_g = decoding.quantiles(tf.constant(global_p), knots, [0.5]).numpy()[:, 0]
    np.testing.assert_allclose(out["watch_time_global"], tables.value_at(med_g, g),
                               rtol=1e-4, atol=1e-4)
    # mean and variance: the leaf distribution against the group's leaf moments in seconds
    mean = (tree_p * h.group_leaf_mean.numpy()[g]).sum(1)
    m2 = (tree_p * h.group_leaf_m2.numpy()[g]).sum(1)
    np.testing.assert_allclose(out["watch_time_mean"], mean, rtol=1e-4)
    np.testing.assert_allclose(out["variance"], np.maximum(m2 - mean ** 2, 0), rtol=2e-3,
                               atol=1e-2)
    assert np.all(out["quantiles"][:, 0] <= out["quantiles"][:, -1])
    # p_complete: the tree's mass above F_g(d), recalibrated (identity before calibrate)
    u_c = tables.quantile_of(d, g)
    raw_p = decoding.survival(tf.constant(tree_p), knots, tf.constant(u_c, tf.float32),
                              normalized=True).numpy()
    known = np.isfinite(d)
    np.testing.assert_allclose(out["p_complete"][known], raw_p[known], atol=1e-5)
    np.testing.assert_allclose(h.point_prediction(raw, features).numpy(), out["watch_time"],
                               rtol=1e-5)
    mean_decoder, _ = _head(tsl=True, decode="mean")
    mean_out = mean_decoder.decode(raw, features)
    np.testing.assert_allclose(mean_decoder.point_prediction(raw, features).numpy(),
                               mean_out["watch_time"].numpy(), rtol=1e-5)


def test_quantile_losses_are_in_seconds():
    """L_reg: the squared error of sum_l P(l) mean_g(l) against the watch time; L_var:
    the categorical variance over those leaf values (both over label_scale^2)."""
    h, targets = _head(tsl=False, ucl=False)
    n = 32
    logits = _raw(n, seed=2)["cls_logits"]
    tg = {k: tf.constant(v[:n]) for k, v in targets.items()}
    _, parts = h.compute_loss({"cls_logits": logits}, tg, step=0)
    reach = np.exp(h.ops.log_reach(logits).numpy())[:, 15:]
    v = h.group_leaf_mean.numpy()[targets["group"][:n]]
    mean = (reach * v).sum(1)
    var = (reach * v ** 2).sum(1) - mean ** 2
    s = float(h.label_scale.numpy())
    y = targets["watch_time"][:n]
    assert float(parts["reg"]) == pytest.approx(np.mean(((mean - y) / s) ** 2), rel=1e-4)
    assert float(parts["var"]) == pytest.approx(np.mean(var) / s ** 2, rel=1e-3)


def test_pruning_reward_runs_in_seconds():
    """PTPM's training step in quantile space: the sampled tree's reward and the REINFORCE
    loss are finite for either reward decoder."""
    for reward_decode in ("median", "mean"):
        h, targets = _head(tsl=True, reward_decode=reward_decode)
        n = 64
        tg = {k: tf.constant(v[:n]) for k, v in targets.items()}
        total, parts = h.compute_loss(_raw(n, seed=4), tg, step=0, training=True)
        assert np.isfinite(float(total)) and np.isfinite(float(parts["tree_gain"]))


def test_request_tree_prints_the_requests_seconds():
    h, _ = _head(tsl=True)
    raw = {"cls_logits": tf.zeros([1, 15]), "prune_logits": tf.fill([1, 14], -5.0)}
    pred = {k: v.numpy()[0] for k, v in
            h.decode(raw, {"duration": tf.constant([50.0])}, distribution=True).items()}
    info = h.model_info()["tree"]
    assert info["label_space"] == "quantile"
    tables = h.group_tables
    g = tables.group(np.array([50.0]))[0]
    bounds, values = request_tree(info, 50.0)
    np.testing.assert_allclose(bounds, tables.value_at(h.leaf_bounds.numpy(),
                                                       np.full(17, g)), rtol=1e-6)
    # a global leaf's value is its group mean; the served mean is their P-weighted sum
    np.testing.assert_allclose(values[15:], h.group_leaf_mean.numpy()[g], rtol=1e-5)
    np.testing.assert_allclose(pred["leaf_prob"] @ values, pred["watch_time_mean"], rtol=1e-4)
    assert np.all(np.diff(bounds) >= 0)
    unknown, _ = request_tree(info, None)  # the all-durations group
    np.testing.assert_allclose(unknown, tables.value_at(h.leaf_bounds.numpy(),
                                                        np.full(17, tables.n_groups)),
                               rtol=1e-6)
    text = describe_tree(pred, 4, leaf_bounds=bounds, node_value=values)
    assert f"[{bounds[0]:.2f}, " in text


def test_quantile_space_needs_a_duration():
    h = TreeHead(TreeConfig(depth=3, label_space="quantile"))
    with pytest.raises(ValueError, match="duration column"):
        h.adapt(pd.DataFrame({"watch_time": [1.0, 2.0]}))
    with pytest.raises(ValueError, match="duration > 0"):
        h.adapt(pd.DataFrame({"watch_time": [1.0, 2.0], "duration": [np.nan, 0.0]}))


def test_quantile_value_broadcasts_over_levels():
    knots = tf.constant([[0.0, 1.0, 2.0], [0.0, 10.0, 20.0]])
    u = tf.constant([[0.25, 0.75], [0.25, 0.75]])
    got = quantile_value(knots, u, tf.constant([[0], [1]])).numpy()
    np.testing.assert_allclose(got, [[0.5, 1.5], [5.0, 15.0]])

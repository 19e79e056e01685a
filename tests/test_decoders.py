"""Distributional decoders of the tree (issue 7): quantiles, median, P(W > t), and the
median decoder end to end."""
import json

import numpy as np
import pytest
import tensorflow as tf

import ptpm_tf  # noqa: F401
from ptpm_tf.heads.tree import decoding
from ptpm_tf.heads.tree.config import QUANTILE_LEVELS, TreeConfig
from ptpm_tf.heads.tree.geometry import TreeGeometry, TreeOps, fit_global_tree

# Two leaves, K = 2 pieces each: leaf 0 covers [0, 10] with its within-leaf median at 2
# (skewed), leaf 1 covers [10, 30] with its within-leaf median at 20.
KNOTS = np.array([[0.0, 2.0, 10.0], [10.0, 20.0, 30.0]], np.float32)


def _grid(knots):
    return tf.constant(decoding.knot_grid(knots))


def _q(prob, levels, knots=KNOTS):
    return decoding.quantiles(tf.constant(prob, tf.float32), _grid(knots), levels).numpy()


def test_quantiles_of_a_hand_built_distribution():
    # P(leaf 0) = 0.4, P(leaf 1) = 0.6. F is piecewise linear through
    # (0, 0), (2, 0.2), (10, 0.4), (20, 0.7), (30, 1.0).
    prob = [[0.4, 0.6]]
    levels = [0.1, 0.2, 0.3, 0.4, 0.5, 0.55, 0.7, 0.9]
    expected = [1.0,  # 0.1 / 0.2 of the way from 0 to 2
                2.0,
                6.0,  # half way from 2 to 10
                10.0,
                10.0 + 10.0 * (0.1 / 0.3),  # (0.5 - 0.4) / 0.3 of the way from 10 to 20
                15.0,
                20.0,
                20.0 + 10.0 * (0.2 / 0.3)]
    np.testing.assert_allclose(_q(prob, levels)[0], expected, rtol=1e-5)
    # un-normalised probabilities are renormalised
    np.testing.assert_allclose(_q([[0.8, 1.2]], levels)[0], expected, rtol=1e-5)


def test_cdf_and_survival_of_the_hand_built_distribution():
    prob = tf.constant([[0.4, 0.6]] * 7, tf.float32)
    t = tf.constant([-1.0, 0.0, 1.0, 6.0, 15.0, 30.0, 31.0])
    f = decoding.cdf(prob, _grid(KNOTS), t).numpy()
    np.testing.assert_allclose(f, [0.0, 0.0, 0.1, 0.3, 0.55, 1.0, 1.0], atol=1e-6)
    s = decoding.survival(prob, _grid(KNOTS), t).numpy()
    np.testing.assert_allclose(s, 1.0 - f, atol=1e-6)
    nan = decoding.survival(prob[:1], _grid(KNOTS), tf.constant([np.nan])).numpy()
    assert np.isnan(nan[0])


def test_nan_leaf_probabilities_decode_to_nan_without_an_error():
    """A diverged model's NaN probabilities come out as NaN quantiles (which the serving
    checks reject by name) instead of an out-of-range gather deep in the graph."""
    q = _q([[np.nan, np.nan], [0.4, 0.6]], [0.5, 0.9])
    assert np.isnan(q[0]).all() and np.isfinite(q[1]).all()


def test_tied_labels_zero_width_leaves_by_hand():
    # 50 % of the training labels are 0: leaves 0 and 1 are [0, 0], leaf 2 is [0, 10]
    knots = np.array([[0.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 5.0, 10.0]], np.float32)
    prob = [[0.2, 0.3, 0.5]]
    np.testing.assert_allclose(_q(prob, [0.1, 0.3, 0.5, 0.6, 0.75], knots)[0],
                               [0.0, 0.0, 0.0, 2.0, 5.0], atol=1e-6)
    t = tf.constant([-1.0, 0.0, 2.0, 10.0])
    f = decoding.cdf(tf.constant(prob * 4, tf.float32), _grid(knots), t).numpy()
    # right-continuous: F(0) holds the whole mass of the zero-width leaves
    np.testing.assert_allclose(f, [0.0, 0.5, 0.6, 1.0], atol=1e-6)


def test_quantile_is_the_inverse_of_the_cdf():
    rng = np.random.default_rng(3)
    knots = np.sort(rng.gamma(1.0, 10.0, 16 * 5)).reshape(16, 5).astype(np.float32)
    knots[1:, 0] = knots[:-1, -1]  # continuous, as fit_leaf_knots makes them
    knots = np.maximum.accumulate(knots.ravel()).reshape(knots.shape)
    prob = rng.dirichlet(np.full(16, 0.7), size=32).astype(np.float32)
    levels = np.linspace(0.02, 0.98, 25)
    q = _q(prob, levels, knots)
    for i, lev in enumerate(levels):
        f = decoding.cdf(tf.constant(prob), _grid(knots), tf.constant(q[:, i])).numpy()
        np.testing.assert_allclose(f, lev, atol=2e-4)


@pytest.mark.parametrize("depth,k", [(2, 1), (4, 8), (6, 8)])
def test_quantiles_are_monotone_in_q_for_random_distributions(depth, k):
    rng = np.random.default_rng(depth)
    y = np.concatenate([np.zeros(300), rng.uniform(0, 3, 500), rng.lognormal(3, 1, 2000)])
    tree = fit_global_tree(y, depth)
    knots = decoding.fit_leaf_knots(y, tree.train_leaf, tree.leaf_bounds, k)
    # sparse and dense random leaf distributions, some with empty leaves
    prob = rng.dirichlet(np.full(2 ** depth, 0.3), size=200)
    prob[::4] *= rng.random(prob[::4].shape) < 0.3
    prob[::4, 0] += 1e-3
    levels = np.sort(np.concatenate([rng.random(40), [1e-6, 0.5, 1 - 1e-6]]))
    q = _q(prob.astype(np.float32), levels, knots)
    assert np.all(np.diff(q, axis=1) >= -1e-4 * (1 + np.abs(q[:, 1:])))
    assert np.all(q >= tree.leaf_bounds[0] - 1e-4) and np.all(q <= tree.leaf_bounds[-1] + 1e-3)


def test_median_of_one_leaf_mass_lies_inside_that_leaf():
    rng = np.random.default_rng(0)
    y = rng.lognormal(2.5, 1.0, 5000)
    tree = fit_global_tree(y, 4)
    knots = decoding.fit_leaf_knots(y, tree.train_leaf, tree.leaf_bounds, 8)
    n_leaves = 16
    prob = np.eye(n_leaves, dtype=np.float32)
    med = _q(prob, [0.5], knots)[:, 0]
    lo, hi = tree.leaf_bounds[:-1], tree.leaf_bounds[1:]
    assert np.all((med >= lo) & (med <= hi))
    # and it is the within-leaf median of the training labels (up to interpolation)
    true_med = np.array([np.median(y[tree.train_leaf == k]) for k in range(n_leaves)])
    np.testing.assert_allclose(med, true_med, rtol=0.02)
    # a pruned leaf (internal node 1 = left half of the tree) with all the mass: its
    # median is the training median of the labels below it, inside its interval
    geom = TreeGeometry(4)
    node_prob = np.zeros((1, geom.n_nodes), np.float32)
    node_prob[0, 1] = 1.0
    mask = np.zeros_like(node_prob)
    mask[0, 1] = 1.0
    leaf_p = decoding.leaf_distribution(tf.constant(node_prob * mask),
                                        tf.constant(decoding.spread_matrix(geom)))
    np.testing.assert_allclose(leaf_p.numpy()[0], [1 / 8] * 8 + [0] * 8, atol=1e-7)
    m = decoding.quantiles(leaf_p, _grid(knots), [0.5]).numpy()[0, 0]
    assert tree.leaf_bounds[0] <= m <= tree.leaf_bounds[8]
    np.testing.assert_allclose(m, np.median(y[tree.train_leaf < 8]), rtol=0.02)


def test_survival_is_one_below_the_smallest_bound_and_zero_above_the_largest():
    rng = np.random.default_rng(1)
    y = rng.gamma(0.8, 20.0, 3000) + 1.0
    tree = fit_global_tree(y, 5)
    knots = _grid(decoding.fit_leaf_knots(y, tree.train_leaf, tree.leaf_bounds, 4))
    prob = tf.constant(rng.dirichlet(np.ones(32), size=50), tf.float32)
    lo, hi = float(tree.leaf_bounds[0]), float(tree.leaf_bounds[-1])
    below = decoding.survival(prob, knots, tf.fill([50], lo - 0.5)).numpy()
    above = decoding.survival(prob, knots, tf.fill([50], hi + 0.5)).numpy()
    at_top = decoding.survival(prob, knots, tf.fill([50], hi)).numpy()
    np.testing.assert_array_equal(below, 1.0)
    np.testing.assert_array_equal(above, 0.0)
    np.testing.assert_array_equal(at_top, 0.0)
    # and it is non-increasing in t in between
    ts = np.linspace(lo, hi, 60, dtype=np.float32)
    s = np.stack([decoding.survival(prob, knots, tf.fill([50], t)).numpy() for t in ts], 1)
    assert np.all(np.diff(s, axis=1) <= 1e-6)


def test_leaf_knots_are_within_leaf_training_quantiles():
    y = np.arange(40, dtype=np.float64)  # leaf k (depth 2) holds 10k .. 10k + 9
    tree = fit_global_tree(y, 2)
    knots = decoding.fit_leaf_knots(y, tree.train_leaf, tree.leaf_bounds, 3)
    np.testing.assert_allclose(knots[:, 0], tree.leaf_bounds[:-1])
    np.testing.assert_allclose(knots[:, -1], tree.leaf_bounds[1:])
    # interior knots: the 1/3 and 2/3 quantiles of 10k .. 10k + 9
    np.testing.assert_allclose(knots[1, 1:3], [13.0, 16.0])
    assert np.all(np.diff(knots.ravel()) >= 0)


def test_unpruned_spread_equals_global_leaves_and_mean_is_e_t():
    rng = np.random.default_rng(2)
    geom = TreeGeometry(4)
    ops = TreeOps(geom)
    y = rng.lognormal(2.0, 1.0, 4000)
    tree = fit_global_tree(y, 4)
    reach = tf.exp(ops.log_reach(tf.constant(rng.normal(0, 2, (16, geom.n_internal)),
                                             tf.float32)))
    spread = tf.constant(decoding.spread_matrix(geom))
    none = ops.pruned_leaves(tf.zeros([16, geom.n_internal - 1]))
    np.testing.assert_allclose(decoding.leaf_distribution(reach * none, spread).numpy(),
                               reach.numpy()[:, geom.n_internal:], atol=1e-6)
    # a pruned tree: the spread distribution's mean over leaf means is E_T of Eq. 2
    actions = tf.constant(rng.random((16, geom.n_internal - 1)) < 0.4, tf.float32)
    mask = ops.pruned_leaves(actions)
    leaf_p = decoding.leaf_distribution(reach * mask, spread).numpy()
    e_t, _ = ops.moments(reach * mask, tf.constant(tree.node_value), tf.constant(tree.node_m2))
    np.testing.assert_allclose(leaf_p.sum(1), 1.0, atol=1e-5)
    np.testing.assert_allclose(leaf_p @ tree.node_value[geom.n_internal:], e_t.numpy(),
                               rtol=2e-3)


@pytest.mark.slow
def test_median_decoder_end_to_end(tmp_path):
    from ptpm_tf.evaluate import predict_frame
    from ptpm_tf.config import ExperimentConfig
    from ptpm_tf.training import load_run, train
    config = ExperimentConfig.from_flat(model="ptpm", preset="paper", rows=3000, depth=3,
                                        epochs=1, batch_size=512, decode="median")
    run = train(config, tmp_path / "run", verbose=0)
    m = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert m["decode"] == "median"
    for key in ("mae_mean", "mae_median", "xauc_mean", "xauc_median",
                "mae_global_tree_mean", "mae_global_tree_median"):
        assert np.isfinite(m[key]), key
    assert m["mae"] == m["mae_median"] and m["xauc"] == m["xauc_median"]
    pred = predict_frame(run.model, run.split.test.iloc[:100])
    np.testing.assert_array_equal(pred["watch_time"], pred["watch_time_median"])
    assert pred["quantiles"].shape == (100, len(QUANTILE_LEVELS))
    np.testing.assert_allclose(pred["quantiles"][:, 2], pred["watch_time_median"], rtol=1e-6)
    assert np.all(np.diff(pred["quantiles"], axis=1) >= -1e-3)
    assert np.all((pred["p_complete"] >= 0) & (pred["p_complete"] <= 1))
    # p_complete is recalibrated on the validation split: its mean there is the observed
    # completion rate (binned isotonic regression keeps the overall rate)
    assert abs(m["validation_p_complete_mean"] - m["validation_completion_rate"]) < 0.03
    cmap = run.model.head.completion_map.numpy()
    assert np.all(np.diff(cmap) >= 0) and not np.allclose(cmap, np.linspace(0, 1, len(cmap)))
    # the decoder and the map survive the round trip through the run directory
    _, model, _, split = load_run(tmp_path / "run")
    assert model.head.decoder == "median"
    np.testing.assert_array_equal(model.head.completion_map.numpy(), cmap)
    again = predict_frame(model, split.test.iloc[:100])
    np.testing.assert_allclose(again["watch_time"], pred["watch_time"], rtol=1e-5)


def test_pinball_loss_and_coverage_by_hand():
    from ptpm_tf.metrics import mae, pinball_loss, quantile_coverage
    y = np.array([1.0, 2.0, 3.0, 10.0])
    q = np.full(4, 2.0)
    # y - q = -1, 0, 1, 8: at 0.1 -> (0.9 + 0 + 0.1 + 0.8) / 4; at 0.9 -> (0.1 + 0.9 + 7.2) / 4
    np.testing.assert_allclose(pinball_loss(y, np.stack([q, q], 1), [0.1, 0.9]), [0.45, 2.05])
    assert pinball_loss(y, q, 0.5) == pytest.approx(mae(y, q) / 2)
    assert quantile_coverage(y, q) == 0.5
    np.testing.assert_allclose(quantile_coverage(y, np.stack([q, q + 5], 1)), [0.5, 0.75])


def test_oracle_quantiles_match_the_simulator_median_and_cdf():
    from ptpm_tf.calibration import mixture_quantiles
    from ptpm_tf.data.simulator import simulate_with_truth
    mix = simulate_with_truth(rows=400, seed=3).mixture
    q = mixture_quantiles(mix, [0.1, 0.5, 0.9])
    np.testing.assert_allclose(q[:, 1], mix.median(), rtol=1e-6)
    assert np.all(np.diff(q, axis=1) >= 0)
    # F(q) >= level, and F just below q < level (q is the infimum)
    with np.errstate(divide="ignore"):  # the simulator's CDF at w >= duration
        for i, lev in enumerate([0.1, 0.5, 0.9]):
            assert np.all(mix.cdf(q[:, i] * (1 + 1e-6) + 1e-9) >= lev - 1e-6)
            assert np.all(mix.cdf(q[:, i] * (1 - 1e-4)) <= lev + 1e-6)


@pytest.mark.slow
def test_calibration_report_and_plot(tmp_path):
    from ptpm_tf.calibration import calibration_report, write_calibration
    from ptpm_tf.config import ExperimentConfig
    from ptpm_tf.training import train
    config = ExperimentConfig.from_flat(model="tpm", rows=2000, depth=3, epochs=1, batch_size=512)
    run = train(config, verbose=0)
    report = calibration_report(run.model, run.split.test, run.dataset, config=config,
                                levels=[0.25, 0.5, 0.75])
    for name in ("tree", "global", "oracle"):
        assert len(report[name]["coverage"]) == 3 and len(report[name]["pinball"]) == 3
        assert np.all(np.diff(report[name]["coverage"]) >= 0)
    # the oracle's quantiles are the best possible: lowest pinball loss on average
    assert report["oracle"]["mean_pinball"] < report["tree"]["mean_pinball"]
    assert 0.0 <= report["completion"]["brier"] <= 1.0
    paths = write_calibration(report, tmp_path / "cal")
    assert all(p.exists() and p.stat().st_size > 0 for p in paths)


def test_tree_head_outputs_match_the_decoding_functions():
    import pandas as pd
    from ptpm_tf.heads import TreeHead
    rng = np.random.default_rng(5)
    y = rng.lognormal(2.5, 1.0, 3000)
    lean_keys = {"watch_time", "watch_time_global", "variance", "prune_mask", "leaf_prob",
                 "tree_depth"}
    heads = {}
    for decode in ("mean", "median"):
        h = TreeHead(TreeConfig(depth=3, decode=decode))
        h.adapt(pd.DataFrame({"watch_time": y}))
        heads[decode] = h
    h = heads["median"]
    geom = h.geometry
    raw = {"cls_logits": tf.constant(rng.normal(0, 2, (64, geom.n_internal)), tf.float32),
           "prune_logits": tf.constant(rng.normal(0, 2, (64, geom.n_internal - 1)), tf.float32)}
    duration = tf.constant(rng.uniform(5, 60, 64), tf.float32)
    out = h.decode(raw, {"duration": duration}, distribution=True)
    reach = tf.exp(h.ops.log_reach(raw["cls_logits"]))
    mask = h.ops.pruned_leaves(tf.cast(raw["prune_logits"] > 0, tf.float32))
    tree_p = decoding.leaf_distribution(reach * mask, h.spread)
    global_p = reach[:, geom.n_internal:]
    knots = h.leaf_knots
    np.testing.assert_allclose(out["watch_time"], decoding.quantiles(tree_p, knots, [0.5])[:, 0],
                               rtol=1e-5)
    np.testing.assert_allclose(out["watch_time_global"],
                               decoding.quantiles(global_p, knots, [0.5])[:, 0], rtol=1e-5)
    np.testing.assert_allclose(out["quantiles"],
                               decoding.quantiles(tree_p, knots, QUANTILE_LEVELS),
                               rtol=1e-5)
    np.testing.assert_allclose(out["p_complete"], decoding.survival(tree_p, knots, duration),
                               atol=1e-6)
    mean_out = heads["mean"].decode(raw, {"duration": duration}, distribution=True)
    np.testing.assert_allclose(mean_out["watch_time"], out["watch_time_mean"], rtol=1e-6)
    np.testing.assert_allclose(mean_out["watch_time_median"], out["watch_time"], rtol=1e-6)
    assert set(heads["mean"].decode(raw, {"duration": duration})) == lean_keys
    # serving_default's path (no distributional outputs) serves the same two medians,
    # row by row, at any batch size
    for n in (1, 7, 64):
        lean = h.decode({k: v[:n] for k, v in raw.items()}, {})
        for key in ("watch_time", "watch_time_global"):
            np.testing.assert_array_equal(lean[key], out[key][:n])
    assert set(heads["median"].decode(raw, {})) == lean_keys
    assert set(out) == lean_keys | {"watch_time_mean", "watch_time_median", "quantiles",
                                    "p_complete"}
    assert "p_complete" not in h.decode(raw, {}, distribution=True)
    # the decode maps fold the spread, the moments and the cumulative sum into one
    # matmul: the served mean and variance are Eq. 2-3 over the pruned tree's leaves
    leaf_prob = (reach * mask).numpy()
    mean = leaf_prob @ h.node_value.numpy()
    np.testing.assert_allclose(out["watch_time_mean"], mean, rtol=1e-5)
    np.testing.assert_allclose(out["variance"],
                               np.maximum(leaf_prob @ h.node_m2.numpy() - mean ** 2, 0),
                               rtol=1e-4, atol=1e-3)
    # a checkpoint from before the maps existed restores them as zeros: after_restore
    # derives them again from the tree's constants
    for m in (h.tree_decode_map, h.global_decode_map):
        m.assign(tf.zeros_like(m))
    h.after_restore()
    again = h.decode(raw, {"duration": duration}, distribution=True)
    for key in out:
        np.testing.assert_array_equal(again[key], out[key])
    every = h.evaluation_outputs(raw, {})
    np.testing.assert_allclose(every["watch_time_global_median"], out["watch_time_global"])
    # any level, either tree, through the head's helpers
    np.testing.assert_allclose(h.quantile(raw, [0.5])[:, 0], out["watch_time"], rtol=1e-4)
    np.testing.assert_allclose(h.quantile(raw, [0.5], global_tree=True)[:, 0],
                               out["watch_time_global"], rtol=1e-4)
    raw_p = h.completion(raw, {"duration": duration}, recalibrated=False)
    np.testing.assert_allclose(raw_p, out["p_complete"], atol=1e-6)
    # a fitted completion map is applied to the served p_complete only
    h.completion_map.assign(np.sqrt(np.linspace(0, 1, decoding.COMPLETION_GRID + 1)))
    mapped = h.decode(raw, {"duration": duration}, distribution=True)["p_complete"]
    np.testing.assert_allclose(mapped, decoding.monotone_map(raw_p, h.completion_map),
                               atol=1e-6)
    assert np.all(mapped.numpy() >= out["p_complete"].numpy() - 1e-6)


def test_monotone_map_by_hand():
    values = tf.constant([0.1, 0.2, 0.9])  # at 0, 1/2, 1
    p = tf.constant([0.0, 0.25, 0.5, 0.75, 1.0, np.nan])
    got = decoding.monotone_map(p, values).numpy()
    np.testing.assert_allclose(got[:5], [0.1, 0.15, 0.2, 0.55, 0.9], atol=1e-6)
    assert np.isnan(got[5])


def test_isotonic_pools_adjacent_violators_by_hand():
    from ptpm_tf.heads.tree.completion import isotonic
    np.testing.assert_allclose(isotonic([1, 3, 2, 4], [1, 1, 1, 1]), [1, 2.5, 2.5, 4])
    np.testing.assert_allclose(isotonic([1, 3, 2, 4], [1, 1, 3, 1]), [1, 2.25, 2.25, 4])
    np.testing.assert_allclose(isotonic([3, 2, 1], [1, 1, 1]), [2, 2, 2])


def test_completion_map_undoes_a_known_bias():
    from ptpm_tf.heads.tree.completion import fit_completion_map
    rng = np.random.default_rng(3)
    raw = rng.uniform(0.0, 0.5, 200_000)
    done = (rng.random(raw.size) < 2.0 * raw).astype(float)  # the truth is twice the raw
    values = fit_completion_map(raw, done)
    grid = np.linspace(0, 1, len(values))
    inside = (grid > 0.05) & (grid < 0.45)
    np.testing.assert_allclose(values[inside], 2.0 * grid[inside], atol=0.03)
    assert np.all(np.diff(values) >= 0) and values.min() >= 0 and values.max() <= 1
    mapped = decoding.monotone_map(tf.constant(raw, tf.float32), tf.constant(values)).numpy()
    assert abs(mapped.mean() - done.mean()) < 0.005
    # too few rows (or only NaN): the identity, which leaves p_complete as the tree says
    np.testing.assert_allclose(fit_completion_map(raw[:50], done[:50]), grid, atol=1e-7)
    np.testing.assert_allclose(fit_completion_map(np.full(500, np.nan), done[:500]), grid,
                               atol=1e-7)


def test_benchmark_table_shows_tree_models_with_both_decoders():
    from ptpm_tf.benchmarks import suite as B
    runs = [{"variant": "ptpm", "seed": s,
             "test": {"decode": "mean", "mae": 10.0 + s, "xauc": 0.70, "mae_mean": 10.0 + s,
                      "xauc_mean": 0.70, "mae_median": 9.5 + s, "xauc_median": 0.71}}
            for s in range(3)]
    stat = lambda xs: {**B._mean_std(xs), "per_seed": xs}
    served = {"seeds": [0, 1, 2], "mae": stat([10.0, 11.0, 12.0]), "xauc": stat([0.7] * 3),
              "cost": {"params": 1, "head_params": 1, "flops": 1}}
    name, other = B._other_decoder_entry(served, runs)
    assert name == "median" and other["mae"]["mean"] == pytest.approx(10.5)
    assert other["xauc"]["per_seed"] == [0.71] * 3 and "cost" not in other
    assert B._other_decoder_entry(served, [{**r, "variant": "mse"} for r in runs]) is None
    models = {"ptpm": served, "ptpm-median": other}
    results = {"datasets": {"sim": {"models": models, "oracle": None, "depth_sweep": {},
                                    "significance": {"table2": {}, "table3": {}}}},
               "selection": {}, "config": None}
    text = B.render_tables(results)
    row = next(l for l in text.splitlines() if l.startswith("| PTPM, median decoder |"))
    assert "**10.500 ± 1.000**" in row and "**0.7100" in row


def test_checkpoint_without_knots_falls_back_to_linear_interpolation():
    import pandas as pd
    from ptpm_tf.heads import TreeHead
    h = TreeHead(TreeConfig(depth=2, leaf_knots=2))
    h.adapt(pd.DataFrame({"watch_time": np.arange(40, dtype=np.float64)}))
    fitted = h.leaf_knots.numpy().copy()
    h.after_restore()  # knots present: untouched
    np.testing.assert_array_equal(h.leaf_knots.numpy(), fitted)
    h.leaf_knots.assign(np.zeros_like(fitted))
    with pytest.warns(UserWarning, match="leaf_knots"):
        h.after_restore()
    b = h.leaf_bounds.numpy()
    expected = decoding.knot_grid(decoding.linear_leaf_knots(b, 2))
    np.testing.assert_allclose(h.leaf_knots.numpy(), expected)
    assert expected[0] == b[0] and expected[-1] == b[-1] and expected[2] == b[1]


@pytest.mark.parametrize("decode", ["mean", "median"])
@pytest.mark.parametrize("tsl", [True, False])
def test_point_prediction_is_decodes_watch_time(decode, tsl):
    """The training step's MAE uses point_prediction; it must be exactly what is served."""
    import pandas as pd
    from ptpm_tf.heads import TreeHead
    rng = np.random.default_rng(0)
    head = TreeHead(TreeConfig(depth=3, tsl=tsl, decode=decode))
    head.adapt(pd.DataFrame({"watch_time": rng.exponential(10, 500)}))
    out = head(tf.constant(rng.normal(size=(64, 8)), tf.float32))
    np.testing.assert_allclose(head.point_prediction(out).numpy(),
                               head.decode(out)["watch_time"].numpy(), rtol=1e-5, atol=1e-5)

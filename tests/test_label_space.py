"""The tree over the watch ratio (``label_space='ratio'``): atoms in zero-width leaves,
every output in seconds per row, ``p_complete`` as the tree's own mass at ``r >= 1``, the
duration fallback, the presets, and the notice on data without a duration."""
import json

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

import ptpm_tf  # noqa: F401
from ptpm_tf.heads.tree import decoding
from ptpm_tf.heads.tree.config import QUANTILE_LEVELS, TreeConfig
from ptpm_tf.heads.tree.describe import describe_tree, label_unit
from ptpm_tf.heads import TreeHead, build_head, head_config
from ptpm_tf.heads.tree.geometry import assign_leaves, fit_global_tree, leaf_cuts


def _ratios(n=20_000, seed=0):
    """Watch ratios with atoms at 0 (skips) and 1 (complete plays) and replays above 1."""
    rng = np.random.default_rng(seed)
    parts = [rng.uniform(0.0, 1.0, int(0.55 * n)), np.ones(int(0.27 * n)),
             1.0 + rng.exponential(0.5, int(0.10 * n)), np.zeros(int(0.08 * n))]
    return rng.permutation(np.concatenate(parts))


@pytest.mark.parametrize("leaf_values", ["mean", "midpoint"])
def test_atoms_sit_in_zero_width_leaves_of_their_own_value(leaf_values):
    r = _ratios()
    tree = fit_global_tree(r, 6, leaf_values=leaf_values, atoms=True)
    b, n_int = tree.leaf_bounds, 2 ** 6 - 1
    zero_width = b[:-1] == b[1:]
    for atom in (0.0, 1.0):
        leaves = np.unique(tree.train_leaf[r == atom])
        assert np.all(zero_width[leaves]) and np.all(b[leaves] == atom)
        # every row of those leaves is the atom, and their value is exactly the atom
        assert np.all(r[np.isin(tree.train_leaf, leaves)] == atom)
        np.testing.assert_array_equal(tree.node_value[n_int + leaves], atom)
    # the atom at 1 holds 27 % of the rows: 17 of 64 leaves, each still about 1/L
    assert len(np.unique(tree.train_leaf[r == 1.0])) == round(0.27 * 64)
    assert np.all(np.abs(tree.leaf_mass * 64 - 1) < 0.1)
    assert tree.leaf_mass.sum() == pytest.approx(1.0)
    # held-out labels at an atom go to the atom's leaves only
    held = assign_leaves(np.ones(2000), b, seed=1)
    assert set(held) == set(np.unique(tree.train_leaf[r == 1.0]))
    inside = assign_leaves(np.array([0.5, 1.3]), b)
    assert np.all((b[inside] <= [0.5, 1.3]) & ([0.5, 1.3] <= b[inside + 1]))


def test_without_atoms_the_tree_stays_equal_frequency():
    r = _ratios()
    cuts = leaf_cuts(np.sort(r), 64, atoms=False)
    np.testing.assert_array_equal(cuts, np.arange(65) * len(r) // 64)
    # and a label without big ties cuts the same way with atoms on
    y = np.random.default_rng(0).lognormal(size=5000)
    np.testing.assert_array_equal(leaf_cuts(np.sort(y), 16, True), leaf_cuts(np.sort(y), 16, False))


def _frame(n=4000, seed=0):
    rng = np.random.default_rng(seed)
    d = rng.lognormal(3.0, 0.6, n)
    r = _ratios(n, seed)
    d[:5] = [np.nan, 0.0, -1.0, np.inf, 30.0]  # unknown durations use the fallback
    return pd.DataFrame({"watch_time": r * np.where(np.isfinite(d) & (d > 0), d, 20.0),
                         "duration": d})


def _head(**kw):
    h = TreeHead(TreeConfig(depth=4, label_space="ratio", **kw))
    targets = h.adapt(_frame())
    return h, targets


def test_ratio_head_decodes_in_seconds_per_row():
    h, targets = _head(tsl=True, decode="median")
    frame = _frame()
    known = frame["duration"].to_numpy()
    ok = np.isfinite(known) & (known > 0)
    assert float(h.duration_fallback.numpy()) == pytest.approx(np.median(known[ok]))
    np.testing.assert_allclose(targets["duration"],
                               np.where(ok, known, np.median(known[ok])), rtol=1e-6)
    rng = np.random.default_rng(1)
    b = 6
    raw = {"cls_logits": tf.constant(rng.normal(size=(b, 15)), tf.float32),
           "prune_logits": tf.constant(rng.normal(size=(b, 14)), tf.float32)}
    d = np.array([10.0, 20.0, 40.0, np.nan, 0.0, 33.0], np.float32)
    unit = np.where(np.isfinite(d) & (d > 0), d, h.duration_fallback.numpy())
    out = {k: v.numpy() for k, v in
           h.decode(raw, {"duration": tf.constant(d)}, distribution=True).items()}
    # the same decode in ratio units, by the decoding functions
    tree_p, global_p = (p.numpy() for p in h.leaf_distributions(raw))
    knots = h.leaf_knots
    q_r = decoding.quantiles(tf.constant(tree_p), knots, QUANTILE_LEVELS).numpy()
    np.testing.assert_allclose(out["quantiles"], q_r * unit[:, None], rtol=1e-5)
    np.testing.assert_allclose(out["watch_time"], out["watch_time_median"], rtol=1e-6)
    mean_r = out["leaf_prob"] @ h.node_value.numpy()
    np.testing.assert_allclose(out["watch_time_mean"], mean_r * unit, rtol=1e-5)
    var_r = out["leaf_prob"] @ h.node_m2.numpy() - mean_r ** 2
    np.testing.assert_allclose(out["variance"], np.maximum(var_r, 0) * unit ** 2, rtol=1e-3,
                               atol=1e-3)
    med_g = decoding.quantiles(tf.constant(global_p), knots, [0.5]).numpy()[:, 0]
    np.testing.assert_allclose(out["watch_time_global"], med_g * unit, rtol=1e-5)
    # p_complete: the tree's mass on the leaves at or above r = 1 (zero-width leaves at 1
    # and the replay leaves above), no recalibration map
    bounds = h.leaf_bounds.numpy()
    at_or_above = bounds[:-1] >= 1.0
    np.testing.assert_allclose(out["p_complete"], tree_p[:, at_or_above].sum(1), atol=1e-5)
    assert np.all(np.isfinite(out["p_complete"]))
    # the MAE of training steps uses the same served value
    np.testing.assert_allclose(h.point_prediction(raw, {"duration": tf.constant(d)}).numpy(),
                               out["watch_time"], rtol=1e-5)


def test_ratio_losses_are_in_seconds():
    """L_reg is the squared error of d * E_r against the watch time, L_var the categorical
    variance (over the leaves' values) times d^2, both over label_scale^2."""
    h, targets = _head(tsl=False, ucl=False)
    rng = np.random.default_rng(2)
    n = 32
    logits = tf.constant(rng.normal(size=(n, 15)), tf.float32)
    tg = {k: tf.constant(v[:n]) for k, v in targets.items()}
    _, parts = h.compute_loss({"cls_logits": logits}, tg, step=0)
    reach = np.exp(h.ops.log_reach(logits).numpy())[:, 15:]
    v = h.node_value.numpy()[15:]
    mean = reach @ v * targets["duration"][:n]
    var = (reach @ v ** 2 - (reach @ v) ** 2) * targets["duration"][:n] ** 2
    s = float(h.label_scale.numpy())
    assert s == pytest.approx(np.std(_frame()["watch_time"]), rel=1e-5)
    assert float(parts["reg"]) == pytest.approx(np.mean(((mean - targets["watch_time"][:n]) / s) ** 2),
                                                rel=1e-4)
    assert float(parts["var"]) == pytest.approx(np.mean(var) / s ** 2, rel=1e-3)


def test_ratio_needs_a_duration():
    h = TreeHead(TreeConfig(depth=3, label_space="ratio"))
    with pytest.raises(ValueError, match="duration"):
        h.adapt(pd.DataFrame({"watch_time": [1.0, 2.0]}))
    with pytest.raises(ValueError, match="duration > 0"):
        h.adapt(pd.DataFrame({"watch_time": [1.0, 2.0], "duration": [np.nan, 0.0]}))
    with pytest.raises(ValueError, match="label-space"):
        TreeHead(TreeConfig(depth=3, label_space="minutes"))


def test_presets_lay_settings_over_the_models():
    tpm = head_config("tpm", "paper")
    assert (tpm.tsl, tpm.ucl, tpm.leaf_values, tpm.label_space) == (False, False, "midpoint",
                                                                     "seconds")
    best = head_config("ptpm", "best")
    assert best.label_space == "ratio" and best.decode == "median"
    assert best.w_reg == best.w_var == 0.0  # the median is served: no fit of the mean
    assert head_config("tpm", "best").w_reg == 0.0 and head_config("tpm", "paper").w_reg == 1.0
    assert head_config("ptpm", "best", decode="mean").decode == "mean"
    assert head_config("dml", "best") == head_config("dml", "paper")
    assert build_head("tpm", head_config("tpm", "paper")).label_space == "seconds"
    with pytest.raises(ValueError, match="preset"):
        head_config("tpm", "fastest")
    with pytest.raises(ValueError, match="has no setting tsl"):
        head_config("mse", tsl=False)


def test_describe_tree_prints_the_requests_seconds():
    h, _ = _head(tsl=True)
    raw = {"cls_logits": tf.zeros([1, 15]), "prune_logits": tf.fill([1, 14], -5.0)}
    pred = {k: v.numpy()[0] for k, v in h.decode(raw, {"duration": tf.constant([50.0])}).items()}
    info = h.model_info()["tree"]
    assert info["label_space"] == "ratio"
    assert label_unit(info, 50.0) == 50.0
    assert label_unit(info, float("nan")) == pytest.approx(info["duration_fallback"])
    assert label_unit({"label_space": "seconds"}, 50.0) == 1.0
    text = describe_tree(pred, 4, leaf_bounds=info["leaf_bounds"],
                         node_value=info["node_value"], scale=label_unit(info, 50.0))
    # the complete plays' zero-width leaves read [50.00, 50.00] s for a 50 s item
    assert "[50.00, 50.00]" in text


def test_data_without_duration_falls_back_to_seconds_with_a_notice(capsys):
    from ptpm_tf.data.dataset import Dataset
    from ptpm_tf.config import ExperimentConfig
    from ptpm_tf.training import fit_head_to_data
    ds = Dataset(name="cikm16", frame=pd.DataFrame({"watch_time": [1.0]}),
                 categorical=[], numeric=[])
    config = fit_head_to_data(ExperimentConfig.from_flat(model="tpm", dataset="cikm16"), ds)
    assert config.head_config().label_space == "seconds"
    assert "no duration" in capsys.readouterr().err
    with pytest.raises(ValueError, match="needs a duration"):
        fit_head_to_data(ExperimentConfig.from_flat(model="tpm", dataset="cikm16",
                                                    label_space="ratio"), ds)
    paper = ExperimentConfig.from_flat(model="tpm", dataset="cikm16", preset="paper")
    assert fit_head_to_data(paper, ds) is paper


@pytest.mark.slow
def test_ratio_run_round_trips_and_serves_calibrated_p_complete(tmp_path):
    """A default (best-preset) run: the ratio tree and its decoder are saved with the run
    and rebuilt by load_run; p_complete needs no map and its validation mean is the
    observed completion rate."""
    from ptpm_tf.evaluate import predict_frame
    from ptpm_tf.config import ExperimentConfig
    from ptpm_tf.training import load_run, train
    run = train(ExperimentConfig.from_flat(model="ptpm", rows=4000, depth=4, epochs=1,
                                           batch_size=512), tmp_path / "run", verbose=0)
    head = run.model.head
    assert head.label_space == "ratio" and head.decoder == "median"
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["experiment"]["preset"] == "best"
    assert saved["experiment"]["head"]["label_space"] == "ratio"  # every head setting saved
    m = run.metrics
    assert abs(m["validation_p_complete_mean"] - m["validation_completion_rate"]) < 0.05
    np.testing.assert_allclose(head.completion_map.numpy(),
                               np.linspace(0, 1, decoding.COMPLETION_GRID + 1))
    pred = predict_frame(run.model, run.split.test.iloc[:200])
    _, model, _, split = load_run(tmp_path / "run")
    assert model.head.label_space == "ratio"
    again = predict_frame(model, split.test.iloc[:200])
    for key in ("watch_time", "quantiles", "p_complete", "variance"):
        np.testing.assert_allclose(again[key], pred[key], rtol=1e-5, atol=1e-6)

"""The baseline heads: label transforms and decoders on hand-made numbers, and one tiny
training run of each through the shared ``train``."""
import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

import ptpm_tf  # noqa: F401
from ptpm_tf.data.registry import load_dataset
from ptpm_tf.data.splits import split_dataset
from ptpm_tf.heads import MODELS, build_head
from ptpm_tf.heads.configs import DMLConfig, DurationGroupConfig, OrdinalConfig, WLRConfig
from ptpm_tf.heads.ordinal import (CreadHead, OrdinalHead, fit_thresholds, gamma_levels,
                                   ordinal_weights, tail_excess)
from ptpm_tf.heads.quantile import D2QHead, DMLHead, dml_levels, fit_duration_quantiles
from ptpm_tf.heads.regression import RegressionHead
from ptpm_tf.heads.wlr import WLRHead
from ptpm_tf.config import ExperimentConfig
from ptpm_tf.training import train


def ordinal_decode(p_exceed, thresholds, excess: float = 0.0):
    """The ordinal decoder in NumPy (the reference the graph's is checked against)."""
    const, coef = ordinal_weights(thresholds, excess)
    return const + np.asarray(p_exceed, np.float64) @ coef


def trapezoid_expectation(p_exceed, taus) -> np.ndarray:
    """``int_0^1 P(u > t) dt`` by the trapezoid rule over ``0, taus, 1``, in NumPy."""
    p = np.asarray(p_exceed, np.float64)
    ones = np.ones(p.shape[:-1] + (1,))
    s = np.concatenate([ones, p, 0 * ones], axis=-1)
    grid = np.concatenate([[0.0], np.asarray(taus, np.float64), [1.0]])
    return 0.5 * (s[..., 1:] + s[..., :-1]) @ np.diff(grid)


TINY_TOWER = {"embedding_dim": 4, "n_cross": 1, "hidden": (16,)}


def _frame(y, duration=None):
    cols = {"watch_time": np.asarray(y, float)}
    if duration is not None:
        cols["duration"] = np.asarray(duration, float)
    return pd.DataFrame(cols)


# ------------------------------------------------------------------------------- D2Q / DML


def test_d2q_quantile_mapping_round_trips():
    rng = np.random.default_rng(0)
    n = 20_000
    duration = rng.lognormal(3.0, 0.7, n)
    y = duration * rng.beta(0.8, 1.2, n)
    y[:2000] = duration[:2000]  # a spike of exact completions (ties inside a group)
    tables = fit_duration_quantiles(y, duration, n_groups=10, n_knots=101)
    g = tables.group(duration)
    assert set(np.unique(g)) == set(range(10))  # equal-frequency groups all used
    assert np.all(np.bincount(g) > 0.08 * n)
    u = tables.quantile_of(y, g)
    assert u.min() >= 0.0 and u.max() <= 1.0
    # within a group u is (close to) uniform: the within-group quantile of D2Q
    assert abs(np.mean(u[g == 3]) - 0.5) < 0.02
    back = tables.value_at(u, g)
    np.testing.assert_allclose(back, y, rtol=1e-4, atol=1e-3)
    # and the other way round on the knots' grid: F(Q(u)) = u where Q is strictly increasing
    grid = np.linspace(0.05, 0.95, 19)
    for group in (0, 5, 9):
        q = tables.value_at(grid, np.full(19, group))
        if np.all(np.diff(tables.knots[group]) > 0):
            np.testing.assert_allclose(tables.quantile_of(q, np.full(19, group)), grid, atol=1e-5)


def test_d2q_ties_get_the_middle_of_their_run_and_missing_duration_the_global_group():
    y = np.array([0.0] * 50 + list(np.linspace(1, 10, 50)))
    tables = fit_duration_quantiles(y, None, n_groups=4, n_knots=11)
    g = tables.group(None, len(y))
    assert np.all(g == 4)  # no duration at all: the extra, global group
    u = tables.quantile_of(np.array([0.0]), np.array([4]))
    # zeros fill the knots at probabilities 0 .. 0.4 (and part of 0.5): the middle of the run
    run = tables.probs[tables.knots[4] == 0.0]
    assert u[0] == pytest.approx(0.5 * (run[0] + run[-1]))
    assert tables.value_at(u, np.array([4]))[0] == 0.0
    with_nan = tables.group(np.array([np.nan, 3.0]))
    assert with_nan[0] == 4


def test_d2q_graph_decoder_matches_numpy_tables():
    rng = np.random.default_rng(1)
    duration = rng.lognormal(3, 0.5, 4000)
    y = duration * rng.random(4000)
    head = D2QHead(DurationGroupConfig(n_groups=5, n_knots=21))
    targets = head.adapt(_frame(y, duration))
    tables = head.tables
    logit = rng.normal(size=300).astype(np.float32)
    d = np.concatenate([duration[:299], [np.nan]]).astype(np.float32)
    out = head.decode({"logit": tf.constant(logit)}, {"duration": tf.constant(d)})
    u = 1 / (1 + np.exp(-logit.astype(np.float64)))
    expect = tables.value_at(u, tables.group(d.astype(np.float64)))
    np.testing.assert_allclose(out["watch_time"].numpy(), expect, rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(targets["quantile"],
                               tables.quantile_of(y, tables.group(duration)), atol=1e-6)


def test_dml_coarse_to_fine_levels_and_trapezoid_decoder():
    taus = dml_levels(8, 2.0)
    steps = np.diff(np.concatenate([[0], taus, [1]]))
    assert np.all(np.diff(steps) < 0)  # coarse at the low end, fine at the top
    # all mass above tau_K: linear from 1 at tau_K to 0 at 1 (the trapezoid's assumption)
    assert trapezoid_expectation(np.ones(8), taus) == pytest.approx(1 - (1 - taus[-1]) / 2)
    assert trapezoid_expectation(np.zeros(8), taus) == pytest.approx(taus[0] / 2)
    # u uniform: P(u > tau) = 1 - tau is linear, the trapezoid is exact
    assert trapezoid_expectation(1 - taus, taus) == pytest.approx(0.5)
    head = DMLHead(DMLConfig(n_groups=1, n_knots=3, n_thresholds=8))
    head.adapt(_frame(np.array([0.0, 5.0, 10.0, 10.0])[np.arange(400) % 4] + 0.0,
                      np.full(400, 30.0)))
    logits = np.log((1 - taus) / taus)[None, :].astype(np.float32)
    out = head.decode({"logits": tf.constant(logits)}, {"duration": tf.constant([30.0])})
    assert out["quantile"].numpy()[0] == pytest.approx(0.5, abs=1e-5)
    assert out["watch_time"].numpy()[0] == pytest.approx(head.tables.value_at(
        np.array([0.5]), np.array([0]))[0], rel=1e-5)


# ------------------------------------------------------------------------------ OR / CREAD


def test_ordinal_decoder_on_hand_made_probabilities():
    t = np.array([1.0, 2.0, 4.0])
    # trapezoids over [0, 1], [1, 2], [2, 4] with P(y > 0) = 1, plus the tail p_K e
    assert ordinal_decode([1.0, 1.0, 1.0], t) == pytest.approx(4.0)
    assert ordinal_decode([1.0, 1.0, 1.0], t, excess=3.0) == pytest.approx(7.0)
    assert ordinal_decode([0.0, 0.0, 0.0], t) == pytest.approx(0.5)
    expected = 0.5 * (1 + 0.9) + 0.5 * (0.9 + 0.5) + 0.5 * (0.5 + 0.25) * 2 + 0.25 * 2.0
    assert ordinal_decode([0.9, 0.5, 0.25], t, excess=2.0) == pytest.approx(expected)
    for cls in (OrdinalHead, CreadHead):
        head = cls(OrdinalConfig(n_thresholds=3))
        head.set_thresholds(t, 2.0)
        p = np.array([[0.9, 0.5, 0.25], [1.0, 0.0, 0.0]], np.float32)
        out = head.decode({"logits": tf.constant(np.log(p / (1 - p + 1e-12) + 1e-12))})
        np.testing.assert_allclose(out["watch_time"].numpy(),
                                   ordinal_decode(p, t, excess=2.0), atol=1e-4)


def test_ordinal_decoder_recovers_the_mean_from_true_exceedance_probabilities():
    """Fed the true P(y > t_k), the decoder returns the true mean within 1 %, where the
    lower Riemann sum returned 0.92-0.95 of it."""
    rng = np.random.default_rng(0)
    for y in (rng.lognormal(2.0, 1.0, 200_000), rng.exponential(15.0, 200_000),
              np.minimum(rng.gamma(0.7, 20.0, 200_000), 60.0)):
        t = fit_thresholds(y, 63)
        p = (y[:, None] > t[None, :]).mean(0)
        got = ordinal_decode(p, t, excess=tail_excess(y, t[-1]))
        assert got == pytest.approx(y.mean(), rel=0.01)
        riemann = p @ np.diff(np.concatenate([[0.0], t]))
        assert riemann < 0.97 * y.mean()


def test_cread_thresholds_interpolate_from_equal_frequency():
    np.testing.assert_allclose(gamma_levels(4, 0.0), [0.2, 0.4, 0.6, 0.8])
    for a in (1.0, 5.0):
        lv = gamma_levels(31, a)
        assert np.all(np.diff(lv) > 0) and 0 < lv[0] and lv[-1] < 1
        assert np.all(lv >= gamma_levels(31, 0.0) - 1e-12)  # concave: toward the tail
    y = np.random.default_rng(0).exponential(10, 100_000)
    t0, t5 = fit_thresholds(y, 15, 0.0), fit_thresholds(y, 15, 5.0)
    # equal frequency: 1/16 of the labels between neighbours
    np.testing.assert_allclose(np.diff(np.mean(y[:, None] <= t0, 0)), 1 / 16, atol=2e-3)
    assert t5[-1] > t0[-1] and np.max(np.diff(t5)) < np.max(np.diff(t0)) * 1.5


def test_ordinal_bias_starts_at_the_training_prior():
    y = np.random.default_rng(0).exponential(10, 5000)
    head = OrdinalHead(OrdinalConfig(n_thresholds=7))
    head.adapt(_frame(y))
    out = head(tf.zeros([2, 4]))  # zero hidden: the output is the bias alone
    p = tf.sigmoid(out["logits"]).numpy()[0]
    t = head.thresholds.numpy()
    np.testing.assert_allclose(p, (y[:, None] > t[None, :]).mean(0), atol=1e-4)


# ------------------------------------------------------------------------------ WLR / MSE


def test_wlr_weights_and_odds():
    y = np.array([0.5, 1.0, 3.0, 6.0, 10.0, 20.0])
    head = WLRHead(WLRConfig(short_play_seconds=1.0))
    targets = head.adapt(_frame(y))
    np.testing.assert_array_equal(targets["positive"], [0, 0, 1, 1, 1, 1])
    c = np.mean([3.0, 6.0, 10.0, 20.0])
    s = 2 / 6
    np.testing.assert_allclose(targets["weight"], [1 / s, 1 / s, 3 / c, 6 / c, 10 / c, 20 / c],
                               rtol=1e-6)
    # the weighted-BCE optimum of a constant model: odds = sum(w_pos) / sum(w_neg), and the
    # prediction c * odds is E[y 1(y > t)] on the label scale
    w, pos = targets["weight"].astype(float), targets["positive"].astype(bool)
    odds = w[pos].sum() / w[~pos].sum()
    logit = np.log(odds)
    assert c * odds == pytest.approx(np.sum(y[y > 1.0]) / len(y))
    out = head.decode({"logit": tf.constant([logit], tf.float32)})
    assert out["watch_time"].numpy()[0] == pytest.approx(c * odds, rel=1e-5)
    with pytest.raises(ValueError, match="negatives"):
        WLRHead(WLRConfig(short_play_seconds=100.0)).adapt(_frame(y))


def test_mse_head_normalises_and_clips():
    y = np.array([0.0, 10.0, 20.0, 30.0])
    head = RegressionHead()
    head.adapt(_frame(y))
    out = head.decode({"value": tf.constant([0.0, 1.0, -10.0])})["watch_time"].numpy()
    np.testing.assert_allclose(out, [15.0, 15.0 + np.std(y), 0.0], rtol=1e-6)
    loss, parts = head.compute_loss({"value": tf.constant([0.0])},
                                    {"watch_time": tf.constant([15.0 + np.std(y)])}, 0)
    assert float(loss) == pytest.approx(1.0, rel=1e-5)


# ------------------------------------------------------------------------- training runs


@pytest.fixture(scope="module")
def tiny():
    dataset = load_dataset("simulator", rows=2500, seed=3)
    return dataset, split_dataset(dataset, seed=3)


@pytest.mark.parametrize("model", ["mse", "wlr", "d2q", "or",
                                   pytest.param("dml", marks=pytest.mark.slow),
                                   pytest.param("cread", marks=pytest.mark.slow)])
def test_each_baseline_trains_one_epoch_and_decodes_sane_watch_times(tiny, model):
    dataset, split = tiny
    config = ExperimentConfig.from_flat(model=model, epochs=1, batch_size=256, seed=3,
                                        tower=TINY_TOWER,
                                        head={"a": 2.0} if model == "cread" else {})
    run = train(config, dataset=dataset, split=split, verbose=0)
    from ptpm_tf.evaluate import predict_frame
    pred = predict_frame(run.model, split.test)["watch_time"]
    assert pred.shape == (len(split.test),)
    assert np.all(np.isfinite(pred)) and np.all(pred >= 0)
    assert np.isfinite(run.metrics["mae"]) and 0.0 <= run.metrics["xauc"] <= 1.0
    assert np.isfinite(run.history["loss"][0])


def test_every_model_name_builds_its_head():
    for name in ("mse", "wlr", "d2q", "or", "dml", "cread", "tpm", "ptpm"):
        assert name in MODELS
        build_head(name)


@pytest.mark.slow
def test_cread_a_is_chosen_on_validation(tiny, monkeypatch, tmp_path):
    from ptpm_tf import selection
    dataset, split = tiny
    monkeypatch.setattr(CreadHead, "selection_grid", {"a": (0.0, 4.0)})
    config = ExperimentConfig.from_flat(model="cread", epochs=1, batch_size=256, seed=3,
                                        tower=TINY_TOWER)
    run = selection.train_selected(config, tmp_path, dataset=dataset, split=split, verbose=0)
    sel = run.metrics["selection"]
    tried = {c["a"]: c["val_mae"] for c in sel["candidates"]}
    assert set(tried) == {0.0, 4.0}
    assert sel["chosen"]["a"] == min(tried, key=tried.get)
    assert run.config.head["a"] == sel["chosen"]["a"]
    assert (tmp_path / "metrics.json").exists()


@pytest.mark.slow
def test_d2q_exports_and_decodes_from_raw_duration_in_the_session_loader(tiny, tmp_path):
    """The group lookup and quantile interpolation are stock ops: the SavedModel answers
    through the TF1 session loader (TF Serving's path) as the Keras model does."""
    from ptpm_tf import export as E
    dataset, split = tiny
    run = train(ExperimentConfig.from_flat(model="d2q", epochs=1, batch_size=256, seed=3,
                                           tower=TINY_TOWER),
                tmp_path / "run", dataset=dataset, split=split, verbose=0)
    vdir = E.export_run(tmp_path / "run", tmp_path / "export", name="d2q")
    feats = E.sample_features(run.model.encoder, 6, split.test)
    feats["duration"][0] = np.nan  # unknown duration: the global group
    direct = run.model(feats)["watch_time"].numpy()
    with tf.compat.v1.Session(graph=tf.Graph()) as sess:
        meta = tf.compat.v1.saved_model.load(sess, ["serve"], str(vdir))
        sig = meta.signature_def["serving_default"]
        out = sess.run(sig.outputs["watch_time"].name,
                       {sig.inputs[k].name: v for k, v in feats.items()})
    np.testing.assert_allclose(out, direct, rtol=1e-4, atol=1e-3)
    assert np.all(np.isfinite(out)) and np.all(out >= 0)

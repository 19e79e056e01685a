"""The built-in simulator: determinism, calibration, the exactness of its oracle, I/O."""
import json
import math

import numpy as np
import pandas as pd
import pytest

from ptpm_tf.data import simulator as sim_mod
from ptpm_tf.data.dataset import (DURATION, ITEM, LABEL, ORACLE_MEAN, ORACLE_MEDIAN,
                                  TIMESTAMP, USER)
from ptpm_tf.data.registry import load_dataset
from ptpm_tf.data.simulator import (DEFAULT_ROWS, Mixture, simulate, simulate_with_truth,
                                    write_simulation)


@pytest.fixture(scope="module")
def sim():
    """The default dataset: DEFAULT_ROWS rows, seed 0."""
    return simulate_with_truth()


def brute_xauc(y, p):
    """Share of pairs with distinct labels ordered alike by p (prediction ties count 1/2)."""
    dy = np.sign(y[:, None] - y[None, :])
    dp = np.sign(p[:, None] - p[None, :])
    pairs = dy != 0
    return float(np.mean(np.where(dp[pairs] == 0, 0.5, dy[pairs] == dp[pairs])))


def subsample(frame, n=2500, seed=7):
    return frame.iloc[np.random.default_rng(seed).choice(len(frame), n, replace=False)]


# --- shape, types, determinism ---------------------------------------------------------

def test_same_seed_same_frame_other_seed_other_frame():
    a, b, c = simulate(5000, seed=3), simulate(5000, seed=3), simulate(5000, seed=4)
    pd.testing.assert_frame_equal(a.frame, b.frame)
    assert not np.array_equal(a.frame[LABEL].to_numpy(), c.frame[LABEL].to_numpy())
    assert not np.array_equal(a.frame[DURATION].to_numpy(), c.frame[DURATION].to_numpy())


@pytest.mark.parametrize("rows", [1, 7, 1234, 20_001])
def test_row_count_exact_and_values_valid(rows):
    f = simulate(rows, seed=1).frame
    assert len(f) == rows
    assert not f.isna().any().any()
    assert (f[LABEL] >= 0).all() and np.isfinite(f[LABEL]).all()
    assert (f[DURATION] >= 3.0).all()


def test_columns_dtypes_and_feature_lists(sim):
    ds = sim.dataset
    assert ds.name == "simulator"
    assert ds.categorical == [USER, ITEM, "category", "user_activity"]
    assert ds.numeric == [DURATION, "user_tenure_days", "item_popularity", "upload_age_days"]
    f = ds.frame
    for col in ds.categorical:
        assert f[col].dtype == np.int64, col
    for col in [*ds.numeric, TIMESTAMP, LABEL, ORACLE_MEDIAN, ORACLE_MEAN]:
        assert f[col].dtype == np.float64, col
    assert ds.has_duration and ds.has_oracle
    # The model sees only observable features, never the label, the time or the oracle.
    assert not {LABEL, TIMESTAMP, ORACLE_MEDIAN, ORACLE_MEAN} & set(ds.features)
    assert set(f["category"]) <= set(range(sim_mod.N_CATEGORIES))
    assert set(f["user_activity"]) == {0, 1, 2, 3}


def test_sizes_and_repeated_interactions(sim):
    f = sim.dataset.frame
    assert f[USER].nunique() == DEFAULT_ROWS // 60
    assert f[ITEM].nunique() == DEFAULT_ROWS // 40
    assert f[USER].value_counts().min() >= 2
    assert f[ITEM].value_counts().min() >= 2
    assert sim_mod.default_sizes(100) == (50, 50)
    assert simulate(3000, n_users=10, n_items=30).frame[ITEM].nunique() == 30


def test_timestamps_span_thirty_days_in_order(sim):
    t = sim.dataset.frame[TIMESTAMP].to_numpy()
    assert np.all(np.diff(t) >= 0)
    assert 29.5 < (t[-1] - t[0]) / 86400 <= 30
    assert t[0] >= sim_mod.START


def test_durations_are_short_videos_with_a_long_tail(sim):
    d = sim.dataset.frame[DURATION]
    assert 15 <= d.median() <= 30
    assert d.quantile(0.99) > 120


# --- the mixture spikes ------------------------------------------------------------------

def test_quick_skip_completion_and_replay_shares(sim):
    f = sim.dataset.frame
    y, d = f[LABEL].to_numpy(), f[DURATION].to_numpy()
    skip = sim.component == 0
    assert 0.15 <= skip.mean() <= 0.30
    assert np.all(y[skip] <= sim_mod.SKIP_SECONDS)
    completed = y == d
    assert 0.10 <= completed.mean() <= 0.20
    np.testing.assert_array_equal(completed, sim.component == 2)
    replays = y > d
    assert 0.05 <= replays.mean() <= 0.15
    np.testing.assert_array_equal(replays, sim.component == 3)


# --- the oracle is exact ------------------------------------------------------------------

def test_lgamma_matches_math():
    x = np.array([1e-6, 1e-3, 0.3, 0.5, 1.0, 1.5, 2.7, 10.0, 55.5, 300.0])
    np.testing.assert_allclose(sim_mod._lgamma(x), [math.lgamma(v) for v in x],
                               rtol=1e-13, atol=1e-12)


def test_median_is_the_infimum_where_the_cdf_reaches_one_half(sim):
    mix, med = sim.mixture, sim.dataset.frame[ORACLE_MEDIAN].to_numpy()
    # F(m) >= 1/2 up to float rounding, and F falls below 1/2 just left of m.
    assert np.all(mix.cdf(med) >= 0.5 - 1e-14)
    assert np.all(mix.cdf(med * (1 - 1e-10)) < 0.5)
    # All three regions occur: below the duration, exactly at it (the point mass), past it.
    d = mix.duration
    for share in [(med < d).mean(), (med == d).mean(), (med > d).mean()]:
        assert share > 0.02


def test_mean_matches_numerical_integral_of_the_survival_function(sim):
    mix = sim.mixture
    for r in [0, 17, 4242, 99_999]:
        one = mix.take(np.full(400_001, r))
        top = one.duration[0] * (1 + 60 * one.replay_mean[0])
        w = np.linspace(0.0, top, 400_001)
        integral = np.trapezoid(1.0 - one.cdf(w), w)
        assert integral == pytest.approx(sim.dataset.frame[ORACLE_MEAN].iloc[r], rel=1e-4)


def _contexts(sim):
    """Rows whose median is well inside each region: under the duration, at it, past it."""
    mix, f = sim.mixture, sim.dataset.frame
    below = mix.p_skip + mix.p_partial
    med, d = f[ORACLE_MEDIAN].to_numpy(), f[DURATION].to_numpy()
    picks = []
    for mask in [(med < 0.4 * d) & (below > 0.6), (med < d) & (med > 0.6 * d),
                 (below < 0.4) & (below + mix.p_complete > 0.6),
                 (med > 1.1 * d) & (below + mix.p_complete < 0.4)]:
        picks.extend(np.flatnonzero(mask)[:2])
    assert len(picks) == 8
    return np.array(picks)


def test_resampled_rows_match_oracle_mean_and_median(sim):
    rows, n = _contexts(sim), 200_000
    draws, _ = sim.mixture.take(np.repeat(rows, n)).sample(np.random.default_rng(123))
    draws = draws.reshape(len(rows), n)
    f = sim.dataset.frame
    for r, w in zip(rows, draws):
        mean, med = f[ORACLE_MEAN].iloc[r], f[ORACLE_MEDIAN].iloc[r]
        assert abs(w.mean() - mean) < 4.5 * w.std() / np.sqrt(n), r
        # The oracle median m satisfies P(w < m) <= 1/2 <= P(w <= m); check it empirically
        # (this also holds when m sits on the point mass at the duration).
        assert np.mean(w < med) <= 0.5 + 0.005, r
        assert np.mean(w <= med) >= 0.5 - 0.005, r
        if med == f[DURATION].iloc[r]:
            assert np.median(w) == med
        else:
            assert np.median(w) == pytest.approx(med, rel=0.02)


def test_sampler_respects_component_supports():
    mix = Mixture(duration=np.full(4, 20.0), skip_max=np.full(4, 2.5),
                  p_skip=np.array([1.0, 0, 0, 0]), p_partial=np.array([0, 1.0, 0, 0]),
                  p_complete=np.array([0, 0, 1.0, 0]), p_replay=np.array([0, 0, 0, 1.0]),
                  kum_a=np.full(4, 2.0), kum_b=np.full(4, 3.0), replay_mean=np.full(4, 0.5))
    w, comp = mix.take(np.repeat(np.arange(4), 50_000)).sample(np.random.default_rng(0))
    w, comp = w.reshape(4, -1), comp.reshape(4, -1)
    np.testing.assert_array_equal(comp, np.arange(4)[:, None] * np.ones((1, 50_000), int))
    assert w[0].min() >= 0 and w[0].max() <= 2.5
    assert w[1].min() > 0 and w[1].max() < 20
    assert np.all(w[2] == 20.0)
    assert w[3].min() > 20
    # Closed forms: uniform mean 1.25, Kumaraswamy(2, 3) mean 3 B(1.5, 3) = 16/35,
    # replay mean 20 (1 + 0.5) = 30; medians: 1.25, 20 (1 - 2^(-1/3))^(1/2), 20 (1 + 0.5 ln 2).
    np.testing.assert_allclose(mix.mean(), [1.25, 20 * 16 / 35, 20.0, 30.0], rtol=1e-12)
    medians = [1.25, 20 * math.sqrt(1 - 2 ** (-1 / 3)), 20.0, 20 * (1 + 0.5 * math.log(2))]
    np.testing.assert_allclose(mix.median(), medians, rtol=1e-12)
    np.testing.assert_allclose(w.mean(axis=1), mix.mean(), rtol=0.01)


# --- learnable, not trivial ---------------------------------------------------------------

def test_oracle_beats_constant_predictors(sim):
    f = sim.dataset.frame
    y = f[LABEL].to_numpy()
    oracle_mae = np.mean(np.abs(y - f[ORACLE_MEDIAN].to_numpy()))
    constant_mae = np.mean(np.abs(y - np.median(y)))
    assert oracle_mae < 0.75 * constant_mae
    assert oracle_mae < np.mean(np.abs(y - f[ORACLE_MEAN].to_numpy()))
    s = subsample(f)
    ys = s[LABEL].to_numpy()
    assert 0.70 <= brute_xauc(ys, s[ORACLE_MEAN].to_numpy()) <= 0.80
    assert brute_xauc(ys, np.full(len(s), 3.0)) == 0.5
    # Duration alone is informative but far from the oracle.
    assert 0.55 < brute_xauc(ys, s[DURATION].to_numpy()) < 0.70


# --- heterogeneity, as in the paper's Fig. 2 -----------------------------------------------

def test_watch_time_differs_across_user_groups_and_categories(sim):
    f = sim.dataset.frame
    ratio = f[LABEL] / f[DURATION]
    by_type = ratio.groupby(sim.viewer_type).mean()
    assert by_type.max() / by_type.min() > 3
    by_activity = f[LABEL].groupby(f["user_activity"]).mean()
    assert by_activity.max() / by_activity.min() > 1.8
    per_user = f[LABEL].groupby(f[USER]).mean()
    assert per_user.quantile(0.9) / per_user.quantile(0.1) > 3
    by_category = f[LABEL].groupby(f["category"])
    assert by_category.mean().max() / by_category.mean().min() > 3
    assert by_category.median().max() / by_category.median().min() > 4
    ratio_by_category = ratio.groupby(f["category"]).median()
    assert ratio_by_category.max() - ratio_by_category.min() > 0.4


# --- output -------------------------------------------------------------------------------

def test_write_simulation_round_trips(tmp_path):
    ds = simulate(3000, seed=5)
    csv_path, spec_path = write_simulation(ds, tmp_path / "out")
    assert csv_path == tmp_path / "out" / "simulator.csv"
    assert spec_path == tmp_path / "out" / "simulator.spec.json"
    back = pd.read_csv(csv_path, float_precision="round_trip")
    pd.testing.assert_frame_equal(back, ds.frame)
    # Completions stay exact even with pandas' default (faster, less exact) float parser.
    fast = pd.read_csv(csv_path)
    np.testing.assert_array_equal(fast[LABEL] == fast[DURATION],
                                  ds.frame[LABEL] == ds.frame[DURATION])
    spec = json.loads(spec_path.read_text())
    assert spec == {
        "name": "simulator", "path": "simulator.csv",
        "label": {"column": "watch_time", "unit": "s"},
        "user": "user_id", "item": "item_id",
        "duration": {"column": "duration", "unit": "s"},
        "timestamp": {"column": "timestamp", "unit": "s"},
        "categorical": ["category", "user_activity"],
        "numeric": ["user_tenure_days", "item_popularity", "upload_age_days"],
        "oracle": {"median": "oracle_median", "mean": "oracle_mean"},
    }
    assert (spec_path.parent / spec["path"]).exists()


def test_registry_serves_the_simulator():
    ds = load_dataset("simulator", rows=500, seed=2)
    pd.testing.assert_frame_equal(ds.frame, simulate(500, seed=2).frame)

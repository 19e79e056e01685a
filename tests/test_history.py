"""Viewing-history features (--history-features): strictly earlier rows only, brute force
agrees, and the training pipeline carries them."""
import numpy as np
import pandas as pd
import pytest

import ptpm_tf  # noqa: F401
from ptpm_tf.config import DataConfig
from ptpm_tf.data.dataset import DataError, Dataset
from ptpm_tf.data.history import PRIOR_VIEWS, RATIO_CAP, add_history_features
from ptpm_tf.data.simulator import simulate
from ptpm_tf.settings import ConfigError


def _brute(frame):
    """Row by row, in time order: the module doc's definitions."""
    order = np.argsort(frame["timestamp"].to_numpy(), kind="stable")
    f = frame.iloc[order]
    y, d = f["watch_time"].to_numpy(), f["duration"].to_numpy()
    stats = {"ratio": np.minimum(y / d, RATIO_CAP), "complete": (y >= d).astype(float),
             "log_seconds": np.log1p(y)}
    out = {}
    for side, col in (("user", "user_id"), ("item", "item_id")):
        keys = f[col].to_numpy()
        out[f"{side}_hist_views"] = [np.sum(keys[:i] == keys[i]) for i in range(len(f))]
        for name, x in stats.items():
            vals = []
            for i in range(len(f)):
                prior = x[:i].mean() if i else 0.0
                mine = x[:i][keys[:i] == keys[i]]
                vals.append((mine.sum() + PRIOR_VIEWS * prior) / (len(mine) + PRIOR_VIEWS))
            out[f"{side}_hist_{name}"] = vals
    back = np.empty(len(f), int)
    back[order] = np.arange(len(f))
    return {k: np.asarray(v, float)[back] for k, v in out.items()}


def test_history_features_match_the_definition_row_by_row():
    ds = simulate(400, seed=2, n_users=20, n_items=30)
    frame = ds.frame.sample(frac=1.0, random_state=0).reset_index(drop=True)  # any order
    got = add_history_features(Dataset(ds.name, frame, ds.categorical, ds.numeric)).frame
    for name, want in _brute(frame).items():
        np.testing.assert_allclose(got[name].to_numpy(), want, rtol=1e-9, atol=1e-12,
                                   err_msg=name)


def test_a_rows_own_label_never_enters_its_features():
    ds = simulate(500, seed=3, n_users=15, n_items=25)
    base = add_history_features(ds).frame
    row = 250
    frame = ds.frame.copy()
    frame.loc[row, "watch_time"] *= 7.0
    changed = add_history_features(Dataset(ds.name, frame, ds.categorical, ds.numeric)).frame
    cols = [c for c in base.columns if "_hist_" in c]
    earlier = frame["timestamp"] <= frame.loc[row, "timestamp"]
    pd.testing.assert_frame_equal(base.loc[earlier, cols], changed.loc[earlier, cols])
    later_same_user = (~earlier) & (frame["user_id"] == frame.loc[row, "user_id"])
    assert later_same_user.any()
    assert not np.allclose(base.loc[later_same_user, "user_hist_ratio"],
                           changed.loc[later_same_user, "user_hist_ratio"])


def test_history_needs_a_timestamp_and_memory():
    ds = simulate(100, seed=0)
    frame = ds.frame.drop(columns=["timestamp"])
    with pytest.raises(DataError, match="timestamp"):
        add_history_features(Dataset(ds.name, frame, ds.categorical, ds.numeric))
    with pytest.raises(ConfigError, match="--history-features"):
        DataConfig(history_features=True, prepared="/tmp/p")


def test_history_features_reach_the_model_inputs(tmp_path):
    from ptpm_tf.config import ExperimentConfig
    from ptpm_tf.training import load_run, train
    config = ExperimentConfig.from_flat(model="mse", rows=2000, epochs=1,
                                        history_features=True)
    run = train(config, tmp_path / "run", verbose=0)
    assert "user_hist_ratio" in run.model.encoder.numeric
    assert np.isfinite(run.metrics["mae"])
    _, model, dataset, _ = load_run(tmp_path / "run")  # the saved run rebuilds them
    assert "item_hist_complete" in dataset.numeric and "item_hist_complete" in model.encoder.numeric

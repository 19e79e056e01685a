"""Training end to end on the simulator: model.fit with the custom train_step, early
stopping on validation, the run directory, and the CLI contract."""
import json
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

import ptpm_tf  # noqa: F401
from ptpm_tf.data.registry import load_dataset
from ptpm_tf.data.splits import split_dataset
from ptpm_tf.evaluate import evaluate_frame
from ptpm_tf.metrics import mae, xauc
from ptpm_tf.config import ExperimentConfig
from ptpm_tf.training import load_run, train


@pytest.fixture(scope="module")
def sim():
    dataset = load_dataset("simulator", rows=30_000, seed=1)
    return dataset, split_dataset(dataset, seed=1)


class BatchCounter(tf.keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        self.batches, self.epoch_logs = 0, []

    def on_train_batch_end(self, batch, logs=None):
        self.batches += 1

    def on_epoch_end(self, epoch, logs=None):
        self.epoch_logs.append(dict(logs))


@pytest.fixture(scope="module")
def ptpm_run(sim, tmp_path_factory):
    dataset, split = sim
    counter = BatchCounter()
    out = tmp_path_factory.mktemp("run")
    config = ExperimentConfig.from_flat(model="ptpm", depth=4, epochs=3, batch_size=512, seed=1)
    run = train(config, out, dataset=dataset, split=split, verbose=0, callbacks=[counter])
    return run, counter, out


@pytest.mark.parametrize("model", ["ptpm", pytest.param("tpm", marks=pytest.mark.slow)])
def test_short_training_beats_the_best_constant_clearly(sim, ptpm_run, model):
    dataset, split = sim
    if model == "ptpm":
        metrics = ptpm_run[0].metrics
    else:
        config = ExperimentConfig.from_flat(model=model, depth=4, epochs=3, batch_size=512,
                                            seed=1)
        metrics = train(config, dataset=dataset, split=split, verbose=0).metrics
    y = split.test["watch_time"].to_numpy()
    constant_mae = mae(y, np.full_like(y, np.median(split.train["watch_time"])))
    assert metrics["mae"] < 0.85 * constant_mae
    assert metrics["xauc"] > 0.5 + 0.12  # a constant ranks at 0.5
    assert metrics["oracle_mae"] < metrics["mae"]  # and the physical limit is respected
    assert metrics["n_test"] == len(split.test)


def test_custom_train_step_runs_under_fit_with_callbacks(ptpm_run):
    run, counter, _ = ptpm_run
    steps_per_epoch = int(np.ceil(len(run.split.train) / 512))
    assert counter.batches == steps_per_epoch * len(counter.epoch_logs)
    logs = counter.epoch_logs[-1]
    for key in ("loss", "ce", "reg", "var", "tree", "prune_rate", "mae", "val_loss", "val_mae"):
        assert key in logs and np.isfinite(logs[key]), key
    assert run.history["ce"][-1] < run.history["ce"][0]
    assert 0.0 < logs["prune_rate"] < 1.0


def test_run_directory_round_trips(ptpm_run):
    run, _, out = ptpm_run
    saved = json.loads((out / "metrics.json").read_text())
    for key in ("model", "dataset", "n_test", "mae", "xauc", "user_xauc", "avg_tree_depth",
                "oracle_mae", "oracle_xauc"):
        assert key in saved
    config, model, dataset, split = load_run(out)
    assert split.test.index.equals(run.split.test.index)
    again = evaluate_frame(model, split.test, dataset, model_name=config.model)
    assert again["mae"] == pytest.approx(saved["mae"], rel=1e-5)
    assert again["xauc"] == pytest.approx(saved["xauc"], rel=1e-5)


def test_tree_diagnostics_are_reported(ptpm_run):
    metrics = ptpm_run[0].metrics
    ratio = np.array(metrics["leaf_prior_posterior_ratio"], dtype=float)
    assert ratio.shape == (16,) and np.nanmedian(ratio) == pytest.approx(1.0, abs=0.5)
    assert 0.5 < metrics["mean_node_auc"] < 1.0
    assert 1.0 <= metrics["avg_tree_depth"] <= 4.0


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "ptpm_tf.cli", *args],
                          capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_cli_train_then_evaluate(tmp_path):
    run_dir = tmp_path / "run"
    res = _cli("train", "--model", "tpm", "--rows", "6000", "--depth", "3", "--epochs", "1",
               "--out", str(run_dir))
    assert res.returncode == 0, res.stderr
    assert "oracle" in res.stdout and "tpm" in res.stdout
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["model"] == "tpm" and metrics["dataset"] == "simulator"
    res = _cli("evaluate", "--run", str(run_dir), "--split", "validation",
               "--json", str(tmp_path / "val.json"))
    assert res.returncode == 0, res.stderr
    val = json.loads((tmp_path / "val.json").read_text())
    assert val["split"] == "validation" and val["n_test"] == 600


@pytest.mark.slow
def test_cli_reports_bad_input_in_one_line(tmp_path):
    res = _cli("evaluate", "--run", str(tmp_path / "nothing-here"))
    assert res.returncode == 2
    assert "not a run directory" in res.stderr and res.stderr.count("\n") == 1
    res = _cli("train", "--split", "0.5,0.6,0.1", "--rows", "100", "--out", str(tmp_path / "r"))
    assert res.returncode == 2 and "split fractions" in res.stderr


@pytest.mark.parametrize("name", ["kuairec", "kuairand", "cikm16"])
@pytest.mark.slow
def test_training_runs_on_each_real_format_sample(name, tmp_path):
    """The loaders' canonical rows go through features, tower and head unchanged."""
    from pathlib import Path
    folder = {"kuairec": "kuairec-sample", "kuairand": "kuairand-sample",
              "cikm16": "cikm16-diginetica-sample"}[name]
    data_dir = Path(__file__).parent / "data" / folder
    config = ExperimentConfig.from_flat(model="ptpm", dataset=name, data_dir=str(data_dir),
                                        depth=3, epochs=1, batch_size=128)
    run = train(config, tmp_path, verbose=0)
    assert run.metrics["dataset"] == name and run.metrics["n_test"] > 0
    assert np.isfinite(run.metrics["mae"]) and 0.0 <= run.metrics["xauc"] <= 1.0
    assert {"user_id", "item_id"} <= set(run.model.encoder.categorical)


def test_compact_string_columns_feed_the_model_the_same_strings():
    """Training and prediction keep string columns as codes until a batch is formed; the
    model must see exactly what raw_arrays would give it."""
    import pandas as pd
    from ptpm_tf.data.pipeline import CodedStrings, feature_batches
    from ptpm_tf.features import FeatureEncoder
    frame = pd.DataFrame({"user_id": ["a", "b", "a", "zz", "b"], "item_id": [3, 1, 3, 2, 9],
                          "level": ["x", "y", "y", "x", "q"], "duration": [1.0, 2.0, np.nan, 4.0, 5.0]})
    enc = FeatureEncoder.from_frame(frame.iloc[:4], ["user_id", "item_id", "level"], ["duration"])
    compact = enc.compact_arrays(frame)
    assert isinstance(compact["user_id"], CodedStrings) and compact["user_id"].codes.dtype == np.int32
    raw = enc.raw_arrays(frame)
    batches = list(feature_batches(compact, batch_size=2))
    for name in ("user_id", "level"):
        got = np.concatenate([b[name].numpy() for b in batches]).astype(str)
        np.testing.assert_array_equal(got, raw[name].astype(str))
    np.testing.assert_array_equal(np.concatenate([b["item_id"].numpy() for b in batches]),
                                  raw["item_id"])
    ids, _ = enc(next(iter(feature_batches(compact, batch_size=5))))
    ids_raw, _ = enc(raw)
    np.testing.assert_array_equal(ids["user_id"].numpy(), ids_raw["user_id"].numpy())


def test_training_batches_are_the_row_shuffle_of_the_columns():
    """The pipeline gathers each batch by shuffled row indices; shuffling the indices with
    the same buffer and seed must give the very batches that shuffling the rows gives, so
    that runs (and every stored result) are unchanged by that speed-up, epoch after epoch
    (a reshuffle each epoch), strings decoded, the last batch short."""
    from ptpm_tf.data.pipeline import CodedStrings, make_tf_dataset
    rng = np.random.default_rng(0)
    n = 2_051
    codes = rng.integers(0, 3, n).astype(np.int32)
    strings = np.array(["x", "yy", "zzz"], object)
    features = {"item_id": rng.integers(0, 100, n), "duration": rng.random(n).astype(np.float32),
                "level": CodedStrings(codes, strings)}
    targets = {"label": rng.random(n).astype(np.float32)}
    ds = make_tf_dataset(features, targets, batch_size=256, shuffle=True, seed=7)
    rows = tf.data.Dataset.from_tensor_slices(
        ({"item_id": features["item_id"], "duration": features["duration"],
          "level": strings[codes].astype(str)}, targets))
    reference = rows.shuffle(n, seed=7, reshuffle_each_iteration=True).batch(256)
    for _ in range(2):  # two epochs: the second is reshuffled the same way
        got, want = list(ds), list(reference)
        assert len(got) == len(want) == 9 and len(got[-1][1]["label"]) == n - 8 * 256
        for (f, t), (fw, tw) in zip(got, want):
            for name in ("item_id", "duration", "level"):
                np.testing.assert_array_equal(f[name].numpy(), fw[name].numpy())
            np.testing.assert_array_equal(t["label"].numpy(), tw["label"].numpy())


def test_pruning_statistics_are_reported(ptpm_run):
    metrics = ptpm_run[0].metrics
    assert 0.0 <= metrics["pruned_share"] <= 1.0
    # the expected leaf depth is at most the deepest leaf, and equals it without pruning
    assert 1.0 <= metrics["avg_path_depth"] <= metrics["avg_tree_depth"] + 1e-6
    if metrics["pruned_share"] == 0.0:
        assert metrics["avg_path_depth"] == pytest.approx(metrics["avg_tree_depth"], rel=1e-5)

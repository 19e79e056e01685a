"""TensorBoard logs of ``ptpm-tf train`` (issue 14): the losses and their parts, MAE, the
exact validation XAUC and the tree diagnostics, in the run directory by default."""
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from ptpm_tf import cli
from ptpm_tf.metrics import xauc
from ptpm_tf.training import load_run

ARGS = ["--rows", "2000", "--epochs", "2", "--patience", "5", "--batch-size", "256"]
#: the tree models' extra setting (a baseline refuses it: --depth applies to ptpm, tpm)
TREE = ["--depth", "3"]


def _events(folder: Path) -> dict:
    """{tag: {step: value}} of every event file in ``folder`` (not recursive)."""
    out: dict = {}
    for path in sorted(folder.glob("events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for v in event.summary.value:
                out.setdefault(v.tag, {})[event.step] = tf.make_ndarray(v.tensor)
    return out


def _event_files(logdir: Path) -> int:
    return len(list(logdir.rglob("events.out.tfevents.*")))


@pytest.fixture(scope="module")
def ptpm_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("tb") / "ptpm"
    assert cli.main(["train", "--model", "ptpm", *ARGS, *TREE, "--out", str(out)]) == 0
    return out


def test_train_writes_losses_mae_xauc_and_tree_diagnostics(ptpm_run):
    logdir = ptpm_run / "tensorboard"
    train, val = _events(logdir / "train"), _events(logdir / "validation")
    for tag in ("epoch_loss", "epoch_ce", "epoch_reg", "epoch_var", "epoch_tree",
                "epoch_tree_gain", "epoch_prune_rate", "epoch_mae"):
        assert set(train[tag]) == {0, 1}, tag
        assert set(val[tag]) == {0, 1}, tag
    for tag in ("epoch_xauc", "epoch_tree_depth", "epoch_pruned_trees", "tree_depth",
                "leaf_prob", "max_leaf_prob"):
        assert set(val[tag]) == {0, 1}, tag
    assert "epoch_xauc" not in train  # XAUC is a validation measurement only
    assert 0.0 < float(val["epoch_xauc"][1]) < 1.0
    assert 1.0 <= float(val["epoch_tree_depth"][1]) <= 3.0
    leaf_hist = val["leaf_prob"][1]  # [buckets, 3]: left edge, right edge, count
    assert leaf_hist.shape[1] == 3 and leaf_hist[:, 0].min() >= 0.0
    assert leaf_hist[:, 1].max() <= 1.0 + 1e-6 and leaf_hist[:, 2].sum() > 0


def test_logged_xauc_is_the_exact_validation_xauc(ptpm_run):
    """The model early stopping kept is the epoch with the best val_mae: the XAUC logged
    for that epoch is the exact XAUC of the final model on the validation split."""
    import json
    history = json.loads((ptpm_run / "history.json").read_text())
    best = int(np.argmin(history["val_mae"]))
    logged = float(_events(ptpm_run / "tensorboard" / "validation")["epoch_xauc"][best])
    _, model, _, split = load_run(ptpm_run)
    frame = split.validation
    pred = model(model.encoder.raw_arrays(frame))["watch_time"].numpy()
    assert logged == pytest.approx(xauc(frame["watch_time"].to_numpy(), pred), abs=1e-6)


@pytest.mark.slow
def test_fresh_run_replaces_logs_and_logdir_elsewhere(ptpm_run, tmp_path):
    before = _event_files(ptpm_run / "tensorboard")
    assert before > 0
    # training again into the same run directory (not a resume) starts the logs anew:
    # the PTPM run's tree losses are gone
    assert cli.main(["train", "--model", "mse", *ARGS, "--out", str(ptpm_run)]) == 0
    assert _event_files(ptpm_run / "tensorboard") == before
    assert "epoch_tree_gain" not in _events(ptpm_run / "tensorboard" / "train")
    # --logdir outside the run directory: the run directory holds no logs
    out, logs = tmp_path / "run", tmp_path / "logs"
    assert cli.main(["train", "--model", "mse", *ARGS, "--out", str(out),
                     "--logdir", str(logs)]) == 0
    assert not (out / "tensorboard").exists()
    val = _events(logs / "validation")
    assert "epoch_xauc" in val and "leaf_prob" not in val  # no tree: no tree diagnostics
    # inside the run directory, logs must go under tensorboard/
    assert cli.main(["train", "--model", "mse", *ARGS, "--out", str(out),
                     "--logdir", str(out / "weights-logs")]) == 2

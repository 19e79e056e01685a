"""The typed experiment config: one place for every default, clear errors for settings a
model does not have, and a run directory that rebuilds exactly the model it trained."""
import json

import numpy as np
import pytest
import tensorflow as tf

from ptpm_tf import cli
from ptpm_tf.benchmarks.suite import BenchmarkConfig
from ptpm_tf.cli.options import experiment_config, section_values
from ptpm_tf.config import DEFAULT_MODEL, ExperimentConfig
from ptpm_tf.settings import ConfigError


def test_command_line_defaults_are_the_dataclasses_defaults():
    parser = cli.build_parser()
    args = parser.parse_args(["train"])
    assert experiment_config(args, args.model) == ExperimentConfig()
    assert args.model == DEFAULT_MODEL == "tpm"
    args = parser.parse_args(["benchmark"])
    assert BenchmarkConfig(**section_values(args, BenchmarkConfig)) == BenchmarkConfig()


def test_settings_are_routed_to_their_sections():
    config = ExperimentConfig.from_flat(model="tpm", rows=300, epochs=2, depth=4,
                                        hidden=(32,), decode="mean")
    assert config.data.rows == 300 and config.training.epochs == 2
    assert config.tower.hidden == (32,) and config.head == {"depth": 4, "decode": "mean"}
    head = config.head_config()
    assert (head.depth, head.tsl, head.leaf_values, head.decode) == (4, False, "midpoint",
                                                                     "mean")
    assert ExperimentConfig.from_dict(config.to_dict()) == config
    assert config.replace(rows=10).data.rows == 10


@pytest.mark.parametrize("settings, message", [
    (dict(model="mse", depth=3), "model 'mse' has no setting depth"),
    (dict(model="tpm", leaf_values="median"), "leaf-values must be one of mean, midpoint"),
    (dict(model="ptpm", epochs=0), "epochs must be an integer >= 1"),
    (dict(model="ptpm", learning_rate=float("nan")), "learning-rate must be a finite number"),
    (dict(model="dml", n_thresholds=2.5), "n-thresholds must be an integer"),
    (dict(model="gbdt"), "unknown model 'gbdt'"),
    (dict(model="ptpm", tsl="no"), "tsl must be true or false"),
])
def test_unknown_or_invalid_settings_are_clear_errors(settings, message):
    with pytest.raises(ConfigError, match=message):
        ExperimentConfig.from_flat(**settings)


def test_a_flag_of_another_model_is_refused_on_the_command_line(capsys, tmp_path):
    code = cli.main(["train", "--model", "mse", "--depth", "3", "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert "--depth applies to ptpm, tpm, not to mse" in err
    assert not (tmp_path / "r").exists()


def test_a_run_saved_before_configs_were_nested_is_read():
    flat = {"model": "tpm", "dataset": "simulator", "data_dir": None, "spec": None,
            "rows": 500, "strict": False, "seed": 2, "depth": 5, "epochs": 3,
            "batch_size": 256, "learning_rate": 0.002, "patience": 2, "monitor": "val_mae",
            "split": [0.8, 0.1, 0.1], "head": {"decode": "median"}, "tower": {},
            "strategy": "default", "backup_every": None, "prepared": None}
    config = ExperimentConfig.from_dict(flat)
    assert config.preset == "paper"  # runs before presets used the paper's settings
    head = config.head_config()
    assert (head.depth, head.decode, head.label_space) == (5, "median", "seconds")
    mse = ExperimentConfig.from_dict({**flat, "model": "mse", "head": {}})
    assert mse.head == {}  # the flat form's depth belonged to no head but the tree


def test_non_default_head_round_trips_through_evaluate_and_export(capsys, tmp_path):
    """A run trained with non-default head settings is rebuilt from its config.json by
    evaluate and export alone, with identical predictions."""
    from ptpm_tf.evaluate import predict_frame
    from ptpm_tf.export import SERVING_SIGNATURE, export_run, sample_features
    from ptpm_tf.training import load_run
    run_dir = tmp_path / "run"
    assert cli.main(["train", "--rows", "3000", "--epochs", "1", "--batch-size", "512",
                     "--depth", "4", "--leaf-values", "midpoint", "--ucl-max-weight", "3",
                     "--no-ucl-self-normalize", "--decode", "mean", "--out",
                     str(run_dir)]) == 0
    trained = json.loads((run_dir / "metrics.json").read_text())
    saved = json.loads((run_dir / "config.json").read_text())["experiment"]["head"]
    assert (saved["depth"], saved["leaf_values"], saved["ucl_max_weight"],
            saved["ucl_self_normalize"], saved["decode"]) == (4, "midpoint", 3.0, False, "mean")

    config, model, dataset, split = load_run(run_dir)
    head = model.head.config
    assert (head.depth, head.leaf_values, head.ucl_max_weight) == (4, "midpoint", 3.0)
    assert cli.main(["evaluate", "--run", str(run_dir), "--json",
                     str(tmp_path / "m.json")]) == 0
    again = json.loads((tmp_path / "m.json").read_text())
    for key in ("mae", "xauc", "mae_median", "avg_tree_depth"):
        assert again[key] == trained[key], key

    version = export_run(run_dir, tmp_path / "export", name="ptpm")
    rows = split.test.head(64)
    feats = sample_features(model.encoder, 64, rows)
    serve = tf.saved_model.load(str(version)).signatures[SERVING_SIGNATURE]
    served = serve(**{k: tf.constant(v) for k, v in feats.items()})["watch_time"].numpy()
    direct = predict_frame(model, rows)["watch_time"]
    np.testing.assert_allclose(served, direct, rtol=1e-5, atol=1e-4)
    # --decode rebuilds the head with the other decoder (nothing mutated after the fact)
    _, median_model, _, _ = load_run(run_dir, head={"decode": "median"})
    assert median_model.head.decoder == "median" and model.head.decoder == "mean"
    capsys.readouterr()

"""The one-off study modules of ``ptpm_tf.benchmarks`` that BENCHMARKS.md and docs/ tell
users to rerun (``python -m ptpm_tf.benchmarks.X``): each ``main`` called with the
smallest arguments it takes, its printed result checked. ``gap_decomposition`` has its
tests in test_benchmark.py.

None of them needs a ``tensorflow_model_server`` binary or Docker: ``serving_checks`` and
``serving_op_profile`` load their exports in process through the session loader (TF
Serving's path), so every module runs here in full. Their timings on tiny inputs mean
nothing; the tests check the shape of the result and that each number is finite and
positive."""
import json
import math
import re
import tempfile

import pytest

import ptpm_tf  # noqa: F401

TINY_TOWER = {"embedding_dim": 4, "n_cross": 1, "hidden": (16,)}
ROWS = 1500


def _numbers(line):
    """The decimal numbers of a printed line, in order."""
    return [float(x) for x in re.findall(r"[-+]?\d+\.\d+", line)]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two tiny runs on the default (``best``) preset, a ratio tree decoded by its median,
    as ``ptpm-tf train --out RUNS/ptpm`` and ``RUNS/tpm`` write them."""
    from ptpm_tf.config import ExperimentConfig
    from ptpm_tf.training import train
    root = tmp_path_factory.mktemp("runs")
    for model in ("ptpm", "tpm"):
        config = ExperimentConfig.from_flat(model=model, rows=ROWS, depth=2, epochs=1,
                                            batch_size=256, tower=TINY_TOWER)
        train(config, root / model, verbose=0)
    return root


def test_decoder_knots_reproduces_the_runs_own_median(runs, tmp_path):
    """With ``K`` equal to the run's ``leaf_knots`` (8), the re-decoded median is the one
    the run served: the knots are fitted in the run's label space (here watch time /
    duration)."""
    from ptpm_tf.benchmarks import decoder_knots
    out = tmp_path / "knots.json"
    decoder_knots.main(["--run", str(runs / "tpm"), "--knots", "1,8", "--json", str(out)])
    rows = json.loads(out.read_text())
    assert list(rows) == ["linear (bounds only)", "K=1", "K=8"]
    served = json.loads((runs / "tpm" / "metrics.json").read_text())
    assert rows["K=8"]["mae_median"] == pytest.approx(served["mae_median"], rel=1e-5)
    assert rows["K=8"]["xauc_median"] == pytest.approx(served["xauc_median"], rel=1e-5)
    for r in rows.values():
        assert 0 < r["mean_pinball"] < r["mae_median"] and 0 < r["xauc_median"] < 1


def _metrics(mae_mean, mae_median, xauc_mean, xauc_median, **extra):
    return {"mae_mean": mae_mean, "mae_median": mae_median, "xauc_mean": xauc_mean,
            "xauc_median": xauc_median, "mae_global_tree_median": mae_median,
            "avg_tree_depth": 6.0, "epochs_run": 3, "decode": "median", "oracle_mae": 7.0,
            "oracle_xauc": 0.75, **extra}


def test_decoder_summary_tables_from_hand_made_runs(tmp_path, capsys):
    """Mean ± std over seeds, the oracle once per seed, and the differences from
    ``--ref`` paired by seed (a seed only one group has is left out)."""
    from ptpm_tf.benchmarks import decoder_summary
    made = {"tpm-s0": _metrics(10.0, 9.0, 0.70, 0.71),
            "tpm-s1": _metrics(12.0, 11.0, 0.72, 0.73),
            "ptpm-s0": _metrics(10.0, 8.5, 0.70, 0.72),
            "ptpm-s1": _metrics(12.0, 10.0, 0.72, 0.75),
            "ptpm-s2": _metrics(11.0, 10.0, 0.71, 0.72)}
    for name, m in made.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "metrics.json").write_text(json.dumps(m))
    decoder_summary.main([str(tmp_path), "tpm", "ptpm", "absent", "--ref", "tpm"])
    text = capsys.readouterr().out
    tpm = next(l for l in text.splitlines() if l.startswith("| tpm | 2 |"))
    assert "| 11.000 ± 1.414 | 10.000 ± 1.414 |" in tpm
    assert "| 0.7200 ± 0.0141 |" in tpm
    assert "| oracle (median / mean) | 1 | | 7.000 | | | 0.7500 |" in text
    assert "absent" not in text
    # ptpm - tpm on seeds 0 and 1: MAE -0.5, -1.0; XAUC +0.01, +0.02
    assert "| ptpm | 2 | -0.750 ± 0.354 | 0.0150 ± 0.0071 | -0.750 ± 0.354 |" in text
    assert text.count("\n- ") == len(made)


def test_profile_tsl_step_times_every_variant_and_part(capsys, monkeypatch):
    """A row per step variant and per part, all finite and positive. The module registers
    ``ptpm-no-reward`` in the model and preset registries; the test undoes it."""
    from ptpm_tf.benchmarks import profile_tsl_step as prof
    from ptpm_tf.config import PRESETS
    from ptpm_tf.heads import MODELS
    monkeypatch.setitem(MODELS, "ptpm-no-reward", None)
    monkeypatch.setitem(PRESETS["paper"], "ptpm-no-reward", {})
    # three calls a timing: the first after the warm-up also starts the cache's next pass
    prof.main(["--rows", str(ROWS), "--depth", "2", "--batch-size", "128", "--batches", "2",
               "--calls", "3", "--repeats", "1"])
    lines = capsys.readouterr().out.splitlines()
    split = next(i for i, l in enumerate(lines) if l.startswith("parts alone"))
    steps = {l.split()[0]: _numbers(l) for l in lines[1:split]}
    assert list(steps) == list(prof.VARIANTS)
    assert steps["tpm"][1] == 1.0  # the ratio to TPM
    spread_at = next(i for i, l in enumerate(lines) if l.startswith("the reward from 32"))
    parts = {l[:22].strip(): _numbers(l)[0] for l in lines[split + 1:spread_at]}
    assert list(parts) == ["reward", "reward, exact", "sampled tree", "ucl + ce", "reinforce",
                           "(empty call)"]
    for v in [ms for ms, _ in steps.values()] + list(parts.values()):
        assert math.isfinite(v) and v > 0
    spread = {l[:28].strip(): _numbers(l)[0] for l in lines[spread_at + 1:]}
    assert list(spread) == ["estimate sd", "exact XAUC share sd", "exact advantage sd",
                            "advantage variance added"]
    assert all(math.isfinite(v) and v >= 0 for v in spread.values())


def test_pruning_headroom_lists_nodes_and_a_bound_below_the_global_tree(capsys):
    """Depth 2 has two non-root internal nodes; the label-aware bound keeps, per sample,
    the prune (or none) closest to its label, so its MAE cannot exceed the global tree's."""
    from ptpm_tf.benchmarks import pruning_headroom
    assert pruning_headroom.main(["--rows", str(ROWS), "--depth", "2", "--epochs", "1",
                                  "--top", "5"]) == 0
    lines = capsys.readouterr().out.splitlines()
    global_mae = _numbers(lines[0])[0]
    nodes = lines[2:-2]
    assert sorted(int(l.split()[0]) for l in nodes) == [1, 2]
    assert all(0.0 <= _numbers(l)[0] <= 1.0 for l in nodes)  # the share of samples helped
    assert lines[-2].endswith("(over 2 nodes)")
    bound_mae = _numbers(lines[-1])[0]
    assert 0 < bound_mae <= global_mae


@pytest.mark.parametrize("kind, first_batch", [("parquet", 1000), ("prepared", 800)])
def test_scoring_stages_on_an_input_smaller_than_one_batch(runs, tmp_path, capsys, kind,
                                                          first_batch):
    """Every stage's CPU per row, finite and positive, on 1,000 rows as the two inputs
    BENCHMARKS.md scores (a Parquet file; a prepared directory, whose batches stop at the
    800-row train split): the model stage runs the input's first batch, shorter than the
    stage's batch sizes, and the whole command scores every row."""
    from ptpm_tf.benchmarks import scoring_stages
    from ptpm_tf.data.prepared import prepare
    from ptpm_tf.data.simulator import simulate
    if kind == "parquet":
        path = tmp_path / "rows.parquet"
        simulate(rows=1000, seed=5).frame.to_parquet(path)
    else:
        path = tmp_path / "prepared"
        prepare("simulator", path, rows=1000, seed=5)
    assert scoring_stages.main(["--run", str(runs / "ptpm"), "--input", str(path),
                                "--rows", "500"]) == 0
    out = json.loads(capsys.readouterr().out)
    per_row = {k: v for k, v in out.items() if "us_per_row" in k}
    assert sorted(k for k in per_row if k.startswith("model_us")) == [
        f"model_us_per_row_default_threads_batch_{first_batch}",
        f"model_us_per_row_one_intra_op_thread_batch_{first_batch}"]
    assert len([k for k in per_row if k.startswith("model_part")]) == 4
    assert {"read_us_per_row", "write_us_per_row"} <= set(per_row)
    assert out["whole"]["rows"] == 1000
    for v in [*per_row.values(), out["whole"]["cpu_us_per_row"]]:
        assert math.isfinite(v) and v > 0


def test_serving_checks_exports_with_and_without_checks(capsys, monkeypatch, tmp_path):
    """The unchecked export has no ``Assert`` (the module asserts it) and fewer graph
    nodes; one latency row per batch size, the checked/unchecked ratios positive."""
    from ptpm_tf.benchmarks import serving_checks
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # the exports' mkdtemp
    serving_checks.main(["--rows", str(ROWS), "--depth", "2", "--batch-sizes", "1,4",
                         "--iters", "3", "--warmup", "1", "--repeats", "1"])
    lines = capsys.readouterr().out.splitlines()
    nodes = dict(re.findall(r"(checked|unchecked) (\d+)", lines[0]))
    assert int(nodes["checked"]) > int(nodes["unchecked"]) > 0
    assert "checked p50 ms" in lines[1] and "unchecked p50 ms" in lines[1]
    rows = [l for l in lines[3:] if l.startswith("| 1 |")]
    assert [int(l.split("|")[2]) for l in rows] == [1, 4]
    for l in rows:
        assert all(math.isfinite(v) and v > 0 for v in _numbers(l))


def test_serving_op_profile_lists_op_times_of_both_models(runs, capsys, monkeypatch, tmp_path):
    """Both exports traced: positive totals, ``--top`` op rows, largest first."""
    from ptpm_tf.benchmarks import serving_op_profile
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # the exports' mkdtemp
    serving_op_profile.main(["--runs-dir", str(runs), "--candidates", "8", "--calls", "2",
                             "--top", "5"])
    lines = capsys.readouterr().out.splitlines()
    ptpm_total, tpm_total = map(float, re.findall(r"PTPM (\d+), TPM (\d+)", lines[0])[0])
    assert ptpm_total > 0 and tpm_total > 0
    ops = [l.split(None, 2) for l in lines[2:]]  # PTPM us, TPM us, op name
    assert len(ops) == 5 and len({name for _, _, name in ops}) == 5
    biggest = [max(float(p), float(t)) for p, t, _ in ops]
    assert biggest == sorted(biggest, reverse=True) and biggest[-1] >= 0


def test_every_variant_is_a_valid_config_and_every_row_has_a_label():
    """A renamed or removed head setting fails here (``ConfigError``), not hours into a
    benchmark; the tables' orders name only known variants, their rows have labels."""
    from ptpm_tf.benchmarks import variants as V
    from ptpm_tf.config import ExperimentConfig
    for name, (model, overrides) in V.VARIANTS.items():
        head = ExperimentConfig(model=model, preset="paper", head=dict(overrides)).head_config()
        for key, value in overrides.items():
            assert getattr(head, key) == value, (name, key)
    for order in (V.SETTINGS_ORDER, V.TABLE2_ORDER, V.TABLE3_ORDER, V.ABLATIONS,
                  V.SWEEP_VARIANTS, V.CURVE_VARIANTS, V.BASELINES_TO_BEAT, V.DEFAULT_MODELS):
        assert set(order) <= set(V.VARIANTS), order
    assert V.FOCUS in V.VARIANTS
    assert set(V.TABLE2_ROWS) | set(V.TABLE3_ORDER) <= set(V.LABELS)

"""``ptpm-tf benchmark``: a tiny end-to-end run (tables, PNGs, resume) and the
significance test on hand-made numbers."""
import json
import math

import numpy as np
import pytest

import ptpm_tf  # noqa: F401
from ptpm_tf.benchmarks import suite as B
from ptpm_tf.benchmarks.stats import paired_t_test, t_sf

TINY_TOWER = {"embedding_dim": 4, "n_cross": 1, "hidden": (16,)}


def _config(out, **kw):
    base = dict(dataset="simulator", rows=2500, models=("mse", "ptpm"), seeds=2, depth=3,
                depths=(2, 3), depth_seeds=1, epochs=1, batch_size=256, ablations=False,
                curve_points_per_epoch=2, curve_rows=500, tower=TINY_TOWER, out=str(out))
    base.update(kw)
    return B.BenchmarkConfig(**base)


def test_plan_covers_models_seeds_cread_grid_ablations_and_depths():
    cfg = B.BenchmarkConfig(models=("cread", "ptpm"), seeds=2, depths=(2, 6, 8), depth_seeds=1,
                            selection_values=(0.0, 3.0))
    tags = [(s.tag, s.depth, s.seed) for s in B.plan(cfg)]
    for seed in (0, 1):
        for tag in ("cread-a0", "cread-a3", "ptpm", "ptpm-no-tsl", "ptpm-no-ucl", "tpm"):
            assert (tag, 6, seed) in tags
    assert ("ptpm", 2, 0) in tags and ("ptpm-no-tsl", 8, 0) in tags
    assert ("ptpm", 2, 1) not in tags  # the depth sweep uses depth_seeds seeds
    assert len(tags) == len(set(tags))
    assert [s for _, _, s in tags] == sorted(s for _, _, s in tags)  # one data load per seed
    with pytest.raises(ValueError, match="unknown model"):
        B.BenchmarkConfig(models=("nope",))


@pytest.mark.slow
def test_tiny_benchmark_writes_tables_figures_and_resumes(tmp_path, monkeypatch):
    cfg = _config(tmp_path)
    results = B.run_benchmark(cfg, progress=False, log=lambda m: None)
    runs = sorted(p.name for p in (tmp_path / "runs" / "simulator").glob("*.json"))
    assert len(runs) == len(B.plan(cfg)) == 2 * 2 + 2
    tables = (tmp_path / "tables.md").read_text()
    assert "Table 2" in tables and "Table 3" in tables and "oracle" in tables
    assert "| PTPM |" in tables and "| MSE |" in tables
    for name in ("fig6_cost", "fig6_curves", "fig7_ucl", "fig8_depth"):
        png = tmp_path / f"{name}_simulator.png"
        assert png.exists() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    saved = json.loads((tmp_path / "results.json").read_text())
    ds = saved["datasets"]["simulator"]
    assert ds["models"]["ptpm"]["mae"]["n"] == 2 and ds["oracle"]["mae"]["n"] == 2
    assert set(ds["depth_sweep"]["ptpm"]) == {"2", "3"}
    assert ds["models"]["ptpm"]["cost"]["flops"] > ds["models"]["mse"]["cost"]["flops"] > 0
    assert "mae" in ds["significance"]["table2"]
    assert results["datasets"]["simulator"]["models"]["mse"]["seeds"] == [0, 1]

    # resume: nothing finished is trained again; a missing run is the only one trained
    calls = []
    real_execute = B.execute
    monkeypatch.setattr(B, "execute", lambda spec, *a: calls.append(spec) or real_execute(spec, *a))
    B.run_benchmark(cfg, progress=False, log=lambda m: None)
    assert calls == []
    victim = tmp_path / "runs" / "simulator" / runs[0]
    victim.unlink()
    B.run_benchmark(cfg, progress=False, log=lambda m: None)
    assert [s.path.split("/")[-1] for s in calls] == [runs[0]]
    assert victim.exists()
    with pytest.raises(ValueError, match="other settings"):
        B.run_benchmark(_config(tmp_path, rows=3000), progress=False, log=lambda m: None)


def test_student_t_tail_matches_closed_forms():
    for t in (0.3, 1.0, 2.5, 10.0):
        assert t_sf(t, 1) == pytest.approx(0.5 - math.atan(t) / math.pi, abs=1e-12)
        assert t_sf(t, 2) == pytest.approx(0.5 - t / (2 * math.sqrt(2 + t * t)), abs=1e-12)
        assert t_sf(-t, 3) == pytest.approx(1 - t_sf(t, 3), abs=1e-12)
    # table values: two-sided 5 % critical points
    for df, crit in ((2, 4.302653), (4, 2.776445), (9, 2.262157)):
        assert 2 * t_sf(crit, df) == pytest.approx(0.05, abs=1e-6)


def test_paired_t_test_on_hand_made_numbers():
    # differences 0.5, 0.8, 0.9: mean 0.7333, sd 0.2082, t = 6.1017 with 2 df
    r = paired_t_test([1.0, 2.0, 3.0], [0.5, 1.2, 2.1])
    assert r.n == 3 and r.mean_diff == pytest.approx(0.733333, rel=1e-5)
    assert r.t == pytest.approx(6.1017, rel=1e-4)
    assert r.p_two_sided == pytest.approx(1 - r.t / math.sqrt(r.t ** 2 + 2), rel=1e-9)
    assert r.p_one_sided == pytest.approx(r.p_two_sided / 2)
    worse = paired_t_test([0.5, 1.2, 2.1], [1.0, 2.0, 3.0])
    assert worse.t < 0 and worse.p_one_sided > 0.95
    assert math.isnan(paired_t_test([1.0], [0.0]).p_two_sided)
    assert paired_t_test([1.0, 2.0], [0.0, 1.0]).p_two_sided == 0.0  # constant gain
    assert paired_t_test([1.0, 2.0], [1.0, 2.0]).p_two_sided == 1.0


def _fake(mae, xauc, seeds=(0, 1, 2)):
    return {"seeds": list(seeds),
            "mae": {"mean": sum(mae) / len(mae), "std": 0.0, "n": len(mae), "per_seed": mae},
            "xauc": {"mean": sum(xauc) / len(xauc), "std": 0.0, "n": len(xauc), "per_seed": xauc},
            "cost": {"params": 1, "head_params": 1, "flops": 1}}


def test_tables_bold_the_best_and_star_a_significant_ptpm_gain():
    models = {"tpm": _fake([10.0, 11.0, 12.0], [0.70, 0.71, 0.72]),
              "mse": _fake([12.0, 13.0, 14.0], [0.60, 0.61, 0.62]),
              "ptpm": _fake([9.0, 10.1, 10.9], [0.70, 0.71, 0.717])}
    sig = B._significance(models, B.TABLE2_ORDER)
    assert sig["mae"]["runner_up"] == "tpm" and sig["mae"]["significant"]
    assert sig["xauc"]["runner_up"] == "tpm" and not sig["xauc"]["ptpm_best"]
    results = {"datasets": {"sim": {"models": models, "oracle": None, "depth_sweep": {},
                                    "significance": {"table2": sig, "table3": {}}}},
               "selection": {}, "config": None}
    text = B.render_tables(results)
    ptpm_row = next(l for l in text.splitlines() if l.startswith("| PTPM |"))
    tpm_row = next(l for l in text.splitlines() if l.startswith("| TPM |"))
    assert "**10.000 ± 0.000**" in ptpm_row and ptpm_row.split("|")[2].strip().endswith("*")
    assert "**0.7100" in tpm_row  # TPM has the best XAUC here: bold, and no star anywhere
    assert not ptpm_row.split("|")[3].strip().endswith("*")


def test_settings_table_lists_validation_next_to_test():
    from ptpm_tf.benchmarks.suite import _settings_table
    stat = lambda m: {"mean": m, "std": 0.0, "n": 2}
    models = {"ptpm": {"val_mae": stat(9.5), "val_xauc": stat(0.70), "mae": stat(9.6),
                       "xauc": stat(0.71), "avg_tree_depth": stat(6.0)},
              "ptpm-batch-reward": {"val_mae": stat(9.8), "val_xauc": stat(0.69),
                                    "mae": stat(9.9), "xauc": stat(0.68)}}
    lines = _settings_table({"datasets": {"simulator": {"models": models}}})
    text = "\n".join(lines)
    assert "| PTPM | - | 9.500 | 0.7000 | 9.600 | 0.7100 | 6.00 |" in text
    assert "| ptpm-batch-reward | reward=batch | 9.800 | 0.6900 | 9.900 | 0.6800 | - |" in text
    # only Table 3's variants: nothing extra to show
    assert _settings_table({"datasets": {"simulator": {"models": {"ptpm": models["ptpm"]}}}}) == []


def _stat(mean):
    return {"mean": mean, "std": 0.0, "n": 1}


def test_figures_from_hand_made_results(tmp_path):
    """Each figure is drawn from the results it needs and skipped without them."""
    from ptpm_tf.benchmarks.figures import write_figures
    curve = [{"step": s, "xauc": 0.6 + 0.01 * s, "mae": 10.0 - s} for s in range(4)]
    full = {"models": {
        "ptpm": {"cost": {"params": 2000, "flops": 9000}, "curve": {"per_seed": [curve, curve],
                                                                     "steps_per_epoch": 2},
                 "leaf_prior_posterior_ratio": [0.9, 1.0, 1.1, 1.0],
                 "mean_node_auc": _stat(0.71)},
        "tpm": {"cost": {"params": 1900, "flops": 8000}, "curve": {"per_seed": [curve],
                                                                    "steps_per_epoch": 2},
                "leaf_prior_posterior_ratio": [0.8, 1.0, 1.2, 1.0],
                "mean_node_auc": _stat(0.69)}},
        "depth_sweep": {"ptpm": {d: {"mae": _stat(10.0 - d), "xauc": _stat(0.6 + d / 100),
                                     "avg_tree_depth": _stat(d - 0.5)} for d in (2, 3)}}}
    costs_only = {"models": {"mse": {"cost": {"params": 10, "flops": 20}}}, "depth_sweep": {}}
    written = write_figures({"datasets": {"sim": full, "bare": costs_only}}, tmp_path)
    assert sorted(written) == sorted(["fig6_cost_sim.png", "fig6_curves_sim.png",
                                      "fig7_ucl_sim.png", "fig8_depth_sim.png",
                                      "fig6_cost_bare.png"])
    for name in written:
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name


def test_throughput_interleaves_models_and_reports_ratios():
    from ptpm_tf.benchmarks.throughput import measure
    result = measure(["mse", "tpm"], rows=1000, depth=2, batch_size=256, repeats=1)
    assert list(result) == ["mse", "tpm"]
    base = result["mse"]["median_seconds_per_epoch"]
    assert result["mse"]["throughput_vs_mse"] == 1.0
    for r in result.values():
        assert len(r["seconds"]) == 1 and r["seconds"][0] > 0
        assert r["throughput_vs_mse"] == pytest.approx(base / r["median_seconds_per_epoch"])
        n_train = r["samples_per_second"] * r["median_seconds_per_epoch"]
        assert n_train == pytest.approx(800)  # the training split of 1000 rows
    assert result["tpm"]["trainable_parameters"] > result["mse"]["trainable_parameters"] > 0
    with pytest.raises(ValueError, match="unknown model"):
        measure(["nope"], rows=100, depth=2, batch_size=64, repeats=1)


def test_throughput_builds_the_tower_it_is_given():
    """The tower settings reach the models (to see a head's cost against towers of other
    sizes): 16 more hidden units add a multiple of 16 parameters, and the report records
    the tower; a bad ``--hidden`` is a usage error."""
    from ptpm_tf.benchmarks.throughput import main, measure
    small = measure(["mse"], rows=600, depth=2, batch_size=256, repeats=1,
                    tower={"hidden": (8,), "n_cross": 0})
    wide = measure(["mse"], rows=600, depth=2, batch_size=256, repeats=1,
                   tower={"hidden": (24,), "n_cross": 0})
    # one hidden layer of h units on an input of width m, then the regression output:
    # (m + 1) h + (h + 1) parameters besides the embeddings, so 16 more units add 16 (m + 2)
    extra = wide["mse"]["trainable_parameters"] - small["mse"]["trainable_parameters"]
    assert extra > 0 and extra % 16 == 0
    assert wide["mse"]["tower"]["hidden"] == (24,) and wide["mse"]["tower"]["n_cross"] == 0
    with pytest.raises(SystemExit) as err:
        main(["--hidden", "8,x"])
    assert err.value.code == 2


def test_gap_decomposition_adds_the_hidden_state():
    """The hidden-state inputs are the rows' own mixture parameters, as numeric features."""
    from ptpm_tf.benchmarks import gap_decomposition as gap
    from ptpm_tf.data.simulator import simulate_with_truth
    sim = simulate_with_truth(2000, seed=4)
    ds = gap.with_hidden_state(sim)
    assert ds.numeric == [*sim.dataset.numeric, *(f"hidden_{n}" for n in gap.HIDDEN)]
    np.testing.assert_array_equal(ds.frame["hidden_p_complete"], sim.mixture.p_complete)
    assert "hidden_p_complete" not in sim.dataset.frame  # the observable data is untouched


@pytest.mark.slow
def test_gap_decomposition_trains_both_inputs_and_resumes(tmp_path):
    from ptpm_tf.benchmarks import gap_decomposition as gap
    args = ["--rows", "2000", "--seeds", "4", "--variants", "mse", "--epochs", "1",
            "--out", str(tmp_path)]
    assert gap.main(args) == 0
    records = json.loads((tmp_path / "results.json").read_text())
    assert [r["inputs"] for r in records] == ["observable", "hidden state"]
    assert all(np.isfinite(r["mae"]) and r["mae"] >= 0 for r in records)
    assert gap.main(args) == 0  # resumes: nothing new to train
    assert len(json.loads((tmp_path / "results.json").read_text())) == 2
    assert "| mse | hidden state | 1 |" in gap.summary(records)

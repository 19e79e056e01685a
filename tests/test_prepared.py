"""Prepared datasets (``ptpm-tf data prepare``), streamed training and evaluation, and
offline batch scoring (``ptpm-tf predict --run``).

- A CSV with bad rows, converted in chunks of a few hundred rows, gives the same drop counts,
  the same split, the same encoder statistics and exact label quantiles as the in-memory
  load; ``--strict`` fails on the same line.
- A shuffled epoch of the stream yields every training row exactly once.
- A model trained from the stream is evaluated exactly: streamed MAE / XAUC / user XAUC
  equal the in-memory evaluation of the same rows.
- Batch scoring of CSV, Parquet and a prepared directory writes one row per input row with
  every serving output, equal to the model's own outputs; bad input exits 2 with the
  file, row and column.
- Two workers on 127.0.0.1 read disjoint shards whose union is the training split, then
  train one epoch together.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

import ptpm_tf  # noqa: F401
from ptpm_tf.cli import main
from ptpm_tf.data.dataset import LABEL, DataError
from ptpm_tf.data.prepared import ROW, open_prepared, prepare
from ptpm_tf.data.registry import load_dataset
from ptpm_tf.data.simulator import simulate, write_simulation
from ptpm_tf.data.splits import split_dataset
from ptpm_tf.features import FeatureEncoder

HERE = Path(__file__).resolve().parent
ROWS = 3000


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """A simulator CSV with malformed, non-numeric and negative rows in it."""
    folder = tmp_path_factory.mktemp("src")
    csv_path, spec_path = write_simulation(simulate(rows=ROWS, seed=3), folder)
    lines = csv_path.read_text().splitlines()
    header = lines[0].split(",")
    wt = header.index("watch_time")
    bad = lines[1].split(",")
    bad[wt] = "oops"
    neg = lines[2].split(",")
    neg[wt] = "-4"
    lines[700:700] = [",".join(bad), "1,2,3", ",".join(neg)]
    lines[2100:2100] = [",".join(bad)]
    csv_path.write_text("\n".join(lines) + "\n")
    return spec_path


@pytest.fixture(scope="module")
def prepared_dir(source, tmp_path_factory):
    out = tmp_path_factory.mktemp("prep") / "p"
    prepare("csv", out, spec=str(source), shard_rows=500, chunk_rows=300)
    return out


def test_chunked_prepare_equals_the_in_memory_load(source, prepared_dir, monkeypatch):
    monkeypatch.setenv("PTPM_TF_NO_CACHE", "1")
    ds = load_dataset("csv", spec=str(source))
    split = split_dataset(ds)
    p = open_prepared(prepared_dir)
    meta = p.meta
    assert meta["report"]["rows_read"] == ds.report.rows_read == ROWS + 4
    assert meta["report"]["dropped"] == ds.report.dropped
    assert sum(ds.report.dropped.values()) == 4
    assert meta["split"]["rows"] == {"train": len(split.train),
                                     "validation": len(split.validation),
                                     "test": len(split.test)}
    assert len(meta["shards"]["train"]) == -(-len(split.train) // 500)
    # the same rows in each part, in time order
    for part, frame in (("validation", split.validation), ("test", split.test)):
        got = p.frame(part)
        np.testing.assert_array_equal(got[LABEL].to_numpy(), frame[LABEL].to_numpy())
        np.testing.assert_array_equal(got["timestamp"].to_numpy(), frame["timestamp"].to_numpy())
    # encoder statistics and label quantiles as the in-memory path computes them
    ref = FeatureEncoder.from_frame(split.train, ds.categorical, ds.numeric)
    enc = p.encoder()
    for name in ds.numeric:
        assert enc.numeric[name]["mean"] == pytest.approx(ref.numeric[name]["mean"], rel=1e-9)
        assert enc.numeric[name]["std"] == pytest.approx(ref.numeric[name]["std"], rel=1e-9)
    for name in ds.categorical:
        assert set(enc.categorical[name]["vocab"]) == set(ref.categorical[name]["vocab"])
    q = meta["label_quantiles"][LABEL]
    assert q["exact"] and q["rows"] == len(split.train)
    y = split.train[LABEL].to_numpy()
    np.testing.assert_allclose(q["values"], np.quantile(y, np.linspace(0, 1, q["levels"])))
    r = meta["label_quantiles"]["ratio"]["values"]
    d = split.train["duration"].to_numpy()
    np.testing.assert_allclose(r, np.quantile((y / d)[d > 0], np.linspace(0, 1, 1001)))
    np.testing.assert_array_equal(p.train_labels()[LABEL].to_numpy(), y)
    assert meta["disk"]["bytes_per_row"] > 0


def test_train_labels_sample_is_a_seeded_subset_in_time_order(prepared_dir):
    """--fit-rows: the heads fit on a uniform sample without replacement, read row group by
    row group (the file holds several), rows kept in time order with their durations."""
    p = open_prepared(prepared_dir)
    full = p.train_labels()
    n = len(full)
    assert pq.ParquetFile(prepared_dir / "train_labels.parquet").num_row_groups > 1
    assert p.train_labels(n).equals(full)
    k = n // 3
    sample = p.train_labels(k, seed=5)
    assert len(sample) == k and list(sample.columns) == list(full.columns)
    assert sample.equals(p.train_labels(k, seed=5))
    assert not sample.equals(p.train_labels(k, seed=6))
    # the sample's rows appear in the full split, in the same order (a subsequence)
    values, i = full.to_numpy(), 0
    for row in sample.to_numpy():
        while i < n and not np.array_equal(values[i], row):
            i += 1
        assert i < n, "the sample is not a subsequence of the training labels"
        i += 1
    # uniform: over many seeds every row is drawn about k / n of the time (rows whose
    # labels repeat are left out: they cannot be told apart)
    keys = [tuple(r) for r in values]
    unique = ~pd.Series(keys).duplicated(keep=False).to_numpy()
    index = {key: j for j, key in enumerate(keys)}
    counts = np.zeros(n)
    seeds = 300
    for seed in range(seeds):
        for r in p.train_labels(k, seed=seed).to_numpy():
            counts[index[tuple(r)]] += 1
    share = counts[unique] / seeds
    sd = np.sqrt(k / n * (1 - k / n) / seeds)
    assert unique.sum() > n // 2 and np.all(np.abs(share - k / n) < 5.5 * sd)


def test_many_runs_merge_in_passes_to_the_same_shards(source, prepared_dir, tmp_path,
                                                       monkeypatch):
    """Beyond _MAX_FAN_IN sorted runs, prepare merges them in groups first (a multi-pass
    external merge); the shards, the split and the statistics are the one-pass ones."""
    import ptpm_tf.data.prepared as P
    monkeypatch.setattr(P, "_MAX_FAN_IN", 3)  # ~11 runs of 300 rows: two extra passes
    merged = open_prepared(prepare("csv", tmp_path / "p", spec=str(source), shard_rows=500,
                                   chunk_rows=300) and tmp_path / "p")
    ref = open_prepared(prepared_dir)
    for key in ("split", "label_quantiles", "rows", "dtypes"):
        assert merged.meta[key] == ref.meta[key], key
    enc, ref_enc = merged.meta["encoder"], ref.meta["encoder"]
    assert enc["categorical"] == ref_enc["categorical"]
    for name, stats in ref_enc["numeric"].items():  # moments merged over other frame sizes
        assert enc["numeric"][name] == pytest.approx(stats, rel=1e-12), name
    for part in ("train", "validation", "test"):
        pd.testing.assert_frame_equal(merged.frame(part), ref.frame(part))
    assert not (tmp_path / "p" / ".runs").exists()


def test_strict_prepare_fails_on_the_same_line(source, tmp_path, monkeypatch):
    monkeypatch.setenv("PTPM_TF_NO_CACHE", "1")
    with pytest.raises(DataError) as memory:
        load_dataset("csv", spec=str(source), strict=True)
    with pytest.raises(DataError) as chunked:
        prepare("csv", tmp_path / "p", spec=str(source), strict=True, chunk_rows=300)
    assert str(chunked.value) == str(memory.value)
    assert "row 701" in str(chunked.value)
    assert not (tmp_path / "p").exists()


def test_a_shuffled_epoch_yields_every_training_row_once(prepared_dir):
    p = open_prepared(prepared_dir)
    ds = p.batches("train", 128, shuffle=True, seed=1, shuffle_buffer=300, columns=[ROW])
    rows = np.concatenate([b[ROW].numpy() for b in ds])
    np.testing.assert_array_equal(np.sort(rows), np.arange(p.rows("train")))
    assert not np.array_equal(rows, np.arange(p.rows("train")))  # shuffled


def test_every_input_pipeline_runs_without_autotuning_and_keeps_its_sharding(prepared_dir):
    """tf.data's autotuning thread held each iterator's teardown until its next plan (up to
    doubling a short pass), so every pipeline the package builds turns it off."""
    import tensorflow as tf

    from ptpm_tf.data.pipeline import feature_batches, make_tf_dataset
    policy = tf.data.experimental.AutoShardPolicy
    p = open_prepared(prepared_dir)
    x = {"a": np.arange(10.0)}
    cases = {
        "prepared, training": (p.batches("train", 64, shuffle=True), policy.FILE),
        "prepared, validation": (p.batches("validation", 64, shard_by_file=False), policy.DATA),
        "in memory": (make_tf_dataset(x, {"y": np.arange(10.0)}, batch_size=4), policy.DATA),
        "features only": (feature_batches(x, 4), policy.AUTO),
    }
    for name, (ds, shard) in cases.items():
        options = ds.map(lambda *b: b).options()  # options survive later transformations
        assert options.autotune.enabled is False, name
        assert options.experimental_distribute.auto_shard_policy == shard, name


@pytest.fixture(scope="module")
def streamed_run(prepared_dir, tmp_path_factory):
    from ptpm_tf.config import ExperimentConfig
    from ptpm_tf.training import train
    out = tmp_path_factory.mktemp("run") / "r"
    # fit_rows below the ~2,400 training rows: the heads fit on a sample of the labels
    config = ExperimentConfig.from_flat(model="ptpm", prepared=str(prepared_dir), depth=3,
                                        epochs=1, batch_size=256, fit_rows=1000)
    run = train(config, out, verbose=0)
    return out, run


def test_heads_fit_on_the_fit_rows_sample(prepared_dir, streamed_run):
    from ptpm_tf.training import build_model
    _, run = streamed_run
    p = open_prepared(prepared_dir)
    bounds = {}
    for rows in (1000, None):
        model = build_model(run.config, p.encoder())
        model.head.adapt(p.train_labels(rows, seed=run.config.seed))
        bounds[rows] = model.head.leaf_bounds.numpy()
    np.testing.assert_array_equal(run.model.head.leaf_bounds.numpy(), bounds[1000])
    assert not np.array_equal(bounds[1000], bounds[None])


def test_streamed_evaluation_is_exact(prepared_dir, streamed_run):
    from ptpm_tf.data.dataset import Dataset
    from ptpm_tf.evaluate import evaluate_frame
    out, run = streamed_run
    p = open_prepared(prepared_dir)
    assert run.split is None and run.metrics["n_test"] == p.rows("test")
    assert run.metrics["train_rows"] == p.rows("train")
    frame = p.frame("test")
    ds = Dataset("csv", frame, p.categorical, p.numeric)
    ref = evaluate_frame(run.model, frame, ds, model_name="ptpm")
    for key in ("mae", "xauc", "user_xauc", "mae_median", "xauc_global_tree", "oracle_xauc"):
        assert run.metrics[key] == pytest.approx(ref[key], rel=1e-12), key
    saved = json.loads((out / "config.json").read_text())
    assert saved["experiment"]["data"]["prepared"] == str(prepared_dir)
    assert not (out / "split.npz").exists()


def test_batch_scoring_writes_every_output_for_every_row(prepared_dir, streamed_run,
                                                         tmp_path, capsys):
    out, run = streamed_run
    p = open_prepared(prepared_dir)
    frame = p.frame("test")
    frame.to_csv(tmp_path / "in.csv", index=False)
    frame.drop(columns=[LABEL]).to_parquet(tmp_path / "in.parquet")
    expected = {k: v.numpy() for k, v in
                run.model(run.model.encoder.raw_arrays(frame)).items()}
    for name in ("in.csv", "in.parquet"):
        code = main(["predict", "--run", str(out), "--input", str(tmp_path / name),
                     "--output", str(tmp_path / f"{name}.out.parquet"), "--batch-size", "300"])
        assert code == 0
        got = pd.read_parquet(tmp_path / f"{name}.out.parquet")
        assert len(got) == len(frame)
        np.testing.assert_array_equal(got[ROW].to_numpy(), np.arange(len(frame)))
        np.testing.assert_array_equal(got["user_id"].to_numpy(), frame["user_id"].to_numpy())
        assert set(expected) <= set(got.columns)
        # float32 kernels over batches of another size: equal to rounding
        np.testing.assert_allclose(got["watch_time"].to_numpy(), expected["watch_time"],
                                   rtol=1e-5)
        np.testing.assert_allclose(np.stack(got["quantiles"].to_numpy()),
                                   expected["quantiles"], rtol=1e-4)
    assert "rows/s" in capsys.readouterr().out
    # a prepared directory: every row of every split, keyed by its row
    assert main(["predict", "--run", str(out), "--input", str(prepared_dir), "--signature",
                 "serving_default", "--output", str(tmp_path / "all.parquet")]) == 0
    got = pd.read_parquet(tmp_path / "all.parquet")
    np.testing.assert_array_equal(got[ROW].to_numpy(), np.arange(len(p)))
    assert "quantiles" not in got.columns and "watch_time" in got.columns
    # the exported SavedModel (run inside tf.data like the run's model) scores the same
    assert main(["export", "--run", str(out), "--export-dir", str(tmp_path / "export")]) == 0
    assert main(["predict", "--export", str(tmp_path / "export" / "ptpm"), "--input",
                 str(prepared_dir), "--output", str(tmp_path / "exported.parquet"),
                 "--batch-size", "700"]) == 0
    exported = pd.read_parquet(tmp_path / "exported.parquet")
    assert list(exported.columns) == list(got.columns)
    np.testing.assert_array_equal(exported[ROW].to_numpy(), got[ROW].to_numpy())
    np.testing.assert_allclose(exported["watch_time"].to_numpy(), got["watch_time"].to_numpy(),
                               rtol=1e-5)


def test_batch_scoring_bad_input_exits_2_naming_the_place(streamed_run, prepared_dir,
                                                          tmp_path, capsys):
    out, _ = streamed_run
    frame = open_prepared(prepared_dir).frame("test").head(50)
    bad = frame.astype({"duration": object})
    bad.loc[7, "duration"] = "long"
    bad.to_csv(tmp_path / "bad.csv", index=False)
    assert main(["predict", "--run", str(out), "--input", str(tmp_path / "bad.csv"),
                 "--output", str(tmp_path / "o.parquet")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "row 8" in err and "duration" in err
    frame.drop(columns=["item_id"]).to_csv(tmp_path / "lack.csv", index=False)
    assert main(["predict", "--run", str(out), "--input", str(tmp_path / "lack.csv"),
                 "--output", str(tmp_path / "o.parquet")]) == 2
    assert "item_id" in capsys.readouterr().err
    assert not (tmp_path / "o.parquet").exists()


def test_batch_scoring_writes_row_groups_in_order_on_its_writer_thread(streamed_run,
                                                                        prepared_dir, tmp_path,
                                                                        monkeypatch):
    from ptpm_tf import scoring
    out, _ = streamed_run
    monkeypatch.setattr(scoring, "ROW_GROUP_ROWS", 256)
    frame = open_prepared(prepared_dir).frame("test")
    frame.to_parquet(tmp_path / "in.parquet")
    stats = scoring.score(tmp_path / "in.parquet", tmp_path / "o.parquet", run=str(out),
                          batch_size=100, progress=False)
    assert stats["rows"] == len(frame)
    written = pq.ParquetFile(tmp_path / "o.parquet")
    assert written.metadata.num_row_groups == -(-len(frame) // 300)  # 3 batches a group
    np.testing.assert_array_equal(written.read().column(ROW).to_numpy(),
                                  np.arange(len(frame)))


def test_batch_scoring_writes_only_the_chosen_outputs(streamed_run, prepared_dir, tmp_path,
                                                      capsys):
    out, _ = streamed_run
    frame = open_prepared(prepared_dir).frame("test").head(400)
    frame.to_parquet(tmp_path / "in.parquet")
    assert main(["predict", "--run", str(out), "--input", str(tmp_path / "in.parquet"),
                 "--output", str(tmp_path / "all.parquet")]) == 0
    assert main(["predict", "--run", str(out), "--input", str(tmp_path / "in.parquet"),
                 "--output", str(tmp_path / "two.parquet"),
                 "--outputs", "variance,watch_time"]) == 0
    every, two = pd.read_parquet(tmp_path / "all.parquet"), pd.read_parquet(tmp_path / "two.parquet")
    assert [c for c in two.columns if c not in (ROW, "user_id", "item_id", "timestamp")] \
        == ["watch_time", "variance"]
    for name in ("watch_time", "variance"):
        np.testing.assert_array_equal(two[name].to_numpy(), every[name].to_numpy())
    # the point prediction alone runs a lighter graph (no global tree): the same values
    assert main(["predict", "--run", str(out), "--input", str(tmp_path / "in.parquet"),
                 "--output", str(tmp_path / "point.parquet"), "--outputs", "watch_time"]) == 0
    point = pd.read_parquet(tmp_path / "point.parquet")
    assert "watch_time_global" not in point.columns
    np.testing.assert_array_equal(point["watch_time"].to_numpy(), every["watch_time"].to_numpy())
    assert main(["predict", "--run", str(out), "--input", str(tmp_path / "in.parquet"),
                 "--output", str(tmp_path / "bad.parquet"), "--outputs", "watch_tme"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "watch_tme" in err[0] and "watch_time" in err[0]
    assert not (tmp_path / "bad.parquet").exists()
    # an export's signature, as TF Serving runs it
    assert main(["export", "--run", str(out), "--export-dir", str(tmp_path / "export")]) == 0
    assert main(["predict", "--export", str(tmp_path / "export" / "ptpm"), "--input",
                 str(tmp_path / "in.parquet"), "--output", str(tmp_path / "ex.parquet"),
                 "--outputs", "watch_time"]) == 0
    exported = pd.read_parquet(tmp_path / "ex.parquet")
    assert "watch_time" in exported.columns and "leaf_prob" not in exported.columns
    np.testing.assert_allclose(exported["watch_time"].to_numpy(), every["watch_time"].to_numpy(),
                               rtol=1e-5)
    # a server's answer is not filtered here
    assert main(["predict", "--server", "localhost:1", "--name", "ptpm", "--input",
                 str(tmp_path / "in.parquet"), "--outputs", "watch_time"]) == 2
    assert "--outputs goes with --run / --export" in capsys.readouterr().err


def test_row_group_writer_raises_its_error_in_the_callers_thread(tmp_path):
    import pyarrow as pa
    from ptpm_tf.scoring import _RowGroupWriter
    writer = _RowGroupWriter(tmp_path / "o.parquet")
    writer.put(pa.table({"a": [1.0, 2.0]}))
    writer.put(pa.table({"b": ["x"]}))  # another schema: the Parquet writer refuses it
    with pytest.raises(ValueError, match="schema"):
        for _ in range(10):  # raised by a later put, or by close
            writer.put(pa.table({"a": [3.0]}))
        writer.close()
    writer.abort()
    # a writer stopped by its caller's error ends its thread
    stopped = _RowGroupWriter(tmp_path / "p.parquet")
    stopped.put(pa.table({"a": [1.0]}))
    stopped.abort()
    assert not stopped._thread.is_alive()


def test_offline_scoring_of_a_file_selects_the_bfc_allocator(prepared_dir, tmp_path,
                                                             monkeypatch):
    import argparse
    from ptpm_tf.cli.serving import _predict_environment
    for given, expected in ((dict(run="r", input=str(tmp_path / "in.csv")), "true"),
                            (dict(export="e", input=str(tmp_path / "in.parquet")), "true"),
                            (dict(run="r", input=str(prepared_dir)), None),
                            (dict(input=str(tmp_path / "in.csv")), None)):  # --server
        monkeypatch.delenv("TF_CPU_ALLOCATOR_USE_BFC", raising=False)
        args = argparse.Namespace(**{"run": None, "export": None, **given})
        _predict_environment(args)
        assert os.environ.get("TF_CPU_ALLOCATOR_USE_BFC") == expected, given


@pytest.mark.slow
def test_two_workers_read_disjoint_shards_and_train(prepared_dir, tmp_path):
    from test_distributed import TIMEOUT, _env, _free_ports, _kill, _start, _tail
    ports = _free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
    procs, logs = [], []
    try:
        for i in range(2):
            env = {"TF_CONFIG": json.dumps({"cluster": cluster,
                                            "task": {"type": "worker", "index": i}})}
            logs.append(tmp_path / f"w{i}.log")
            with open(logs[-1], "w") as f:
                procs.append(_start([HERE / "prepared_worker.py", prepared_dir,
                                     tmp_path / f"w{i}.npz", tmp_path / "run"], _env(**env), f))
        codes = [proc.wait(timeout=TIMEOUT) for proc in procs]
    finally:
        for proc in procs:
            _kill(proc)
    assert codes == [0, 0], "\n".join(_tail(log) for log in logs)
    p = open_prepared(prepared_dir)
    seen = [np.load(tmp_path / f"w{i}.npz")["rows"] for i in range(2)]
    assert len(np.intersect1d(seen[0], seen[1])) == 0
    np.testing.assert_array_equal(np.sort(np.concatenate(seen)), np.arange(p.rows("train")))
    # worker i reads whole shards i, i + 2, ...
    starts = [s["first_row"] for s in p.meta["shards"]["train"]]
    for i in range(2):
        shard_of = np.searchsorted(starts, seen[i], side="right") - 1
        assert set(shard_of % 2) == {i}
    it = [int(np.load(tmp_path / f"w{i}.npz")["iterations"]) for i in range(2)]
    assert it[0] == it[1] > 0
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["replicas"] == 2


def test_gzip_shards_hold_the_same_rows(source, prepared_dir, tmp_path):
    out = tmp_path / "z"
    meta = prepare("csv", out, spec=str(source), shard_rows=500, chunk_rows=300,
                   compression="GZIP")
    plain = open_prepared(prepared_dir)
    assert meta["disk"]["bytes_per_row"] < 0.75 * plain.meta["disk"]["bytes_per_row"]
    pd.testing.assert_frame_equal(open_prepared(out).frame("test"), plain.frame("test"))


@pytest.mark.parametrize("name, folder", [("kuairec", "kuairec-sample"),
                                          ("kuairand", "kuairand-sample"),
                                          ("cikm16", "cikm16-diginetica-sample")])
def test_real_samples_prepare_like_the_in_memory_load(name, folder, tmp_path, monkeypatch):
    """Every loader, chunked by prepare (CIKM16 whole: sessions span the file), gives the
    in-memory counts, split and test rows."""
    monkeypatch.setenv("PTPM_TF_NO_CACHE", "1")
    data_dir = str(HERE / "data" / folder)
    ds = load_dataset(name, data_dir=data_dir)
    split = split_dataset(ds)
    meta = prepare(name, tmp_path / "p", data_dir=data_dir, shard_rows=400, chunk_rows=100)
    assert meta["report"]["rows_read"] == ds.report.rows_read
    assert meta["report"]["dropped"] == ds.report.dropped
    assert meta["report"]["notes"] == ds.report.notes
    assert (meta["categorical"], meta["numeric"]) == (ds.categorical, ds.numeric)
    assert meta["split"]["rows"]["test"] == len(split.test)
    got = open_prepared(tmp_path / "p").frame("test")
    # a time split is in time order; a random one (no timestamp) in file order
    test = split.test if meta["split"]["method"] == "time" else split.test.sort_index()
    np.testing.assert_array_equal(got[LABEL].to_numpy(), test[LABEL].to_numpy())
    for c in ds.categorical:
        assert got[c].astype(str).tolist() == test[c].astype(str).tolist(), c


@pytest.mark.slow
def test_scale_bench_stream_phase_runs_on_a_prepared_directory(prepared_dir, tmp_path,
                                                              capsys):
    """The 12.5M / 50M scale bench's streamed phase, on the fixture's directory, for a few
    steps: time to the first batch, samples/s, peak RSS, a saved run, and a progress line
    at the end of the epoch (every 1,000 batches on a long one)."""
    from ptpm_tf.benchmarks.scale import _stream_phase
    (tmp_path / "prepared").symlink_to(prepared_dir, target_is_directory=True)
    out = _stream_phase(str(tmp_path), steps=2)
    assert out["samples_trained"] == 2 * 1024 and out["first_batch_seconds"] > 0
    assert out["epoch_samples_per_second"] > 0 and out["peak_rss_mb"] > 0
    assert (tmp_path / "run" / "config.json").exists()
    progress = [line for line in capsys.readouterr().err.splitlines()
                if line.startswith("batch ")]
    assert len(progress) == 1 and progress[0].startswith("batch 2/2: ")
    assert "samples/s, peak RSS" in progress[0]

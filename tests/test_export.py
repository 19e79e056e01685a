"""SavedModel export (issue 5): layout, signatures, stock ops only, the TF1 session loader
(TF Serving's SavedModelBundle path), atomic versions, warm-up file, describe_tree."""
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from serving_helpers import DEPTH, sample_rows, tiny_exports, tiny_runs, with_unseen_ids
from ptpm_tf import cli
from ptpm_tf.export import (INFO_FILE, PREDICT_METHOD, REGRESS_METHOD, TMP_PREFIX,
                            WARMUP_FILE, export_model, graph_ops, list_versions,
                            non_stock_ops, to_examples)
from ptpm_tf.heads.tree.describe import describe_tree

POINT_OUTPUTS = {"watch_time", "watch_time_global", "variance", "prune_mask", "leaf_prob",
                 "tree_depth"}
# distributional outputs (issue 7); p_complete since the data has a duration
DISTRIBUTION_OUTPUTS = {"watch_time_mean", "watch_time_median", "quantiles", "p_complete"}
TREE_OUTPUTS = POINT_OUTPUTS | DISTRIBUTION_OUTPUTS


def _signature_defs(path):
    from tensorflow.core.protobuf import saved_model_pb2
    sm = saved_model_pb2.SavedModel()
    sm.ParseFromString((Path(path) / "saved_model.pb").read_bytes())
    return sm.meta_graphs[0].signature_def


def _keras(model, features):
    return {k: v.numpy() for k, v in model(features).items()}


@pytest.mark.slow
def test_layout_signatures_and_warmup():
    exports = tiny_exports()
    path = exports["ptpm"]
    assert path.parent.name == "ptpm" and path.name == "1"
    for part in ("saved_model.pb", "variables", f"assets.extra/{WARMUP_FILE}",
                 f"assets.extra/{INFO_FILE}"):
        assert (path / part).exists(), part
    sigs = _signature_defs(path)
    assert {"serving_default", "distribution", "regress"} <= set(sigs)
    serve, dist, regress = sigs["serving_default"], sigs["distribution"], sigs["regress"]
    assert serve.method_name == dist.method_name == PREDICT_METHOD
    assert regress.method_name == REGRESS_METHOD
    model = tiny_runs()["ptpm"].model
    want = {k: s.dtype.as_datatype_enum for k, s in model.encoder.input_signature().items()}
    assert {k: v.dtype for k, v in serve.inputs.items()} == want
    assert {k: v.dtype for k, v in dist.inputs.items()} == want
    assert set(serve.outputs) == POINT_OUTPUTS
    assert set(dist.outputs) == DISTRIBUTION_OUTPUTS
    n_int, n_nodes = 2 ** DEPTH - 1, 2 ** (DEPTH + 1) - 1
    assert [d.size for d in serve.outputs["leaf_prob"].tensor_shape.dim] == [-1, n_nodes]
    assert [d.size for d in serve.outputs["prune_mask"].tensor_shape.dim] == [-1, n_int - 1]
    assert set(regress.inputs) == {"inputs"} and set(regress.outputs) == {"outputs"}
    assert regress.inputs["inputs"].dtype == tf.string.as_datatype_enum

    from tensorflow_serving.apis import prediction_log_pb2
    records = [prediction_log_pb2.PredictionLog.FromString(r.numpy())
               for r in tf.data.TFRecordDataset(str(path / "assets.extra" / WARMUP_FILE))]
    kinds = [r.WhichOneof("log_type") for r in records]
    assert kinds == ["predict_log"] * 6 + ["regress_log"]
    # every Predict signature is warmed up at every batch size
    warmed = [(r.predict_log.request.model_spec.signature_name,
               r.predict_log.request.inputs["user_id"].tensor_shape.dim[0].size)
              for r in records[:6]]
    assert warmed == [(sig, n) for sig in ("serving_default", "distribution")
                      for n in (1, 64, 512)]
    assert records[6].regress_log.request.model_spec.signature_name == "regress"
    assert len(records[6].regress_log.request.input.example_list.examples) == 8

    info = json.loads((path / "assets.extra" / INFO_FILE).read_text())
    assert info["tree"]["depth"] == DEPTH and len(info["tree"]["leaf_bounds"]) == 2 ** DEPTH + 1
    assert set(info["outputs"]) == POINT_OUTPUTS
    assert {k: (v["method"], set(v["outputs"])) for k, v in info["signatures"].items()} == {
        "serving_default": (PREDICT_METHOD, POINT_OUTPUTS),
        "distribution": (PREDICT_METHOD, DISTRIBUTION_OUTPUTS),
        "regress": (REGRESS_METHOD, {"outputs"})}
    assert info["tree"]["quantile_levels"] == [0.1, 0.25, 0.5, 0.75, 0.9]
    # the default (best) preset: a ratio tree decoded by its median
    assert info["tree"]["decode"] == "median" and info["tree"]["label_space"] == "ratio"
    assert info["tree"]["duration_fallback"] > 0


def test_only_stock_ops():
    exports = tiny_exports()
    for name in ("ptpm", "tpm"):
        ops = graph_ops(exports[name])
        assert {"MatMul", "LookupTableFindV2", "ParseExampleV2"} <= ops
        assert not ops & {"PyFunc", "PyFuncStateless", "EagerPyFunc"}
        assert non_stock_ops(exports[name]) == set(), name


def test_op_check_catches_py_function(tmp_path):
    """The check itself works: a SavedModel with a tf.py_function is flagged."""
    class M(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.float32)])
        def f(self, x):
            return tf.py_function(lambda t: t * 2.0, [x], tf.float32)
    tf.saved_model.save(M(), str(tmp_path / "m"))
    assert "EagerPyFunc" in non_stock_ops(tmp_path / "m")


@pytest.mark.parametrize("name", ["ptpm", "tpm"])
def test_tf1_session_loader_matches_keras(name):
    """Load through tf.compat.v1.saved_model.load in a fresh graph and session (the path
    of TF Serving's SavedModelBundle) and run every signature."""
    run = tiny_runs()[name]
    path = tiny_exports()[name]
    rows = sample_rows(40)
    feats = run.model.encoder.raw_arrays(rows)
    unseen = with_unseen_ids(feats)
    graph = tf.Graph()
    with tf.compat.v1.Session(graph=graph) as sess:
        meta = tf.compat.v1.saved_model.load(sess, ["serve"], str(path))
        sigs = meta.signature_def
        assert set(sigs) - {"__saved_model_init_op"} == {"serving_default", "distribution",
                                                         "regress"}
        outs = []
        for f in (feats, unseen):  # the two Predict signatures together: every output
            out = {}
            for key in ("serving_default", "distribution"):
                sig = sigs[key]
                out.update(sess.run({k: v.name for k, v in sig.outputs.items()},
                                    {sig.inputs[k].name: v for k, v in f.items()}))
            outs.append(out)
        reg = sigs["regress"]
        examples = np.array([e.SerializeToString() for e in to_examples(feats)], dtype=object)
        regressed = sess.run(reg.outputs["outputs"].name, {reg.inputs["inputs"].name: examples})
        # a tf.Example without a numeric feature parses it as NaN, the encoder's "missing"
        no_dur = {k: v for k, v in feats.items() if k != "duration"}
        ex_nd = np.array([e.SerializeToString() for e in to_examples(no_dur)], dtype=object)
        regressed_nd = sess.run(reg.outputs["outputs"].name, {reg.inputs["inputs"].name: ex_nd})
    for served, raw in zip(outs, (feats, unseen)):
        ref = _keras(run.model, raw)
        assert set(served) == set(ref) == TREE_OUTPUTS
        for k in ref:
            np.testing.assert_allclose(served[k], ref[k], rtol=1e-5, atol=1e-4, err_msg=k)
        assert np.all(np.isfinite(served["watch_time"]))
        np.testing.assert_allclose(served["leaf_prob"].sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(regressed, outs[0]["watch_time"], rtol=1e-5, atol=1e-4)
    nan_dur = {**feats, "duration": np.full(len(rows), np.nan, np.float32)}
    np.testing.assert_allclose(regressed_nd, _keras(run.model, nan_dur)["watch_time"],
                               rtol=1e-5, atol=1e-4)
    if name == "tpm":
        assert not outs[0]["prune_mask"].any()
    else:  # pruning bias 0: some trees are pruned, and E_T then differs from E_g
        pruned = outs[0]["prune_mask"].any(axis=1)
        assert pruned.any()
        assert np.all(outs[0]["tree_depth"][pruned] <= DEPTH)


@pytest.mark.slow
def test_versions_increase(tmp_path):
    """Numbers go up from the highest existing one (test_killed_export... also checks
    1 -> 2); a given number is never overwritten."""
    model = tiny_runs()["tpm"].model
    assert export_model(model, tmp_path, "m", warmup_batch_sizes=(1,)).name == "1"
    (tmp_path / "m" / "7").mkdir()  # a version made by hand: the next export goes above it
    (tmp_path / "m" / "notes").mkdir()  # not a version
    assert export_model(model, tmp_path, "m", warmup_batch_sizes=(1,)).name == "8"
    assert list_versions(tmp_path / "m") == [1, 7, 8]
    with pytest.raises(FileExistsError):
        export_model(model, tmp_path, "m", version=1)
    assert not [p for p in (tmp_path / "m").iterdir() if p.name.startswith(TMP_PREFIX)]


def test_failed_export_leaves_nothing(tmp_path, monkeypatch):
    from ptpm_tf import export as export_mod
    model = tiny_runs()["tpm"].model

    def boom(*args, **kwargs):
        raise RuntimeError("disk full")
    monkeypatch.setattr(export_mod, "write_warmup", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        export_model(model, tmp_path, "m")
    assert list(p.name for p in (tmp_path / "m").iterdir()) == []


KILL_SCRIPT = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    import ptpm_tf
    from ptpm_tf import export
    from ptpm_tf.training import load_run
    _, model, _, _ = load_run(Path(sys.argv[1]))
    def publish(tmp, base, version):
        print("WRITTEN", tmp, flush=True)
        time.sleep(600)  # killed here: everything written, nothing renamed
    export._publish = publish
    export.export_model(model, sys.argv[2], "m", warmup_batch_sizes=(1,))
""")


@pytest.mark.slow
def test_killed_export_leaves_no_loadable_version(tmp_path):
    """SIGKILL an export after it wrote the whole SavedModel but before the rename: the
    model folder holds no new version (only a hidden temporary folder a server ignores),
    and the next export removes the leftover and takes the next number."""
    runs = tiny_runs()
    model = runs["tpm"].model
    assert export_model(model, tmp_path, "m", warmup_batch_sizes=(1,)).name == "1"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, str(runs["dir"] / "runs" / "tpm"),
                             str(tmp_path)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            env=env, text=True)
    try:
        line = ""
        deadline = time.monotonic() + 120
        while not line.startswith("WRITTEN") and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line and proc.poll() is not None:
                break
        assert line.startswith("WRITTEN"), "export subprocess did not reach the rename"
        tmp_dir = Path(line.split(maxsplit=1)[1].strip())
        assert (tmp_dir / "saved_model.pb").exists()
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    names = sorted(p.name for p in (tmp_path / "m").iterdir())
    assert names == sorted(["1", tmp_dir.name]) and tmp_dir.name.startswith(TMP_PREFIX)
    assert list_versions(tmp_path / "m") == [1]
    assert export_model(model, tmp_path, "m", warmup_batch_sizes=(1,)).name == "2"
    assert not tmp_dir.exists()


@pytest.mark.slow
def test_cli_export(tmp_path, capsys):
    runs = tiny_runs()
    rc = cli.main(["export", "--run", str(runs["dir"] / "runs" / "ptpm"),
                   "--export-dir", str(tmp_path)])
    assert rc == 0
    assert list_versions(tmp_path / "ptpm") == [1]
    out = capsys.readouterr().out
    assert "signature serving_default: watch_time" in out
    assert "signature distribution: watch_time_mean" in out
    assert cli.main(["export", "--run", str(tmp_path / "nope"), "--export-dir",
                     str(tmp_path)]) == 2
    # the TF2 loader sees the same split: the point outputs, the distributional ones
    loaded = tf.saved_model.load(str(tmp_path / "ptpm" / "1"))
    assert set(loaded.signatures["serving_default"].structured_outputs) == POINT_OUTPUTS
    assert set(loaded.signatures["distribution"].structured_outputs) == DISTRIBUTION_OUTPUTS
    with pytest.raises(SystemExit):  # the lean mode is gone: serving_default is lean
        cli.main(["export", "--run", str(runs["dir"] / "runs" / "ptpm"), "--export-dir",
                  str(tmp_path), "--outputs", "lean"])


def _signature_ops(version_dir: Path, key: str) -> set:
    """Op types of every function a signature calls (nested calls included)."""
    from tensorflow.core.protobuf import saved_model_pb2
    sm = saved_model_pb2.SavedModel()
    sm.ParseFromString((Path(version_dir) / "saved_model.pb").read_bytes())
    mg = sm.meta_graphs[0]
    library = {f.signature.name: f for f in mg.graph_def.library.function}
    nodes = {n.name: n for n in mg.graph_def.node}

    def called(node_defs):
        return {a.func.name for n in node_defs for a in n.attr.values()
                if a.func.name in library}
    todo = called(nodes[t.name.split(":")[0]] for t in mg.signature_def[key].outputs.values())
    seen, ops = set(), set()
    while todo:
        name = todo.pop()
        seen.add(name)
        ops |= {n.op for n in library[name].node_def}
        todo |= called(library[name].node_def) - seen
    return ops


@pytest.mark.parametrize("name", ["ptpm", "tpm"])
def test_serving_default_skips_the_distributional_decoding(name):
    """A mean-decoded model's serving_default is traced without the quantile search
    (LowerBound/UpperBound of ptpm_tf.heads.tree.decoding); the distribution signature has it. A
    median-decoded model searches for its median only (LowerBound). A caller pays for
    what it asks."""
    path = tiny_exports()[name]
    search = {"LowerBound", "UpperBound"}
    assert "MatMul" in _signature_ops(path, "serving_default")
    if tiny_runs()[name].model.head.decoder == "mean":
        assert not _signature_ops(path, "serving_default") & search
        assert not _signature_ops(path, "regress") & search
        assert search <= _signature_ops(path, "distribution")
    else:
        assert _signature_ops(path, "serving_default") & search == {"LowerBound"}
        assert "LowerBound" in _signature_ops(path, "distribution")


def test_describe_tree_hand_made():
    """Depth 2 (nodes 0..6, leaves 3..6), node 1 pruned: the tree's leaves are 1, 5, 6."""
    pred = {"watch_time": np.float32(7.0), "watch_time_global": np.float32(8.0),
            "variance": np.float32(4.0), "prune_mask": np.array([1, 0]),
            "leaf_prob": np.array([0, 0.5, 0, 0, 0, 0.3, 0.2]), "tree_depth": np.float32(2)}
    text = describe_tree(pred, 2, leaf_bounds=[0.0, 1.0, 2.0, 5.0, 30.0],
                         node_value=[9, 1.2, 10, 0.5, 1.5, 3, 12])
    assert "3 leaves" in text and "pruned nodes" in text and "1 (level 1)" in text
    lines = [l.split() for l in text.splitlines()]
    leaves = [l for l in lines if l and l[0].isdigit()]
    assert [l[0] for l in leaves] == ["1", "5", "6"]
    assert leaves[0][2:4] == ["[0.00,", "2.00]"]  # node 1 covers leaves 3 and 4
    assert leaves[1][2:4] == ["[2.00,", "5.00]"]
    assert "sum of leaf probabilities: 1.0000" in text
    assert "served watch time 7.00 s" in text and "std 2.00 s" in text
    assert "global tree 8.00 s" in text
    plain = describe_tree(pred, 2)
    assert "[0.000, 0.500)" in plain and "[0.500, 0.750)" in plain


def test_describe_tree_on_served_prediction():
    run = tiny_runs()["ptpm"]
    out = _keras(run.model, run.model.encoder.raw_arrays(sample_rows(64)))
    i = int(np.flatnonzero(out["prune_mask"].any(axis=1))[0])
    info = json.loads((tiny_exports()["ptpm"] / "assets.extra" / INFO_FILE).read_text())["tree"]
    text = describe_tree({k: v[i] for k, v in out.items()}, info["depth"],
                         leaf_bounds=info["leaf_bounds"], node_value=info["node_value"],
                         min_prob=0.0)
    assert "pruned nodes" in text
    assert "sum of leaf probabilities: 1.0000" in text
    assert (f"served watch time {out['watch_time'][i]:.2f} s (the median; "
            f"mean E_T = {out['watch_time_mean'][i]:.2f}") in text
    with pytest.raises(ValueError):
        describe_tree({k: v[i] for k, v in out.items()}, DEPTH + 1)


@pytest.mark.slow
def test_baseline_head_exports_generically(tmp_path):
    """A non-tree head (D2Q, whose decoding reads the raw duration feature) exports
    through the same code: its own outputs, stock ops, the session loader agrees."""
    from ptpm_tf.config import ExperimentConfig
    from ptpm_tf.training import train
    runs = tiny_runs()
    run = train(ExperimentConfig.from_flat(model="d2q", rows=3000, epochs=1, batch_size=256), None,
                dataset=runs["ptpm"].dataset, split=runs["ptpm"].split, verbose=0)
    path = export_model(run.model, tmp_path, "d2q", warmup_batch_sizes=(1, 8))
    assert non_stock_ops(path) == set()
    info = json.loads((path / "assets.extra" / INFO_FILE).read_text())
    assert "tree" not in info and info["outputs"][0] == "watch_time"
    assert set(info["signatures"]) == {"serving_default", "regress"}  # no distribution
    feats = run.model.encoder.raw_arrays(sample_rows(16))
    with tf.compat.v1.Session(graph=tf.Graph()) as sess:
        sig = tf.compat.v1.saved_model.load(sess, ["serve"], str(path)).signature_def[
            "serving_default"]
        assert set(sig.outputs) == {"watch_time", *run.model.head.output_names}
        served = sess.run({k: v.name for k, v in sig.outputs.items()},
                          {sig.inputs[k].name: v for k, v in feats.items()})
    ref = _keras(run.model, feats)
    for k in served:
        np.testing.assert_allclose(served[k], ref[k], rtol=1e-5, atol=1e-4, err_msg=k)


@pytest.mark.parametrize("depth", [1, 2, 3, 6, 8])
def test_pruned_leaves_fast_form_matches_reference(depth):
    """TreeOps.pruned_leaves (one fused MatMul+BiasAdd+Relu, chosen for serving latency)
    equals the direct definition, eagerly and inside a graph (where grappler fuses it)."""
    from ptpm_tf.heads.tree.geometry import TreeGeometry, TreeOps
    g = TreeGeometry(depth)
    ops = TreeOps(g)
    rng = np.random.default_rng(depth)
    graph_fn = tf.function(ops.pruned_leaves)
    for p in (0.0, 0.2, 0.5, 1.0):
        a = (rng.random((64, g.n_internal - 1)) < p).astype(np.float32)
        pruned = np.concatenate([np.zeros((64, 1)), a, np.zeros((64, g.n_leaves))], axis=1)
        blocked = np.minimum(pruned @ g.strict_ancestor, 1.0)
        is_leaf = np.r_[np.zeros(g.n_internal), np.ones(g.n_leaves)]
        ref = (1.0 - blocked) * np.minimum(pruned + is_leaf, 1.0)
        np.testing.assert_array_equal(ops.pruned_leaves(tf.constant(a)).numpy(), ref)
        np.testing.assert_array_equal(graph_fn(tf.constant(a)).numpy(), ref)


def test_stale_temporaries_cleanup(tmp_path):
    """Leftovers of this host's dead exports go; another host's only once old."""
    from ptpm_tf.export import _tmp_name, remove_stale_temporaries
    base = tmp_path / "m"
    base.mkdir()
    host = _tmp_name().rsplit("-", 2)[0][len(TMP_PREFIX):]
    dead = base / f"{TMP_PREFIX}{host}-999999999-aaaa"
    alive = base / f"{TMP_PREFIX}{host}-{os.getpid()}-bbbb"
    foreign_new = base / f"{TMP_PREFIX}elsewhere-1-cccc"
    foreign_old = base / f"{TMP_PREFIX}elsewhere-2-dddd"
    for p in (dead, alive, foreign_new, foreign_old):
        p.mkdir()
    os.utime(foreign_old, (time.time() - 2 * 86400, time.time() - 2 * 86400))
    removed = remove_stale_temporaries(base)
    assert sorted(removed) == sorted([dead, foreign_old])
    assert alive.exists() and foreign_new.exists()

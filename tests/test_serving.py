"""gRPC serving (issue 5): the PredictionService test server answering from the exports,
the client (``ptpm-tf predict``), malformed requests, versions, the load test, and the
serving/ and docker-compose.yml configuration."""
import json
import re
import shutil
from pathlib import Path

import grpc
import numpy as np
import pytest
import tensorflow as tf
import yaml

from serving_helpers import DEPTH, sample_rows, tiny_exports, tiny_runs, with_unseen_ids
from ptpm_tf import cli
from ptpm_tf.export import export_model
from ptpm_tf.serving.client import ServingClient, make_predict_request
from ptpm_tf.serving.loadtest import format_report, run_loadtest
from ptpm_tf.serving.local_server import LocalModelServer, models_from_config

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def server():
    exports = tiny_exports()
    srv = LocalModelServer({"ptpm": exports["root"] / "ptpm", "tpm": exports["root"] / "tpm"})
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def client(server):
    with ServingClient(server.address, timeout=30) as c:
        yield c


def _keras(name, features):
    return {k: v.numpy() for k, v in tiny_runs()[name].model(features).items()}


def _features(n=16):
    return tiny_runs()["ptpm"].model.encoder.raw_arrays(sample_rows(n))


def test_warmup_replayed_and_status(server, client):
    # 1, 64 and 512 candidates on both Predict signatures, one Regress request
    assert server.repo._current["ptpm"].warmup_records == 7
    assert client.status("ptpm") == {1: "AVAILABLE"}
    assert client.wait_ready("tpm", timeout=5) == 1
    sigs = client.metadata("ptpm")
    assert set(sigs) == {"serving_default", "distribution", "regress"}
    assert sigs["regress"].method_name == "tensorflow/serving/regress"


@pytest.mark.parametrize("name", ["ptpm", "tpm"])
def test_predict_matches_keras(client, name):
    frame = sample_rows(24)
    served = client.predict_frame(name, frame)
    dist = client.predict_frame(name, frame, signature="distribution")
    assert not set(served) & set(dist)
    served.update(dist)
    ref = _keras(name, tiny_runs()[name].model.encoder.raw_arrays(frame))
    assert set(served) == set(ref)
    for k in ref:
        np.testing.assert_allclose(served[k], ref[k], rtol=1e-5, atol=1e-4, err_msg=k)
    assert served["leaf_prob"].shape == (24, 2 ** (DEPTH + 1) - 1)
    filtered = client.predict(name, _features(3), output_filter=["watch_time"])
    assert set(filtered) == {"watch_time"}


def test_unseen_ids_are_served_through_oov_buckets(client):
    unseen = with_unseen_ids(_features(8))
    served = client.predict("ptpm", unseen)
    assert np.all(np.isfinite(served["watch_time"])) and np.all(served["watch_time"] >= 0)
    np.testing.assert_allclose(served["watch_time"], _keras("ptpm", unseen)["watch_time"],
                               rtol=1e-5, atol=1e-4)
    # negative ids too
    neg = {**unseen, "user_id": -np.arange(1, 9, dtype=np.int64)}
    assert np.all(np.isfinite(client.predict("ptpm", neg)["watch_time"]))


def test_regress_api(client):
    feats = _features(5)
    values = client.regress("ptpm", feats)
    np.testing.assert_allclose(values, _keras("ptpm", feats)["watch_time"], rtol=1e-5, atol=1e-4)


def _expect_error(fn, code, *fragments):
    with pytest.raises(grpc.RpcError) as info:
        fn()
    err = info.value
    assert err.code() == code, (err.code(), err.details())
    for fragment in fragments:
        assert fragment in err.details(), (fragment, err.details())
    return err.details()


def test_malformed_requests_get_invalid_argument(client):
    good = _features(4)
    INVALID = grpc.StatusCode.INVALID_ARGUMENT
    missing = {k: v for k, v in good.items() if k != "duration"}
    _expect_error(lambda: client.predict("ptpm", missing), INVALID,
                  "missing input(s) ['duration']", "duration: float32 [?]")
    wrong_dtype = {**good, "user_id": good["user_id"].astype(np.float32)}
    _expect_error(lambda: client.predict("ptpm", wrong_dtype), INVALID,
                  'input "user_id" has dtype float32', "expects int64")
    strings = {**good, "item_id": np.array(["a", "b", "c", "d"], dtype=object)}
    _expect_error(lambda: client.predict("ptpm", strings), INVALID, 'input "item_id"', "string")
    wrong_shape = {**good, "duration": np.ones((4, 2), np.float32)}
    _expect_error(lambda: client.predict("ptpm", wrong_shape), INVALID,
                  'input "duration" has shape [4, 2]', "expects [?]")
    scalar = {**good, "duration": np.float32(3.0)}
    _expect_error(lambda: client.predict("ptpm", scalar), INVALID, 'input "duration" has shape []')
    ragged = {**good, "duration": np.ones(5, np.float32)}
    _expect_error(lambda: client.predict("ptpm", ragged), INVALID, "same batch size")
    extra = {**good, "colour": np.ones(4, np.float32)}
    _expect_error(lambda: client.predict("ptpm", extra), INVALID, "unknown input(s) ['colour']")
    _expect_error(lambda: client.predict("ptpm", good, signature="rank"), INVALID,
                  'signature key "rank" not found')
    _expect_error(lambda: client.predict("ptpm", good, output_filter=["nope"]), INVALID,
                  "output_filter")
    # a Predict-shaped request sent to the Regress API, and a regression on the wrong signature
    _expect_error(lambda: client.regress("ptpm", good, signature="serving_default"), INVALID,
                  "tensorflow/serving/regress")
    # tf.Example without a required (categorical) feature: the graph's parse error
    no_user = {k: v for k, v in good.items() if k != "user_id"}
    _expect_error(lambda: client.regress("ptpm", no_user), INVALID, "user_id")
    # a tensor whose declared shape does not match its content
    req = make_predict_request("ptpm", good)
    req.inputs["duration"].tensor_content = req.inputs["duration"].tensor_content[:-4]
    _expect_error(lambda: client.prediction.Predict(req, timeout=10), INVALID, 'input "duration"')
    # the server is still up and answering
    assert client.predict("ptpm", good)["watch_time"].shape == (4,)


def test_unknown_model_and_version_get_not_found(client):
    good = _features(2)
    _expect_error(lambda: client.predict("dml", good), grpc.StatusCode.NOT_FOUND,
                  "Servable not found", "dml")
    _expect_error(lambda: client.predict("ptpm", good, version=9), grpc.StatusCode.NOT_FOUND,
                  "Specific(ptpm, 9)")
    _expect_error(lambda: client.status("dml"), grpc.StatusCode.NOT_FOUND)


@pytest.mark.slow
def test_newest_version_is_served(tmp_path):
    """A new version replaces the served one once loaded; unfinished exports (hidden
    temporary folders) and versions that fail to load are skipped."""
    runs = tiny_runs()
    base = tmp_path / "m"
    shutil.copytree(tiny_exports()["tpm"], base / "1")
    feats = _features(6)
    with LocalModelServer({"m": base}, poll_seconds=0.0) as srv, ServingClient(srv.address) as c:
        first = c.predict("m", feats)
        np.testing.assert_allclose(first["watch_time"], _keras("tpm", feats)["watch_time"],
                                   rtol=1e-5, atol=1e-4)
        half = base / ".tmp-export-otherhost-1-dead"  # what a killed export leaves
        half.mkdir()
        (half / "saved_model.pb").write_bytes(b"truncated")
        second = export_model(runs["ptpm"].model, tmp_path, "m", warmup_batch_sizes=(1,))
        assert second.name == "2"
        assert c.status("m") == {2: "AVAILABLE"}
        np.testing.assert_allclose(c.predict("m", feats)["watch_time"],
                                   _keras("ptpm", feats)["watch_time"], rtol=1e-5, atol=1e-4)
        broken = base / "3"
        broken.mkdir()
        (broken / "saved_model.pb").write_bytes(b"not a saved model")
        assert c.status("m") == {2: "AVAILABLE"}  # 3 failed to load; 2 keeps serving
        np.testing.assert_allclose(c.predict("m", feats)["watch_time"],
                                   _keras("ptpm", feats)["watch_time"], rtol=1e-5, atol=1e-4)


def test_loadtest_reports_percentiles_and_throughput(server):
    results = run_loadtest(server.address, ["ptpm", "tpm"], batch_sizes=(1, 32),
                           concurrency=(2,), requests=12, warmup=2, rounds=2, log=None)
    assert [(r.model, r.batch_size) for r in results] == [
        ("ptpm", 1), ("tpm", 1), ("ptpm", 32), ("tpm", 32)]
    for r in results:
        assert r.errors == 0 and r.requests == 12
        assert 0 < r.p50_ms <= r.p95_ms <= r.p99_ms
        assert r.requests_per_s > 0 and r.candidates_per_s == pytest.approx(
            r.requests_per_s * r.batch_size)
    table = format_report(results)
    assert "p50 / tpm" in table and table.count("\n") == 5


def test_in_process_latency_of_both_signatures():
    """The serving-latency benchmark's in-process harness and its two report tables."""
    from ptpm_tf.benchmarks.serving_latency import (format_in_process, format_signature_cost,
                                                    measure_in_process)
    from ptpm_tf.export import DISTRIBUTION_SIGNATURE, SERVING_SIGNATURE
    exports = tiny_exports()
    results = measure_in_process({"ptpm": exports["ptpm"], "tpm": exports["tpm"]},
                                 sample_rows(40), batch_sizes=(1, 8), iters=3, warmup=1,
                                 encoder=tiny_runs()["ptpm"].model.encoder,
                                 signatures=(SERVING_SIGNATURE, DISTRIBUTION_SIGNATURE))
    keys = {(r["model"], r["signature"], r["batch_size"]) for r in results}
    assert keys == {(m, s, b) for m in ("ptpm", "tpm")
                    for s in (SERVING_SIGNATURE, DISTRIBUTION_SIGNATURE) for b in (1, 8)}
    assert all(0 < r["p50_ms"] <= r["p99_ms"] and r["iters"] == 3 for r in results)
    by = {(r["model"], r["signature"], r["batch_size"]): r for r in results}
    table = format_in_process(results)
    ratio = by["ptpm", SERVING_SIGNATURE, 8]["p50_ms"] / by["tpm", SERVING_SIGNATURE, 8]["p50_ms"]
    assert "| 1 | 8 | " in table and f"| {ratio:.3f} |" in table
    cost = format_signature_cost(results)
    ratio = (by["tpm", DISTRIBUTION_SIGNATURE, 1]["p50_ms"]
             / by["tpm", SERVING_SIGNATURE, 1]["p50_ms"])
    assert "| tpm | 1 | " in cost and cost.rstrip().splitlines()[-2].endswith(f"| {ratio:.3f} |")


def test_cli_predict_and_loadtest(server, tmp_path, capsys):
    frame = sample_rows(5)
    csv = tmp_path / "rows.csv"
    frame.drop(columns=["watch_time"]).to_csv(csv, index=False)
    out_json = tmp_path / "out.json"
    rc = cli.main(["predict", "--server", server.address, "--name", "ptpm", "--input", str(csv),
                   "--tree", "--export-dir", str(tiny_exports()["root"]),
                   "--output", str(out_json)])
    text = capsys.readouterr().out
    assert rc == 0, text
    assert "Personalised tree" in text and "label interval (s)" in text
    served = json.loads(out_json.read_text())
    ref = _keras("ptpm", tiny_runs()["ptpm"].model.encoder.raw_arrays(frame))
    np.testing.assert_allclose(served["watch_time"], ref["watch_time"], rtol=1e-5, atol=1e-4)

    bad = tmp_path / "bad.csv"
    frame.drop(columns=["duration"]).to_csv(bad, index=False)
    assert cli.main(["predict", "--server", server.address, "--name", "ptpm",
                     "--input", str(bad)]) == 2
    assert "lacks column(s) ['duration']" in capsys.readouterr().err
    assert cli.main(["predict", "--server", server.address, "--name", "nope",
                     "--input", str(csv)]) == 1
    assert "NOT_FOUND" in capsys.readouterr().err

    report = tmp_path / "lt.json"
    rc = cli.main(["loadtest", "--server", server.address, "--name", "ptpm", "--name", "tpm",
                   "--batch-sizes", "1,8", "--concurrency", "1", "--requests", "6",
                   "--warmup", "1", "--report", str(report)])
    assert rc == 0
    saved = json.loads(report.read_text())
    assert len(saved["results"]) == 4 and saved["settings"]["models"] == ["ptpm", "tpm"]
    assert "p99 ms" in report.with_suffix(".md").read_text()
    capsys.readouterr()
    rc = cli.main(["loadtest", "--server", server.address, "--name", "ptpm",
                   "--signature", "distribution", "--batch-sizes", "4", "--concurrency", "1",
                   "--requests", "3", "--warmup", "1", "--report", str(report)])
    assert rc == 0
    saved = json.loads(report.read_text())
    assert saved["settings"]["signature"] == "distribution"
    assert saved["results"][0]["errors"] == 0
    assert cli.main(["loadtest", "--server", server.address, "--name", "ptpm",
                     "--signature", "rank", "--requests", "1"]) == 2
    assert "has no signature 'rank'" in capsys.readouterr().err


def test_serving_config_files(tmp_path):
    models = models_from_config(ROOT / "serving" / "models.config", models_root=tmp_path)
    assert models == {"ptpm": tmp_path / "ptpm", "tpm": tmp_path / "tpm"}
    batching = (ROOT / "serving" / "batching_parameters.txt").read_text()
    values = dict(re.findall(r"^(\w+) \{ value: (\d+) \}", batching, re.M))
    assert int(values["max_batch_size"]) >= 512 and int(values["num_batch_threads"]) >= 1
    assert int(values["batch_timeout_micros"]) > 0

    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    serving = compose["services"]["serving"]
    tf_minor = ".".join(tf.__version__.split(".")[:2])
    assert re.fullmatch(rf"tensorflow/serving:{re.escape(tf_minor)}\.\d+(@sha256:[0-9a-f]{{64}})?",
                        serving["image"])
    flags = " ".join(serving["command"])
    assert "--model_config_file=/serving/models.config" in flags
    assert "--batching_parameters_file=/serving/batching_parameters.txt" in flags
    assert "./export:/models:ro" in serving["volumes"]
    assert "AVAILABLE" in " ".join(serving["healthcheck"]["test"])
    loadtest = compose["services"]["loadtest"]
    assert loadtest["depends_on"]["serving"]["condition"] == "service_healthy"
    assert loadtest["build"]["dockerfile"] == "serving/Dockerfile"
    assert (ROOT / "serving" / "Dockerfile").exists()
    assert "--server=serving:8500" in loadtest["command"]

"""Bad requests at the serving boundary: the checks inside the exported graph
(:func:`ptpm_tf.export.checked_inputs`, :func:`~ptpm_tf.export.checked_outputs`) and the
test server's status codes. Every response is OK with finite outputs, INVALID_ARGUMENT
naming what is wrong, or NOT_FOUND; never a NaN answered as OK.

The last test fuzzes the server with Hypothesis: random malformed ``PredictRequest``s
(bounded: 80 derandomized examples, no per-example deadline)."""
import os

import grpc
import numpy as np
import pytest
import tensorflow as tf
from hypothesis import HealthCheck, given, settings, strategies as st
from tensorflow.core.framework.tensor_pb2 import TensorProto
from tensorflow_serving.apis import (input_pb2, model_pb2, predict_pb2,
                                     prediction_service_pb2_grpc, regression_pb2)

from serving_helpers import sample_rows, tiny_exports, tiny_runs
from ptpm_tf.export import P_COMPLETE_UNKNOWN, non_stock_ops, to_examples
from ptpm_tf.serving.local_server import LocalModelServer

OK, INVALID, NOT_FOUND = (grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT,
                          grpc.StatusCode.NOT_FOUND)


@pytest.fixture(scope="module")
def stub():
    exports = tiny_exports()
    srv = LocalModelServer({"ptpm": exports["root"] / "ptpm", "tpm": exports["root"] / "tpm"})
    channel = grpc.insecure_channel(srv.address)
    yield prediction_service_pb2_grpc.PredictionServiceStub(channel)
    channel.close()
    srv.stop()


def features(n=6):
    return tiny_runs()["ptpm"].model.encoder.raw_arrays(sample_rows(n))


def predict(stub, inputs, name="ptpm", signature="serving_default", output_filter=()):
    """(status code, outputs or error details) of one Predict call."""
    req = predict_pb2.PredictRequest(model_spec=model_pb2.ModelSpec(
        name=name, signature_name=signature), output_filter=list(output_filter))
    for k, v in inputs.items():
        req.inputs[k].CopyFrom(v if isinstance(v, TensorProto) else tf.make_tensor_proto(v))
    try:
        resp = stub.Predict(req, timeout=60)
    except grpc.RpcError as err:
        return err.code(), err.details()
    return OK, {k: tf.make_ndarray(v) for k, v in resp.outputs.items()}


def regress(stub, feats, name="ptpm"):
    req = regression_pb2.RegressionRequest(
        model_spec=model_pb2.ModelSpec(name=name, signature_name="regress"),
        input=input_pb2.Input(example_list=input_pb2.ExampleList(examples=to_examples(feats))))
    try:
        resp = stub.Regress(req, timeout=60)
    except grpc.RpcError as err:
        return err.code(), err.details()
    return OK, np.array([r.value for r in resp.result.regressions])


def assert_finite(outputs):
    for k, v in outputs.items():
        if np.issubdtype(v.dtype, np.floating):
            assert np.isfinite(v).all(), (k, v)


@pytest.mark.parametrize("value", [np.inf, -np.inf])
@pytest.mark.parametrize("column", ["duration", "user_tenure_days"])
def test_infinite_numeric_input_is_invalid_argument_naming_it(stub, column, value):
    """``regress`` used to answer OK with watch_time NaN; Predict failed in a Gather with
    an index of -2**31 that named no input."""
    feats = features()
    feats[column][2] = value
    for code, details in (predict(stub, feats), regress(stub, feats)):
        assert code == INVALID, details
        shown = details.split("[input(s) holding inf or -inf:] [")[1].split("]")[0]
        assert shown.split() == [column], details


def test_missing_duration_gives_p_complete_unknown(stub):
    """A NaN duration (missing) used to give p_complete NaN with status OK."""
    feats = features()
    feats["duration"][[1, 4]] = np.nan
    code, out = predict(stub, feats)
    assert code == OK, out
    assert_finite(out)
    code, dist = predict(stub, feats, signature="distribution")  # where p_complete is served
    assert code == OK, dist
    assert_finite(dist)
    p = dist["p_complete"]
    assert p[1] == p[4] == P_COMPLETE_UNKNOWN
    keep = [0, 2, 3, 5]
    assert ((p[keep] >= 0) & (p[keep] <= 1)).all()
    ref = {k: v.numpy() for k, v in tiny_runs()["ptpm"].model(features()).items()}
    np.testing.assert_allclose(p[keep], ref["p_complete"][keep], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out["watch_time"], tiny_runs()["ptpm"].model(feats)
                               ["watch_time"].numpy(), rtol=1e-5)
    code, values = regress(stub, feats)
    assert code == OK and np.isfinite(values).all()


def test_huge_finite_numbers_are_answered_finite_or_refused(stub):
    feats = features()
    for column in ("duration", "user_tenure_days", "item_popularity"):
        feats[column][:] = np.float32(3.0e38)
    feats["upload_age_days"][:] = np.float32(-3.0e38)
    code, out = predict(stub, feats)
    assert code in (OK, INVALID), out
    if code == OK:
        assert_finite(out)


def test_non_utf8_bytes_to_the_regress_signature(stub):
    """Used to be INTERNAL (a UnicodeDecodeError in the server)."""
    code, details = predict(stub, {"inputs": np.array([b"\xff\xfe\x00abc", b"\x80"],
                                                      dtype=object)}, signature="regress")
    assert code == INVALID, details


@pytest.mark.parametrize("where", ["model", "signature", "input", "output_filter"])
def test_huge_names_get_their_own_status(stub, where):
    """Names of 10 KB or more used to give RESOURCE_EXHAUSTED: the whole name was echoed
    into the status message, which travels in a header."""
    big = "n" * 20_000
    feats = features()
    kwargs = {}
    if where == "model":
        kwargs["name"] = big
    elif where == "signature":
        kwargs["signature"] = big
    elif where == "input":
        feats[big] = feats["duration"]
    else:
        kwargs["output_filter"] = [big]
    code, details = predict(stub, feats, **kwargs)
    assert code == (NOT_FOUND if where == "model" else INVALID), details
    assert len(details) < 3000


def test_a_non_finite_output_fails_the_call_through_the_session_loader(tmp_path):
    """The output check gates nothing (automatic control dependencies run it): a
    SavedModel served by TF Serving's loader path still fails the call, naming the
    output, instead of answering NaN or inf."""
    from ptpm_tf.export import checked_inputs, checked_outputs
    from ptpm_tf.serving.local_server import Servable

    class Module(tf.Module):
        @tf.function(input_signature=[{"x": tf.TensorSpec([None], tf.float32, name="x")}])
        def serve(self, features):
            checked = checked_inputs(features, ["x"])
            return checked_outputs({"y": tf.exp(checked["x"]), "n": tf.shape(checked["x"])},
                                   checked)

    module = Module()
    tf.saved_model.save(module, str(tmp_path / "1"),
                        signatures={"serving_default": module.serve.get_concrete_function()})
    servable = Servable("m", 1, tmp_path / "1")
    try:
        sig = servable.signatures["serving_default"]
        out = servable.run(sig, {"x": np.array([0.0, 1.0], np.float32)}, ["y"])
        np.testing.assert_allclose(out["y"], [1.0, np.e], rtol=1e-6)
        with pytest.raises(tf.errors.InvalidArgumentError,
                           match=r"non-finite output\(s\):\] \[y\]"):
            servable.run(sig, {"x": np.array([0.0, 100.0], np.float32)}, ["y"])
        with pytest.raises(tf.errors.InvalidArgumentError, match=r"inf or -inf:\] \[x\]"):
            servable.run(sig, {"x": np.array([np.inf], np.float32)}, ["n"])
    finally:
        servable.close()


def test_checks_are_stock_ops():
    """The checks are ``Assert`` ops: TF Serving runs them as the test server does."""
    from ptpm_tf.export import graph_ops
    path = tiny_exports()["ptpm"]
    assert "Assert" in graph_ops(path)
    assert non_stock_ops(path) == set()


# ----------------------------------------------------------------------- fuzzing

FLOATS = st.floats(width=32, allow_nan=True, allow_infinity=True)


def recast(values, dtype):
    """``values`` as another dtype a tensor proto can hold (text <-> numbers too)."""
    values = np.asarray(values)
    if dtype is object:
        return np.array([str(v).encode() for v in values.reshape(-1)],
                        dtype=object).reshape(values.shape)
    if values.dtype == object:
        return np.zeros(values.shape, dtype)
    return values.astype(dtype)


@st.composite
def malformed_requests(draw):
    """A valid request for n rows with 1-3 random defects: missing, extra or renamed
    inputs, wrong dtypes, ranks or batch sizes, arbitrary numbers (NaN, inf, extremes),
    arbitrary ids and bytes, truncated tensor content, unknown model, signature or
    output names, and raw bytes sent to the regress signature."""
    n = draw(st.integers(0, 5))
    feats = features(max(n, 1))
    inputs = {k: (v[:n] if n else v[:0]) for k, v in feats.items()}
    name, signature, output_filter = "ptpm", "serving_default", []
    truncate = {}
    numeric = [k for k, v in inputs.items() if v.dtype == np.float32]
    ids = [k for k in inputs if k not in numeric]
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from([
            "numbers", "numbers", "ids", "drop", "extra", "dtype", "rank", "batch",
            "truncate", "model", "signature", "filter", "regress_bytes"]))
        key = draw(st.sampled_from(sorted(inputs))) if inputs else None
        if kind == "numbers" and numeric:
            col = draw(st.sampled_from(numeric))
            inputs[col] = np.array(draw(st.lists(FLOATS, min_size=n, max_size=n)), np.float32)
        elif kind == "ids" and ids:
            col = draw(st.sampled_from(ids))
            inputs[col] = np.array(draw(st.lists(st.integers(-2 ** 63, 2 ** 63 - 1),
                                                 min_size=n, max_size=n)), np.int64)
        elif kind == "drop" and key:
            inputs.pop(key)
        elif kind == "extra":
            inputs[draw(st.text(min_size=1, max_size=30))] = np.zeros(n, np.float32)
        elif kind == "dtype" and key:
            inputs[key] = recast(inputs[key], draw(st.sampled_from(
                [np.float64, np.int32, np.float32, np.int64, object])))
        elif kind == "rank" and key:
            inputs[key] = draw(st.sampled_from([
                np.asarray(inputs[key]).reshape(-1, 1), np.float32(1.0),
                np.zeros((n, 2), np.float32)]))
        elif kind == "batch" and key:
            values = np.atleast_1d(inputs[key])
            inputs[key] = np.concatenate([values, values[:1]]) if len(values) else \
                np.zeros(2, values.dtype)
        elif kind == "truncate" and key:
            truncate[key] = draw(st.floats(0.0, 0.99))
        elif kind == "model":
            name = draw(st.sampled_from(["tpm", "nope", "", "p" * 9000]))
        elif kind == "signature":
            signature = draw(st.sampled_from(["", "regress", "unknown", "s" * 9000]))
        elif kind == "filter":
            output_filter = draw(st.lists(st.sampled_from(
                ["watch_time", "p_complete", "quantiles", "nope", "o" * 9000]), max_size=3))
        elif kind == "regress_bytes":
            signature = "regress"
            inputs = {"inputs": np.array(draw(st.lists(st.binary(max_size=60), min_size=1,
                                                       max_size=4)), dtype=object)}
    for key, share in truncate.items():  # last: the other defects edit arrays
        if key in inputs:
            proto = tf.make_tensor_proto(inputs[key])
            if proto.tensor_content:
                proto.tensor_content = proto.tensor_content[:int(share * len(
                    proto.tensor_content))]
            inputs[key] = proto
    return inputs, name, signature, output_filter


@settings(max_examples=int(os.environ.get("FUZZ_EXAMPLES", 80)), deadline=None,
          derandomize="FUZZ_EXAMPLES" not in os.environ,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(request=malformed_requests())
def test_fuzzed_predict_requests(stub, request):
    inputs, name, signature, output_filter = request
    code, out = predict(stub, inputs, name=name, signature=signature,
                        output_filter=output_filter)
    assert code in (OK, INVALID, NOT_FOUND), (code, out)
    if code == OK:
        assert_finite(out)
    else:
        assert len(out) < 3000

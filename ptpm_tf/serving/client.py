"""gRPC client for TF Serving (``tensorflow_serving.apis``), used by ``ptpm-tf predict``
and ``ptpm-tf loadtest``.

The client asks the server for the model's signature (GetModelMetadata) and converts a
table of raw features to exactly the dtypes it expects (int64 or string ids, float32
numbers), so a CSV read by pandas can be sent as it is. Server errors surface as
``grpc.RpcError`` (``.code()``, ``.details()``).
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Dict, Iterable, Mapping, Optional, Sequence, Union

import grpc
import numpy as np
import pandas as pd

import ptpm_tf  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)
import tensorflow as tf
from tensorflow_serving.apis import (get_model_metadata_pb2, get_model_status_pb2, input_pb2,
                                     model_pb2, model_service_pb2_grpc, predict_pb2,
                                     prediction_service_pb2_grpc, regression_pb2)

from ptpm_tf.export import REGRESS_SIGNATURE, SERVING_SIGNATURE, to_examples

MAX_MESSAGE_BYTES = 256 * 1024 * 1024


def model_spec(name: str, signature: str = SERVING_SIGNATURE,
               version: Optional[int] = None) -> model_pb2.ModelSpec:
    spec = model_pb2.ModelSpec(name=name, signature_name=signature)
    if version is not None:
        spec.version.value = int(version)
    return spec


def make_predict_request(name: str, features: Mapping[str, np.ndarray],
                         signature: str = SERVING_SIGNATURE, version: Optional[int] = None,
                         output_filter: Sequence[str] = ()) -> predict_pb2.PredictRequest:
    """A PredictRequest with one tensor per feature (arrays sent with their own dtype)."""
    request = predict_pb2.PredictRequest(model_spec=model_spec(name, signature, version),
                                         output_filter=list(output_filter))
    for key, arr in features.items():
        request.inputs[key].CopyFrom(tf.make_tensor_proto(np.asarray(arr)))
    return request


def decode_outputs(outputs) -> Dict[str, np.ndarray]:
    """Response tensors (a map of TensorProto) as NumPy arrays."""
    return {k: tf.make_ndarray(v) for k, v in outputs.items()}


def read_table(path: Union[str, Path]) -> pd.DataFrame:
    """Raw feature rows from CSV/TSV, Parquet or JSON (records or JSON lines)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"input file {path} does not exist")
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        return pd.read_parquet(path)
    if suffix in (".json", ".jsonl", ".ndjson"):
        text = path.read_text().lstrip()
        return pd.read_json(path, lines=not text.startswith("["))
    return pd.read_csv(path, sep="\t" if suffix == ".tsv" else ",")


def input_specs(signature_def) -> Dict[str, tf.DType]:
    """Input name -> dtype of a SignatureDef."""
    return {k: tf.dtypes.as_dtype(v.dtype) for k, v in signature_def.inputs.items()}


def features_from_frame(frame: pd.DataFrame, specs: Mapping[str, tf.DType]) -> Dict[str, np.ndarray]:
    """The columns a signature needs, converted to its dtypes; a clear error for a column
    that is missing or does not convert (e.g. text in an int64 id column)."""
    missing = [k for k in specs if k not in frame.columns]
    if missing:
        raise ValueError(f"input lacks column(s) {missing}; the model expects "
                         + ", ".join(f"{k} ({d.name})" for k, d in specs.items()))
    out = {}
    for name, dtype in specs.items():
        col = frame[name]
        try:
            if dtype == tf.string:
                out[name] = col.astype(str).to_numpy(dtype=object)
            elif dtype.is_integer:
                if col.isna().any():
                    raise ValueError("has empty values")
                values = pd.to_numeric(col, errors="raise")
                if not np.all(np.asarray(values) == np.round(np.asarray(values, np.float64))):
                    raise ValueError("has non-integer values")
                out[name] = np.asarray(values).astype(dtype.as_numpy_dtype)
            else:
                out[name] = pd.to_numeric(col, errors="raise").to_numpy(dtype.as_numpy_dtype)
        except (ValueError, TypeError) as err:
            raise ValueError(f"column {name!r} cannot be sent as {dtype.name}: {err}") from None
    return out


class ServingClient:
    """PredictionService and ModelService stubs on one channel to ``server`` (host:port)."""

    def __init__(self, server: str, timeout: float = 30.0):
        self.server, self.timeout = server, timeout
        self.channel = grpc.insecure_channel(server, options=[
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES)])
        self.prediction = prediction_service_pb2_grpc.PredictionServiceStub(self.channel)
        self.models = model_service_pb2_grpc.ModelServiceStub(self.channel)

    def close(self) -> None:
        self.channel.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def status(self, name: str) -> Dict[int, str]:
        """Version -> state name (``AVAILABLE``, ``LOADING``, ...)."""
        req = get_model_status_pb2.GetModelStatusRequest(model_spec=model_pb2.ModelSpec(name=name))
        resp = self.models.GetModelStatus(req, timeout=self.timeout)
        state = get_model_status_pb2.ModelVersionStatus.State
        return {s.version: state.Name(s.state) for s in resp.model_version_status}

    def wait_ready(self, name: str, timeout: float = 60.0, interval: float = 0.5) -> int:
        """Block until a version of ``name`` is AVAILABLE; return that version."""
        deadline = time.monotonic() + timeout
        last = None
        while True:
            try:
                available = [v for v, s in self.status(name).items() if s == "AVAILABLE"]
                if available:
                    return max(available)
                last = "no version AVAILABLE yet"
            except grpc.RpcError as err:
                last = f"{err.code().name}: {err.details()}"
            if time.monotonic() > deadline:
                raise TimeoutError(f"model {name!r} not available at {self.server} after "
                                   f"{timeout:.0f}s ({last})")
            time.sleep(interval)

    def metadata(self, name: str, version: Optional[int] = None) -> Dict[str, object]:
        """Signature key -> SignatureDef of the served version."""
        req = get_model_metadata_pb2.GetModelMetadataRequest(
            model_spec=model_spec(name, "", version), metadata_field=["signature_def"])
        resp = self.prediction.GetModelMetadata(req, timeout=self.timeout)
        sig_map = get_model_metadata_pb2.SignatureDefMap()
        resp.metadata["signature_def"].Unpack(sig_map)
        return dict(sig_map.signature_def)

    def input_specs(self, name: str, signature: str = SERVING_SIGNATURE) -> Dict[str, tf.DType]:
        sigs = self.metadata(name)
        if signature not in sigs:
            raise ValueError(f"model {name!r} has no signature {signature!r} "
                             f"(it has {sorted(sigs)})")
        return input_specs(sigs[signature])

    def predict(self, name: str, features: Mapping[str, np.ndarray],
                signature: str = SERVING_SIGNATURE, version: Optional[int] = None,
                output_filter: Sequence[str] = ()) -> Dict[str, np.ndarray]:
        """Outputs of ``signature`` for a batch of raw features (arrays sent as given)."""
        request = make_predict_request(name, features, signature, version, output_filter)
        return decode_outputs(self.prediction.Predict(request, timeout=self.timeout).outputs)

    def predict_frame(self, name: str, frame: pd.DataFrame,
                      signature: str = SERVING_SIGNATURE) -> Dict[str, np.ndarray]:
        """Predict for the rows of a table, converting columns to the signature's dtypes."""
        return self.predict(name, features_from_frame(frame, self.input_specs(name, signature)),
                            signature)

    def regress(self, name: str, examples: Union[Mapping[str, np.ndarray], Iterable[tf.train.Example]],
                signature: str = REGRESS_SIGNATURE, version: Optional[int] = None) -> np.ndarray:
        """Regress API on ``tf.Example``s (or a dict of feature arrays, one Example a row)."""
        if isinstance(examples, Mapping):
            examples = to_examples(examples)
        request = regression_pb2.RegressionRequest(
            model_spec=model_spec(name, signature, version),
            input=input_pb2.Input(example_list=input_pb2.ExampleList(examples=list(examples))))
        resp = self.regress_raw(request)
        return np.array([r.value for r in resp.result.regressions], np.float32)

    def regress_raw(self, request: regression_pb2.RegressionRequest):
        return self.prediction.Regress(request, timeout=self.timeout)

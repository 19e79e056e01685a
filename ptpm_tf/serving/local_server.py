"""A PredictionService test server that answers from exported SavedModels.

``tensorflow_model_server`` cannot be installed from PyPI, so the client and the load
test are tested against this server. It follows the model server where the tests look:

- **Loading**: each model has a base path (``export/<name>``); the highest all-digit
  version directory is loaded through the TF1 session loader
  (``tf.compat.v1.saved_model.load`` in a ``tf.compat.v1.Session``: the SavedModelBundle
  path of TF Serving), its init op run and its warm-up file
  (``assets.extra/tf_serving_warmup_requests``) replayed; a failing warm-up fails the load.
  The base path is polled (``poll_seconds``); a newer version replaces the served one once
  it has loaded, a version that fails to load leaves the previous one serving. Temporary
  directories of unfinished exports (non-numeric names) are ignored.
- **Predict**: any signature; ``output_filter`` honoured. **Regress**: signatures of
  method ``tensorflow/serving/regress`` (input ``inputs``, output ``outputs``).
  **GetModelMetadata** (``signature_def``) and ModelService **GetModelStatus**.
  Classify and MultiInference are not implemented (UNIMPLEMENTED).
- **Errors** never crash the server: unknown model or version -> NOT_FOUND; unknown
  signature, missing or extra inputs, wrong dtype, wrong rank or shape, inputs of
  different batch sizes, undecodable tensors, malformed examples, values the graph's own
  checks reject (:func:`ptpm_tf.export.checked_inputs`) -> INVALID_ARGUMENT with a
  message that names the input and what the signature expects; anything else -> INTERNAL
  with the exception's text. Names sent by the client are echoed cut to 80 characters
  and a status message to :data:`MAX_STATUS_MESSAGE`, so that a huge name is still
  answered with its own status, not RESOURCE_EXHAUSTED.

It is a test and development tool, not a production server (no batching, Python
threads): use ``docker compose up`` for that. Run it by hand with
``python -m ptpm_tf.serving.local_server --model_name ptpm --model_base_path export/ptpm``
or ``--model_config_file serving/models.config --models_root export``.
"""
from __future__ import annotations

import argparse
import logging
import sys
import threading
import time
from concurrent import futures
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence

import grpc
import numpy as np

import ptpm_tf  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)
import tensorflow as tf
from tensorflow_serving.apis import (get_model_metadata_pb2, get_model_status_pb2,
                                     model_pb2, model_service_pb2_grpc, predict_pb2,
                                     prediction_log_pb2, prediction_service_pb2_grpc,
                                     regression_pb2)

from ptpm_tf.data.dataset import one_line
from ptpm_tf.export import (PREDICT_METHOD, REGRESS_INPUT, REGRESS_METHOD, REGRESS_OUTPUT,
                            SERVING_SIGNATURE, WARMUP_FILE, list_versions)

log = logging.getLogger("ptpm_tf.test_server")
INIT_OP_KEY = "__saved_model_init_op"
MAX_MESSAGE_BYTES = 256 * 1024 * 1024
PREDICT_LIKE = (PREDICT_METHOD, REGRESS_METHOD, "tensorflow/serving/classify")


class ServingError(Exception):
    """A request error with its gRPC status code."""

    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(message)
        self.code, self.message = code, message


#: longest status message: gRPC carries it in a header (about 8 KB in all), so a longer one
#: would turn any error into RESOURCE_EXHAUSTED
MAX_STATUS_MESSAGE = 2000


def _invalid(message: str) -> ServingError:
    return ServingError(grpc.StatusCode.INVALID_ARGUMENT, message)


def _name(text: str) -> str:
    """A name sent by the client, as echoed in a message (cut: it may be megabytes)."""
    return one_line(text, 80)


def _names(names: Sequence[str]) -> str:
    shown = [_name(n) for n in list(names)[:10]]
    return str(shown) + (f" and {len(names) - 10} more" if len(names) > 10 else "")


def _clip(message: str) -> str:
    if len(message) <= MAX_STATUS_MESSAGE:
        return message
    cut = len(message) - MAX_STATUS_MESSAGE
    return f"{message[:MAX_STATUS_MESSAGE]}... ({cut} more characters)"


def _dtype_name(enum: int) -> str:
    try:
        return tf.dtypes.as_dtype(enum).name
    except TypeError:
        return f"dtype#{enum}"


def _shape_of(shape_proto) -> Optional[List[int]]:
    """Signature shape as a list (-1 = any size), ``None`` for unknown rank."""
    if shape_proto.unknown_rank:
        return None
    return [d.size for d in shape_proto.dim]


def _fmt_shape(shape: Optional[Sequence[int]]) -> str:
    if shape is None:
        return "any shape"
    return "[" + ", ".join("?" if d < 0 else str(d) for d in shape) + "]"


def describe_signature(sig) -> str:
    return ", ".join(f"{k}: {_dtype_name(v.dtype)} {_fmt_shape(_shape_of(v.tensor_shape))}"
                     for k, v in sorted(sig.inputs.items()))


class Servable:
    """One loaded version: a session holding the SavedModel's graph and its signatures."""

    def __init__(self, name: str, version: int, path: Path):
        self.name, self.version, self.path = name, version, Path(path)
        self.graph = tf.Graph()
        self.session = tf.compat.v1.Session(graph=self.graph)
        from tensorflow.python.util import deprecation
        with self.graph.as_default(), deprecation.silence():
            meta = tf.compat.v1.saved_model.load(self.session, ["serve"], str(self.path))
        self.signatures = {k: v for k, v in meta.signature_def.items() if k != INIT_OP_KEY}
        self.warmup_records = 0

    def close(self) -> None:
        self.session.close()

    # -- request handling --------------------------------------------------------------
    def signature(self, key: str):
        key = key or SERVING_SIGNATURE
        if key not in self.signatures:
            raise _invalid(f"Serving signature key \"{_name(key)}\" not found (model {self.name!r} "
                           f"version {self.version} has {sorted(self.signatures)})")
        return key, self.signatures[key]

    def validate_inputs(self, key: str, sig, inputs: Mapping[str, "tf.TensorProto"]) -> Dict[str, np.ndarray]:
        """Check the request's tensors against the signature; return the feed arrays."""
        expected, sent = set(sig.inputs), set(inputs)
        missing, extra = sorted(expected - sent), sorted(sent - expected)
        if missing or extra:
            parts = []
            if missing:
                parts.append(f"missing input(s) {missing}")
            if extra:
                parts.append(f"unknown input(s) {_names(extra)}")
            raise _invalid(f"{' and '.join(parts)} for signature \"{key}\"; it expects "
                           f"{describe_signature(sig)}")
        feeds: Dict[str, np.ndarray] = {}
        batch: Dict[str, int] = {}
        for name in sorted(expected):
            info, proto = sig.inputs[name], inputs[name]
            if proto.dtype != info.dtype:
                raise _invalid(f"input \"{name}\" has dtype {_dtype_name(proto.dtype)}, "
                               f"signature \"{key}\" expects {_dtype_name(info.dtype)}")
            want = _shape_of(info.tensor_shape)
            got = [d.size for d in proto.tensor_shape.dim]
            if want is not None and (len(got) != len(want)
                                     or any(w >= 0 and w != g for w, g in zip(want, got))):
                raise _invalid(f"input \"{name}\" has shape {_fmt_shape(got)}, signature "
                               f"\"{key}\" expects {_fmt_shape(want)}")
            try:
                arr = tf.make_ndarray(proto)
            except Exception as err:  # bad tensor_content length, unparsable values, ...
                raise _invalid(f"input \"{name}\" is not a valid {_dtype_name(info.dtype)} "
                               f"tensor of shape {_fmt_shape(got)}: {err}") from None
            if list(arr.shape) != got:
                raise _invalid(f"input \"{name}\" declares shape {_fmt_shape(got)} but holds "
                               f"{arr.size} values")
            feeds[name] = arr
            if want is not None and want and want[0] < 0:
                batch[name] = got[0]
        if len(set(batch.values())) > 1:
            raise _invalid(f"inputs of signature \"{key}\" must have the same batch size "
                           f"(first dimension), got {batch}")
        return feeds

    def run(self, sig, feeds: Mapping[str, np.ndarray], outputs: Sequence[str]) -> Dict[str, np.ndarray]:
        fetches = {k: sig.outputs[k].name for k in outputs}
        feed_dict = {sig.inputs[k].name: v for k, v in feeds.items()}
        try:
            return self.session.run(fetches, feed_dict)
        except UnicodeDecodeError as err:
            # the graph rejected the values (e.g. bytes that are no tf.Example) with a
            # message quoting them; TensorFlow then fails to decode its own message
            text = err.object.decode("utf-8", "replace") if isinstance(err.object, bytes) \
                else str(err)
            raise _invalid(f"the model rejected the request's values: {text}") from None

    def predict(self, request: predict_pb2.PredictRequest) -> predict_pb2.PredictResponse:
        key, sig = self.signature(request.model_spec.signature_name)
        if sig.method_name not in PREDICT_LIKE:
            raise _invalid(f"signature \"{key}\" has method {sig.method_name!r}, which "
                           f"Predict cannot run")
        unknown = sorted(set(request.output_filter) - set(sig.outputs))
        if unknown:
            raise _invalid(f"output_filter names {_names(unknown)}, not outputs of signature "
                           f"\"{key}\" (it has {sorted(sig.outputs)})")
        feeds = self.validate_inputs(key, sig, request.inputs)
        wanted = list(request.output_filter) or sorted(sig.outputs)
        result = self.run(sig, feeds, wanted)
        response = predict_pb2.PredictResponse(model_spec=self.model_spec(key))
        for name, value in result.items():
            response.outputs[name].CopyFrom(tf.make_tensor_proto(value))
        return response

    def regress(self, request: regression_pb2.RegressionRequest) -> regression_pb2.RegressionResponse:
        key, sig = self.signature(request.model_spec.signature_name)
        if sig.method_name != REGRESS_METHOD:
            raise _invalid(f"Expected regression signature method_name to be {REGRESS_METHOD}. "
                           f"Was: {sig.method_name} (signature \"{key}\")")
        if REGRESS_INPUT not in sig.inputs or REGRESS_OUTPUT not in sig.outputs:
            raise _invalid(f"regression signature \"{key}\" needs input \"{REGRESS_INPUT}\" "
                           f"and output \"{REGRESS_OUTPUT}\"")
        kind = request.input.WhichOneof("kind")
        if kind == "example_list":
            examples = [e.SerializeToString() for e in request.input.example_list.examples]
        elif kind == "example_list_with_context":
            ctx = request.input.example_list_with_context.context
            examples = []
            for e in request.input.example_list_with_context.examples:
                merged = type(e)()
                merged.CopyFrom(ctx)
                merged.MergeFrom(e)
                examples.append(merged.SerializeToString())
        else:
            raise _invalid("RegressionRequest.input holds no examples")
        if not examples:
            raise _invalid("RegressionRequest.input holds no examples")
        out = self.run(sig, {REGRESS_INPUT: np.array(examples, dtype=object)}, [REGRESS_OUTPUT])
        values = np.asarray(out[REGRESS_OUTPUT]).reshape(len(examples), -1)
        if values.shape[1] != 1:
            raise ServingError(grpc.StatusCode.INTERNAL,
                               f"regression output has shape {list(out[REGRESS_OUTPUT].shape)}")
        response = regression_pb2.RegressionResponse(model_spec=self.model_spec(key))
        for v in values[:, 0]:
            response.result.regressions.add(value=float(v))
        return response

    def model_spec(self, signature: str = "") -> model_pb2.ModelSpec:
        spec = model_pb2.ModelSpec(name=self.name, signature_name=signature)
        spec.version.value = self.version
        return spec

    def warm_up(self) -> int:
        """Replay the warm-up file as TF Serving does before a version goes AVAILABLE."""
        path = self.path / "assets.extra" / WARMUP_FILE
        if not path.exists():
            return 0
        count = 0
        for record in tf.data.TFRecordDataset(str(path)):
            entry = prediction_log_pb2.PredictionLog.FromString(record.numpy())
            kind = entry.WhichOneof("log_type")
            if kind == "predict_log":
                self.predict(entry.predict_log.request)
            elif kind == "regress_log":
                self.regress(entry.regress_log.request)
            else:
                raise ValueError(f"unsupported warm-up record {kind!r} in {path}")
            count += 1
        self.warmup_records = count
        return count


class ModelRepository:
    """Models by name, each a base path of numbered versions; serves the newest loaded."""

    def __init__(self, models: Mapping[str, Path], poll_seconds: float = 1.0):
        self.base_paths = {name: Path(p) for name, p in models.items()}
        self.poll_seconds = poll_seconds
        self._current: Dict[str, Servable] = {}
        self._failed: Dict[str, Dict[int, str]] = {n: {} for n in self.base_paths}
        self._last_poll: Dict[str, float] = {}
        self._locks = {name: threading.Lock() for name in self.base_paths}
        self._retired: List[Servable] = []

    def refresh(self, name: str, force: bool = False) -> None:
        """Load the newest version of ``name`` if it is newer than the served one."""
        now = time.monotonic()
        if not force and now - self._last_poll.get(name, -1e9) < self.poll_seconds:
            return
        with self._locks[name]:
            self._last_poll[name] = time.monotonic()
            current = self._current.get(name)
            for version in reversed(list_versions(self.base_paths[name])):
                if current is not None and version <= current.version:
                    break
                if version in self._failed[name]:
                    continue
                try:
                    servable = Servable(name, version, self.base_paths[name] / str(version))
                    servable.warm_up()
                except Exception as err:  # keep serving what was loaded before
                    msg = f"{type(err).__name__}: {err}"
                    self._failed[name][version] = msg
                    log.error("loading %s version %d failed: %s", name, version, msg)
                    continue
                log.info("serving %s version %d (%d warm-up records)", name, version,
                         servable.warmup_records)
                if current is not None:
                    self._retired.append(current)  # in-flight requests may still use it
                self._current[name] = servable
                break

    def get(self, spec: model_pb2.ModelSpec) -> Servable:
        name = spec.name
        wanted = spec.version.value if spec.HasField("version") else None
        if spec.version_label:
            raise _invalid("version labels are not supported by the test server")
        if name not in self.base_paths:
            raise ServingError(grpc.StatusCode.NOT_FOUND,
                               f"Servable not found for request: Latest({_name(name)}) "
                               f"(served models: {sorted(self.base_paths)})")
        self.refresh(name)
        servable = self._current.get(name)
        if servable is None:
            failed = self._failed[name]
            detail = (f"; failed versions: {failed}" if failed else
                      f"; no version directory under {self.base_paths[name]}")
            raise ServingError(grpc.StatusCode.NOT_FOUND,
                               f"Servable not found for request: Latest({name}){detail}")
        if wanted is not None and wanted != servable.version:
            raise ServingError(grpc.StatusCode.NOT_FOUND,
                               f"Servable not found for request: Specific({name}, {wanted}) "
                               f"(serving version {servable.version})")
        return servable

    def close(self) -> None:
        for s in [*self._current.values(), *self._retired]:
            s.close()
        self._current.clear()
        self._retired.clear()


def _guard(context, fn):
    """Run ``fn``; turn every failure into a gRPC status instead of an exception."""
    try:
        return fn()
    except ServingError as err:
        code, message = err.code, err.message
    except tf.errors.InvalidArgumentError as err:
        code, message = grpc.StatusCode.INVALID_ARGUMENT, err.message
    except tf.errors.OpError as err:
        code, message = grpc.StatusCode.INTERNAL, err.message
    except Exception as err:  # never let a request take the server down
        log.exception("request failed")
        code, message = grpc.StatusCode.INTERNAL, f"{type(err).__name__}: {err}"
    context.abort(code, _clip(message))


class PredictionServicer(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self, repo: ModelRepository):
        self.repo = repo

    def Predict(self, request, context):
        return _guard(context, lambda: self.repo.get(request.model_spec).predict(request))

    def Regress(self, request, context):
        return _guard(context, lambda: self.repo.get(request.model_spec).regress(request))

    def Classify(self, request, context):
        context.abort(grpc.StatusCode.UNIMPLEMENTED, "Classify is not implemented by the "
                      "test server (PTPM exports have no classification signature)")

    def MultiInference(self, request, context):
        context.abort(grpc.StatusCode.UNIMPLEMENTED, "MultiInference is not implemented by "
                      "the test server")

    def GetModelMetadata(self, request, context):
        def run():
            fields = list(request.metadata_field)
            if fields != ["signature_def"]:
                raise _invalid(f"metadata_field must be [\"signature_def\"], got {fields}")
            servable = self.repo.get(request.model_spec)
            sig_map = get_model_metadata_pb2.SignatureDefMap()
            for k, v in servable.signatures.items():
                sig_map.signature_def[k].CopyFrom(v)
            response = get_model_metadata_pb2.GetModelMetadataResponse(
                model_spec=servable.model_spec())
            response.metadata["signature_def"].Pack(sig_map)
            return response
        return _guard(context, run)


class ModelServicer(model_service_pb2_grpc.ModelServiceServicer):
    def __init__(self, repo: ModelRepository):
        self.repo = repo

    def GetModelStatus(self, request, context):
        def run():
            servable = self.repo.get(request.model_spec)
            status = get_model_status_pb2.ModelVersionStatus(
                version=servable.version,
                state=get_model_status_pb2.ModelVersionStatus.AVAILABLE)
            return get_model_status_pb2.GetModelStatusResponse(model_version_status=[status])
        return _guard(context, run)


class LocalModelServer:
    """A running test server: ``.address`` (``127.0.0.1:PORT``), ``.stop()``; also a
    context manager."""

    __test__ = False  # not a pytest test class

    def __init__(self, models: Mapping[str, Path], host: str = "127.0.0.1", port: int = 0,
                 max_workers: int = 8, poll_seconds: float = 1.0, preload: bool = True):
        self.repo = ModelRepository(models, poll_seconds=poll_seconds)
        if preload:
            for name in self.repo.base_paths:
                self.repo.refresh(name, force=True)
        options = [("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
                   ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES)]
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=max_workers),
                                  options=options)
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
            PredictionServicer(self.repo), self.server)
        model_service_pb2_grpc.add_ModelServiceServicer_to_server(
            ModelServicer(self.repo), self.server)
        self.port = self.server.add_insecure_port(f"{host}:{port}")
        if self.port == 0:
            raise OSError(f"could not bind {host}:{port}")
        self.host = host
        self.server.start()

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def stop(self, grace: float = 0.5) -> None:
        self.server.stop(grace).wait()
        self.repo.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def models_from_config(path: Path, models_root: Optional[Path] = None) -> Dict[str, Path]:
    """``name -> base_path`` from a TF Serving model config file (text proto).
    ``models_root`` replaces each base path's parent (``/models/ptpm`` ->
    ``<models_root>/ptpm``), to run the Docker config against a local ``export/``."""
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2
    config = text_format.Parse(Path(path).read_text(), model_server_config_pb2.ModelServerConfig())
    out = {}
    for m in config.model_config_list.config:
        base = Path(m.base_path)
        out[m.name] = Path(models_root) / base.name if models_root else base
    return out


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m ptpm_tf.serving.local_server",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8500, help="0 = any free port")
    p.add_argument("--port_file", help="write the bound port to this file once serving")
    p.add_argument("--model_name", action="append", default=[],
                   help="model name (repeatable, paired with --model_base_path)")
    p.add_argument("--model_base_path", action="append", default=[])
    p.add_argument("--model_config_file", help="TF Serving model config (text proto)")
    p.add_argument("--models_root", help="with --model_config_file: local folder that "
                                         "replaces each base path's parent (e.g. export)")
    p.add_argument("--poll_seconds", type=float, default=1.0)
    p.add_argument("--max_workers", type=int, default=8)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    models: Dict[str, Path] = {}
    if args.model_config_file:
        models.update(models_from_config(Path(args.model_config_file), args.models_root))
    if len(args.model_name) != len(args.model_base_path):
        p.error("give one --model_base_path per --model_name")
    models.update({n: Path(b) for n, b in zip(args.model_name, args.model_base_path)})
    if not models:
        p.error("no models: use --model_name/--model_base_path or --model_config_file")
    server = LocalModelServer(models, host=args.host, port=args.port, max_workers=args.max_workers,
                        poll_seconds=args.poll_seconds)
    log.info("listening on %s for %s", server.address, sorted(models))
    if args.port_file:
        Path(args.port_file).write_text(str(server.port))
    try:
        server.server.wait_for_termination()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""SavedModel export in the layout TF Serving loads (docs/design.md section 6).

``export_model(model, "export", "ptpm")`` writes ``export/ptpm/<version>/`` with

- ``saved_model.pb`` + ``variables/``, signatures (a caller pays only for what it asks):

  * ``serving_default`` (method ``tensorflow/serving/predict``): one 1-D tensor per raw
    feature in (the names and dtypes of :meth:`FeatureEncoder.input_signature`: int64 or
    string ids, float32 numbers, NaN = missing), the head's point outputs out:
    ``watch_time`` plus those of ``Head.output_names`` its decoding returns without the
    distributional decoding (for the tree head ``watch_time_global``, ``variance``,
    ``prune_mask``, ``leaf_prob``, ``tree_depth``). The serving path is the tower plus the
    head's point decoding, nothing else;
  * ``distribution`` (method ``tensorflow/serving/predict``, tree heads only): the same
    inputs, the distributional outputs out (``watch_time_mean``, ``watch_time_median``,
    ``quantiles`` and, when the features hold ``duration``, ``p_complete``). A call of
    its own: the tower runs again, and the tree outputs it does not return are not
    computed (the runtime prunes them);
  * ``regress`` (method ``tensorflow/serving/regress``): input ``inputs``, a string
    tensor of serialized ``tf.Example`` protos (one feature per raw input; a missing
    numeric feature is NaN = missing, a missing categorical one is an error), output
    ``outputs`` = ``watch_time``. This is what TF Serving's Regress API calls.

- ``assets.extra/tf_serving_warmup_requests``: a TFRecord file of ``PredictionLog`` protos
  (Predict requests of 1, 64 and 512 candidates for every Predict signature and one
  Regress request) that TF Serving replays before it marks the version AVAILABLE;
- ``assets.extra/model_info.json``: what the export holds (model name, head, outputs and,
  the head's ``model_info``: for tree heads, the constants that
  :func:`ptpm_tf.heads.tree.describe.describe_tree` uses to print label intervals in
  seconds). TF Serving ignores it.

**Versions** are integers; a new export takes ``max(existing) + 1``, so TF Serving's
default "latest" policy serves the newest. **Atomicity**: everything is written to a hidden
temporary directory inside ``export/<name>/`` (same file system), synced, then renamed to
its number in one ``rename(2)``. A server polling the folder (it only considers all-digit
names) therefore sees a version whole or not at all; an export killed half-way leaves
only a ``.tmp-export-*`` directory, which servers ignore and the next export removes.

Only stock TensorFlow ops end up in the graph (lookups are static hash tables, the tree
math is matmuls): :func:`graph_ops` lists them, and the tests check them.

**Bad requests** are checked inside the graph, so every server answers alike: both
signatures run :func:`checked_inputs` (an ``inf`` numeric input fails the request with
INVALID_ARGUMENT naming it; NaN stays "missing") and :func:`checked_outputs`
(``p_complete`` is :data:`P_COMPLETE_UNKNOWN` where the duration is missing, and a
non-finite output fails the request): no output is NaN with status OK.
"""
from __future__ import annotations

import errno
import json
import logging
import os
import secrets
import shutil
import socket
import time
from pathlib import Path
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Set, Union

import numpy as np
import pandas as pd
import tensorflow as tf

from ptpm_tf import atomic_io

SERVING_SIGNATURE = "serving_default"
DISTRIBUTION_SIGNATURE = "distribution"
REGRESS_SIGNATURE = "regress"
REGRESS_INPUT = "inputs"
REGRESS_OUTPUT = "outputs"
PREDICT_METHOD = "tensorflow/serving/predict"
REGRESS_METHOD = "tensorflow/serving/regress"
#: signatures whose method is not Predict (``tf.saved_model.save`` marks all as Predict)
METHODS = {REGRESS_SIGNATURE: REGRESS_METHOD}
WARMUP_FILE = "tf_serving_warmup_requests"
INFO_FILE = "model_info.json"
TMP_PREFIX = ".tmp-export-"
WARMUP_BATCH_SIZES = (1, 64, 512)
#: ops that would tie the graph to a Python process or to a library TF Serving lacks
FORBIDDEN_OPS = frozenset({"PyFunc", "PyFuncStateless", "EagerPyFunc"})

PathLike = Union[str, os.PathLike]


# -- the serving module ------------------------------------------------------------------

class ServingModule(tf.Module):
    """The functions a SavedModel of ``model`` serves, one per signature: raw features ->
    the point outputs (``serve``), raw features -> the distributional outputs
    (``distribution``, heads that have them) and serialized ``tf.Example`` ->
    ``watch_time`` (``regress``). Each is traced with only the decoding its outputs need,
    so a caller of ``serving_default`` never pays for the quantiles.

    ``lean=True`` (the default) keeps the Keras model out of the SavedModel's object
    graph: after tracing, only the variables and lookup tables the functions capture
    are tracked (:meth:`track_captured`). The export then holds no Keras layer functions,
    no optimizer slots and no metric variables: a smaller ``saved_model.pb`` and a faster
    save and load. ``lean=False`` tracks the whole Keras model instead.
    """

    def __init__(self, model: tf.keras.Model, lean: bool = True):
        super().__init__(name="ptpm_serving")
        if lean:
            object.__setattr__(self, "model", model)  # bypass automatic tracking
        else:
            self.model = model
        self.lean = lean
        head = model.head
        #: signature key -> the outputs it may return (a head may skip one, e.g. an
        #: output that needs a feature the dataset lacks)
        self.output_names = {SERVING_SIGNATURE: ("watch_time", *head.output_names)}
        if head.distribution_output_names:
            self.output_names[DISTRIBUTION_SIGNATURE] = tuple(head.distribution_output_names)
        self.input_specs = model.encoder.input_signature()
        self.numeric = tuple(model.encoder.numeric)
        self.serve = tf.function(self._serve, input_signature=[self.input_specs])
        if DISTRIBUTION_SIGNATURE in self.output_names:  # saving traces every tf.function
            self.distribution = tf.function(self._distribution,
                                            input_signature=[self.input_specs])
        self.regress = tf.function(self._regress, input_signature=[
            tf.TensorSpec([None], tf.string, name=REGRESS_INPUT)])

    def _decode(self, features, distribution: bool):
        """The head's decoded outputs for raw ``features``: the one path every signature's
        features take into the model, with (``distribution``) or without the head's
        distributional decoding."""
        model = self.model
        decoded = model.head.decode(model.raw_outputs(features, training=False), features,
                                    distribution=distribution)
        if "watch_time" not in decoded:
            raise ValueError(f"{type(self.model.head).__name__}.decode returns no watch_time")
        return decoded

    def _serve(self, features):
        features = checked_inputs(features, self.numeric)
        decoded = self._decode(features, distribution=False)
        return checked_outputs({k: decoded[k] for k in self.output_names[SERVING_SIGNATURE]
                                if k in decoded}, features)

    def _distribution(self, features):
        features = checked_inputs(features, self.numeric)
        decoded = self._decode(features, distribution=True)
        return checked_outputs({k: decoded[k] for k in self.output_names[DISTRIBUTION_SIGNATURE]
                                if k in decoded}, features)

    def example_spec(self) -> Dict[str, tf.io.FixedLenFeature]:
        """``tf.io.parse_example`` spec of the regress signature: categorical features are
        required, missing numeric ones parse as NaN (the encoder's "missing")."""
        spec = {}
        for name, ts in self.input_specs.items():
            if ts.dtype == tf.float32:
                spec[name] = tf.io.FixedLenFeature([], tf.float32, default_value=float("nan"))
            else:
                spec[name] = tf.io.FixedLenFeature([], ts.dtype)
        return spec

    def _regress(self, inputs):
        features = checked_inputs(tf.io.parse_example(inputs, self.example_spec()),
                                  self.numeric)
        watch_time = checked_outputs(
            {"watch_time": self._decode(features, distribution=False)["watch_time"]}, features)
        return {REGRESS_OUTPUT: watch_time["watch_time"]}

    def signatures(self) -> Dict[str, tf.types.experimental.ConcreteFunction]:
        sigs = {SERVING_SIGNATURE: self.serve.get_concrete_function()}
        if DISTRIBUTION_SIGNATURE in self.output_names:
            sigs[DISTRIBUTION_SIGNATURE] = self.distribution.get_concrete_function()
        sigs[REGRESS_SIGNATURE] = self.regress.get_concrete_function()
        if self.lean:
            self.track_captured(sigs.values())
        return sigs

    def track_captured(self, functions) -> None:
        """Track exactly the model's variables and resources (lookup tables) that the
        traced functions capture, so that the SavedModel saves and restores them."""
        captured = {id(t) for f in functions for t in f.captured_inputs}
        keep = []
        for obj in tf.train.TrackableView(self.model).descendants():
            if isinstance(obj, tf.Variable):
                handle = obj.handle
            elif isinstance(obj, tf.saved_model.experimental.TrackableResource):
                handle = obj.resource_handle
            else:
                continue
            if id(handle) in captured:
                keep.append(obj)
        self.captured_state = keep


# -- validation at the serving boundary ------------------------------------------------------

#: ``p_complete`` where the request's duration is missing (NaN): no completion without a length
P_COMPLETE_UNKNOWN = -1.0


def _check(ok: tf.Tensor, names: Sequence[str], what: str, hint: str, name: str):
    """One ``Assert`` that fails with ``what`` and the names whose entry of ``ok`` [k] is
    false (the others blank), e.g. ``[input(s) holding inf or -inf:] [ duration] [...]``:
    one check for all of them, in as few ops as possible, since every op on the serving
    path costs latency."""
    bad = tf.where(ok, "", tf.constant(list(names)))
    return tf.debugging.Assert(tf.reduce_all(ok), [what, bad, hint], summarize=len(names),
                               name=name)


def checked_inputs(features: Mapping[str, tf.Tensor], numeric: Sequence[str]
                   ) -> Dict[str, tf.Tensor]:
    """The request's features, computed only after every numeric input is checked: an
    ``inf`` or ``-inf`` fails the request with INVALID_ARGUMENT naming the input. NaN is
    the documented "missing" and passes. Stock ops only (``Assert``), so TF Serving
    answers exactly as the test server does.

    Rejected rather than read as missing, because the loaders drop an infinite value as
    bad data (a training row never carried one as "missing"), and an overflowed number is
    a client bug that an answer would hide."""
    names = [name for name in numeric if name in features]
    if not names:
        return dict(features)
    finite_or_nan = tf.logical_not(tf.reduce_any(tf.math.is_inf(
        tf.stack([features[name] for name in names], axis=1)), axis=0))
    check = _check(finite_or_nan, names, "input(s) holding inf or -inf:",
                   "send finite numbers, NaN for a missing value", "check_inputs")
    with tf.control_dependencies([check]):
        return {k: tf.identity(v) for k, v in features.items()}


def checked_outputs(outputs: Mapping[str, tf.Tensor], features: Mapping[str, tf.Tensor]
                    ) -> Dict[str, tf.Tensor]:
    """The outputs, never NaN with an OK status: ``p_complete`` is
    :data:`P_COMPLETE_UNKNOWN` where the duration is missing, and any other non-finite
    float output (finite inputs far outside the training range can overflow the tower)
    fails the request with INVALID_ARGUMENT naming the output."""
    out = dict(outputs)
    if "p_complete" in out and "duration" in features:
        out["p_complete"] = tf.where(tf.math.is_nan(features["duration"]),
                                     tf.constant(P_COMPLETE_UNKNOWN, out["p_complete"].dtype),
                                     out["p_complete"])
    names = [k for k, v in out.items() if v.dtype.is_floating]
    if not names:
        return out
    finite = tf.stack([tf.reduce_all(tf.math.is_finite(out[k])) for k in names])
    # a tf.function runs every stateful op it creates before it returns (automatic control
    # dependencies), so a failed check fails the call without gating each output on it
    _check(finite, names, "non-finite output(s):",
           "for these inputs (numeric inputs far outside the training range?)", "check_outputs")
    return out


# -- sample inputs (warm-up, load tests) ---------------------------------------------------

def sample_features(encoder, n: int, frame: Optional[pd.DataFrame] = None,
                    seed: int = 0) -> Dict[str, np.ndarray]:
    """``n`` rows of raw inputs for ``encoder``: rows of ``frame`` (cycled) when given,
    else values drawn from the vocabularies (ids) and around the training scale (numbers)."""
    if frame is not None and len(frame):
        idx = np.arange(n) % len(frame)
        return encoder.raw_arrays(frame.iloc[idx])
    rng = np.random.default_rng(seed)
    out = {}
    for name, spec in encoder.categorical.items():
        vocab = spec["vocab"] or ([""] if spec["dtype"] == "string" else [0])
        picks = [vocab[i] for i in rng.integers(0, len(vocab), n)]
        out[name] = (np.array(picks, dtype=object) if spec["dtype"] == "string"
                     else np.array(picks, np.int64))
    for name, spec in encoder.numeric.items():
        z = rng.normal(spec["mean"], spec["std"], n)  # on the signed-log scale
        out[name] = (np.sign(z) * np.expm1(np.abs(z))).astype(np.float32)
    return out


def to_examples(features: Mapping[str, np.ndarray]) -> List[tf.train.Example]:
    """One ``tf.Example`` per row of a dict of equal-length 1-D arrays."""
    n = len(next(iter(features.values())))
    examples = []
    for i in range(n):
        feats = {}
        for name, col in features.items():
            v = col[i]
            if isinstance(v, (bytes, str)) or col.dtype == object:
                b = v if isinstance(v, bytes) else str(v).encode()
                feats[name] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[b]))
            elif np.issubdtype(col.dtype, np.integer):
                feats[name] = tf.train.Feature(int64_list=tf.train.Int64List(value=[int(v)]))
            else:
                feats[name] = tf.train.Feature(float_list=tf.train.FloatList(value=[float(v)]))
        examples.append(tf.train.Example(features=tf.train.Features(feature=feats)))
    return examples


def write_warmup(path: Path, name: str, features_by_batch: Sequence[Mapping[str, np.ndarray]],
                 regress_features: Optional[Mapping[str, np.ndarray]] = None,
                 signatures: Sequence[str] = (SERVING_SIGNATURE,)) -> int:
    """Write TF Serving's warm-up file (TFRecord of ``PredictionLog``): one Predict request
    per Predict signature and batch, then one Regress request. Returns the number of
    records."""
    from tensorflow_serving.apis import (input_pb2, model_pb2, predict_pb2,
                                         prediction_log_pb2, regression_pb2)
    path.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with tf.io.TFRecordWriter(str(path)) as writer:
        for signature in signatures:
            for feats in features_by_batch:
                req = predict_pb2.PredictRequest(model_spec=model_pb2.ModelSpec(
                    name=name, signature_name=signature))
                for key, arr in feats.items():
                    req.inputs[key].CopyFrom(tf.make_tensor_proto(arr))
                log = prediction_log_pb2.PredictionLog(
                    predict_log=prediction_log_pb2.PredictLog(request=req))
                writer.write(log.SerializeToString())
                count += 1
        if regress_features is not None:
            req = regression_pb2.RegressionRequest(
                model_spec=model_pb2.ModelSpec(name=name, signature_name=REGRESS_SIGNATURE),
                input=input_pb2.Input(example_list=input_pb2.ExampleList(
                    examples=to_examples(regress_features))))
            log = prediction_log_pb2.PredictionLog(
                regress_log=prediction_log_pb2.RegressLog(request=req))
            writer.write(log.SerializeToString())
            count += 1
    return count


def model_info(model: tf.keras.Model, name: str,
               signatures: Mapping[str, tf.types.experimental.ConcreteFunction]) -> dict:
    """Description of an export (``assets.extra/model_info.json``): ``outputs`` are those
    of ``serving_default``; ``signatures`` maps each signature to its method and outputs."""
    head = model.head
    info = {"name": name, "head": type(head).__name__,
            "outputs": list(signatures[SERVING_SIGNATURE].structured_outputs),
            "inputs": {k: v.dtype.name for k, v in model.encoder.input_signature().items()},
            "signatures": {key: {"method": METHODS.get(key, PREDICT_METHOD),
                                 "outputs": list(fn.structured_outputs)}
                           for key, fn in signatures.items()}}
    info.update(head.model_info())
    return info


# -- writing and publishing ----------------------------------------------------------------

def _set_method_names(export_dir: Path, methods: Mapping[str, str]) -> None:
    """TF2's ``tf.saved_model.save`` marks every signature as Predict; TF Serving's
    Regress API only accepts signatures whose method is ``tensorflow/serving/regress``.
    Rewrite those method names in ``saved_model.pb`` (and its fingerprint)."""
    from tensorflow.core.protobuf import saved_model_pb2
    pb_path = export_dir / "saved_model.pb"
    sm = saved_model_pb2.SavedModel()
    sm.ParseFromString(pb_path.read_bytes())
    for meta_graph in sm.meta_graphs:
        for key, method in methods.items():
            if key in meta_graph.signature_def:
                meta_graph.signature_def[key].method_name = method
    pb_path.write_bytes(sm.SerializeToString())
    fingerprint = export_dir / "fingerprint.pb"
    if fingerprint.exists():
        try:
            from tensorflow.python.saved_model import fingerprinting_utils
            fingerprinting_utils.write_fingerprint(str(export_dir))
        except Exception:  # the fingerprint is optional; a stale one is worse than none
            fingerprint.unlink()


def write_saved_model(model: tf.keras.Model, path: PathLike, name: str = "ptpm", *,
                      example_frame: Optional[pd.DataFrame] = None,
                      warmup_batch_sizes: Sequence[int] = WARMUP_BATCH_SIZES) -> Path:
    """Write a complete SavedModel (signatures, warm-up file, model info) to ``path``.
    Not atomic by itself: :func:`export_model` calls it on a temporary directory."""
    path = Path(path)
    module = ServingModule(model)
    signatures = module.signatures()
    try:
        tf.saved_model.save(module, str(path), signatures=signatures)
    except (ValueError, AssertionError, TypeError) as err:
        # a capture the lean module does not track (an unusual head): save it all
        logging.getLogger(__name__).warning("lean export failed (%s); saving the whole "
                                            "Keras model", err)
        shutil.rmtree(path, ignore_errors=True)
        module = ServingModule(model, lean=False)
        signatures = module.signatures()
        tf.saved_model.save(module, str(path), signatures=signatures)
    _set_method_names(path, METHODS)
    extra = path / "assets.extra"
    batches = [sample_features(model.encoder, n, example_frame, seed=n) for n in warmup_batch_sizes]
    write_warmup(extra / WARMUP_FILE, name, batches,
                 sample_features(model.encoder, 8, example_frame, seed=8),
                 signatures=[k for k in signatures if k != REGRESS_SIGNATURE])
    (extra / INFO_FILE).write_text(json.dumps(model_info(model, name, signatures), indent=2))
    return path


def list_versions(base: PathLike) -> List[int]:
    """Version numbers under ``export/<name>/`` (all-digit directory names), ascending: what
    TF Serving's file-system source considers."""
    base = Path(base)
    if not base.is_dir():
        return []
    return sorted(int(p.name) for p in base.iterdir() if p.is_dir() and p.name.isdigit())


def latest_version_dir(base: PathLike) -> Optional[Path]:
    versions = list_versions(base)
    return Path(base) / str(versions[-1]) if versions else None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _tmp_name() -> str:
    host = "".join(c if c.isalnum() else "_" for c in socket.gethostname()) or "host"
    return f"{TMP_PREFIX}{host}-{os.getpid()}-{secrets.token_hex(4)}"


def remove_stale_temporaries(base: Path, foreign_age: float = 86400.0) -> List[Path]:
    """Remove the temporary directories of killed exports: those made on this host by a
    process that is gone, and those from other hosts (or containers sharing the folder)
    untouched for ``foreign_age`` seconds, whose process this host cannot check."""
    removed = []
    if not base.is_dir():
        return removed
    here = _tmp_name().rsplit("-", 2)[0]
    for p in base.iterdir():
        if not (p.is_dir() and p.name.startswith(TMP_PREFIX)):
            continue
        try:
            host, pid, _ = p.name.rsplit("-", 2)
            pid = int(pid)
        except ValueError:
            continue
        if host == here:
            stale = not _pid_alive(pid)
        else:
            try:
                stale = time.time() - p.stat().st_mtime > foreign_age
            except OSError:
                continue
        if stale:
            shutil.rmtree(p, ignore_errors=True)
            removed.append(p)
    return removed


def _publish(tmp: Path, base: Path, version: Optional[int]) -> Path:
    """Rename the finished ``tmp`` to its version number (the next free one unless
    ``version`` is given). ``rename(2)`` is atomic; two concurrent exports that pick the
    same number collide on a non-empty target and the loser takes the next number."""
    atomic_io.fsync_tree(tmp)
    for _ in range(1000):
        number = version if version is not None else max(list_versions(base), default=0) + 1
        final = base / str(number)
        if final.exists():
            if version is not None:
                raise FileExistsError(f"{final} already exists; versions are never overwritten")
            continue
        try:
            os.rename(tmp, final)
        except OSError as err:
            if err.errno in (errno.EEXIST, errno.ENOTEMPTY) and version is None:
                continue
            raise
        atomic_io.fsync_dir(base)
        return final
    raise RuntimeError(f"could not find a free version number under {base}")


def export_model(model: tf.keras.Model, export_dir: PathLike = "export", name: str = "ptpm", *,
                 version: Optional[int] = None, example_frame: Optional[pd.DataFrame] = None,
                 warmup_batch_sizes: Sequence[int] = WARMUP_BATCH_SIZES) -> Path:
    """Export ``model`` as ``<export_dir>/<name>/<version>/`` atomically; returns that path.

    ``example_frame``: rows whose features fill the warm-up requests (else values are
    drawn from the encoder's vocabularies). ``version``: force a number (must be free).
    """
    if not name or not all(c.isalnum() or c in "-_." for c in name) or name.startswith("."):
        raise ValueError(f"model name must be letters, digits, '-', '_' or '.', got {name!r}")
    base = Path(export_dir) / name
    if version is not None and (base / str(version)).exists():
        raise FileExistsError(f"{base / str(version)} already exists; versions are never "
                              f"overwritten")
    base.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(base)
    tmp = base / _tmp_name()
    try:
        write_saved_model(model, tmp, name, example_frame=example_frame,
                          warmup_batch_sizes=warmup_batch_sizes)
        return _publish(tmp, base, version)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def export_run(run_dir: PathLike, export_dir: PathLike = "export",
               name: Optional[str] = None, version: Optional[int] = None) -> Path:
    """Rebuild a training run's model and export it (``ptpm-tf export``); the model name
    defaults to the run's model (``ptpm``, ``tpm``, ...)."""
    from ptpm_tf.training import load_run
    config, model, data, split = load_run(Path(run_dir))
    return export_model(model, export_dir, name or config.model, version=version,
                        example_frame=split.test.head(512) if split is not None
                        else data.head("test", 512))


# -- inspection ----------------------------------------------------------------------------

def graph_ops(export_dir: PathLike) -> Set[str]:
    """Every op type in the SavedModel's graphs and function library (function calls
    excluded): what a server must have registered to load it."""
    from tensorflow.core.protobuf import saved_model_pb2
    sm = saved_model_pb2.SavedModel()
    sm.ParseFromString((Path(export_dir) / "saved_model.pb").read_bytes())
    ops: Set[str] = set()
    for mg in sm.meta_graphs:
        functions = {f.signature.name for f in mg.graph_def.library.function}
        nodes: Iterable = list(mg.graph_def.node)
        for f in mg.graph_def.library.function:
            nodes = [*nodes, *f.node_def]
        ops |= {n.op for n in nodes if n.op not in functions}
    return ops


def non_stock_ops(export_dir: PathLike) -> Set[str]:
    """Ops of the export that stock TF Serving does not have: Python callbacks and
    anything not in TensorFlow's own op registry (``tf.raw_ops``)."""
    stock = set(dir(tf.raw_ops))
    return {op for op in graph_ops(export_dir) if op in FORBIDDEN_OPS or op not in stock}

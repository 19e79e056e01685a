"""Offline batch scoring: every output of a model's serving signature for every row of a
file or prepared directory, streamed into a Parquet file, with no server
(``ptpm-tf predict --run RUN | --export DIR --input FILE|DIR --output OUT.parquet``).

The daily job of a team that scores yesterday's log. One ``tf.data`` pipeline reads the
input in batches (a prepared directory's shards, parsed in parallel; Parquet row groups or
CSV blocks, converted by pyarrow), runs the model on each batch with ``map`` (several
batches at once, each on one thread: on small batches TensorFlow's intra-op threads cost
more than they give) and prefetches; the outputs are gathered into row groups of
:data:`ROW_GROUP_ROWS` rows and appended to the output file on a background thread, which
overlaps the encoding with the model calls (snappy, no dictionary on the float outputs:
dictionary encoding doubled the write time). Memory stays that of a
few batches whatever the input's size.

The output has one row per input row, in input order, keyed by ``row`` (the 0-based
position among the input's data rows; a prepared directory's own row key), plus
``user_id``, ``item_id`` and ``timestamp`` when the input has them, then the outputs:
1-D ones as columns, [n, k] ones (quantiles, per-node tree outputs) as fixed-size list
columns. It is written beside ``OUT`` and renamed into place when complete.

Inputs are the model's raw features by their names (as the serving signature takes them):
ids as integers or text, numbers as floats (empty / NaN allowed: the model treats them as
missing). A missing column or a value that does not convert is a :class:`DataError`
naming the file, the column and the first bad row.
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, Optional, Sequence, Tuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pv
import pyarrow.parquet as pq
import tensorflow as tf

from ptpm_tf.data.dataset import ITEM, TIMESTAMP, USER, DataError
from ptpm_tf.data.pipeline import pipeline_options
from ptpm_tf.data.prepared import PARTS, ROW, is_prepared, open_prepared

#: input columns copied to the output beside ``row`` when present
KEYS = (USER, ITEM, TIMESTAMP)


def model_function(run: Optional[str] = None, export: Optional[str] = None,
                   signature: Optional[str] = None, outputs: Optional[Sequence[str]] = None
                   ) -> Tuple[Callable, Dict[str, tf.TensorSpec]]:
    """(function of a dict of input tensors -> dict of outputs, its input signature).

    ``run``: a run directory (the model is rebuilt); every output of the model, or with
    ``signature='serving_default'`` only what that signature of an export returns (a tree
    model without its distributional outputs). ``export``: a SavedModel directory and its
    ``signature`` (default ``serving_default``), as TF Serving runs it; a model repository
    ``DIR/NAME`` holding numbered versions means its newest version. ``outputs``: only
    these of the outputs (the graph then computes only what they need); an unknown name
    is a ``ValueError`` listing the available ones."""
    fn, specs, output_names, model = _model_function(run, export, signature)
    if not outputs:
        return fn, specs
    if model is not None and list(dict.fromkeys(outputs)) == ["watch_time"]:
        # the point prediction alone: a tree's decode computes the global tree's median
        # in the same pass as the personalised one's, which graph pruning cannot split
        def point(features):
            return {"watch_time": model.head.point_prediction(model.raw_outputs(features),
                                                              features)}
        return tf.function(point, input_signature=[specs]), specs
    available = output_names()
    unknown = [o for o in outputs if o not in available]
    if unknown:
        raise ValueError(f"no output {unknown[0]!r} here; the outputs are "
                         f"{', '.join(available)}")
    chosen = list(dict.fromkeys(outputs))

    def selected(features):
        out = fn(features)
        return {k: out[k] for k in chosen}
    return tf.function(selected, input_signature=[specs]), specs


def _model_function(run, export, signature) -> Tuple[Callable, Dict[str, tf.TensorSpec],
                                                      Callable[[], list], Any]:
    """(function, input signature, a function listing its output names, the Keras model
    of a run or None for an export) of :func:`model_function` before any selection of
    outputs."""
    if (run is None) == (export is None):
        raise ValueError("give one of --run and --export")
    if run is not None:
        from ptpm_tf.training import load_model

        if signature not in (None, "serving_default", "distribution"):
            raise ValueError(f"unknown signature {signature!r}; use serving_default or "
                             "distribution")
        config, model = load_model(Path(run))
        distribution = signature != "serving_default"
        specs = model.encoder.input_signature()
        fn = tf.function(lambda features: model.head.decode(
            model.raw_outputs(features), features, distribution=distribution),
            input_signature=[specs])
        # the trace is cached: calling fn later inside tf.data reuses it
        return fn, specs, lambda: list(fn.get_concrete_function().structured_outputs), model
    path = Path(export)
    if not (path / "saved_model.pb").is_file():
        versions = sorted((p for p in path.iterdir() if p.name.isdigit()),
                          key=lambda p: int(p.name)) if path.is_dir() else []
        if not versions:
            raise FileNotFoundError(f"{path} is not a SavedModel (no saved_model.pb) nor a "
                                    "model repository with numbered versions")
        path = versions[-1]
    loaded = tf.saved_model.load(str(path))
    name = signature or "serving_default"
    if name not in loaded.signatures:
        raise ValueError(f"{path} has no signature {name!r} (it has "
                         f"{', '.join(sorted(loaded.signatures))})")
    signature = dict(loaded.signatures[name].structured_input_signature[1])

    def call(features):
        # reached through ``loaded``, which must stay alive: a tf.data function that
        # captured only the signature would find its variables deleted
        return loaded.signatures[name](**features)
    return call, signature, lambda: list(loaded.signatures[name].structured_outputs), None


def _convert(column: pa.ChunkedArray, spec: tf.TensorSpec, file, name: str, first_row: int):
    """An Arrow column as the NumPy array the signature takes (raise naming the row)."""
    try:
        if spec.dtype == tf.string:
            return pc.fill_null(pc.cast(column, pa.string()), "").to_numpy(zero_copy_only=False)
        if spec.dtype.is_integer:
            if column.null_count:
                bad = int(np.argmax(column.is_null().to_numpy(zero_copy_only=False)))
                raise DataError("missing id", file=str(file), row=first_row + bad + 1,
                                column=name)
            return pc.cast(column, pa.int64()).to_numpy()
        return pc.cast(column, pa.float64()).to_numpy(zero_copy_only=False).astype(np.float32)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as err:
        # find the first value that does not convert, to name its row
        values = column.to_pylist()
        for i, v in enumerate(values):
            try:
                pc.cast(pa.array([v]), pa.int64() if spec.dtype.is_integer else pa.float64())
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                raise DataError(f"cannot read {v!r} as {spec.dtype.name}: {err}",
                                file=str(file), row=first_row + i + 1, column=name) from None
        raise DataError(f"cannot convert: {err}", file=str(file), column=name) from None


def _key(column) -> np.ndarray:
    """A key column as read: numbers as float64 where they all are, else text."""
    try:
        return pc.cast(column, pa.float64()).to_numpy(zero_copy_only=False)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return column.to_numpy(zero_copy_only=False)


#: rows per Parquet row group of the output (batches are gathered up to it)
ROW_GROUP_ROWS = 131_072


def _file_batches(path: Path, signature, batch_size: int) -> Tuple[Optional[int], Iterator]:
    """(rows if known, iterator of (inputs, keys)) for a CSV or Parquet file; keys hold
    ``row`` and the :data:`KEYS` present. CSV rows are numbered from 1 after the header
    in messages; Parquet rows from 1."""
    if not path.is_file():
        raise DataError("input file not found", file=str(path))
    parquet = path.suffix.lower() in (".parquet", ".pq")
    if parquet:
        try:
            pf = pq.ParquetFile(path)
        except (pa.ArrowInvalid, OSError) as err:
            raise DataError(f"not a readable Parquet file: {err}", file=str(path)) from None
        names, total = pf.schema_arrow.names, pf.metadata.num_rows
    else:
        from ptpm_tf.data.reader import csv_header

        names, total = csv_header(path), None
    missing = [c for c in signature if c not in names]
    if missing:
        raise DataError(f"missing input column(s) {missing}; the model takes "
                        f"{', '.join(signature)}", file=str(path), column=missing[0])
    wanted = list(signature) + [k for k in KEYS if k in names and k not in signature]

    def batches():
        if parquet:
            stream = pf.iter_batches(batch_size=batch_size, columns=wanted)
        else:
            types = {c: pa.string() for c in wanted}
            stream = pv.open_csv(path, read_options=pv.ReadOptions(block_size=16 << 20),
                                 convert_options=pv.ConvertOptions(
                                     include_columns=wanted, column_types=types,
                                     strings_can_be_null=True))
        start = 0
        try:
            for batch in stream:
                for off in range(0, batch.num_rows, batch_size):
                    part = batch.slice(off, batch_size)
                    n = part.num_rows
                    inputs = {c: _convert(part.column(c), s, path, c, start)
                              for c, s in signature.items()}
                    keys = {ROW: np.arange(start, start + n, dtype=np.int64)}
                    for k in KEYS:
                        if k in inputs:
                            keys[k] = inputs[k]
                        elif k in wanted:
                            keys[k] = _key(part.column(k))
                    start += n
                    yield inputs, keys
        except pa.ArrowInvalid as err:
            raise DataError(f"cannot parse: {err}", file=str(path)) from None
    return total, batches()


def _prepared_dataset(path: Path, signature, batch_size: int):
    """(rows, ``tf.data`` of (inputs, keys)) over every split of a prepared directory, in
    time order (train, validation, test), parsed in parallel."""
    prepared = open_prepared(path)
    have = prepared.meta["dtypes"]
    missing = [c for c in signature if c not in have]
    if missing:
        raise DataError(f"the prepared data lacks input column(s) {missing}", file=str(path),
                        column=missing[0])
    keys = [ROW, *(k for k in KEYS if k in have)]
    columns = list(dict.fromkeys([*signature, *keys]))
    parts = [prepared.batches(part, batch_size, columns=columns) for part in PARTS
             if prepared.rows(part)]
    ds = parts[0]
    for part in parts[1:]:
        ds = ds.concatenate(part)
    return len(prepared), ds.map(lambda b: ({c: b[c] for c in signature},
                                            {k: b[k] for k in keys}))


def _file_dataset(path: Path, signature, batch_size: int):
    """(rows if known, ``tf.data`` of inputs, queue of the keys of each batch in order,
    list that receives a :class:`DataError` raised while reading) for a CSV or Parquet
    file. The keys (whose types depend on the file) and a bad-input error stay in
    Python: an exception inside ``tf.data`` would reach the caller as a TensorFlow error
    without its message."""
    import collections

    total, batches = _file_batches(path, signature, batch_size)
    pending: collections.deque = collections.deque()
    errors: list = []

    def inputs():
        try:
            for batch_inputs, keys in batches:
                pending.append(keys)
                yield batch_inputs
        except DataError as err:
            errors.append(err)

    spec = {c: tf.TensorSpec([None], s.dtype) for c, s in signature.items()}
    return total, tf.data.Dataset.from_generator(inputs, output_signature=spec), pending, errors


def _table(keys: Dict[str, np.ndarray], outputs: Dict[str, np.ndarray]) -> pa.Table:
    cols = {}
    for k, v in keys.items():
        col = pa.array(v)
        cols[k] = col.cast(pa.string()) if pa.types.is_binary(col.type) else col  # TF's bytes
    for k in sorted(outputs, key=lambda k: (k != "watch_time", k)):
        v = outputs[k]
        if v.ndim == 1:
            cols[k] = pa.array(v)
        else:
            flat = pa.array(v.reshape(-1))
            cols[k] = pa.FixedSizeListArray.from_arrays(flat, int(np.prod(v.shape[1:])))
    return pa.table(cols)


def _writer(path: Path, schema: pa.Schema) -> pq.ParquetWriter:
    """Snappy; statistics on the key columns and dictionaries on the ids only (on the
    float outputs dictionaries cost more write time than they save)."""
    keys = [n for n in schema.names if n in (ROW, *KEYS)]
    return pq.ParquetWriter(path, schema, compression="snappy",
                            use_dictionary=[n for n in keys if n in (USER, ITEM)],
                            write_statistics=keys)


class _RowGroupWriter:
    """Writes row groups to a Parquet file on a background thread, so that encoding the
    output (about a third of the command's CPU time on a tree model's per-node outputs)
    overlaps the model calls instead of stalling them; at most two row groups wait."""

    def __init__(self, path: Path):
        import queue
        import threading

        self._path = path
        self._queue: "queue.Queue" = queue.Queue(maxsize=2)
        self._error: Optional[BaseException] = None
        self._groups = 0
        self._thread = threading.Thread(target=self._run, name="parquet-writer", daemon=True)
        self._thread.start()

    def _run(self):
        writer = None
        try:
            while (table := self._queue.get()) is not None:
                if self._error is None:  # after an error, drain without writing
                    writer = writer or _writer(self._path, table.schema)
                    writer.write_table(table)  # pyarrow releases the GIL while encoding
                    self._groups += 1
        except BaseException as err:  # re-raised in the caller's thread by put/close
            self._error = err
            while self._queue.get() is not None:
                pass
        finally:
            if writer is not None:
                writer.close()

    def put(self, table: pa.Table) -> None:
        if self._error is not None:
            raise self._error
        self._queue.put(table)

    def close(self) -> int:
        """Wait for every row group to be written; returns how many were (raises the
        writer's error)."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()
        if self._error is not None:
            raise self._error
        return self._groups

    def abort(self) -> None:
        """Stop the thread (after an error in the caller); the file is left to delete."""
        if self._thread.is_alive():
            self._error = self._error or RuntimeError("scoring stopped")
            self._queue.put(None)
            self._thread.join()


def score(input_path, output_path, *, run: Optional[str] = None,
          export: Optional[str] = None, signature: Optional[str] = None,
          outputs: Optional[Sequence[str]] = None, batch_size: int = 4096,
          progress: Optional[bool] = None) -> dict:
    """Score every row of ``input_path`` (CSV, Parquet or a prepared directory) into the
    Parquet file ``output_path``; returns ``{"rows", "seconds", "rows_per_second"}``.
    ``batch_size``: rows per model call (a few thousand keep each call's tensors in
    cache; measured on the simulator's model, 4096 did 1.5x the rows per CPU-second of
    65536). ``outputs``: write only these outputs (default: every output of the
    signature). ``progress``: show a progress bar (default: when stderr is a terminal)."""
    from tqdm import tqdm

    output_path = Path(output_path)
    if output_path.suffix.lower() not in (".parquet", ".pq"):
        raise ValueError(f"--output must be a .parquet file, got {output_path}")
    fn, signature = model_function(run, export, signature, outputs)
    input_path = Path(input_path)
    pending = errors = None
    if is_prepared(input_path):
        total, source = _prepared_dataset(input_path, signature, batch_size)
        scored = source.map(lambda inputs, keys: (fn(inputs), keys),
                            num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    else:
        total, source, pending, errors = _file_dataset(input_path, signature, batch_size)
        scored = source.map(fn, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    options = pipeline_options()
    options.threading.max_intra_op_parallelism = 1
    scored = scored.prefetch(tf.data.AUTOTUNE).with_options(options)
    output_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = output_path.with_name(f".{output_path.name}.tmp{os.getpid()}")
    writer = _RowGroupWriter(tmp)
    rows = 0
    group: list = []
    bar = tqdm(total=total, unit="rows", unit_scale=True, file=sys.stderr,
               disable=(not sys.stderr.isatty()) if progress is None else not progress)
    start = time.perf_counter()
    try:
        for item in scored:
            out, keys = item if pending is None else (item, pending.popleft())
            # np.asarray shares the tensor's buffer; Tensor.numpy() would copy it
            table = _table({k: np.asarray(v) for k, v in keys.items()},
                           {k: np.asarray(v) for k, v in out.items()})
            group.append(table)
            rows += table.num_rows
            bar.update(table.num_rows)
            if sum(t.num_rows for t in group) >= ROW_GROUP_ROWS:
                writer.put(pa.concat_tables(group))
                group = []
        if errors:
            raise errors[0]
        if group:
            writer.put(pa.concat_tables(group))
        if not writer.close():
            raise DataError("no data rows", file=str(input_path))
        os.replace(tmp, output_path)
    finally:
        bar.close()
        writer.abort()
        tmp.unlink(missing_ok=True)
    seconds = time.perf_counter() - start
    return {"rows": rows, "seconds": round(seconds, 3),
            "rows_per_second": round(rows / seconds, 1) if seconds > 0 else None}

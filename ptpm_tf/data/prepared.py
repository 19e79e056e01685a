"""Prepared datasets: a log converted once into time-ordered TFRecord shards that training,
evaluation and batch scoring stream from, in bounded memory (``ptpm-tf data prepare``).

A prepared directory holds::

    meta.json                 schema, split, encoder statistics, label quantiles, counts
    train-00000.tfrecord ...  the training rows, oldest first, ``shard_rows`` per file
    validation-00000.tfrecord ...
    test-00000.tfrecord ...
    train_labels.parquet      the training split's watch_time (and duration), float64

Every shard is a TFRecord file of ``tf.train.Example`` (one per row) holding the feature
columns, the canonical label columns (``watch_time``, ``duration``, ``timestamp`` and the
simulator's oracle columns where present) and ``row``, the row's position in time order
over the whole dataset (its key). The columns are packed into one list per type, named
``int64`` (integers, and float64 columns as their bits), ``float32`` and ``bytes``, in
the order ``meta.json``'s ``layout`` lists (format 2; format 1 had one feature per
column, which cost 2.5x the read and parse CPU on a 41-column row). TFRecord is what
``tf.data`` reads fastest with stock ops: ``TFRecordDataset`` streams it with no Python
in the loop, ``interleave`` reads several shards at once, and ``parse_example`` decodes a
whole batch in one kernel. Parquet would need a Python generator or the unmaintained
``tensorflow-io`` to reach ``tf.data``.

**Conversion in bounded memory.** Pass 1 runs the dataset's own loader chunk by chunk
(:func:`ptpm_tf.data.reader.chunked_reads`: the same bad-row rules, counts, line numbers and
``--strict``) and writes each chunk, sorted by time, to a temporary Parquet run. Pass 2
merges the runs in time order (ties keep file order, as :func:`split_dataset` does) and
cuts the merged stream into the splits at the same row counts as an in-memory split, so the
split is the same. While the training rows go by it accumulates the encoder's vocabularies
and normalisation statistics (exactly as :meth:`FeatureEncoder.from_frame` computes them)
and a uniform sample of the labels for the quantiles. Memory: one chunk in pass 1; in
pass 2 a bounded buffer per run plus the row group its reader holds (runs are written in
small row groups; beyond :data:`_MAX_FAN_IN` runs they are first merged in groups, so the
number of readers is bounded too), the vocabulary counts (one entry per distinct id in the
training split) and the label sample. Without a timestamp the split is the seeded random
one of :func:`split_dataset`, whose permutation takes 8 bytes per row.

**Label quantiles** (``meta.json`` ``label_quantiles``) are given for ``watch_time`` and for
the ratio ``watch_time / duration`` (rows with a positive duration), at 1001 levels, from a
uniform sample of at most :data:`QUANTILE_SAMPLE` training rows. With ``n`` rows sampled
out of more, every stated level ``q`` is, with probability 0.999, the true quantile of a
level within ``sqrt(ln(2 / 0.001) / (2 n))`` of ``q`` (the DKW inequality; 0.0020 at
n = 1M); with all training rows sampled the quantiles are exact. The heads fit their
constants (the global tree) from ``train_labels.parquet``: from every training label up to
``--fit-rows`` rows (as in memory), from a uniform sample of that many beyond
(:meth:`Prepared.train_labels`), so a training process's memory does not grow with the log.
"""
from __future__ import annotations

import dataclasses
import json
import math
import shutil
import sys
import time
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ptpm_tf.data.dataset import (DURATION, LABEL, ORACLE_MEAN, ORACLE_MEDIAN, TIMESTAMP,
                                  Dataset, DataError, LoadReport)
from ptpm_tf.features import signed_log1p

#: 2: the columns packed into one list per type (1: one feature per column)
FORMAT_VERSION = 2
META = "meta.json"
LABELS_FILE = "train_labels.parquet"
PARTS = ("train", "validation", "test")
#: the row key written in every Example
ROW = "row"
#: label-side columns written when the dataset has them (not model inputs)
LABEL_COLUMNS = (LABEL, DURATION, TIMESTAMP, ORACLE_MEDIAN, ORACLE_MEAN)
QUANTILE_SAMPLE = 1_000_000
QUANTILE_LEVELS = 1001
DEFAULT_SHARD_ROWS = 1_000_000
DEFAULT_CHUNK_ROWS = 500_000
_SEQ = "_seq"
#: rows buffered per run while merging, in all (split among the runs)
_MERGE_BUDGET = 500_000
#: row-group size of the sorted runs: a run's reader holds one row group while merging,
#: so with Parquet's default (a whole 500k-row chunk per group) memory grew with the
#: number of runs, i.e. with the rows (5.1 GB at 50M rows)
_RUN_ROW_GROUP = 8_192
#: runs merged at once; more runs are first merged in groups of this many into longer
#: runs (another pass over the disk), so the merge's readers stay this many whatever the
#: row count (each holds about 10-20 MB)
_MAX_FAN_IN = 32
#: most frequent values kept per categorical feature (as FeatureEncoder.from_frame)
MAX_TOKENS = 200_000


def is_prepared(path) -> bool:
    """Whether ``path`` is a prepared directory."""
    return path is not None and (Path(path) / META).is_file()


# ------------------------------------------------------------------------- statistics

class _Moments:
    """Count, mean and sum of squared deviations of the finite values, merged chunk by
    chunk (Chan et al.), so that the result equals one pass over all values."""

    def __init__(self):
        self.n, self.mean, self.m2 = 0, 0.0, 0.0

    def add(self, x: np.ndarray) -> None:
        x = x[np.isfinite(x)]
        if not len(x):
            return
        n, mean = len(x), float(x.mean())
        m2 = float(((x - mean) ** 2).sum())
        total = self.n + n
        delta = mean - self.mean
        self.mean += delta * n / total
        self.m2 += m2 + delta * delta * self.n * n / total
        self.n = total

    def stats(self) -> dict:
        mean = self.mean if self.n else 0.0
        std = math.sqrt(self.m2 / self.n) if self.n > 1 else 1.0
        return {"mean": mean, "std": std if std > 1e-8 else 1.0}


class _Sample:
    """A uniform sample of at most ``size`` rows of a stream (the rows with the smallest
    random keys), of several float columns."""

    def __init__(self, size: int, seed: int):
        self.size, self.rng = size, np.random.default_rng(seed)
        self.keys = np.empty(0)
        self.values: Dict[str, np.ndarray] = {}
        self.seen = 0

    def add(self, columns: Dict[str, np.ndarray]) -> None:
        n = len(next(iter(columns.values())))
        self.seen += n
        keys = np.concatenate([self.keys, self.rng.random(n)])
        values = {k: np.concatenate([self.values.get(k, np.empty(0)), v])
                  for k, v in columns.items()}
        if len(keys) > self.size:
            keep = np.argpartition(keys, self.size)[:self.size]
            keys, values = keys[keep], {k: v[keep] for k, v in values.items()}
        self.keys, self.values = keys, values


def _quantiles(values: np.ndarray, seen: int) -> dict:
    levels = np.linspace(0.0, 1.0, QUANTILE_LEVELS)
    values = values[np.isfinite(values)]
    n = len(values)
    exact = n == seen
    return {"levels": QUANTILE_LEVELS, "sample_rows": int(n), "rows": int(seen),
            "exact": bool(exact),
            "max_level_error_p999": 0.0 if exact or n == 0 else
            round(math.sqrt(math.log(2 / 0.001) / (2 * n)), 6),
            "values": np.quantile(values, levels).tolist() if n else []}


# ------------------------------------------------------------------------- writing

def _kind(series: pd.Series) -> str:
    if pd.api.types.is_bool_dtype(series) or pd.api.types.is_integer_dtype(series):
        return "int64"
    if pd.api.types.is_float_dtype(series):
        return "float32"
    return "string"


#: the Example features of a row: one packed list per protobuf list type, holding the
#: columns of these kinds in ``meta.json``'s ``layout`` order (float64 as its int64 bits)
_GROUPS = {"int64": ("int64", "float64"), "float32": ("float32",), "bytes": ("string",)}
_GROUP_OF = {kind: group for group, kinds in _GROUPS.items() for kind in kinds}


def _layout(kinds: Dict[str, str]) -> Dict[str, List[str]]:
    """Columns of each packed feature, in ``kinds`` order (empty groups left out)."""
    layout = {g: [c for c, k in kinds.items() if _GROUP_OF[k] == g] for g in _GROUPS}
    return {g: cols for g, cols in layout.items() if cols}


def _serialize(frame: pd.DataFrame, kinds: Dict[str, str], layout: Dict[str, List[str]]):
    """One serialized ``tf.train.Example`` per row of ``frame`` (a [n] string tensor),
    built with ``tf.io.encode_proto`` level by level: vectorised, no Python per row.

    A row's columns go into one packed list per type (:func:`_layout`), not one named
    feature each: ``parse_example`` then decodes three lists per row instead of one
    map entry per column (0.4x the read and parse CPU, a fifth of the bytes, on a
    41-column KuaiRec row; BENCHMARKS.md)."""
    import tensorflow as tf

    n = len(frame)
    one = np.ones((n, 1), np.int32)

    def enc(message, fields, values, sizes):
        return tf.io.encode_proto(sizes, values, fields, message)

    entries = []
    for group, cols in layout.items():
        width = np.full((n, 1), len(cols), np.int32)
        if group == "int64":
            values = np.stack([frame[c].to_numpy(np.float64).view(np.int64)
                               if kinds[c] == "float64" else frame[c].to_numpy(np.int64)
                               for c in cols], 1)
            inner = enc("tensorflow.Int64List", ["value"], [values], width)
            field = "int64_list"
        elif group == "float32":
            values = np.stack([frame[c].to_numpy(np.float32) for c in cols], 1)
            inner = enc("tensorflow.FloatList", ["value"], [values], width)
            field = "float_list"
        else:
            values = np.stack([frame[c].astype(str).to_numpy(dtype=object) for c in cols], 1)
            inner = enc("tensorflow.BytesList", ["value"], [tf.constant(values, tf.string)],
                        width)
            field = "bytes_list"
        feature = enc("tensorflow.Feature", [field], [tf.reshape(inner, [-1, 1])], one)
        entries.append(enc("tensorflow.Features.FeatureEntry", ["key", "value"],
                           [tf.fill([n, 1], group), tf.reshape(feature, [-1, 1])],
                           np.ones((n, 2), np.int32)))
    features = enc("tensorflow.Features", ["feature"], [tf.stack(entries, 1)],
                   np.full((n, 1), len(entries), np.int32))
    return enc("tensorflow.Example", ["features"], [tf.reshape(features, [-1, 1])], one)


class _ShardWriter:
    """Writes one part's rows as TFRecord files of exactly ``shard_rows`` rows (the last
    one shorter), serialising each frame as it arrives (nothing is held back)."""

    def __init__(self, out: Path, part: str, shard_rows: int, kinds: Dict[str, str],
                 compression: str = ""):
        self.out, self.part, self.shard_rows, self.kinds = out, part, shard_rows, kinds
        self.layout = _layout(kinds)
        self.compression = compression
        self.shards: List[dict] = []
        self.writer = None
        self.current: dict = {}

    def add(self, frame: pd.DataFrame) -> None:
        import tensorflow as tf

        while len(frame):
            if self.writer is None:
                name = f"{self.part}-{len(self.shards):05d}.tfrecord"
                options = tf.io.TFRecordOptions(compression_type=self.compression)
                self.writer = tf.io.TFRecordWriter(str(self.out / name), options)
                self.current = {"file": name, "rows": 0, "first_row": int(frame[ROW].iloc[0])}
            take = min(len(frame), self.shard_rows - self.current["rows"])
            for start in range(0, take, 65536):
                # the records are serialised together; TFRecordWriter writes one record per
                # call, the only stock writer of the format
                for record in _serialize(frame.iloc[start:min(take, start + 65536)],
                                         self.kinds, self.layout).numpy():
                    self.writer.write(record)
            self.current["rows"] += take
            frame = frame.iloc[take:]
            if self.current["rows"] == self.shard_rows:
                self._finish()

    def close(self) -> List[dict]:
        if self.writer is not None:
            self._finish()
        return self.shards

    def _finish(self) -> None:
        self.writer.close()
        self.writer = None
        self.current["bytes"] = (self.out / self.current["file"]).stat().st_size
        self.shards.append(self.current)


class _TrainStats:
    """What the training rows contribute to ``meta.json``: vocabularies, numeric
    statistics, the label sample (and the label file)."""

    def __init__(self, out: Path, categorical, numeric, has_duration: bool, seed: int):
        self.counts: Dict[str, pd.Series] = {c: pd.Series(dtype=np.int64) for c in categorical}
        self.moments = {c: _Moments() for c in numeric}
        self.sample = _Sample(QUANTILE_SAMPLE, seed)
        self.has_duration = has_duration
        self.labels_path = out / LABELS_FILE
        self.labels: Optional[pq.ParquetWriter] = None

    def add(self, frame: pd.DataFrame) -> None:
        for c in self.counts:
            vc = frame[c].value_counts(sort=False)
            self.counts[c] = self.counts[c].add(vc, fill_value=0).astype(np.int64)
        for c, m in self.moments.items():
            m.add(signed_log1p(frame[c].to_numpy(np.float64)))  # as FeatureEncoder
        y = frame[LABEL].to_numpy(np.float64)
        cols = {LABEL: y}
        if self.has_duration:
            d = frame[DURATION].to_numpy(np.float64)
            cols[DURATION] = d
            with np.errstate(divide="ignore", invalid="ignore"):
                cols["ratio"] = np.where(d > 0, y / d, np.nan)
        self.sample.add(cols)
        table = pa.table({k: v for k, v in cols.items() if k != "ratio"})
        if self.labels is None:
            self.labels = pq.ParquetWriter(self.labels_path, table.schema)
        self.labels.write_table(table)

    def close(self, kinds: Dict[str, str]) -> dict:
        if self.labels is not None:
            self.labels.close()
        cat = {}
        for c, counts in self.counts.items():
            # most frequent first; equal counts in value order, so the vocabulary is stable
            order = pd.DataFrame({"v": counts.index, "n": counts.to_numpy()}).sort_values(
                ["n", "v"], ascending=[False, True], kind="stable")
            vocab = order["v"].to_numpy()[:MAX_TOKENS]
            cat[c] = ({"dtype": "string", "vocab": [str(v) for v in vocab]}
                      if kinds[c] == "string" else
                      {"dtype": "int64", "vocab": [int(v) for v in vocab]})
        quantiles = {LABEL: _quantiles(self.sample.values[LABEL], self.sample.seen)}
        if self.has_duration:
            ratio = self.sample.values["ratio"]
            q = _quantiles(ratio, self.sample.seen)
            q["note"] = "rows with a positive duration only"
            quantiles["ratio"] = q
        return {"encoder": {"categorical": cat,
                            "numeric": {c: m.stats() for c, m in self.moments.items()}},
                "label_quantiles": quantiles}


def _split_sizes(n: int, fractions: Sequence[float]) -> List[int]:
    """Rows of train / validation / test, as :func:`split_dataset` computes them."""
    n_train = max(1, int(round(fractions[0] * n)))
    n_val = max(1, int(round(fractions[1] * n)))
    n_train = min(n_train, n - 2)
    n_val = min(n_val, n - n_train - 1)
    return [n_train, n_val, n - n_train - n_val]


def _open_run(path: Path) -> pq.ParquetFile:
    """A run opened for streaming: no pre-buffering of whole column chunks (pyarrow's
    default reads far ahead), a 1 MiB read buffer."""
    return pq.ParquetFile(path, pre_buffer=False, buffer_size=1 << 20)


def _reduce_runs(paths: List[Path], runs_dir: Path,
                 normalize: Callable[[pd.DataFrame], pd.DataFrame]) -> List[Path]:
    """Merge the time-sorted runs in groups of :data:`_MAX_FAN_IN` into longer sorted
    runs until at most that many are left (the classic multi-pass external merge), so
    the final merge opens a bounded number of readers. ``normalize`` gives every frame
    the same column types (a categorical read as int in one chunk and as text in
    another)."""
    level = 0
    while len(paths) > _MAX_FAN_IN:
        merged = []
        for g in range(0, len(paths), _MAX_FAN_IN):
            group = paths[g:g + _MAX_FAN_IN]
            out = runs_dir / f"merge{level}-{len(merged):05d}.parquet"
            writer, schema = None, None
            for frame in _merged_runs(group, by_time=True):
                table = pa.Table.from_pandas(normalize(frame), schema=schema,
                                             preserve_index=False)
                if writer is None:
                    schema = table.schema
                    writer = pq.ParquetWriter(out, schema)
                writer.write_table(table, row_group_size=_RUN_ROW_GROUP)
            writer.close()
            for p in group:
                p.unlink()
            merged.append(out)
        paths, level = merged, level + 1
    return paths


def _merged_runs(paths: List[Path], by_time: bool) -> Iterator[pd.DataFrame]:
    """The rows of the runs in (timestamp, file order), in frames of bounded size; the
    runs in file order when not ``by_time``."""
    if not by_time:
        for p in paths:
            for batch in _open_run(p).iter_batches(batch_size=1 << 18):
                yield batch.to_pandas()
        return
    per_run = max(10_000, _MERGE_BUDGET // max(1, len(paths)))
    iters = [_open_run(p).iter_batches(batch_size=per_run) for p in paths]
    buffers: List[Optional[pd.DataFrame]] = [None] * len(paths)

    def refill(i):
        while buffers[i] is None or not len(buffers[i]):
            batch = next(iters[i], None)
            if batch is None:
                buffers[i] = None
                return
            buffers[i] = batch.to_pandas()

    for i in range(len(paths)):
        refill(i)
    while any(b is not None for b in buffers):
        live = [i for i, b in enumerate(buffers) if b is not None]
        # every row not yet buffered sorts after its run's last buffered row: rows up to
        # the smallest of those last rows are final
        lasts = [(buffers[i][TIMESTAMP].iat[-1], buffers[i][_SEQ].iat[-1]) for i in live]
        bound = min(lasts)
        parts = []
        for i in live:
            b = buffers[i]
            ts, seq = b[TIMESTAMP].to_numpy(), b[_SEQ].to_numpy()
            take = int(np.searchsorted(ts, bound[0], side="left"))
            take += int(np.sum((ts[take:] == bound[0]) & (seq[take:] <= bound[1])))
            parts.append(b.iloc[:take])
            buffers[i] = b.iloc[take:]
            if not len(buffers[i]):
                refill(i)
        out = pd.concat(parts, ignore_index=True)
        order = np.lexsort((out[_SEQ].to_numpy(), out[TIMESTAMP].to_numpy()))
        yield out.iloc[order].reset_index(drop=True)


def prepare(name: str, out_dir, *, data_dir=None, spec=None, rows: Optional[int] = None,
            seed: int = 0, strict: bool = False, split: Sequence[float] = (0.8, 0.1, 0.1),
            shard_rows: int = DEFAULT_SHARD_ROWS, chunk_rows: int = DEFAULT_CHUNK_ROWS,
            compression: str = "", progress: Optional[Callable[[str], None]] = None) -> dict:
    """Convert dataset ``name`` (the arguments of :func:`load_dataset`) into a prepared
    directory ``out_dir``; returns its ``meta.json`` content.

    The directory is written beside ``out_dir`` and renamed into place when complete. The
    simulator is generated in memory (it is a demo source); file datasets are read in
    chunks of about ``chunk_rows`` rows. ``compression``: ``""`` (none, the fastest to
    read) or ``"GZIP"`` (several times smaller on disk, slower to read).
    """
    from ptpm_tf.data import reader
    from ptpm_tf.data.registry import DATASETS, load_dataset
    from ptpm_tf.atomic_io import install_dir, staging_dir

    say = progress or (lambda msg: None)
    fr = tuple(float(f) for f in split)
    if len(fr) != 3 or any(f <= 0 for f in fr) or abs(sum(fr) - 1.0) > 1e-6:
        raise DataError(f"split fractions must be three positive numbers summing to 1, got {fr}")
    if shard_rows < 1 or chunk_rows < 1:
        raise DataError("--shard-rows and the chunk size must be positive")
    if compression not in ("", "GZIP"):
        raise DataError(f"compression must be none or gzip, got {compression!r}")
    if name not in DATASETS:
        raise DataError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    out_dir = Path(out_dir)
    if out_dir.exists() and (not out_dir.is_dir() or (not is_prepared(out_dir)
                                                      and any(out_dir.iterdir()))):
        raise DataError("exists and is not a prepared directory; choose an empty or "
                        "prepared directory", file=str(out_dir))
    stage = staging_dir(out_dir)
    started = time.perf_counter()
    try:
        # ---- pass 1: chunks, each sorted by time, to temporary runs
        runs_dir = stage / ".runs"
        runs_dir.mkdir()
        report = LoadReport()
        runs: List[Path] = []
        kinds: Dict[str, str] = {}
        first: Optional[Dataset] = None
        n = 0

        def keep(ds: Dataset) -> None:
            nonlocal first, n
            if first is None:
                first = ds
            elif (ds.categorical, ds.numeric) != (first.categorical, first.numeric):
                raise DataError(f"chunk {len(runs)} of {name!r} has other feature columns "
                                "than the first")
            _merge_report(report, ds.report)
            frame = ds.frame
            if not len(frame):
                return
            frame = frame.assign(**{_SEQ: np.arange(n, n + len(frame), dtype=np.int64)})
            if TIMESTAMP in frame.columns:
                frame = frame.iloc[np.argsort(frame[TIMESTAMP].to_numpy(), kind="stable")]
            for c in ds.categorical:
                k = _kind(frame[c])
                kinds[c] = "string" if "string" in (k, kinds.get(c)) else k
            path = runs_dir / f"run-{len(runs):05d}.parquet"
            pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path,
                           row_group_size=_RUN_ROW_GROUP)
            runs.append(path)
            n += len(frame)
            say(f"read {n:,} rows")

        if name == "simulator":
            keep(load_dataset(name, data_dir=data_dir, spec=spec, rows=rows, seed=seed,
                              strict=strict))
        else:
            with reader.chunked_reads(chunk_rows) as chunks:
                while True:
                    keep(load_dataset(name, data_dir=data_dir, spec=spec, rows=rows,
                                      seed=seed, strict=strict))
                    if chunks.done:
                        break
        if n < 3:
            raise DataError(f"dataset {name!r} has {n} rows; at least 3 are needed to split")
        ds0 = first
        by_time = TIMESTAMP in ds0.frame.columns
        sizes = _split_sizes(n, fr)
        columns = [*ds0.categorical, *ds0.numeric]
        labels = [c for c in LABEL_COLUMNS if c in ds0.frame.columns and c not in columns]
        kinds.update({c: "float32" for c in ds0.numeric})
        write_kinds = {**{c: kinds[c] for c in columns},
                       **{c: "float64" for c in labels}, ROW: "int64"}

        # ---- pass 2: merge in time order, cut into the splits, write shards
        part_of_seq = None
        if not by_time:
            perm = np.random.default_rng(seed).permutation(n)
            part_of_seq = np.empty(n, np.int8)
            part_of_seq[perm] = np.repeat(np.arange(3, dtype=np.int8), sizes)
        writers = {p: _ShardWriter(stage, p, shard_rows, write_kinds, compression)
                   for p in PARTS}
        stats = _TrainStats(stage, ds0.categorical, ds0.numeric,
                            DURATION in ds0.frame.columns, seed)
        bounds = np.cumsum(sizes)
        boundaries: Dict[str, float] = {}
        done = 0

        def as_text(frame: pd.DataFrame) -> pd.DataFrame:
            for c, k in kinds.items():
                if k == "string" and c in ds0.categorical:
                    frame[c] = frame[c].astype(str)
            return frame

        if by_time:
            runs = _reduce_runs(runs, runs_dir, as_text)
        for frame in _merged_runs(runs, by_time):
            frame = as_text(frame)
            if by_time:
                pos = np.arange(done, done + len(frame))
                part = np.searchsorted(bounds, pos, side="right")
                frame[ROW] = pos
            else:
                seq = frame[_SEQ].to_numpy()
                part = part_of_seq[seq]
                frame[ROW] = seq
            for i, p in enumerate(PARTS):
                rows_p = frame.loc[part == i]
                if not len(rows_p):
                    continue
                if by_time and p != "train" and p not in boundaries:
                    boundaries[p] = float(rows_p[TIMESTAMP].iloc[0])
                if p == "train":
                    stats.add(rows_p)
                writers[p].add(rows_p)
            done += len(frame)
            say(f"wrote {done:,} of {n:,} rows")
        shutil.rmtree(runs_dir)
        shards = {p: w.close() for p, w in writers.items()}
        seconds = time.perf_counter() - started
        total_bytes = sum(s["bytes"] for p in PARTS for s in shards[p])
        split_meta = {"method": "time" if by_time else "random", "fractions": list(fr),
                      "seed": seed, "rows": dict(zip(PARTS, map(int, sizes)))}
        if by_time:
            split_meta["boundaries"] = {"validation_from": boundaries.get("validation"),
                                        "test_from": boundaries.get("test")}
        meta = {"format": FORMAT_VERSION, "dataset": name,
                "source": {"data_dir": str(data_dir) if data_dir else None,
                           "spec": str(spec) if spec else None, "rows": rows,
                           "strict": strict},
                "rows": int(n), "categorical": list(ds0.categorical),
                "numeric": list(ds0.numeric), "labels": labels,
                "dtypes": write_kinds, "layout": _layout(write_kinds),
                "compression": compression, "split": split_meta,
                "shards": shards,
                **stats.close(kinds), "report": dataclasses.asdict(report),
                "disk": {"bytes": int(total_bytes),
                         "bytes_per_row": round(total_bytes / n, 1)},
                "prepare_seconds": round(seconds, 2),
                "prepare_rows_per_second": round(n / seconds, 1)}
        (stage / META).write_text(json.dumps(meta, indent=1))
        install_dir(stage, out_dir)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return meta


def _merge_report(total: LoadReport, part: LoadReport) -> None:
    total.rows_read += part.rows_read
    for reason, count in part.dropped.items():
        total.drop(reason, count, part.examples.get(reason))
    for what, count in part.notes.items():
        total.note(what, count)


# ------------------------------------------------------------------------- reading

@dataclasses.dataclass
class Prepared:
    """A prepared directory opened for reading (see the module doc)."""

    path: Path
    meta: dict

    def __len__(self) -> int:
        return int(self.meta["rows"])

    @property
    def name(self) -> str:
        return self.meta["dataset"]

    @property
    def categorical(self) -> List[str]:
        return self.meta["categorical"]

    @property
    def numeric(self) -> List[str]:
        return self.meta["numeric"]

    @property
    def features(self) -> List[str]:
        return [*self.categorical, *self.numeric]

    @property
    def has_oracle(self) -> bool:
        return ORACLE_MEDIAN in self.meta["labels"] and ORACLE_MEAN in self.meta["labels"]

    def rows(self, part: str) -> int:
        return int(self.meta["split"]["rows"][part])

    def files(self, part: str) -> List[str]:
        return [str(self.path / s["file"]) for s in self.meta["shards"][part]]

    def shard_rows(self, part: str) -> List[int]:
        return [int(s["rows"]) for s in self.meta["shards"][part]]

    def encoder(self):
        """The :class:`FeatureEncoder` fitted on the training split at prepare time."""
        from ptpm_tf.features import FeatureEncoder

        enc = self.meta["encoder"]
        return FeatureEncoder({c: enc["categorical"][c] for c in self.categorical},
                              {c: enc["numeric"][c] for c in self.numeric})

    def train_labels(self, max_rows: Optional[int] = None, seed: int = 0) -> pd.DataFrame:
        """The training split's label columns (``watch_time``, ``duration``), the only
        per-row data a head needs to fit its constants.

        With ``max_rows`` and more training rows than that, a uniform sample of
        ``max_rows`` rows without replacement (seeded, in time order), drawn and read one
        row group at a time (how many of the rows left fall in each group is
        hypergeometric, so the sample is exactly uniform and no index array of the
        whole split is built): memory is 16 bytes per sampled row whatever the split's
        size. Its empirical CDF is within ``sqrt(ln(2 / 0.001) / (2 max_rows))`` of the
        full split's at every point with probability 0.999 (DKW; 0.0014 at 2M rows)."""
        labels = pq.ParquetFile(self.path / LABELS_FILE)
        n = labels.metadata.num_rows
        if max_rows is None or n <= max_rows:
            return labels.read().to_pandas()
        rng = np.random.default_rng(seed)
        parts, left, wanted = [], n, max_rows
        for g in range(labels.num_row_groups):
            m = labels.metadata.row_group(g).num_rows
            take = int(rng.hypergeometric(m, left - m, wanted)) if left > m else wanted
            if take:
                rows = np.sort(rng.choice(m, take, replace=False))
                parts.append(labels.read_row_group(g).take(pa.array(rows)))
            left, wanted = left - m, wanted - take
        return pa.concat_tables(parts).to_pandas()

    def parser(self, columns: Optional[Sequence[str]] = None) -> Callable:
        """A function from a [n] batch of serialized rows to the dict of [n] columns
        ``columns`` (default: all written columns): one ``parse_example`` of the packed
        lists the columns are in, then the columns sliced out (float64 from its bits)."""
        import tensorflow as tf

        types = {"int64": tf.int64, "float32": tf.float32, "bytes": tf.string}
        dtypes, layout = self.meta["dtypes"], self.meta["layout"]
        cols = list(dtypes) if columns is None else list(columns)
        where = {c: (g, i) for g, names in layout.items() for i, c in enumerate(names)}
        groups = sorted({where[c][0] for c in cols}, key=list(layout).index)
        spec = {g: tf.io.FixedLenFeature([len(layout[g])], types[g]) for g in groups}

        def parse(records):
            packed = tf.io.parse_example(records, spec)
            split = {g: tf.unstack(packed[g], num=len(layout[g]), axis=1) for g in groups}
            out = {c: split[where[c][0]][where[c][1]] for c in cols}
            return {c: tf.bitcast(v, tf.float64) if dtypes[c] == "float64" else v
                    for c, v in out.items()}

        return parse

    def batches(self, part: str, batch_size: int, *, shuffle: bool = False, seed: int = 0,
                shuffle_buffer: int = 100_000, columns: Optional[Sequence[str]] = None,
                stride: int = 1, repeat: bool = False, shard_by_file: bool = True):
        """Parsed batches (dicts of 1-D tensors) of ``part``.

        Shuffled: the shard order is reshuffled every epoch, up to 8 shards are read at once
        (``interleave``), and rows pass through a ``shuffle_buffer``-row buffer; otherwise
        the rows come in time order. Examples are batched first and parsed a batch at a time,
        in parallel. Sharded by file (``AutoShardPolicy.FILE``): under a multi-worker
        strategy each worker reads only its own shards; with ``shard_by_file=False`` every
        worker reads every shard and keeps its slice of each batch (``DATA``, for
        validation, which may have fewer shards than workers). ``stride`` keeps every
        ``stride``-th row (a bounded, evenly spread subsample).
        """
        import tensorflow as tf

        from ptpm_tf.data.pipeline import pipeline_options

        files = self.files(part)
        parse = self.parser(columns)
        compression = self.meta.get("compression", "")

        def read(path):
            return tf.data.TFRecordDataset(path, compression_type=compression)

        ds = tf.data.Dataset.from_tensor_slices(files)
        if shuffle:
            ds = ds.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
            ds = ds.interleave(read, cycle_length=min(8, len(files)),
                               num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
            ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
        else:
            ds = ds.flat_map(read)
        if stride > 1:
            ds = ds.shard(stride, 0)
        if repeat:
            ds = ds.repeat()
        ds = ds.batch(batch_size).map(parse, num_parallel_calls=tf.data.AUTOTUNE)
        policy = tf.data.experimental.AutoShardPolicy
        return ds.with_options(pipeline_options(policy.FILE if shard_by_file else policy.DATA))

    def head(self, part: str, rows: int) -> pd.DataFrame:
        """The first ``rows`` rows of ``part`` (its oldest) as a pandas frame."""
        batch = next(iter(self.batches(part, rows)))
        return _to_frame({k: [v.numpy()] for k, v in batch.items()})

    def frame(self, part: str, stride: int = 1, batch_size: int = 65536) -> pd.DataFrame:
        """Every ``stride``-th row of ``part`` as a pandas frame (for a bounded sample)."""
        cols: Dict[str, list] = {}
        for batch in self.batches(part, batch_size, stride=stride):
            for k, v in batch.items():
                cols.setdefault(k, []).append(v.numpy())
        return _to_frame(cols)


def _to_frame(cols: Dict[str, list]) -> pd.DataFrame:
    out = {}
    for k, parts in cols.items():
        v = np.concatenate(parts)
        out[k] = pd.Series(v).str.decode("utf-8").to_numpy() if v.dtype == object else v
    return pd.DataFrame(out)


def open_prepared(path) -> Prepared:
    """Open a prepared directory (raise a :class:`DataError` naming it if it is not one)."""
    path = Path(path)
    meta_path = path / META
    if not meta_path.is_file():
        raise DataError(f"not a prepared directory (no {META}; write one with "
                        "ptpm-tf data prepare)", file=str(path))
    try:
        meta = json.loads(meta_path.read_text())
    except ValueError as e:
        raise DataError(f"unreadable: {e}", file=str(meta_path)) from None
    if meta.get("format") != FORMAT_VERSION:
        raise DataError(f"prepared with format {meta.get('format')}, this version reads "
                        f"{FORMAT_VERSION}; prepare it again", file=str(meta_path))
    for part in PARTS:
        for s in meta["shards"][part]:
            if not (path / s["file"]).is_file():
                raise DataError("shard listed in meta.json is missing", file=str(path / s["file"]))
    return Prepared(path, meta)


def print_progress(msg: str) -> None:
    """Progress on one terminal line (stderr), for ``data prepare``."""
    if sys.stderr.isatty():
        print(f"\r{msg}", end="", file=sys.stderr, flush=True)

"""Where offline batch scoring (``ptpm-tf predict --run``) spends its CPU: each stage of
``ptpm_tf.scoring`` timed alone, in CPU-microseconds per row, and the whole command.

    python -m ptpm_tf.benchmarks.scoring_stages --run RUN --input PREP_OR_PARQUET [--rows 500000]

Stages: reading the input into batches (a prepared directory: TFRecord read and
``parse_example``; a Parquet file: pyarrow and ``from_generator``); the model alone on
one batch repeated, with TensorFlow's default threads and with one intra-op thread, at a
few batch sizes, and split into its parts (lookups, tower, heads, decoding; eager calls
with default threads); the Parquet writer on the model's outputs. CPU time (user + system of the
process) is reported because wall time on a shared machine says more about the other jobs
than about the code; the ceiling on a machine of C free cores is about
``C * 1e6 / (sum of the stages)`` rows per second.
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np


def _cpu_per_row(fn, rows: int) -> float:
    start = time.process_time()
    fn()
    return round((time.process_time() - start) / rows * 1e6, 2)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", required=True, help="run directory (ptpm-tf train --out)")
    ap.add_argument("--input", required=True, help="prepared directory or Parquet file")
    ap.add_argument("--rows", type=int, default=500_000, help="rows read in the read stage")
    ap.add_argument("--signature", default="serving_default")
    args = ap.parse_args(argv)

    import ptpm_tf  # noqa: F401
    import pyarrow as pa
    import tensorflow as tf
    from ptpm_tf import scoring

    fn, signature = scoring.model_function(run=args.run, signature=args.signature)
    path = Path(args.input)
    out: dict = {"input": str(path), "signature": args.signature, "cpus": os.cpu_count()}

    def source(batch_size):
        if scoring.is_prepared(path):
            return scoring._prepared_dataset(path, signature, batch_size)[1].map(
                lambda inputs, keys: inputs)
        return scoring._file_dataset(path, signature, batch_size)[1]

    def read():
        n = 0
        for batch in source(4096).prefetch(tf.data.AUTOTUNE):
            n += int(next(iter(batch.values())).shape[0])
            if n >= args.rows:
                break
        return n

    start = time.process_time()
    n = read()
    out["read_us_per_row"] = round((time.process_time() - start) / n * 1e6, 2)

    big = next(iter(source(65536)))
    # the input's first batch may be shorter (a small file, a prepared split under 65,536
    # rows): batch sizes beyond it are that batch, and every stage counts the rows it ran
    have = int(next(iter(big.values())).shape[0])
    for threads, label in ((None, "default_threads"), (1, "one_intra_op_thread")):
        for size in dict.fromkeys(min(s, have) for s in (4096, 16384, 65536)):
            one = tf.data.Dataset.from_tensors({c: v[:size] for c, v in big.items()})
            reps = max(4, 262_144 // size)
            ds = one.repeat(reps).map(fn)
            if threads:
                options = tf.data.Options()
                options.threading.max_intra_op_parallelism = threads
                ds = ds.with_options(options)
            for _ in ds.take(1):
                pass
            out[f"model_us_per_row_{label}_batch_{size}"] = _cpu_per_row(
                lambda: [None for _ in ds], reps * size)

    # the forward pass by part, 16,384-row calls: each part includes the ones before it
    from ptpm_tf.training import load_model
    _, model = load_model(Path(args.run))
    distribution = args.signature != "serving_default"
    part_rows = min(16384, have)
    feats = {c: v[:part_rows] for c, v in big.items()}
    parts = {"lookups": lambda f: model.encoder(f),
             "lookups+tower": lambda f: model.tower(model.encoder(f)),
             "lookups+tower+heads": lambda f: model.raw_outputs(f),
             "all, with decoding": lambda f: model.head.decode(
                 model.raw_outputs(f), f, distribution=distribution)}
    for name, part in parts.items():
        part = tf.function(part)
        part(feats)
        out[f"model_part_us_per_row: {name}"] = _cpu_per_row(
            lambda: [part(feats) for _ in range(8)], 8 * part_rows)

    outputs = {k: np.asarray(v) for k, v in fn(feats).items()}
    keys = {scoring.ROW: np.arange(part_rows)}
    table = pa.concat_tables([scoring._table(keys, outputs)] * 8)
    with tempfile.TemporaryDirectory() as tmp:
        writer = scoring._writer(Path(tmp) / "w.parquet", table.schema)
        out["write_us_per_row"] = _cpu_per_row(lambda: writer.write_table(table),
                                               table.num_rows)
        writer.close()
        start = time.process_time()
        stats = scoring.score(path, Path(tmp) / "all.parquet", run=args.run,
                              signature=args.signature, progress=False)
        cpu = time.process_time() - start
    out["whole"] = {**stats, "cpu_us_per_row": round(cpu / stats["rows"] * 1e6, 2),
                    "load_avg_1min": round(os.getloadavg()[0], 2)}
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

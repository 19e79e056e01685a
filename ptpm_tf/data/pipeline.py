"""tf.data input: (raw feature dict, target dict) batches for ``model.fit``."""
from __future__ import annotations

from typing import Dict, NamedTuple, Optional, Tuple, Union

import numpy as np
import tensorflow as tf


class CodedStrings(NamedTuple):
    """A string column as int32 codes into its distinct values. Millions of Python string
    objects would take tens of bytes each per row; the codes take four, and the strings
    are gathered back per batch inside the pipeline, so the model still sees raw strings."""

    codes: np.ndarray
    values: np.ndarray


Column = Union[np.ndarray, CodedStrings]


def pipeline_options(shard_policy: Optional[tf.data.experimental.AutoShardPolicy] = None
                     ) -> tf.data.Options:
    """The options of every input pipeline here: tf.data's autotuning off.

    Its background thread re-plans the pipeline on a period that doubles from 10 ms, and
    destroying an iterator waited, idle, for the thread's next plan: a pass over a dataset
    (a ``fit`` epoch, a validation pass, a scoring job) ended at the next of 5.1 s, 10.2 s,
    ... after it began, whatever its work (a 2M-row scoring job with 7-9 s of work took
    10.5 s). Without it ``AUTOTUNE`` parallelism is the number of cores and prefetch
    buffers grow on demand; training samples/s did not change (BENCHMARKS.md, "Batch
    scoring without tf.data's autotuning"). ``shard_policy``: how a multi-worker strategy
    splits the input.
    """
    options = tf.data.Options()
    options.autotune.enabled = False
    if shard_policy is not None:
        options.experimental_distribute.auto_shard_policy = shard_policy
    return options


def _coded(features: Dict[str, Column]) -> Tuple[Dict[str, np.ndarray], dict]:
    plain = {k: v.codes if isinstance(v, CodedStrings) else v for k, v in features.items()}
    tables = {k: v.values for k, v in features.items() if isinstance(v, CodedStrings)}
    return plain, tables


def _with_strings(tables: dict):
    """A batch map that turns coded columns back into their strings."""
    consts = {k: tf.constant(v, tf.string) for k, v in tables.items()}

    def decode(features, *rest):
        features = {**features, **{k: tf.gather(t, features[k]) for k, t in consts.items()}}
        return (features, *rest) if rest else features
    return decode


def _row_batches(columns, n: int, batch_size: int, tables: dict, *,
                 shuffle: bool = False, seed: int = 0) -> tf.data.Dataset:
    """Batches of ``columns`` ([n, ...] arrays: a feature dict, or a tuple whose first
    item is one), gathered per batch of row indices, one gather per column; the indices
    are shuffled (with ``shuffle``) or in row order.

    Slicing the columns row by row (``from_tensor_slices``, then ``shuffle`` and ``batch``)
    costs per row and per column: on the simulator's 8 columns a pass over 240,000 rows
    took 2.5 CPU-seconds against 0.4-0.5 this way (BENCHMARKS.md). Shuffling the row
    indices with the same buffer and seed gives the very same batches as shuffling the rows.
    """
    columns = tf.nest.map_structure(tf.convert_to_tensor, columns)
    decode = _with_strings(tables) if tables else None

    def gather(index):
        batch = tf.nest.map_structure(lambda c: tf.gather(c, index), columns)
        if decode is None:
            return batch
        return decode(*batch) if isinstance(batch, tuple) else decode(batch)
    ds = tf.data.Dataset.range(n)
    if shuffle:
        ds = ds.shuffle(min(n, 200_000), seed=seed, reshuffle_each_iteration=True)
    return ds.batch(batch_size).map(gather, num_parallel_calls=tf.data.AUTOTUNE)


def feature_batches(features: Dict[str, Column], batch_size: int) -> tf.data.Dataset:
    """Batches of raw features only, in row order (for prediction)."""
    plain, tables = _coded(features)
    n = len(next(iter(plain.values()))) if plain else 0
    ds = _row_batches(plain, n, batch_size, tables)
    return ds.prefetch(tf.data.AUTOTUNE).with_options(pipeline_options())


def make_tf_dataset(features: Dict[str, Column], targets: Dict[str, np.ndarray], *,
                    batch_size: int, shuffle: bool = False, seed: int = 0) -> tf.data.Dataset:
    """Batches of ``(features, targets)``; shuffled each epoch (seeded) when training.

    The pipeline holds one copy of the table and gathers each batch's rows from it
    (:func:`_row_batches`); string columns given as :class:`CodedStrings` stay int32 codes
    until a batch is formed.

    ``batch_size`` is the global batch. Under a ``tf.distribute`` strategy, Keras splits
    each batch over the replicas, and with several workers the input is sharded by data
    (``AutoShardPolicy.DATA``): every worker runs this same pipeline (same seed, so the
    same shuffled order) and keeps its own slice of each global batch, so each row is
    trained on once per epoch by one worker. Without a strategy the option does nothing.
    """
    n = len(next(iter(targets.values())))
    plain, tables = _coded(features)
    ds = _row_batches((plain, targets), n, batch_size, tables, shuffle=shuffle, seed=seed)
    return ds.prefetch(tf.data.AUTOTUNE).with_options(
        pipeline_options(tf.data.experimental.AutoShardPolicy.DATA))

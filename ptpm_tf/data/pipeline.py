"""tf.data input: (raw feature dict, target dict) batches for ``model.fit``."""
from __future__ import annotations

from typing import Dict

import numpy as np
import tensorflow as tf


def make_tf_dataset(features: Dict[str, np.ndarray], targets: Dict[str, np.ndarray], *,
                    batch_size: int, shuffle: bool = False, seed: int = 0) -> tf.data.Dataset:
    """Batches of ``(features, targets)``; shuffled each epoch (seeded) when training.

    The arrays are sliced in place by ``from_tensor_slices``, so the pipeline holds one
    copy of the table.

    ``batch_size`` is the global batch. Under a ``tf.distribute`` strategy, Keras splits
    each batch over the replicas, and with several workers the input is sharded by data
    (``AutoShardPolicy.DATA``): every worker runs this same pipeline (same seed, so the
    same shuffled order) and keeps its own slice of each global batch, so each row is
    trained on once per epoch by one worker. Without a strategy the option does nothing.
    """
    n = len(next(iter(targets.values())))
    ds = tf.data.Dataset.from_tensor_slices((features, targets))
    if shuffle:
        ds = ds.shuffle(min(n, 200_000), seed=seed, reshuffle_each_iteration=True)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE).with_options(options)
